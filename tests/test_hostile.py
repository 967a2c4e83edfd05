"""Hostile use from Python: every misuse gives its documented exception and the
interpreter survives. Each scenario runs in a fresh interpreter, so that a crash
would fail its test instead of taking pytest down."""

from __future__ import annotations

import pytest
from conftest import PREFIX, run_isolated

import shmbridge


def survives(code: str) -> str:
    """Runs `code` isolated; it must exit cleanly. Returns its stdout."""
    result = run_isolated(
        f"""
import gc, errno, threading, sys
import numpy as np
import shmbridge
from shmbridge import SharedMemory
name = shmbridge.unique_name({PREFIX!r} + "_hostile")
def expect(exc, fn, *args, match="", **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        assert match in str(e), f"{{e!r}} lacks {{match!r}}"
        return e
    raise AssertionError(f"{{fn}}{{args}} did not raise {{exc.__name__}}")
"""
        + code
        + '\nprint("survived")\n'
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    assert result.stdout.endswith("survived\n"), result.stdout
    return result.stdout


def test_close_with_live_numpy_view_then_touch_it() -> None:
    survives(
        """
shm = SharedMemory(name, 1 << 20, create=True)
arr = np.frombuffer(shm.buffer, dtype=np.float64)
mv = memoryview(shm)
shm.close()                       # defers the unmap: the views hold the mapping
assert shm.closed
arr[:] = 1.5                      # still valid memory
assert arr.sum() == 1.5 * (1 << 17)
mv[0] = 3
del arr
gc.collect()
assert mv[0] == 3
mv.release()                      # the last export: unmapped now
expect(ValueError, shm.read, 1, match="closed")
"""
    )


def test_views_outlive_a_collected_segment_object() -> None:
    survives(
        """
arr = np.frombuffer(SharedMemory(name, 4096, create=True).buffer, dtype=np.uint8)
gc.collect()                      # the export keeps the unnamed object alive...
arr[:] = 9
assert int(arr.sum()) == 9 * 4096
SharedMemory(name).close()        # ...and so its name
del arr
gc.collect()                      # the last reference: the creator unlinks on collection
expect(FileNotFoundError, SharedMemory, name)
"""
    )


def test_use_after_close() -> None:
    survives(
        """
shm = SharedMemory(name, 64, create=True)
shm.close()
shm.close()                       # idempotent
for call in [lambda: shm.read(), lambda: shm.write(b"x"), lambda: shm.seek(0), shm.tell,
             lambda: shm.read_at(1, 0), lambda: shm.write_at(b"x", 0),
             lambda: shm.readinto(bytearray(1)), lambda: shm.buffer, lambda: shm.buf,
             lambda: shm.view("B"), lambda: memoryview(shm), lambda: np.frombuffer(shm)]:
    expect(ValueError, call, match="closed segment")
assert shm.size == 64 and len(shm) == 64 and shm.name == name
with SharedMemory(name, 64, create=True) as again:
    pass
"""
    )


def test_negative_and_huge_offsets_and_counts() -> None:
    survives(
        """
shm = SharedMemory(name, 64, create=True)
expect(ValueError, shm.read_at, 1, -1, match="negative")
expect(ValueError, shm.read_at, -5, 0, match="negative")
expect(ValueError, shm.write_at, b"x", -1, match="negative")
expect(ValueError, shm.seek, -1, match="negative")
expect(ValueError, shm.seek, -65, 2, match="negative")
assert shm.seek(2**63 - 1, 2) == 2**63 + 63     # far past the end is allowed
assert shm.read() == b""
expect(ValueError, shm.seek, 2**63 - 1, 1, match="overflowing")
expect(ValueError, shm.write_at, b"x", 2**63 - 1, match="outside segment")
expect(OverflowError, shm.read_at, 1, 2**64)
expect(OverflowError, shm.write_at, b"x", -2**70)
expect(OverflowError, shm.seek, 2**64)
assert shm.read_at(2**62, 0) == bytes(64)
assert shm.read_at(8, 2**62) == b""
shm.seek(2**62)
assert shm.read() == b""
expect(ValueError, shm.write, b"x", match="outside segment")
expect(ValueError, shm.view, "d", 2**62, match="past the end")
expect(ValueError, shm.view, "d", 0, 2**61, match="do not fit")
expect(ValueError, shm.view, "d", 0, 2**63 - 1, match="do not fit")
for bad in ["not a format", "", "0i", "0s", "2i", "x", "<d", "@"]:
    expect(ValueError, shm.view, bad, match="format")  # never a Rust panic
shm.close()
"""
    )


def test_bad_sizes() -> None:
    survives(
        """
e = expect(ValueError, SharedMemory, name, 0, create=True, match="at least one byte")
assert name in str(e)
expect(ValueError, SharedMemory, name, -1, create=True, match="negative")
expect(ValueError, SharedMemory, name, None, create=True, match="needs a size")
expect(OSError, SharedMemory, name, 2**63 - 1, create=True, match="no space")
expect(OverflowError, SharedMemory, name, 2**64, create=True)
expect(FileNotFoundError, SharedMemory, name)   # no name left behind
"""
    )


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="Linux reserves /dev/shm pages at create")
def test_size_beyond_memory_is_enospc_at_create() -> None:
    survives(
        """
e = expect(OSError, SharedMemory, name, 1 << 50, create=True, match="bytes free")
assert e.errno == errno.ENOSPC, e.errno
expect(FileNotFoundError, SharedMemory, name)   # no name left behind
"""
    )


