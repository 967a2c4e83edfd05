"""The awaitable forms keep the event loop running while they wait."""

from __future__ import annotations

import asyncio

import shmbridge
from shmbridge import Channel, Event, Mutex, aio


def test_awaitables(name: str) -> None:
    async def main() -> list[object]:
        event = Event.create(name + "e")
        waiter = asyncio.create_task(aio.wait(event, timeout=30))
        ticks = 0
        while not waiter.done():  # the loop runs while the wait is in progress
            ticks += 1
            if ticks == 3:
                event.set()
            await asyncio.sleep(0)  # yields to the loop; not a wait for another process
        tx, rx = Channel.create(name + "c", 4096), Channel.open(name + "c")
        await aio.send(tx, b"over asyncio")
        got = await aio.recv(rx, timeout=30)
        await aio.send(tx, b"view")
        view = await aio.recv_view(rx, timeout=30)
        with view:
            seen = bytes(memoryview(view))
        mutex = Mutex.create(name + "m")
        taken = await aio.acquire(mutex, timeout=30)
        mutex.release()
        timed_out = await aio.wait(Event.create(name + "never"), timeout=0.01)
        return [waiter.result(), ticks >= 3, got, seen, taken, timed_out]

    assert asyncio.run(main()) == [True, True, b"over asyncio", b"view", True, False]
    assert shmbridge.aio is aio
