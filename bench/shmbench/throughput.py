"""Channel throughput: messages/s against message size (16 B .. 64 KiB), the channel
in both directions between Rust and Python and between two Python processes,
beside os.pipe, multiprocessing.Pipe and multiprocessing.Queue between two Python
processes; and, beside the same copies into shared memory without a channel, 1 MiB
frames through the channel (Rust -> Python) and 64 B messages (Rust -> Rust).

How each moves messages (the way a user of it would, batched where it can be):
- channel, Rust -> Python: the Rust peer sends with `send_batch`, Python receives
  with `recv_batch`;
- channel, Python -> Rust: Python sends with `send_many`, Rust drains a batch at a time;
- channel, Python -> Python: `send_many` / `recv_batch`;
- os.pipe: one `os.write` per message; the reader reads up to the pipe's capacity
  (64 KiB) per `os.read`;
- multiprocessing.Pipe: `send_bytes` / `recv_bytes` per message;
- multiprocessing.Queue: `put` / `get` per message.
A block is timed by this process from telling the producer to go until the last
message is received (for Python -> Rust: until the Rust end acknowledges it).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import shmbridge
from shmbridge import Channel, Event

from shmbench import harness
from shmbench.harness import PATIENCE, Contender, Settings

GROUP = "throughput"
RING = 4 << 20  # bytes of each channel's ring in the sweep
BATCH = 256  # messages per send_many / send_batch call
BLOCK_SECONDS = 0.15
FORK = mp.get_context("fork")
FRAME = 1 << 20
FRAME_RING = 16 << 20
FRAMES_PER_BLOCK = 500
SMALL = 64
SMALL_PER_BLOCK = 2_000_000
PIPE_CAPACITY = 64 << 10  # Linux's default

# Rough messages/s, to size the blocks (not a result): (per-message rate, bytes/s).
EXPECTED = {
    "ch_rust_py": (4e6, 3e9),
    "ch_py_rust": (2e6, 3e9),
    "ch_py_py": (2e6, 2e9),
    "os_pipe": (4e5, 1.5e9),
    "mp_pipe": (2e5, 1e9),
    "mp_queue": (5e4, 5e8),
}
LABELS = {
    "ch_rust_py": "shmbridge Channel, Rust -> Python (recv_batch)",
    "ch_py_rust": "shmbridge Channel, Python -> Rust (send_many)",
    "ch_py_py": "shmbridge Channel, Python -> Python (send_many / recv_batch)",
    "os_pipe": "os.pipe, Python -> Python",
    "mp_pipe": "multiprocessing.Pipe, Python -> Python",
    "mp_queue": "multiprocessing.Queue, Python -> Python",
}


def block_count(kind: str, size: int) -> int:
    per_message, per_byte = EXPECTED[kind]
    rate = min(per_message, per_byte / size)
    return int(min(1_000_000, max(200, rate * BLOCK_SECONDS)))


def contenders(s: Settings, size: int) -> list[Contender]:
    """The contenders at one message size (each size is a group of its own, so that
    only its peers run at the same time)."""
    out = []
    blocks = s.rounds + 1  # one warm-up block
    for kind, make in (
        ("ch_rust_py", rust_to_python),
        ("ch_py_rust", python_to_rust),
        ("ch_py_py", python_pair(_channel_producer, channel_receiver)),
        ("os_pipe", python_pair(_os_pipe_producer, os_pipe_receiver)),
        ("mp_pipe", python_pair(_mp_pipe_producer, mp_pipe_receiver)),
        ("mp_queue", python_pair(_mp_queue_producer, mp_queue_receiver)),
    ):
        count = block_count(kind, size)
        out.append(
            Contender(
                id=f"{kind}@{size}",
                label=LABELS[kind],
                ours=kind.startswith("ch_"),
                ref=None if kind == "os_pipe" else f"os_pipe@{size}",
                size=size,
                **make(size, count, blocks)._asdict(),
            )
        )
    return out


def copy_contenders(s: Settings) -> list[Contender]:
    """The channel beside the same copies into shared memory without a channel: 1 MiB
    frames (Rust -> Python) and 64 B messages (Rust -> Rust, where the channel's own
    cost per message shows: a system call per message would multiply it)."""
    return [
        Contender(
            id="small_channel_rust_rust",
            label="shmbridge Channel, 64 B messages Rust -> Rust (send_batch / drain_with, polling)",
            ref="small_ring_copy",
            size=SMALL,
            **rust_to_rust(SMALL, SMALL_PER_BLOCK, s.rounds + 1)._asdict(),
        ),
        Contender(
            id="small_ring_copy",
            label="the same 64 B copies into shared memory laid out as the ring, no channel (Rust)",
            ours=False,
            size=SMALL,
            # On the CPU the channel's producer copies on.
            block=lambda: [harness.rust_json("memory", "ring_copy", SMALL, SMALL_PER_BLOCK, RING, where="peer")["ns"][0] / SMALL_PER_BLOCK],
        ),
        Contender(
            id="frames_channel",
            label="shmbridge Channel, 1 MiB frames Rust -> Python (loan + copy, recv_view)",
            ref="frames_ring_copy",
            size=FRAME,
            **rust_frames(s.rounds + 1)._asdict(),
        ),
        Contender(
            id="frames_ring_copy",
            label="the same 1 MiB copies into shared memory laid out as the ring, no channel (Rust)",
            ours=False,
            size=FRAME,
            # On the CPU the channel's producer copies on.
            block=lambda: [harness.rust_json("memory", "ring_copy", FRAME, FRAMES_PER_BLOCK, FRAME_RING, where="peer")["ns"][0] / FRAMES_PER_BLOCK],
        ),
    ]


def measure(s: Settings, scenario: str) -> list[harness.Figure]:
    figures = []
    for size in s.sweep_sizes:
        figures += harness.run_group(GROUP, scenario, contenders(s, size), s.rounds, with_p99=False)
    return figures + harness.run_group(GROUP, scenario, copy_contenders(s), s.rounds, with_p99=False)


class Parts(NamedTuple):
    """A contender's start, block and stop."""

    start: Callable[[], None]
    block: Callable[[], list[float]]
    stop: Callable[[], None]


