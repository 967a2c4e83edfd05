"""Round trips: one side signals (an event, or a 16-byte message) and waits for the
other's answer. shmbridge's Event and Channel, Rust <-> Python, Python <-> Python
and Rust <-> Rust, beside multiprocessing.Pipe, os.pipe, posix_ipc semaphores,
iceoryx2 events, and two floors: a bare spin on a shared word (Rust, no shmbridge
primitive) and the blocking-only Event, which is a futex round trip.

Every pair's measuring end runs on one CPU and its peer on the other (see
harness.Cpus). Python-measured round trips include ~0.1 us of timer calls.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

import shmbridge
from shmbridge import Channel, Event, SharedMemory

from shmbench import harness
from shmbench.harness import PATIENCE, Contender, Settings

GROUP = "roundtrip"
MESSAGE = b"0123456789abcdef"  # 16 bytes
FORK = mp.get_context("fork")


def contenders(s: Settings) -> list[Contender]:
    total = s.rt_rounds * (s.trips + s.trip_warmup)  # every round trip a peer answers
    return [
        python_measured(
            "event_rust_py", "shmbridge Event, Rust <-> Python", event_rust_py(total, "default"), s, ref="event_rust_rust"
        ),
        python_measured(
            "channel_rust_py", "shmbridge Channel 16 B, Rust <-> Python", channel_rust_py(total), s, ref="event_rust_py"
        ),
        python_measured(
            "event_py_py", "shmbridge Event, Python <-> Python", forked(total, _event_echo, event_pair), s, ref="event_rust_py"
        ),
        python_measured(
            "channel_py_py",
            "shmbridge Channel 16 B, Python <-> Python",
            forked(total, _channel_echo, channel_pair),
            s,
            ref="event_py_py",
        ),
        python_measured(
            "event_rust_py_blocking",
            "shmbridge Event, Rust <-> Python, blocking only",
            event_rust_py(total, "0"),
            s,
            ref="futex_rust_rust",
        ),
        rust_measured("event_rust_rust", "shmbridge Event, Rust <-> Rust", "event", ["default"], s, ref="spin_rust_rust"),
        rust_measured(
            "futex_rust_rust", "shmbridge Event, Rust <-> Rust, blocking only (futex floor)", "event", ["0"], s, ours=False
        ),
        rust_measured(
            "channel_rust_rust", "shmbridge Channel 16 B, Rust <-> Rust", "channel", [len(MESSAGE)], s, ref="event_rust_rust"
        ),
        rust_measured(
            "spin_rust_rust", "spin on a shared word, Rust <-> Rust (spin floor)", "spin", [], s, ours=False, quiet_only=True
        ),
        python_measured("mp_pipe", "multiprocessing.Pipe 16 B, Python <-> Python", mp_pipe(total), s, ours=False, ref="futex_rust_rust"),
        python_measured("os_pipe", "os.pipe 16 B, Python <-> Python", os_pipe(total), s, ours=False, ref="futex_rust_rust"),
        python_measured(
            "posix_sem", "posix_ipc semaphores, Python <-> Python", posix_semaphores(total), s, ours=False, ref="futex_rust_rust"
        ),
        python_measured(
            "iox_blocking", "iceoryx2 events, Python <-> Python, blocking", iceoryx2(total, False), s, ours=False, ref="futex_rust_rust"
        ),
        python_measured(
            "iox_polling", "iceoryx2 events, Python <-> Python, polling", iceoryx2(total, True), s, ours=False, ref="event_py_py"
        ),
    ]


Setup = Callable[[], tuple[Callable[[], object], Callable[[], None]]]


def python_measured(
    id: str, label: str, setup: Setup, s: Settings, *, ref: str | None = None, ours: bool = True
) -> Contender:
    """A round trip timed in this process: `setup()` starts the peer and returns the
    round trip and what stops the peer."""
    state: dict[str, Any] = {}

    def start() -> None:
        state["trip"], state["stop"] = setup()

    def stop() -> None:
        if "stop" in state:
            state.pop("stop")()

    return Contender(
        id=id,
        label=label,
        block=lambda: harness.timed_trips(state["trip"], s.trips, s.trip_warmup),
        ours=ours,
        ref=ref,
        start=start,
        stop=stop,
    )


def rust_measured(
    id: str,
    label: str,
    kind: str,
    extra: list[object],
    s: Settings,
    *,
    ref: str | None = None,
    ours: bool = True,
    quiet_only: bool = False,
) -> Contender:
    """A Rust <-> Rust round trip: both ends are `peer` processes, the measuring one
    on this process's CPU, printing each block's times when told to go."""
    state: dict[str, Any] = {}
    rounds = s.rt_rounds

    def start() -> None:
        name = shmbridge.unique_name("bench_rr")
        go = Event.create(name + "_go", auto_reset=True)
        keep: list[Any] = [go]
        if kind == "event":
            keep += [Event.create(name + "_ping", auto_reset=True), Event.create(name + "_pong", auto_reset=True)]
            echo = harness.rust("peer", "event_echo", name, rounds * (s.trips + s.trip_warmup), extra[0], stdout=None)
        elif kind == "channel":
            keep += [Channel.create(name + "_ping", 1 << 16), Channel.create(name + "_pong", 1 << 16)]
            echo = harness.rust("peer", "channel_echo", name, rounds * (s.trips + s.trip_warmup), stdout=None)
        else:
            keep.append(SharedMemory(name, 64, create=True))
            echo = harness.rust("peer", "spin_echo", name, rounds * (s.trips + s.trip_warmup), stdout=None)
        ping = harness.rust("peer", f"{kind}_ping", name, name + "_go", rounds, s.trips, s.trip_warmup, *extra, where="main")
        state.update(go=go, keep=keep, echo=echo, ping=ping)

    def block() -> list[float]:
        state["go"].set()
        return [float(ns) for ns in harness.read_json_line(state["ping"])["ns"]]

    def stop() -> None:
        for key in ("ping", "echo"):
            if key in state:
                harness.finish(state.pop(key))
        state.clear()

    return Contender(id=id, label=label, block=block, ours=ours, ref=ref, start=start, stop=stop, quiet_only=quiet_only)


# --- shmbridge, Rust peer -------------------------------------------------------------


def event_rust_py(total: int, spin: str) -> Setup:
    def setup() -> tuple[Callable[[], object], Callable[[], None]]:
        name = shmbridge.unique_name("bench_ev")
        ping, pong = Event.create(name + "_ping", auto_reset=True), Event.create(name + "_pong", auto_reset=True)
        if spin != "default":
            pong.set_spin_limit(int(spin))
        peer = harness.rust("peer", "event_echo", name, total, spin, stdout=None)

        def trip() -> None:
            ping.set()
            if not pong.wait(PATIENCE):
                raise TimeoutError("no answer from the Rust peer")

        return trip, lambda: harness.finish(peer)

    return setup


def channel_rust_py(total: int) -> Setup:
    def setup() -> tuple[Callable[[], object], Callable[[], None]]:
        name = shmbridge.unique_name("bench_ch")
        tx, rx = Channel.create(name + "_ping", 1 << 16), Channel.create(name + "_pong", 1 << 16)
        peer = harness.rust("peer", "channel_echo", name, total, stdout=None)

        def trip() -> None:
            tx.send(MESSAGE)
            rx.recv(PATIENCE)

        def stop() -> None:
            harness.finish(peer)
            tx.close()
            rx.close()

        return trip, stop

    return setup


# --- Python <-> Python: a forked peer -------------------------------------------------


def forked(total: int, echo: Callable[..., None], pair: Callable[[], tuple[Callable[[], object], tuple[Any, ...]]]) -> Setup:
    """A peer forked from this process running echo(total, *args) on the peer CPU;
    `pair()` makes this end's round trip and the peer's arguments."""

    def setup() -> tuple[Callable[[], object], Callable[[], None]]:
        trip, args = pair()
        proc = harness.spawned(FORK.Process(target=_pinned, args=(echo, total, *args), daemon=True))
        proc.start()

        def stop() -> None:
            harness.finish_forked(proc, echo.__name__)

        return trip, stop

    return setup


def _pinned(echo: Callable[..., None], *args: Any) -> None:
    harness.CPUS.pin_peer()
    echo(*args)


def event_pair() -> tuple[Callable[[], object], tuple[Any, ...]]:
    name = shmbridge.unique_name("bench_pyev")
    ping, pong = Event.create(name + "_ping", auto_reset=True), Event.create(name + "_pong", auto_reset=True)

    def trip() -> None:
        ping.set()
        if not pong.wait(PATIENCE):
            raise TimeoutError("no answer from the Python peer")

    return trip, (name,)


def _event_echo(total: int, name: str) -> None:
    ping, pong = Event.open(name + "_ping"), Event.open(name + "_pong")
    for _ in range(total):
        if not ping.wait(PATIENCE):
            raise TimeoutError("no ping")
        pong.set()


def channel_pair() -> tuple[Callable[[], object], tuple[Any, ...]]:
    name = shmbridge.unique_name("bench_pych")
    tx, rx = Channel.create(name + "_ping", 1 << 16), Channel.create(name + "_pong", 1 << 16)

    def trip() -> None:
        tx.send(MESSAGE)
        rx.recv(PATIENCE)

    return trip, (name,)


def _channel_echo(total: int, name: str) -> None:
    rx, tx = Channel.open(name + "_ping"), Channel.open(name + "_pong")
    for _ in range(total):
        tx.send(rx.recv(PATIENCE))


def mp_pipe(total: int) -> Setup:
    def pair() -> tuple[Callable[[], object], tuple[Any, ...]]:
        here, there = FORK.Pipe()

        def trip() -> None:
            here.send_bytes(MESSAGE)
            here.recv_bytes()

        return trip, (there,)

    return forked(total, _mp_pipe_echo, pair)


def _mp_pipe_echo(total: int, conn: Any) -> None:
    for _ in range(total):
        conn.send_bytes(conn.recv_bytes())


def os_pipe(total: int) -> Setup:
    def pair() -> tuple[Callable[[], object], tuple[Any, ...]]:
        to_peer_r, to_peer_w = os.pipe()
        to_me_r, to_me_w = os.pipe()
        n = len(MESSAGE)

        def trip() -> None:
            os.write(to_peer_w, MESSAGE)
            os.read(to_me_r, n)

        return trip, (to_peer_r, to_me_w)

    return forked(total, _os_pipe_echo, pair)


def _os_pipe_echo(total: int, r: int, w: int) -> None:
    n = len(MESSAGE)
    for _ in range(total):
        os.write(w, os.read(r, n))


def posix_semaphores(total: int) -> Setup:
    import posix_ipc

    def pair() -> tuple[Callable[[], object], tuple[Any, ...]]:
        names = (f"/shmbench_ping_{os.getpid()}_{time.monotonic_ns()}", f"/shmbench_pong_{os.getpid()}_{time.monotonic_ns()}")
        ping, pong = (posix_ipc.Semaphore(n, posix_ipc.O_CREX) for n in names)
        for sem in (ping, pong):
            sem.unlink()  # the name is only needed until the fork: both ends hold it open

        def trip() -> None:
            ping.release()
            pong.acquire()

        return trip, (ping, pong)

    return forked(total, _posix_echo, pair)


def _posix_echo(total: int, ping: Any, pong: Any) -> None:
    for _ in range(total):
        ping.acquire()
        pong.release()


def iceoryx2(total: int, polling: bool) -> Setup:
    def pair() -> tuple[Callable[[], object], tuple[Any, ...]]:
        import iceoryx2 as iox2

        service = f"shmbench_{os.getpid()}_{time.monotonic_ns()}"
        node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        ping = node.service_builder(iox2.ServiceName.new(service + "_ping")).event().open_or_create()
        pong = node.service_builder(iox2.ServiceName.new(service + "_pong")).event().open_or_create()
        notifier, listener = ping.notifier_builder().create(), pong.listener_builder().create()
        keep.append((node, ping, pong, notifier, listener))

        def trip() -> None:
            notifier.notify()
            if polling:
                while not listener.try_wait():
                    pass
            else:
                listener.blocking_wait()

        return trip, (service, polling)

    keep: list[Any] = []

    def setup() -> tuple[Callable[[], object], Callable[[], None]]:
        import iceoryx2 as iox2

        trip, stop = forked(total, _iox_echo, pair)()
        # iceoryx2 drops a notification sent before the listener exists: the peer
        # says when its listener is there.
        if not keep[-1][4].timed_wait(iox2.Duration.from_secs(PATIENCE)):
            raise TimeoutError("the iceoryx2 peer did not start")
        return trip, stop

    return setup


def _iox_echo(total: int, service: str, polling: bool) -> None:
    import iceoryx2 as iox2

    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    ping = node.service_builder(iox2.ServiceName.new(service + "_ping")).event().open_or_create()
    pong = node.service_builder(iox2.ServiceName.new(service + "_pong")).event().open_or_create()
    listener, notifier = ping.listener_builder().create(), pong.notifier_builder().create()
    notifier.notify()  # ready
    timeout = iox2.Duration.from_millis(1)
    for _ in range(total):
        if polling:
            # Poll for a millisecond, then block: between blocks of this contender
            # the peer must not burn a CPU that the other contenders need.
            deadline = time.perf_counter() + 1e-3
            while not listener.try_wait():
                if time.perf_counter() > deadline:
                    while not listener.timed_wait(timeout):
                        pass
                    break
        else:
            listener.blocking_wait()
        notifier.notify()
