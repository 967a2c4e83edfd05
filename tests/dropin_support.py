"""Helpers shared by the tests of shmbridge.shared_memory (the stdlib drop-in)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import shmbridge.shared_memory as dropin
from shmbridge import unlink as _native_unlink

SHM_DIR = Path("/dev/shm")


def exists(name: str) -> bool:
    """Whether a segment of that name exists (asked of the OS, not of our code on Linux)."""
    if SHM_DIR.is_dir():
        return (SHM_DIR / name.lstrip("/")).exists()
    try:
        dropin.SharedMemory(name).close()
    except FileNotFoundError:
        return False
    return True


@pytest.fixture
def cleanup() -> Iterator[Callable[..., None]]:
    """Calls registered at teardown, last first (unittest's addCleanup)."""
    calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []
    yield lambda fn, *args: calls.append((fn, args))
    for fn, args in reversed(calls):
        fn(*args)


@pytest.fixture(autouse=True)
def no_leaked_generated_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every name SharedMemory(create=True) generates in a test is gone at its end."""
    generated: list[str] = []
    original = dropin._make_filename

    def recording() -> str:
        name = original()
        generated.append(name)
        return name

    monkeypatch.setattr(dropin, "_make_filename", recording)
    yield generated
    leaked = [name for name in generated if exists(name)]
    for name in leaked:
        _native_unlink(name)
    assert not leaked, f"segments leaked by the test: {leaked}"


def run_script(tmp_path: Path, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs `code` as a script file in a fresh interpreter (so that multiprocessing's
    spawn and forkserver children can import its functions, and a crash cannot take
    pytest down).

    The script announces each segment it creates on a line `segment NAME`; those
    still there afterwards are removed, and are a failure if the script exited 0."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    try:
        result = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        _remove_announced(out)
        raise
    leftovers = _remove_announced(result.stdout)
    if result.returncode == 0:
        assert not leftovers, f"segments leaked by the script: {leftovers}"
    result.stdout = "".join(
        line for line in result.stdout.splitlines(keepends=True) if not line.startswith("segment ")
    )
    return result


def _remove_announced(stdout: str) -> list[str]:
    names = [line.split()[1] for line in stdout.splitlines() if line.startswith("segment ")]
    leftovers = [name for name in names if exists(name)]
    for name in leftovers:
        try:
            _native_unlink(name)
        except FileNotFoundError:
            pass
    return leftovers


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"