def _warm(block: Callable[[], list[float]]) -> None:
    block()  # the first block faults the ring's pages in and starts the peer's caches


def rust_to_python(size: int, count: int, blocks: int) -> Parts:
    state: dict[str, Any] = {}

    def start() -> None:
        name = shmbridge.unique_name("bench_tp")
        state["rx"] = Channel.create(name, RING)
        state["go"] = Event.create(name + "_go", auto_reset=True)
        state["peer"] = harness.rust("peer", "produce", name, name + "_go", blocks, count, size, BATCH, stdout=None)
        _warm(block)

    def block() -> list[float]:
        rx, left = state["rx"], count
        begin = time.perf_counter_ns()
        state["go"].set()
        while left > 0:
            left -= len(rx.recv_batch(8192, PATIENCE))
        return [(time.perf_counter_ns() - begin) / count]

    def stop() -> None:
        harness.finish(state.pop("peer"))
        state.clear()

    return Parts(start, block, stop)


def python_to_rust(size: int, count: int, blocks: int) -> Parts:
    state: dict[str, Any] = {}
    batch = [bytes([7]) * size] * BATCH

    def start() -> None:
        name = shmbridge.unique_name("bench_tp")
        state["tx"] = Channel.create(name, RING)
        state["ack"] = Event.create(name + "_ack", auto_reset=True)
        state["peer"] = harness.rust("peer", "consume", name, name + "_ack", blocks, count, "wait", stdout=None)
        _warm(block)

    def block() -> list[float]:
        tx, left = state["tx"], count
        begin = time.perf_counter_ns()
        while left > 0:
            n = min(left, BATCH)
            left -= tx.send_many(batch if n == BATCH else batch[:n], PATIENCE)
        if not state["ack"].wait(PATIENCE):
            raise TimeoutError("the Rust consumer did not acknowledge")
        return [(time.perf_counter_ns() - begin) / count]

    def stop() -> None:
        harness.finish(state.pop("peer"))
        state.clear()

    return Parts(start, block, stop)


def rust_to_rust(size: int, count: int, blocks: int) -> Parts:
    """A Rust producer told to go, a Rust consumer that acknowledges each block."""
    state: dict[str, Any] = {}

    def start() -> None:
        name = shmbridge.unique_name("bench_tp")
        state["keep"] = Channel.create(name, RING)
        state["go"] = Event.create(name + "_go", auto_reset=True)
        state["ack"] = Event.create(name + "_ack", auto_reset=True)
        state["ack"].set_spin_limit(0)  # sleep: the consumer shares this CPU
        state["consumer"] = harness.rust("peer", "consume", name, name + "_ack", blocks, count, "poll", stdout=None, where="main")
        state["producer"] = harness.rust("peer", "produce", name, name + "_go", blocks, count, size, BATCH, stdout=None)
        _warm(block)

    def block() -> list[float]:
        begin = time.perf_counter_ns()
        state["go"].set()
        if not state["ack"].wait(PATIENCE):
            raise TimeoutError("the Rust consumer did not acknowledge")
        return [(time.perf_counter_ns() - begin) / count]

    def stop() -> None:
        harness.finish(state.pop("producer"))
        harness.finish(state.pop("consumer"))
        state.clear()

    return Parts(start, block, stop)


