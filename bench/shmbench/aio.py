"""Awaited round trips (issue 11): `shmbridge.aio` inside an asyncio loop, Python
awaiting while the Rust peer of the round trips (peer.rs, the same as the blocking
ones) answers; beside the blocking round trips of the same run, and beside what an
asyncio user would otherwise write: `loop.run_in_executor` around the blocking
`Channel.recv`, and an asyncio stream over a Unix socket between two Python
processes. A floor: the same Event round trip polled from the loop, which costs
one pass of the loop per check and no wake-up.

Each awaited round trip is timed inside the loop (the loop runs for one block at a
time, its warm-up included). The process's threads (the loop's, the executor's and
aio's waiter threads) all run on the measuring CPU, the peer on the other one (see
harness.Cpus): the threads an awaited receive needs share a CPU with the loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import shmbridge
from shmbridge import Channel, Event, aio

from shmbench import harness, roundtrip
from shmbench.harness import PATIENCE, Contender, Figure, Settings

GROUP = "aio"
MESSAGE = roundtrip.MESSAGE  # 16 bytes

AsyncTrip = Callable[[], Awaitable[object]]
AsyncSetup = Callable[[], tuple[AsyncTrip, Callable[[], None]]]


def measure(s: Settings, scenario: str) -> list[Figure]:
    return harness.run_group(GROUP, scenario, contenders(s), s.rt_rounds)


def contenders(s: Settings) -> list[Contender]:
    total = s.rt_rounds * (s.trips + s.trip_warmup)  # every round trip a peer answers
    return [
        awaited(
            "aio_event_rust_py",
            "shmbridge Event, Rust <-> Python, awaited (aio.wait)",
            event_rust_py(total),
            s,
            ref="aio_event_rust_py_blocking",
        ),
        awaited(
            "aio_channel_rust_py",
            "shmbridge Channel 16 B, Rust <-> Python, awaited (aio.send, aio.recv)",
            channel_rust_py(total),
            s,
            ref="aio_channel_rust_py_blocking",
            also=("aio_executor_rust_py", "aio_unix_stream"),
        ),
        roundtrip.python_measured(
            "aio_event_rust_py_blocking", "shmbridge Event, Rust <-> Python, blocking", roundtrip.event_rust_py(total, "default"), s
        ),
        roundtrip.python_measured(
            "aio_channel_rust_py_blocking", "shmbridge Channel 16 B, Rust <-> Python, blocking", roundtrip.channel_rust_py(total), s
        ),
        awaited(
            "aio_executor_rust_py",
            "loop.run_in_executor(Channel.recv), Channel 16 B, Rust <-> Python",
            executor_rust_py(total),
            s,
            ours=False,
        ),
        awaited("aio_unix_stream", "asyncio Unix-socket stream 16 B, Python <-> Python", unix_stream(total), s, ours=False),
        awaited(
            "aio_event_loop_floor",
            "Event, Rust <-> Python, polled from the loop (asyncio.sleep(0) between checks; the loop's floor)",
            event_polled(total),
            s,
            ours=False,
        ),
    ]


def awaited(
    id: str, label: str, setup: AsyncSetup, s: Settings, *, ref: str | None = None, also: tuple[str, ...] = (), ours: bool = True
) -> Contender:
    """A round trip awaited in an event loop of this process: `setup()` starts the
    peer and returns the round trip (a coroutine function) and what stops the peer."""
    state: dict[str, Any] = {}

    def start() -> None:
        state["loop"] = asyncio.new_event_loop()
        state["trip"], state["stop"] = setup()

    async def timed() -> list[float]:
        trip = state["trip"]
        for _ in range(s.trip_warmup):
            await trip()
        clock = time.perf_counter_ns
        out = []
        for _ in range(s.trips):
            began = clock()
            await trip()
            out.append(float(clock() - began))
        return out

    def block() -> list[float]:
        samples: list[float] = state["loop"].run_until_complete(timed())
        return samples

    def stop() -> None:
        try:
            if "stop" in state:
                state.pop("stop")()
        finally:
            if "loop" in state:
                loop = state.pop("loop")
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

    return Contender(id=id, label=label, block=block, ours=ours, ref=ref, also=also, start=start, stop=stop)


# --- shmbridge.aio, the Rust peer of the blocking round trips --------------------------


def _event_echo(prefix: str, total: int) -> tuple[Event, Event, Any]:
    """Two auto-reset events and the Rust peer that answers each set of the first
    with a set of the second, `total` times (peer.rs `event_echo`)."""
    name = shmbridge.unique_name(prefix)
    ping, pong = Event.create(name + "_ping", auto_reset=True), Event.create(name + "_pong", auto_reset=True)
    return ping, pong, harness.rust("peer", "event_echo", name, total, "default", stdout=None)


def event_rust_py(total: int) -> AsyncSetup:
    def setup() -> tuple[AsyncTrip, Callable[[], None]]:
        ping, pong, peer = _event_echo("bench_aioev", total)

        async def trip() -> None:
            ping.set()
            if not await aio.wait(pong, PATIENCE):
                raise TimeoutError("no answer from the Rust peer")

        return trip, lambda: harness.finish(peer)

    return setup


def event_polled(total: int) -> AsyncSetup:
    """No waiting at all: the coroutine checks the event and yields to the loop
    until it is set. What one pass of the loop costs, the least an awaited round
    trip could take (it burns the CPU, which no application should)."""

    def setup() -> tuple[AsyncTrip, Callable[[], None]]:
        ping, pong, peer = _event_echo("bench_aiopl", total)

        async def trip() -> None:
            ping.set()
            while not pong.wait(0):
                await asyncio.sleep(0)

        return trip, lambda: harness.finish(peer)

    return setup


def _rust_channel_echo(total: int, prefix: str) -> tuple[Channel, Channel, Callable[[], None]]:
    """The two channels of a round trip and the Rust peer echoing on them; what
    stops it."""
    name = shmbridge.unique_name(prefix)
    tx, rx = Channel.create(name + "_ping", 1 << 16), Channel.create(name + "_pong", 1 << 16)
    peer = harness.rust("peer", "channel_echo", name, total, stdout=None)

    def stop() -> None:
        harness.finish(peer)
        tx.close()
        rx.close()

    return tx, rx, stop


def channel_rust_py(total: int) -> AsyncSetup:
    def setup() -> tuple[AsyncTrip, Callable[[], None]]:
        tx, rx, stop = _rust_channel_echo(total, "bench_aioch")

        async def trip() -> None:
            await aio.send(tx, MESSAGE, PATIENCE)
            await aio.recv(rx, PATIENCE)

        return trip, stop

    return setup


# --- the peers: a thread per wait, and an asyncio stream ------------------------------


def executor_rust_py(total: int) -> AsyncSetup:
    """What asyncio code does without shmbridge.aio: the blocking receive in the
    loop's default executor (a thread pool), the send (which does not wait: the
    ring has room) on the loop's thread."""

    def setup() -> tuple[AsyncTrip, Callable[[], None]]:
        tx, rx, stop = _rust_channel_echo(total, "bench_aioex")

        async def trip() -> None:
            tx.send(MESSAGE)
            await asyncio.get_running_loop().run_in_executor(None, rx.recv, PATIENCE)

        return trip, stop

    return setup