def test_bad_names() -> None:
    survives(
        """
for bad, why in [("", "at least one character"), ("/", "at least one character"),
                 ("a/b", "'/'"), ("/a/b", "'/'"), ("a\\0b", "NUL"), ("..", "'..'"),
                 ("x" * shmbridge.MAX_NAME_LEN, "this platform allows")]:
    expect(ValueError, SharedMemory, bad, 64, create=True, match=why)
    expect(ValueError, SharedMemory, bad, match=why)
    expect(ValueError, shmbridge.unlink, bad, match=why)
expect(TypeError, SharedMemory, None)
expect(TypeError, SharedMemory, b"/bytes")
"""
    )


def test_open_missing_and_create_existing() -> None:
    survives(
        """
e = expect(FileNotFoundError, SharedMemory, name, match=name)
assert e.errno == errno.ENOENT
expect(FileNotFoundError, shmbridge.unlink, name)
with SharedMemory(name, 64, create=True):
    e = expect(FileExistsError, SharedMemory, name, 64, create=True, match=name)
    assert e.errno == errno.EEXIST
    expect(FileExistsError, SharedMemory.create, name, 64)
"""
    )


def test_readonly_misuse() -> None:
    survives(
        """
with SharedMemory(name, 64, create=True):
    ro = SharedMemory(name, readonly=True)
    expect(TypeError, ro.write, b"x", match="read-only")
    arr = np.frombuffer(ro, dtype=np.uint8)
    expect(ValueError, arr.__setitem__, 0, 1)
    mv = ro.view("B")
    expect(TypeError, mv.__setitem__, 0, 1)
    expect(ValueError, arr.setflags, write=True)
    import ctypes   # needs a writable export, which a read-only segment does not give
    expect(TypeError, (ctypes.c_char * 64).from_buffer, ro, match="not writable")
"""
    )


def test_readinto_own_buffer_and_bad_targets() -> None:
    survives(
        """
shm = SharedMemory(name, 64, create=True)
shm.write(bytes(range(64)))
shm.seek(0)
assert shm.readinto(shm.buffer[8:40]) == 32     # overlapping copy within the segment
assert shm.read_at(32, 8) == bytes(range(32))
expect(TypeError, shm.readinto, b"abc", match="writable")
expect(BufferError, shm.readinto, np.zeros(8, np.uint8)[::2], match="contiguous")
expect(TypeError, shm.readinto, 5)
shm.close()
"""
    )


def test_close_while_another_thread_copies() -> None:
    survives(
        """
shm = SharedMemory(name, 64 << 20, create=True)
src = np.ones(64 << 20, dtype=np.uint8)
errors = []
def writer():
    for _ in range(20):
        try:
            shm.write_at(src, 0)        # releases the GIL: close() can run meanwhile
        except ValueError as e:
            assert "closed" in str(e)
            return
t = threading.Thread(target=writer)
t.start()
shm.close()
t.join()
"""
    )


def test_exports_released_in_any_order_with_gc() -> None:
    survives(
        """
views = []
for i in range(50):
    shm = SharedMemory(name, 4096, create=True)
    views += [memoryview(shm), np.frombuffer(shm.buffer, dtype=np.uint8), shm.view("I", 4, 3)]
    shm.close()
import random
random.shuffle(views)
while views:
    v = views.pop()
    bytes(v) if isinstance(v, memoryview) else v.sum()
    del v
    gc.collect()
"""
    )


def test_many_segments_do_not_leak() -> None:
    """500 creates and closes, each under a name of its own: not one name is left.
    (Only this test's names are counted: other processes come and go in /dev/shm.)"""
    survives(
        """
import os
names = [f"{name}_{i}" for i in range(500)]
for n in names:
    with SharedMemory(n, 4096, create=True) as shm:
        shm.buffer[0] = 1
if os.path.isdir("/dev/shm"):
    left = [n for n in os.listdir("/dev/shm") if n.startswith(name.lstrip("/"))]
    assert not left, f"{len(left)} names left, such as {left[:3]}"
for n in names:
    try:
        SharedMemory(n)
    except FileNotFoundError:
        continue
    raise AssertionError(f"{n} can still be opened")
"""
    )
    assert shmbridge.MAX_NAME_LEN > 0
