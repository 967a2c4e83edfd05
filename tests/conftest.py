"""Shared fixtures: fresh segment names, a leak check, and the Rust peer process."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import shmbridge

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
DEADLINE = 30.0  # seconds any single reply from another process may take


def cargo_binary(package: str, binary: str) -> Path:
    """The release binary, built once if missing (./dev test builds it up front)."""
    exe = RELEASE / binary
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", package], cwd=ROOT, check=True)
    return exe


def readline(stream: IO[str], what: str, deadline: float = DEADLINE) -> str:
    """One line from a child's pipe, or TimeoutError after `deadline` seconds."""
    ready, _, _ = select.select([stream], [], [], deadline)
    if not ready:
        raise TimeoutError(f"{what} did not answer within {deadline} s")
    return stream.readline()


class PeerError(Exception):
    """The Rust peer answered `err <Variant> <message>`."""

    def __init__(self, variant: str, message: str) -> None:
        super().__init__(f"{variant}: {message}")
        self.variant = variant


class Peer:
    """A Rust process (crates/shmbridge-peer) driven one command per line."""

    def __init__(self) -> None:
        exe = cargo_binary("shmbridge-peer", "shmbridge-peer")
        self.proc = subprocess.Popen(
            [str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def __call__(self, line: str) -> str:
        """Sends a command; returns the text after `ok`, or raises PeerError."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = readline(self.proc.stdout, f"the Rust peer, asked {line!r},").rstrip("\n")
        if not reply:
            raise EOFError(f"the Rust peer exited (status {self.proc.poll()}) on {line!r}")
        status, _, rest = reply.partition(" ")
        if status == "ok":
            return rest
        variant, _, message = rest.partition(" ")
        raise PeerError(variant, message)

    def close(self) -> None:
        if self.proc.poll() is None:
            self("quit")
            self.proc.wait(timeout=DEADLINE)
        assert self.proc.returncode == 0, f"peer exited with {self.proc.returncode}"


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    try:
        yield p
    finally:
        p.close()


PREFIX = f"pytest_{os.getpid()}"


@pytest.fixture
def name() -> str:
    """A fresh segment name, recognisable by the leak check."""
    return shmbridge.unique_name(PREFIX)


@pytest.fixture(autouse=True, scope="session")
def no_leaked_segments() -> Iterator[None]:
    """Nothing this session creates may outlive it (Linux: names live in /dev/shm)."""
    yield
    shm_dir = Path("/dev/shm")
    if shm_dir.is_dir():
        leaked = sorted(p.name for p in shm_dir.iterdir() if p.name.startswith(PREFIX))
        assert not leaked, f"segments leaked by the tests: {leaked}"


def run_isolated(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter, so that a crash cannot take pytest down."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
