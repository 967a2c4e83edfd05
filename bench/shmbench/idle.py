"""The CPU an idle waiter uses: a wait of one second that nothing ends, timed with
the process's CPU clock. shmbridge's `Event.wait` and `Channel.recv` (with a live
Rust process holding the sending end, sending nothing) beside the stdlib's
`threading.Event.wait` and `select` on a pipe."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import shmbridge
from shmbridge import Channel, Event

from shmbench import harness
from shmbench.harness import Contender, Settings

GROUP = "idle"


def contenders(s: Settings) -> list[Contender]:
    return [
        idle("idle_event", "shmbridge Event.wait", event_wait, s),
        idle("idle_channel", "shmbridge Channel.recv (a live sender, sending nothing)", channel_recv, s),
        idle("idle_threading", "threading.Event.wait", threading_wait, s, ours=False),
        idle("idle_select", "select on a pipe", select_wait, s, ours=False),
    ]


def measure(s: Settings, scenario: str) -> list[harness.Figure]:
    figures = harness.run_group(GROUP, scenario, contenders(s), s.idle_rounds, with_p99=False)
    for f in figures:
        f.unit = "cpu"  # a fraction of one CPU, not ns
    return figures


Waiter = Callable[[float], None]


def idle(id: str, label: str, make: Callable[[], tuple[Waiter, Callable[[], None]]], s: Settings, *, ref: str | None = None, ours: bool = True) -> Contender:
    state: dict[str, Any] = {}

    def start() -> None:
        state["wait"], state["stop"] = make()

    def block() -> list[float]:
        cpu, wall = time.process_time_ns(), time.perf_counter_ns()
        state["wait"](s.idle_seconds)
        return [(time.process_time_ns() - cpu) / (time.perf_counter_ns() - wall)]

    def stop() -> None:
        if "stop" in state:
            state.pop("stop")()

    return Contender(id=id, label=label, block=block, ours=ours, ref=ref, start=start, stop=stop)


def event_wait() -> tuple[Waiter, Callable[[], None]]:
    event = Event.create(shmbridge.unique_name("bench_idle"))

    def wait(seconds: float) -> None:
        if event.wait(seconds):
            raise RuntimeError("nobody sets this event")

    return wait, lambda: None


def channel_recv() -> tuple[Waiter, Callable[[], None]]:
    name = shmbridge.unique_name("bench_idle_ch")
    rx = Channel.create(name, 1 << 16)
    quit = Event.create(name + "_quit")
    peer = harness.rust("peer", "idle_sender", name, name + "_quit", stdout=None)
    # The first receive also claims the receiving end; a sender that has not
    # opened the channel yet is no different for an idle receiver.

    def wait(seconds: float) -> None:
        try:
            rx.recv(seconds)
        except TimeoutError:
            return
        raise RuntimeError("the idle sender sent something")

    def stop() -> None:
        quit.set()
        harness.finish(peer)
        rx.close()

    return wait, stop


def threading_wait() -> tuple[Waiter, Callable[[], None]]:
    event = threading.Event()
    return (lambda seconds: None if not event.wait(seconds) else None), lambda: None


def select_wait() -> tuple[Waiter, Callable[[], None]]:
    r, w = os.pipe()

    def stop() -> None:
        os.close(r)
        os.close(w)

    return (lambda seconds: None if not select.select([r], [], [], seconds)[0] else None), stop
