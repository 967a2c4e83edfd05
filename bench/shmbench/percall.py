"""Per-call costs of the Python face beside the stdlib doing the same job, in this
process: typed views, NumPy views, channel send/receive, open + view + close,
small reads and writes, bulk writes, opening arrays, creating segments.

Each pair alternates in rounds; a sample is the mean of many calls (a timer around
each call would cost more than the call), so the p99 is that of the samples.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

from shmbridge import Channel, SharedMemory, create_array, open_array, unique_name

from shmbench import harness
from shmbench.harness import Contender, Figure, Settings

GROUP = "percall"
MIB = 1 << 20
SAMPLES = 10  # per block
MESSAGE = b"0123456789abcdef"


def measure(s: Settings, scenario: str) -> list[Figure]:
    figures: list[Figure] = []
    for pair in (views, channel_calls, small_io, bulk_write, *(open_view(n) for n in s.open_sizes),
                 *(open_arrays(n) for n in s.array_sizes), *(create(n) for n in s.create_sizes)):
        with pair() as contenders:
            figures += harness.run_group(GROUP, scenario, contenders, s.rounds)
    return figures


class Pairs:
    """Contenders made over resources that `close` releases (a context manager)."""

    def __init__(self) -> None:
        self.contenders: list[Contender] = []
        self.cleanup: list[Callable[[], None]] = []

    def pair(self, id: str, label: str, ours: Callable[[], object], peer_label: str, theirs: Callable[[], object], calls: int, size: int | None = None) -> None:
        self.contenders.append(
            Contender(id=id, label=label, ref=f"{id}:peer", size=size, block=lambda: harness.timed_calls(ours, calls, SAMPLES))
        )
        self.contenders.append(
            Contender(id=f"{id}:peer", label=peer_label, ours=False, size=size, block=lambda: harness.timed_calls(theirs, calls, SAMPLES))
        )

    def __enter__(self) -> list[Contender]:
        return self.contenders

    def __exit__(self, *exc: object) -> None:
        for fn in reversed(self.cleanup):
            fn()


def stdlib_open(name: str) -> Any:
    """The stdlib's handle on one of our segments, kept out of its resource tracker
    (which would unlink the segment when this process exits)."""
    std = shared_memory.SharedMemory(name.lstrip("/"))
    resource_tracker.unregister(std._name, "shared_memory")  # type: ignore[attr-defined]
    return std


def views() -> Pairs:
    p = Pairs()
    shm = SharedMemory(unique_name("bench_view"), MIB, create=True)
    std = stdlib_open(shm.name)
    p.pair("view", "SharedMemory.view('d')", lambda: shm.view("d"), "memoryview.cast('d') (stdlib SharedMemory.buf)", lambda: std.buf.cast("d"), 200_000)
    arr = create_array(unique_name("bench_sa"), (MIB // 8,), np.float64)
    sa: Any = arr.base
    with SharedMemory(sa.name) as raw:
        offset = int.from_bytes(raw.read_at(8, 24), "little")  # the header's data_offset
    std_arr = stdlib_open(sa.name)
    count = MIB // 8
    p.pair(
        "asarray",
        "np.asarray(SharedArray), 1 MiB float64",
        lambda: np.asarray(sa),
        "np.frombuffer (stdlib SharedMemory.buf)",
        lambda: np.frombuffer(std_arr.buf, dtype=np.float64, count=count, offset=offset),
        100_000,
    )
    p.cleanup += [std.close, shm.close, std_arr.close]
    return p


def channel_calls() -> Pairs:
    """16-byte messages through a channel both of whose ends are in this process,
    beside os.write/os.read on a pipe; sends are timed into an emptied channel,
    receives from a filled one."""
    p = Pairs()
    name = unique_name("bench_pc")
    tx, rx = Channel.create(name, MIB), Channel.open(name)
    r, w = os.pipe()
    per = 1000  # fits in both the ring and the pipe
    buf = bytearray(len(MESSAGE))

    def sends(send: Callable[[], object], drain: Callable[[], object]) -> Callable[[], list[float]]:
        def block() -> list[float]:
            out = []
            for _ in range(SAMPLES):
                out.append(timed(send, per))
                drain()
            return out

        return block

    def receives(fill: Callable[[], object], recv: Callable[[], object]) -> Callable[[], list[float]]:
        def block() -> list[float]:
            out = []
            for _ in range(SAMPLES):
                fill()
                out.append(timed(recv, per))
            return out

        return block

    def drain_channel() -> None:
        left = per
        while left:
            left -= len(rx.recv_batch(per, 10))

    def drain_pipe() -> None:
        left = per * len(MESSAGE)
        while left:
            left -= len(os.read(r, left))

    batch = [MESSAGE] * per

    def fill_channel() -> None:
        assert tx.send_many(batch, 10) == per

    def fill_pipe() -> None:
        os.write(w, MESSAGE * per)

    def recv_view() -> None:
        rx.recv_view(10).release()

    n = len(MESSAGE)
    p.contenders += [
        Contender("send", "Channel.send(16 B)", sends(lambda: tx.send(MESSAGE), drain_channel), ref="send:peer"),
        Contender("send:peer", "os.write(pipe, 16 B)", sends(lambda: os.write(w, MESSAGE), drain_pipe), ours=False),
        Contender("recv", "Channel.recv() of 16 B", receives(fill_channel, lambda: rx.recv(10)), ref="recv:peer"),
        Contender("recv:peer", "os.read(pipe, 16)", receives(fill_pipe, lambda: os.read(r, n)), ours=False),
        Contender("recv_view", "Channel.recv_view() of 16 B (+ release)", receives(fill_channel, recv_view), ref="recv_view:peer"),
        Contender("recv_view:peer", "os.readv(pipe, [buffer]) of 16 B", receives(fill_pipe, lambda: os.readv(r, [buf])), ours=False),
    ]

    def close() -> None:
        tx.close()
        rx.close()
        os.close(r)
        os.close(w)

    p.cleanup.append(close)
    return p


def timed(fn: Callable[[], object], calls: int) -> float:
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(calls):
        fn()
    return (clock() - start) / calls


def small_io() -> Pairs:
    p = Pairs()
    owner = SharedMemory(unique_name("bench_io"), MIB, create=True)
    std = stdlib_open(owner.name)
    m: mmap.mmap = std._mmap  # type: ignore[attr-defined]
    data = bytes(range(64))
    calls = 100_000

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

    def theirs_write_at() -> None:
        m[4096:4160] = data

    p.pair("seek_write", "seek + write 64 B", ours_write, "mmap.seek + write", theirs_write, calls)
    p.pair("seek_read", "seek + read 64 B", ours_read, "mmap.seek + read", theirs_read, calls)
    p.pair("seek", "seek", lambda: owner.seek(4096), "mmap.seek", lambda: m.seek(4096), calls)
    p.pair("read_at", "read_at 64 B", lambda: owner.read_at(64, 4096), "mmap[a:b]", lambda: m[4096:4160], calls)
    p.pair("write_at", "write_at 64 B", lambda: owner.write_at(data, 4096), "mmap[a:b] = data", theirs_write_at, calls)

    def close() -> None:
        nonlocal m
        del m
        std.close()
        owner.close()

    p.cleanup.append(close)
    return p


def bulk_write() -> Pairs:
    p = Pairs()
    size = 256 * MIB
    owner = SharedMemory(unique_name("bench_bulk"), size, create=True)
    src_array = np.full(size, 7, dtype=np.uint8)
    src: Any = src_array  # (a buffer; NumPy's annotations do not say so)
    dst = np.frombuffer(owner.buffer, dtype=np.uint8)
    dst[:] = 1  # fault every page in once, for both sides
    p.pair("write_at_256mib", "write_at 256 MiB", lambda: owner.write_at(src, 0), "numpy.copyto (memcpy)", lambda: np.copyto(dst, src_array), 2, size=size)

    def close() -> None:
        nonlocal dst
        del dst
        owner.close()

    p.cleanup.append(close)
    return p


def open_view(size: int) -> Callable[[], Pairs]:
    def make() -> Pairs:
        p = Pairs()
        owner = SharedMemory(unique_name("bench_open"), size, create=True)

        def ours() -> None:
            shm = SharedMemory(owner.name)
            arr = np.frombuffer(shm.buffer, dtype=np.uint8)
            del arr
            shm.close()

        def theirs() -> None:
            shm: Any = shared_memory.SharedMemory(owner.name.lstrip("/"))
            arr = np.frombuffer(shm.buf, dtype=np.uint8)
            del arr
            shm.close()  # the stdlib refuses to close with live exports

        p.pair(f"open_view@{size}", f"open + NumPy view + close, {size // MIB} MiB", ours, "multiprocessing.shared_memory", theirs, 300, size=size)

        def close() -> None:
            # Python 3.11's stdlib registers every open with its resource tracker,
            # which would unlink the segment at exit: take it back (a set of names).
            resource_tracker.unregister(owner.name, "shared_memory")
            owner.close()

        p.cleanup.append(close)
        return p

    return make


def open_arrays(size: int) -> Callable[[], Pairs]:
    def make() -> Pairs:
        p = Pairs()
        shape = (size // 8 // 1024, 1024)
        owner = create_array(unique_name("bench_arr"), shape, np.float64)
        base: Any = owner.base
        name = base.name
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

        p.pair(f"open_array@{size}", f"open_array, float64, {size // MIB} MiB", ours, "shared_memory + np.ndarray (shape by hand)", theirs, 300, size=size)

        def close() -> None:
            nonlocal owner
            resource_tracker.unregister(name, "shared_memory")
            del owner

        p.cleanup.append(close)
        return p

    return make


def create(size: int) -> Callable[[], Pairs]:
    def make() -> Pairs:
        p = Pairs()

        def ours() -> None:
            SharedMemory(unique_name("bench_create"), size, create=True).close()  # close unlinks (creator)

        def theirs() -> None:
            shm = shared_memory.SharedMemory(create=True, size=size)
            shm.close()
            shm.unlink()

        calls = 200 if size <= MIB else 20
        label = f"{size >> 10} KiB" if size < MIB else f"{size // MIB} MiB"
        p.pair(f"create@{size}", f"create + close (unlinks), {label}", ours, "multiprocessing.shared_memory create + close + unlink", theirs, calls, size=size)
        return p

    return make