Receiver = Callable[[int], tuple[Callable[[int], None], tuple[Any, ...]]]


def python_pair(producer: Callable[..., Callable[[int], None]], receiver: Receiver) -> Callable[[int, int, int], Parts]:
    """A forked Python producer, told to go (and how many) over a control pipe, and
    this process receiving; `receiver(size, *peer_args)` returns receive(count)."""

    def make(size: int, count: int, blocks: int) -> Parts:
        state: dict[str, Any] = {}

        def start() -> None:
            control, control_peer = FORK.Pipe()
            receive, peer_args = receiver(size)
            proc = harness.spawned(FORK.Process(target=_producer_main, args=(producer, control_peer, size, *peer_args), daemon=True))
            proc.start()
            state.update(control=control, receive=receive, proc=proc)
            _warm(block)

        def block() -> list[float]:
            begin = time.perf_counter_ns()
            state["control"].send(count)
            state["receive"](count)
            return [(time.perf_counter_ns() - begin) / count]

        def stop() -> None:
            state["control"].send(0)
            state["proc"].join(PATIENCE)
            if state["proc"].exitcode != 0:
                raise RuntimeError(f"the {producer.__name__} peer failed ({state['proc'].exitcode})")
            state.clear()

        return Parts(start, block, stop)

    return make


def _producer_main(producer: Callable[..., Callable[[int], None]], control: Any, size: int, *args: Any) -> None:
    harness.CPUS.pin_peer()
    message = bytes([7]) * size
    send = producer(message, *args)
    while count := control.recv():
        send(count)


def channel_receiver(size: int) -> tuple[Callable[[int], None], tuple[Any, ...]]:
    name = shmbridge.unique_name("bench_tp")
    rx = Channel.create(name, RING)

    def receive(count: int) -> None:
        while count > 0:
            count -= len(rx.recv_batch(8192, PATIENCE))

    return receive, (name,)


def _channel_producer(message: bytes, name: str) -> Callable[[int], None]:
    tx = Channel.open(name)
    batch = [message] * BATCH

    def send(count: int) -> None:
        while count > 0:
            n = min(count, BATCH)
            count -= tx.send_many(batch if n == BATCH else batch[:n], PATIENCE)

    return send


def os_pipe_receiver(size: int) -> tuple[Callable[[int], None], tuple[Any, ...]]:
    r, w = os.pipe()

    def receive(count: int) -> None:
        left = count * size
        while left > 0:
            left -= len(os.read(r, min(left, PIPE_CAPACITY)))

    return receive, (w,)


def _os_pipe_producer(message: bytes, w: int) -> Callable[[int], None]:
    def send(count: int) -> None:
        for _ in range(count):
            os.write(w, message)

    return send


def mp_pipe_receiver(size: int) -> tuple[Callable[[int], None], tuple[Any, ...]]:
    here, there = FORK.Pipe(duplex=False)

    def receive(count: int) -> None:
        recv = here.recv_bytes
        for _ in range(count):
            recv()

    return receive, (there,)


def _mp_pipe_producer(message: bytes, conn: Any) -> Callable[[int], None]:
    def send(count: int) -> None:
        for _ in range(count):
            conn.send_bytes(message)

    return send


def mp_queue_receiver(size: int) -> tuple[Callable[[int], None], tuple[Any, ...]]:
    queue = FORK.Queue()

    def receive(count: int) -> None:
        get = queue.get
        for _ in range(count):
            get()

    return receive, (queue,)


def _mp_queue_producer(message: bytes, queue: Any) -> Callable[[int], None]:
    def send(count: int) -> None:
        for _ in range(count):
            queue.put(message)

    return send


def rust_frames(blocks: int) -> Parts:
    state: dict[str, Any] = {}

    def start() -> None:
        name = shmbridge.unique_name("bench_frames")
        state["rx"] = Channel.create(name, FRAME_RING)
        state["go"] = Event.create(name + "_go", auto_reset=True)
        state["peer"] = harness.rust("peer", "frames", name, name + "_go", blocks, FRAMES_PER_BLOCK, FRAME, stdout=None)
        _warm(block)

    def block() -> list[float]:
        rx = state["rx"]
        begin = time.perf_counter_ns()
        state["go"].set()
        for _ in range(FRAMES_PER_BLOCK):
            with rx.recv_view(PATIENCE) as frame:
                if len(frame) != FRAME:  # zero-copy: the frame is read in place
                    raise ValueError(f"a frame of {len(frame)} bytes")
        return [(time.perf_counter_ns() - begin) / FRAMES_PER_BLOCK]

    def stop() -> None:
        harness.finish(state.pop("peer"))
        state.clear()

    return Parts(start, block, stop)
