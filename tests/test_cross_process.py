"""A Rust process and this Python process share segments: data written on one side
is checked on the other, in both directions, for bytes, typed views and NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Peer, PeerError

from shmbridge import SharedMemory


def test_rust_creates_python_reads_and_answers(peer: Peer, name: str) -> None:
    assert peer(f"create {name} 1048576") == f"{name} 1048576"
    peer(f"write_at 0 {b'Hello from Rust!'.hex()}")
    with SharedMemory(name, 1024 * 1024) as shm:
        assert shm.size == 1024 * 1024
        assert shm.read(16) == b"Hello from Rust!"
        shm.seek(0)
        shm.write(b"Hello from Python!")
    assert bytes.fromhex(peer("read_at 0 18")) == b"Hello from Python!"
    peer("close")


def test_python_creates_rust_reads_and_answers(peer: Peer, name: str) -> None:
    with SharedMemory(name, 4096, create=True) as shm:
        shm.write_at(b"from Python", 100)
        assert peer(f"open {name} 4096") == f"{name} 4096"
        assert bytes.fromhex(peer("read_at 100 11")) == b"from Python"
        peer(f"write_at 200 {b'from Rust'.hex()}")
        assert shm.read_at(9, 200) == b"from Rust"
        with pytest.raises(PeerError) as info:
            peer(f"open {name} 4097")
        assert info.value.variant == "TooSmall"
    # Python's close unlinked the name; the Rust mapping lives on.
    assert bytes.fromhex(peer("read_at 100 11")) == b"from Python"
    with pytest.raises(PeerError) as info:
        peer(f"open {name}")
    assert info.value.variant == "NotFound"


@pytest.mark.parametrize(
    ("rust", "fmt", "values"),
    [
        ("f32", "f", [1.5, -2.25, 3.0]),
        ("f64", "d", [3.14159, 2.71828]),
        ("i16", "h", [-32768, 32767, 0]),
        ("i32", "i", [-(2**31), 2**31 - 1]),
        ("i64", "q", [-(2**63), 2**63 - 1]),
        ("u16", "H", [0, 65535]),
        ("u32", "I", [0, 2**32 - 1]),
        ("u64", "Q", [0, 2**64 - 1]),
        ("u8", "B", [0, 255, 7]),
    ],
)
def test_typed_views_both_ways(peer: Peer, name: str, rust: str, fmt: str, values: list[float]) -> None:
    peer(f"create {name} 8192")
    peer(f"write {rust} 64 {','.join(map(str, values))}")
    with SharedMemory(name) as shm:
        view = shm.view(fmt, 64, len(values))
        assert view.tolist() == values
        back = shm.view(fmt, 4096, len(values))
        for i, v in enumerate(reversed(values)):
            back[i] = v
        del view, back
    got = peer(f"read {rust} 4096 {len(values)}").split(",")
    assert [float(x) for x in got] == [float(v) for v in reversed(values)]
    with pytest.raises(PeerError) as info:
        peer(f"read {rust} 8192 1")
    assert info.value.variant == "OutOfBounds"
    if rust != "u8":
        with pytest.raises(PeerError) as info:
            peer(f"read {rust} 4097 1")
        assert info.value.variant == "Misaligned"
    peer("close")


def test_numpy_array_doubled_in_python_checked_in_rust(peer: Peer, name: str) -> None:
    n = 1000
    peer(f"create {name} {n * n * 8}")
    peer(f"iota_f64 0 {n * n}")
    with SharedMemory(name, n * n * 8) as shm:
        arr = np.frombuffer(shm.buffer, dtype=np.float64).reshape(n, n)
        assert arr[999, 999] == n * n - 1
        arr *= 2.0
        del arr
    peer(f"check_f64 0 {n * n} 2")
    with pytest.raises(PeerError, match="v\\[1\\] = 2"):
        peer(f"check_f64 0 {n * n} 3")
    peer("close")


def test_numpy_written_in_rust_seen_live_in_python(peer: Peer, name: str) -> None:
    with SharedMemory(name, 800, create=True) as shm:
        arr = np.frombuffer(shm.buffer, dtype=np.float64)
        peer(f"open {name}")
        peer("iota_f64 0 100")
        assert arr.tolist() == [float(i) for i in range(100)], "the same pages, no copy"
        arr[:] = 7.0
        assert peer("read f64 792 1") == "7"
        del arr


def test_readonly_rust_opener_cannot_write(peer: Peer, name: str) -> None:
    with SharedMemory(name, 64, create=True) as shm:
        shm.write(b"keep")
        peer(f"open {name} 0 ro")
        with pytest.raises(PeerError) as info:
            peer("write u8 0 1")
        assert info.value.variant == "ReadOnly"
        assert shm.read_at(4, 0) == b"keep"


def test_rust_creator_close_unlinks_python_mapping_survives(peer: Peer, name: str) -> None:
    peer(f"create {name} 64")
    shm = SharedMemory(name)
    peer("close")
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)
    shm.write(b"alive")
    assert shm.read_at(5, 0) == b"alive"
    shm.close()


def test_persisting_segment_outlives_the_rust_process(name: str) -> None:
    p = Peer()
    p(f"create {name} 64 persist")
    p("write_at 0 6869")
    p.close()
    with SharedMemory(name) as shm:
        assert shm.read(2) == b"hi"
        shm.unlink()
