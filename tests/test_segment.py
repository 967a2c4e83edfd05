"""SharedMemory's Python API in one process: lifecycle, cursor, positional I/O,
views, and the exceptions of each error path."""

from __future__ import annotations

import errno
import gc
import os
import stat
import sys

import numpy as np
import pytest

import shmbridge
from shmbridge import SharedMemory


def test_create_then_open_shares_bytes(name: str) -> None:
    with SharedMemory(name, 4096, create=True) as owner:
        assert (owner.name, owner.size, len(owner)) == (name, 4096, 4096)
        assert owner.unlinks_on_close and not owner.readonly and not owner.closed
        assert owner.read_at(4096, 0) == bytes(4096), "fresh segments are zeroed"
        owner.write(b"hello")
        with SharedMemory(name) as peer:
            assert peer.read(5) == b"hello"
            assert not peer.unlinks_on_close
    assert owner.closed
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)


def test_classmethod_forms(name: str) -> None:
    with SharedMemory.create(name, 100) as owner, SharedMemory.open(name, 100) as peer:
        assert isinstance(owner, SharedMemory) and peer.size == 100


def test_name_without_slash_is_the_same_segment(name: str) -> None:
    with SharedMemory(name, 64, create=True):
        with SharedMemory(name.lstrip("/")) as peer:
            assert peer.name == name


def test_open_with_expected_size(name: str) -> None:
    with SharedMemory(name, 100, create=True):
        assert SharedMemory(name, 100).size == 100
        assert SharedMemory(name, 10).size == 100, "size is a minimum, the segment's own wins"
        with pytest.raises(ValueError, match="holds 100 bytes but 101 were expected"):
            SharedMemory(name, 101)
        assert SharedMemory(name).size == 100, "opening never resizes"


def test_create_is_exclusive_unless_replace(name: str) -> None:
    with SharedMemory(name, 64, create=True) as first:
        first.write(b"old")
        with pytest.raises(FileExistsError, match=name) as info:
            SharedMemory(name, 64, create=True)
        assert info.value.errno == errno.EEXIST
        assert SharedMemory(name).read(3) == b"old"
        with SharedMemory(name, 128, create=True, replace=True) as second:
            assert SharedMemory(name).size == 128
            assert first.read_at(3, 0) == b"old", "the replaced segment lives on in its mappings"
            del second


def test_persist_then_unlink(name: str) -> None:
    SharedMemory(name, 64, create=True, persist=True).close()
    shm = SharedMemory(name)
    shm.unlink()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)
    shm.write(b"still mapped")
    with pytest.raises(FileNotFoundError):
        shm.unlink()
    shm.close()


def test_module_unlink(name: str) -> None:
    SharedMemory(name, 64, create=True, persist=True).close()
    shmbridge.unlink(name)
    with pytest.raises(FileNotFoundError):
        shmbridge.unlink(name)


def test_collected_creator_unlinks(name: str) -> None:
    SharedMemory(name, 64, create=True)  # dropped at once, never closed
    gc.collect()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)


@pytest.mark.skipif(sys.platform != "linux", reason="checks the mode bits of /dev/shm files")
def test_mode(name: str) -> None:
    with SharedMemory(name, 64, create=True):
        assert stat.S_IMODE(os.stat(f"/dev/shm{name}").st_mode) == 0o600
    with SharedMemory(name, 64, create=True, mode=0o644):
        assert stat.S_IMODE(os.stat(f"/dev/shm{name}").st_mode) == 0o644


def test_cursor_io_like_a_fixed_size_file(name: str) -> None:
    with SharedMemory(name, 10, create=True) as shm:
        assert shm.write(b"0123456") == 7 and shm.tell() == 7
        with pytest.raises(ValueError, match="outside segment"):
            shm.write(b"abcd")
        assert shm.tell() == 7 and shm.read_at(3, 7) == bytes(3), "a failed write writes nothing"
        assert shm.write(bytearray(b"abc")) == 3
        assert shm.read() == b"" and shm.read(5) == b""
        assert shm.seek(-4, 2) == 6 and shm.read() == b"6abc"
        assert shm.seek(-10, 1) == 0 and shm.read(3) == b"012"
        assert shm.seek(100) == 100 and shm.read() == b"", "past the end reads nothing"
        with pytest.raises(ValueError, match="negative"):
            shm.seek(-1)
        with pytest.raises(ValueError, match="negative"):
            shm.seek(-101, 1)
        with pytest.raises(ValueError, match="whence"):
            shm.seek(0, 3)
        assert shm.tell() == 100, "failed seeks do not move"
        shm.seek(0)
        assert shm.read(-1) == b"0123456abc"


def test_readinto(name: str) -> None:
    with SharedMemory(name, 8, create=True) as shm:
        shm.write(b"abcdefgh")
        shm.seek(5)
        buf = bytearray(6)
        assert shm.readinto(buf) == 3 and buf[:3] == b"fgh" and shm.tell() == 8
        arr = np.zeros(2, dtype=np.uint8)
        shm.seek(0)
        assert shm.readinto(arr) == 2 and arr.tolist() == [97, 98]
        with pytest.raises(TypeError, match="writable"):
            shm.readinto(b"immutable")


def test_positional_io(name: str) -> None:
    with SharedMemory(name, 16, create=True) as shm:
        assert shm.write_at(b"xyz", 13) == 3
        assert shm.read_at(10, 13) == b"xyz" and shm.read_at(10, 16) == b""
        assert shm.read_at(4, 2**40) == b""
        with pytest.raises(ValueError, match="outside segment"):
            shm.write_at(b"xyzw", 13)
        with pytest.raises(ValueError, match="negative"):
            shm.read_at(1, -1)
        with pytest.raises(ValueError, match="negative"):
            shm.read_at(-1, 0)
        with pytest.raises(ValueError, match="negative"):
            shm.write_at(b"x", -1)
        with pytest.raises(ValueError, match="outside segment"):
            shm.write_at(b"x", 2**62)
        with pytest.raises(OverflowError):
            shm.read_at(1, 2**70)
        assert shm.tell() == 0, "positional I/O leaves the cursor alone"


