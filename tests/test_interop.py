"""Segments are raw bytes: ours open byte-exact in multiprocessing.shared_memory, and
its segments open in ours, each in a separate process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import readline, run_isolated

from shmbridge import SharedMemory

# Python 3.11's stdlib registers every segment it opens with the resource tracker,
# which unlinks it when the process exits; the helper unregisters to keep the
# creator's segment alive (shmbridge never goes through the tracker).
STDLIB_OPEN = """
from multiprocessing import resource_tracker, shared_memory
def open_stdlib(name):
    shm = shared_memory.SharedMemory(name)
    resource_tracker.unregister(shm._name, "shared_memory")
    return shm
"""


def test_shmbridge_segment_opens_in_stdlib(name: str) -> None:
    with SharedMemory(name, 4096, create=True) as shm:
        shm.write_at(bytes(range(256)), 0)
        result = run_isolated(
            STDLIB_OPEN
            + f"""
shm = open_stdlib({name.lstrip('/')!r})
assert shm.size >= 4096, shm.size
assert bytes(shm.buf[:256]) == bytes(range(256))
shm.buf[256:260] = b"std!"
shm.close()
print("ok")
"""
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "ok"
        assert shm.read_at(4, 256) == b"std!"


def test_stdlib_segment_opens_in_shmbridge() -> None:
    code = textwrap.dedent(
        """
        import sys
        from multiprocessing import shared_memory
        shm = shared_memory.SharedMemory(create=True, size=1000)
        shm.buf[:5] = b"hello"
        print(shm.name, flush=True)
        sys.stdin.readline()
        assert bytes(shm.buf[5:10]) == b"world", bytes(shm.buf[5:10])
        shm.close()
        shm.unlink()
        print("ok", flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout and child.stdin
        stdlib_name = readline(child.stdout, "the stdlib creator").strip()
        assert stdlib_name and not stdlib_name.startswith("/")
        with SharedMemory(stdlib_name) as shm:
            assert shm.name == "/" + stdlib_name
            assert shm.size == 1000 and shm.read(5) == b"hello"
            assert not shm.unlinks_on_close, "an opener never unlinks"
            shm.write(b"world")
        out, _ = child.communicate("go\n", timeout=30)
        assert child.returncode == 0 and out.strip() == "ok"
    finally:
        if child.poll() is None:
            child.kill()
