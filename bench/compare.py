"""shmbridge's Python side beside its stdlib equivalents, in one run.

Run with `./dev bench` (or `.venv/bin/python bench/compare.py`). Each pair is
measured in alternating rounds, so that drift on a shared machine hits both sides
alike; the table gives the median of the rounds and the ratio ours / theirs
(below 1.0: shmbridge is faster).

1. open + view + close of an existing segment, shmbridge vs
   multiprocessing.shared_memory, at 1 MiB, 64 MiB and 256 MiB (both should be
   independent of the size);
2. 64-byte read / write / seek per call, shmbridge vs mmap.mmap on the same segment;
3. writing 256 MiB into the segment, shmbridge's write_at vs numpy.copyto (memcpy);
4. open_array of a float64 array by name alone, at 1 MiB, 256 MiB and 1 GiB, vs
   multiprocessing.shared_memory + numpy.ndarray with shape, dtype and offset given
   by hand (both should be independent of the size).
"""

from __future__ import annotations

import mmap
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from shmbridge import SharedMemory, create_array, open_array, unique_name

MIB = 1 << 20
ROUNDS = 9


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of fn, over `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def pair(ours: Callable[[], object], theirs: Callable[[], object], calls: int) -> tuple[float, float]:
    """Median seconds per call of each, measured in alternating rounds."""
    a, b = [], []
    per_call(ours, max(1, calls // 10))  # warm up both
    per_call(theirs, max(1, calls // 10))
    for _ in range(ROUNDS):
        a.append(per_call(ours, calls))
        b.append(per_call(theirs, calls))
    return statistics.median(a), statistics.median(b)


def fmt(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:7.2f} {unit}"
    return f"{seconds / 1e-9:7.2f} ns"


rows: list[tuple[str, float, str, float]] = []


def report(what: str, ours: float, peer: str, theirs: float) -> None:
    rows.append((what, ours, peer, theirs))
    print(f"{what:<34} {fmt(ours)}   {peer:<30} {fmt(theirs)}   ratio {ours / theirs:5.2f}", flush=True)


def bench_open_view() -> None:
    for size in (MIB, 64 * MIB, 256 * MIB):
        owner = SharedMemory(unique_name("bench_open"), size, create=True)

        def ours() -> None:
            shm = SharedMemory(owner.name)
            arr = np.frombuffer(shm.buffer, dtype=np.uint8)
            del arr
            shm.close()

        def theirs() -> None:
            shm = shared_memory.SharedMemory(owner.name.lstrip("/"))
            arr = np.frombuffer(shm.buf, dtype=np.uint8)
            del arr
            shm.close()  # the stdlib refuses to close with live exports

        t_ours, t_theirs = pair(ours, theirs, 300)
        # Python 3.11's stdlib registered every open with its resource tracker, which
        # would unlink the segment at exit: take it back once (a set of names).
        resource_tracker.unregister(owner.name, "shared_memory")
        report(f"open+view+close {size // MIB:>4} MiB", t_ours, "multiprocessing.shared_memory", t_theirs)
        owner.close()


def bench_small_io() -> None:
    owner = SharedMemory(unique_name("bench_io"), MIB, create=True)
    std = shared_memory.SharedMemory(owner.name.lstrip("/"))
    resource_tracker.unregister(std._name, "shared_memory")  # type: ignore[attr-defined]
    m: mmap.mmap = std._mmap  # type: ignore[attr-defined]
    data = bytes(range(64))
    calls = 200_000

    def ours_write() -> None:
        owner.seek(4096)
        owner.write(data)

    def theirs_write() -> None:
        m.seek(4096)
        m.write(data)

    def ours_read() -> None:
        owner.seek(4096)
        owner.read(64)

    def theirs_read() -> None:
        m.seek(4096)
        m.read(64)

    t_ours, t_theirs = pair(ours_write, theirs_write, calls)
    report("seek+write 64 B", t_ours, "mmap.seek+write", t_theirs)
    t_ours, t_theirs = pair(ours_read, theirs_read, calls)
    report("seek+read 64 B", t_ours, "mmap.seek+read", t_theirs)
    t_ours, t_theirs = pair(lambda: owner.seek(4096), lambda: m.seek(4096), calls)
    report("seek", t_ours, "mmap.seek", t_theirs)
    t_ours, t_theirs = pair(lambda: owner.read_at(64, 4096), lambda: m[4096:4160], calls)
    report("read_at 64 B", t_ours, "mmap[a:b]", t_theirs)

    def theirs_write_at() -> None:
        m[4096:4160] = data

    t_ours, t_theirs = pair(lambda: owner.write_at(data, 4096), theirs_write_at, calls)
    report("write_at 64 B", t_ours, "mmap[a:b] = data", t_theirs)
    del m
    std.close()
    owner.close()


def bench_bulk() -> None:
    size = 256 * MIB
    owner = SharedMemory(unique_name("bench_bulk"), size, create=True)
    src = np.full(size, 7, dtype=np.uint8)
    dst = np.frombuffer(owner.buffer, dtype=np.uint8)
    dst[:] = 1  # fault every page in once, for both sides
    t_ours, t_theirs = pair(lambda: owner.write_at(src, 0), lambda: np.copyto(dst, src), 3)
    report("write_at 256 MiB", t_ours, "numpy.copyto (memcpy)", t_theirs)
    print(
        f"{'':<34} {size / t_ours / 1e9:7.2f} GB/s  {'':<30} {size / t_theirs / 1e9:7.2f} GB/s"
        f"   ours = {100 * t_theirs / t_ours:.0f} % of memcpy"
    )
    assert owner.read_at(1, size - 1) == b"\x07"
    del dst
    owner.close()


def bench_open_array() -> None:
    for size in (MIB, 256 * MIB, 1024 * MIB):
        shape = (size // 8 // 1024, 1024)
        owner = create_array(unique_name("bench_arr"), shape, np.float64)
        name = owner.base.name
        # What a stdlib user must agree on by hand: shape, dtype, and where the data
        # starts (here read from the header's data_offset field).
        with SharedMemory(name) as raw:
            offset = int.from_bytes(raw.read_at(8, 24), "little")

        def ours() -> None:
            arr = open_array(name)
            del arr

        def theirs() -> None:
            shm = shared_memory.SharedMemory(name.lstrip("/"))
            arr = np.ndarray(shape, dtype=np.float64, buffer=shm.buf, offset=offset)
            del arr
            shm.close()

        t_ours, t_theirs = pair(ours, theirs, 300)
        resource_tracker.unregister(name, "shared_memory")
        report(f"open_array {size // MIB:>5} MiB", t_ours, "shared_memory + np.ndarray", t_theirs)
        del owner


def main() -> None:
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}; median of {ROUNDS} alternating rounds\n")
    print(f"{'shmbridge':<34} {'':>10}   {'peer':<30} {'':>10}   ours/peer")
    bench_open_view()
    bench_small_io()
    bench_bulk()
    bench_open_array()


if __name__ == "__main__":
    main()