def test_write_accepts_any_contiguous_buffer(name: str) -> None:
    with SharedMemory(name, 64, create=True) as shm:
        shm.write_at(np.arange(4, dtype=np.float64), 0)
        assert np.frombuffer(shm.read_at(32, 0), dtype=np.float64).tolist() == [0, 1, 2, 3]
        shm.write_at(memoryview(b"abcdef")[2:4], 40)
        assert shm.read_at(2, 40) == b"cd"
        with pytest.raises(BufferError, match="contiguous"):
            shm.write_at(np.arange(8, dtype=np.uint8)[::2], 0)
        with pytest.raises(TypeError):
            shm.write("text is not bytes")  # type: ignore[arg-type]


def test_copy_within_the_segment_overlapping(name: str) -> None:
    with SharedMemory(name, 16, create=True) as shm:
        shm.write_at(b"abcdefgh", 0)
        shm.write_at(shm.buffer[0:8], 4)
        assert shm.read_at(12, 0) == b"abcdabcdefgh"


def test_buffer_views_are_zero_copy(name: str) -> None:
    with SharedMemory(name, 64, create=True) as shm:
        mv = shm.buffer
        assert isinstance(mv, memoryview) and len(mv) == 64 and not mv.readonly
        mv[0:3] = b"abc"
        assert shm.read_at(3, 0) == b"abc"
        assert shm.buf[0:3] == b"abc"
        arr = np.frombuffer(shm.buffer, dtype=np.int64)
        arr[7] = -5
        assert shm.view("q")[7] == -5
        assert bytes(memoryview(shm)[56:64]) == (-5).to_bytes(8, sys.byteorder, signed=True)
        del mv, arr


def test_typed_views(name: str) -> None:
    with SharedMemory(name, 1024 * 8, create=True) as shm:
        floats = shm.view("d")
        assert len(floats) == 1024 and floats.format == "d"
        floats[0], floats[1] = 3.14159, 2.71828
        assert shm.view("d", 8, 1).tolist() == [2.71828]
        for fmt, size in [("f", 4), ("h", 2), ("i", 4), ("q", 8), ("H", 2), ("I", 4), ("Q", 8), ("B", 1)]:
            assert len(shm.view(fmt)) == 8192 // size
        assert len(shm.view("B", 8192)) == 0
        with pytest.raises(ValueError, match="not aligned"):
            shm.view("d", 4, 1)
        with pytest.raises(ValueError, match="do not fit"):
            shm.view("d", 0, 1025)
        with pytest.raises(ValueError, match="past the end"):
            shm.view("B", 8193)
        with pytest.raises(ValueError, match="negative"):
            shm.view("d", 0, -1)
        del floats


def test_readonly_open(name: str) -> None:
    with SharedMemory(name, 64, create=True) as owner:
        owner.write(b"abc")
        with SharedMemory(name, readonly=True) as ro:
            assert ro.readonly and ro.read(3) == b"abc"
            with pytest.raises(TypeError, match="read-only"):
                ro.write(b"x")
            with pytest.raises(TypeError, match="read-only"):
                ro.write_at(b"x", 0)
            assert ro.buffer.readonly
            arr = np.frombuffer(ro.buffer, dtype=np.uint8)
            assert not arr.flags.writeable
            with pytest.raises(ValueError):
                arr[0] = 1
            del arr
        assert owner.read_at(1, 0) == b"a"
    with pytest.raises(ValueError, match="readonly"):
        SharedMemory(name, 64, create=True, readonly=True)


def test_repr(name: str) -> None:
    shm = SharedMemory(name, 64, create=True)
    assert repr(shm) == f'<shmbridge.SharedMemory name="{name}" size=64>'
    shm.close()
    assert repr(shm).endswith(", closed>")


def test_unique_names() -> None:
    a, b = shmbridge.unique_name("x"), shmbridge.unique_name("x")
    assert a != b and a.startswith(f"/x_{os.getpid()}_") and len(a) == len(f"/x_{os.getpid()}_") + 8
    assert shmbridge.unique_name().startswith("/shmbridge_")
    with pytest.raises(ValueError, match="cannot contain '/'"):
        shmbridge.unique_name("a/b")
    with pytest.raises(ValueError, match="this platform allows"):
        shmbridge.unique_name("p" * shmbridge.MAX_NAME_LEN)


def test_populate(name: str) -> None:
    with SharedMemory(name, 1 << 20, create=True, populate=True) as shm:
        with SharedMemory(name, populate=True) as peer:
            shm.write_at(b"z", (1 << 20) - 1)
            assert peer.read_at(1, (1 << 20) - 1) == b"z"


def test_threads_share_the_cursor_without_losing_or_repeating_bytes(name: str) -> None:
    import threading

    size = 4 * 4096
    with SharedMemory(name, size, create=True) as shm:
        shm.write_at(np.arange(size // 4, dtype=np.uint32), 0)
        chunks: list[list[bytes]] = [[] for _ in range(4)]

        def reader(mine: list[bytes]) -> None:
            while chunk := shm.read(4):
                mine.append(chunk)

        threads = [threading.Thread(target=reader, args=(c,)) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        words = sorted(int.from_bytes(c, sys.byteorder) for mine in chunks for c in mine)
        assert words == list(range(size // 4)), "each 4-byte read claimed its own range"
