"""Hand-off of a NumPy array (float64, 1 KiB .. 256 MiB) from one Python process to
another, until the receiver holds an array with the contents:

- `send_array` / `recv_array` through a channel (the receiver gets its own copy),
  and with `recv_array(copy=False)` (a read-only view of the ring);
- a shared array (`create_array` / `open_array`), reused: the sender copies into
  it and sets an Event, the receiver takes a view (`np.asarray`);
- pickle over `multiprocessing.Pipe` (`send` / `recv`);
- the stdlib's `shared_memory` + `np.ndarray`, reused, with a one-byte
  `multiprocessing.Pipe` message as the signal;
- and the floor: one memcpy of the same size between two heap buffers (Rust).

Each is timed as a round trip to a peer that hands the array straight back the same
way; the figure is half of it.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from shmbridge import Channel, Event, create_array, open_array, recv_array, send_array, unique_name

from shmbench import harness
from shmbench.harness import PATIENCE, Contender, Figure, Settings

GROUP = "handoff"
FORK = mp.get_context("fork")

Trip = Callable[[], object]


def trips_per_block(size: int) -> int:
    return int(min(200, max(1, (32 << 20) // size)))


def measure(s: Settings, scenario: str) -> list[Figure]:
    figures: list[Figure] = []
    for size in s.handoff_sizes:
        figures += harness.run_group(GROUP, scenario, contenders(size, s), s.rounds)
    return figures


def contenders(size: int, s: Settings) -> list[Contender]:
    trips = trips_per_block(size)
    total = (s.rounds + 1) * trips  # a warm-up block, then the rounds
    ref, floor = f"handoff_stdlib@{size}", f"memcpy@{size}"
    out = [
        echo_pair("handoff_channel", "send_array / recv_array (channel)", channel(size, copy=True), size, trips, total, ref, floor),
        echo_pair("handoff_channel_view", "send_array / recv_array(copy=False) (channel)", channel(size, copy=False), size, trips, total, ref, floor),
        echo_pair("handoff_shared_array", "shared array (reused) + Event", shared_array(size), size, trips, total, ref, floor),
        echo_pair("handoff_pickle", "pickle over multiprocessing.Pipe", pickle_pipe, size, trips, total, ref, floor, ours=False),
        echo_pair("handoff_stdlib", "stdlib shared_memory + np.ndarray (reused) + Pipe signal", stdlib(size), size, trips, total, None, floor, ours=False),
        Contender(
            id=f"memcpy@{size}",
            label="memcpy of the same size (Rust, heap to heap; floor)",
            ours=False,
            size=size,
            block=lambda: [float(ns) for ns in harness.rust_json("memory", "memcpy", size, 5)["ns"]],
        ),
    ]
    return out


Setup = Callable[[np.ndarray], tuple[Trip, Callable[..., None], tuple[Any, ...], Callable[[], None]]]


def echo_pair(
    kind: str,
    label: str,
    setup: Setup,
    size: int,
    trips: int,
    total: int,
    ref: str | None,
    floor: str | None,
    ours: bool = True,
) -> Contender:
    """A round trip to a forked peer that hands every array straight back;
    `setup(array)` gives this end's round trip, the peer's body and arguments, and
    what to release at the end."""
    state: dict[str, Any] = {}

    def start() -> None:
        array = np.arange(size // 8, dtype=np.float64)
        trip, echo, args, release = setup(array)
        proc = harness.spawned(FORK.Process(target=_peer, args=(echo, total, *args), daemon=True))
        proc.start()
        state.update(trip=trip, proc=proc, release=release)
        block()  # warm-up: faults every page in, on both sides

    def block() -> list[float]:
        return [ns / 2 for ns in harness.timed_trips(state["trip"], trips, 0)]

    def stop() -> None:
        try:
            proc = state.pop("proc", None)
            if proc is not None:
                harness.finish_forked(proc, kind)
        finally:
            if "release" in state:
                state.pop("release")()
            state.clear()

    return Contender(id=f"{kind}@{size}", label=label, ours=ours, ref=ref, floor=floor, size=size, block=block, start=start, stop=stop)


def _peer(echo: Callable[..., None], total: int, *args: Any) -> None:
    harness.CPUS.pin_peer()
    echo(total, *args)


def channel(size: int, copy: bool) -> Setup:
    def setup(array: np.ndarray) -> tuple[Trip, Callable[..., None], tuple[Any, ...], Callable[[], None]]:
        name = unique_name("bench_ho")
        capacity = (2 * (size + 4096)) // 4096 * 4096  # messages up to half the ring
        tx, rx = Channel.create(name + "_a", capacity), Channel.create(name + "_b", capacity)

        def trip() -> None:
            send_array(tx, array, PATIENCE)
            back = recv_array(rx, PATIENCE, copy=copy)
            del back

        def release() -> None:
            tx.close()
            rx.close()

        return trip, _channel_echo, (name, copy), release

    return setup


def _channel_echo(total: int, name: str, copy: bool) -> None:
    rx, tx = Channel.open(name + "_a"), Channel.open(name + "_b")
    for _ in range(total):
        array = recv_array(rx, PATIENCE, copy=copy)
        send_array(tx, array, PATIENCE)
        del array  # (with copy=False, frees its room in the ring)


def shared_array(size: int) -> Setup:
    def setup(array: np.ndarray) -> tuple[Trip, Callable[..., None], tuple[Any, ...], Callable[[], None]]:
        name = unique_name("bench_ho")
        there = create_array(name + "_a", array.shape, array.dtype)
        back = create_array(name + "_b", array.shape, array.dtype)
        sent, answered = Event.create(name + "_sent", auto_reset=True), Event.create(name + "_answered", auto_reset=True)
        back_base = back.base

        def trip() -> None:
            np.copyto(there, array)
            sent.set()
            if not answered.wait(PATIENCE):
                raise TimeoutError("no answer")
            received = np.asarray(back_base)
            del received

        def release() -> None:
            nonlocal there, back
            del there, back

        return trip, _shared_array_echo, (name,), release

    return setup


def _shared_array_echo(total: int, name: str) -> None:
    incoming, outgoing = open_array(name + "_a"), open_array(name + "_b")
    sent, answered = Event.open(name + "_sent"), Event.open(name + "_answered")
    incoming_base = incoming.base
    for _ in range(total):
        if not sent.wait(PATIENCE):
            raise TimeoutError("nothing sent")
        received = np.asarray(incoming_base)  # the receiver's array: a view
        np.copyto(outgoing, received)
        answered.set()


def pickle_pipe(array: np.ndarray) -> tuple[Trip, Callable[..., None], tuple[Any, ...], Callable[[], None]]:
    here, there = FORK.Pipe()

    def trip() -> None:
        here.send(array)
        back = here.recv()
        del back

    return trip, _pickle_echo, (there,), here.close


def _pickle_echo(total: int, conn: Any) -> None:
    for _ in range(total):
        conn.send(conn.recv())


def stdlib(size: int) -> Setup:
    def setup(array: np.ndarray) -> tuple[Trip, Callable[..., None], tuple[Any, ...], Callable[[], None]]:
        there_shm = shared_memory.SharedMemory(create=True, size=size)
        back_shm = shared_memory.SharedMemory(create=True, size=size)
        here, peer = FORK.Pipe()
        there = np.ndarray(array.shape, dtype=array.dtype, buffer=there_shm.buf)
        names = (there_shm.name, back_shm.name)

        def trip() -> None:
            np.copyto(there, array)
            here.send_bytes(b"1")
            here.recv_bytes()
            received = np.ndarray(array.shape, dtype=array.dtype, buffer=back_shm.buf)
            del received

        def release() -> None:
            nonlocal there
            del there
            for shm in (there_shm, back_shm):
                shm.close()
                shm.unlink()

        return trip, _stdlib_echo, (peer, names, array.shape), release

    return setup


def _stdlib_echo(total: int, conn: Any, names: tuple[str, str], shape: tuple[int, ...]) -> None:
    # Opened by name as another program would (the resource tracker, shared across
    # the fork, already holds the names: the creator unlinks them).
    incoming_shm, outgoing_shm = (shared_memory.SharedMemory(n) for n in names)
    outgoing = np.ndarray(shape, dtype=np.float64, buffer=outgoing_shm.buf)
    for _ in range(total):
        conn.recv_bytes()
        received = np.ndarray(shape, dtype=np.float64, buffer=incoming_shm.buf)
        np.copyto(outgoing, received)
        del received
        conn.send_bytes(b"1")
    del outgoing
    incoming_shm.close()
    outgoing_shm.close()
