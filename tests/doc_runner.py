"""Runs every code block of the given Markdown files, as written, in document order.

    python tests/doc_runner.py README.md docs/*.md

Each block runs in a fresh process, as a reader would run it, and all blocks of a
document share one scratch directory, so that a pair meets the way the text says:
a Rust program leaves a segment that the next Python block opens, a Python block
headed ``# worker.py`` is the file that a Rust block then starts as its worker.

- ```rust: run from the ``doc_blocks`` binary, which ``examples/build.rs`` compiled
  from the same Markdown (blocks are named ``<file>:<line of the fence>``);
- ```python: run with this interpreter (the one with shmbridge installed); a block
  whose first line is ``# <name>.py`` is written to that file and compiled, not run;
- ```sh and ```text: shell commands and output samples, deliberately not run.

Any other fence (or none) fails the run: every block must say which it is.

Segment names in the documentation are fixed ("/my_data"), so the runner gives the
blocks a private /dev/shm (a mount namespace, through ``unshare``) where it can:
concurrent runs on one machine cannot collide, and nothing is left behind. Where
that is not possible it runs them in the shared /dev/shm and says so.
"""

from __future__ import annotations

import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_BLOCKS = ROOT / "target" / "release" / "doc_blocks"
TIMEOUT = 120.0  # seconds for one block
RUN = {"rust", "python"}
NOT_RUN = {"sh", "text"}
FILE_HEADER = re.compile(r"#\s*([\w.-]+\.py)\s*$")
ISOLATED = "SHMBRIDGE_DOC_RUNNER_ISOLATED"


@dataclass
class Block:
    document: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def blocks(document: str) -> list[Block]:
    """The fenced blocks of a Markdown file, by the rule examples/build.rs uses: a
    fence opens at column 0 with ```lang and closes at a line that is exactly ```."""
    found: list[Block] = []
    current: Block | None = None
    for number, line in enumerate((ROOT / document).read_text().splitlines(), start=1):
        if current is None:
            if line.startswith("```"):
                lang = re.split(r"[, ]", line[3:], maxsplit=1)[0]
                current = Block(document, number, lang, "")
            elif line.lstrip().startswith("```"):
                raise SystemExit(f"{document}:{number}: an indented fence; start fences at column 0")
        elif line == "```":
            found.append(current)
            current = None
        else:
            current.code += line + "\n"
    if current is not None:
        raise SystemExit(f"{current.name}: the block is never closed")
    return found


def run_block(block: Block, scratch: Path) -> tuple[str, str]:
    """Runs one block; returns (outcome, details): outcome is 'ran', 'wrote' or 'FAILED'."""
    if block.lang == "python":
        header = FILE_HEADER.match(block.code.splitlines()[0]) if block.code.strip() else None
        if header:
            target = scratch / header.group(1)
            target.write_text(block.code)
            py_compile.compile(str(target), cfile=str(scratch / "__pycache__" / "x.pyc"), doraise=True)
            return "wrote", header.group(1)
        script = scratch / f"block_{Path(block.document).stem}_{block.line}.py"
        script.write_text(block.code)
        command = [sys.executable, "-X", "faulthandler", str(script)]
    else:
        command = [str(DOC_BLOCKS), block.name]
    try:
        result = subprocess.run(
            command, cwd=scratch, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return "FAILED", f"no end after {TIMEOUT:.0f} s"
    if result.returncode != 0:
        return "FAILED", f"exit status {result.returncode}\n{result.stdout}{result.stderr}"
    return "ran", ""


def run_documents(documents: list[str]) -> int:
    all_blocks = [b for d in documents for b in blocks(d)]
    unmarked = [b for b in all_blocks if b.lang not in RUN | NOT_RUN]
    for b in unmarked:
        print(f"{b.name}: a ```{b.lang} block; mark it rust, python, sh (not run) or text (not run)")
    if unmarked:
        return 1

    rust = [b for b in all_blocks if b.lang == "rust"]
    if rust:
        listed = subprocess.run([str(DOC_BLOCKS), "--list"], capture_output=True, text=True, check=True)
        compiled = set(listed.stdout.split())
        missing = [b.name for b in rust if b.name not in compiled]
        if missing:
            print(f"not compiled into {DOC_BLOCKS} (rebuild: cargo build --release -p shmbridge-examples): {missing}")
            return 1

    counts: dict[str, int] = {}
    failures = 0
    for document in documents:
        with tempfile.TemporaryDirectory(prefix="doc_blocks_") as tmp:
            scratch = Path(tmp)
            # A project folder as a reader has it: the Rust worker finds `.venv`.
            (scratch / ".venv").symlink_to(sys.prefix)
            for block in blocks(document):
                if block.lang in NOT_RUN:
                    counts[f"{block.lang} (not run)"] = counts.get(f"{block.lang} (not run)", 0) + 1
                    continue
                start = time.monotonic()
                outcome, details = run_block(block, scratch)
                seconds = time.monotonic() - start
                key = f"{block.lang} files written" if outcome == "wrote" else block.lang
                counts[key] = counts.get(key, 0) + 1
                shown = f" {details}" if outcome == "wrote" else ""
                print(f"{block.name:<18} {block.lang:<7} {outcome}{shown} ({seconds:.2f} s)", flush=True)
                if outcome == "FAILED":
                    failures += 1
                    print(f"---- {block.name}\n{block.code}---- {details}", flush=True)
    ran = sum(counts.get(k, 0) for k in RUN)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"documentation blocks: {summary}")
    print(f"{ran - failures} passed, {failures} failed")
    return 1 if failures else 0


def isolated(argv: list[str]) -> list[str] | None:
    """The command that reruns this script with a private /dev/shm, if this
    machine allows it (Linux with user namespaces, or root)."""
    if os.environ.get(ISOLATED) or not sys.platform.startswith("linux") or not shutil.which("unshare"):
        return None
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
               'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && exec "$@"', "sh"]
    probe = subprocess.run([*command, "true"], capture_output=True)
    return [*command, sys.executable, *argv] if probe.returncode == 0 else None


def main() -> int:
    documents = sys.argv[1:]
    if not documents:
        print(__doc__)
        return 2
    documents = [str(Path(d).resolve().relative_to(ROOT)) for d in documents]
    command = isolated([__file__, *documents])
    if command is not None:
        env = dict(os.environ, **{ISOLATED: "1"})
        print("running the blocks with a private /dev/shm (unshare)", flush=True)
        return subprocess.run(command, env=env, cwd=ROOT).returncode
    if not os.environ.get(ISOLATED):
        print("no private /dev/shm here (unshare unavailable): the blocks use the machine's", flush=True)
    return run_documents(documents)


if __name__ == "__main__":
    sys.exit(main())