def unix_stream(total: int) -> AsyncSetup:
    """An asyncio client (this process) and an asyncio server (a forked one,
    start_unix_server) on a Unix socket: 16 B request, 16 B reply."""

    def setup() -> tuple[AsyncTrip, Callable[[], None]]:
        directory = tempfile.mkdtemp(prefix="shmbench_")
        path = os.path.join(directory, "echo.sock")
        # Listening before the fork: the client's connect cannot come too early.
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        proc = harness.spawned(roundtrip.FORK.Process(target=_unix_echo_pinned, args=(total, listener), daemon=True))
        proc.start()
        listener.close()
        streams: dict[str, Any] = {}

        async def trip() -> None:
            if not streams:
                streams["r"], streams["w"] = await asyncio.open_unix_connection(path)
            writer: asyncio.StreamWriter = streams["w"]
            writer.write(MESSAGE)
            await writer.drain()
            await streams["r"].readexactly(len(MESSAGE))

        def stop() -> None:
            try:
                harness.finish_forked(proc, "asyncio Unix-socket")
            finally:
                if "w" in streams:
                    streams["w"].transport.abort()
                os.unlink(path)
                os.rmdir(directory)

        return trip, stop

    return setup


def _unix_echo_pinned(total: int, listener: socket.socket) -> None:
    harness.CPUS.pin_peer()
    asyncio.run(_unix_echo(total, listener))


async def _unix_echo(total: int, listener: socket.socket) -> None:
    done = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(total):
                writer.write(await reader.readexactly(len(MESSAGE)))
                await writer.drain()
            writer.close()
            done.set_result(None)
        except BaseException as e:
            done.set_exception(e)
            raise

    server = await asyncio.start_unix_server(serve, sock=listener)
    async with server:
        await asyncio.wait_for(done, PATIENCE)
