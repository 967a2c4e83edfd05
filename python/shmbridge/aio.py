"""Awaitable forms of shmbridge's blocking calls, for asyncio code.

Each runs the blocking call in a worker thread (``asyncio.to_thread``); the calls
release the GIL while they wait, so the event loop keeps running:

>>> import asyncio, shmbridge
>>> from shmbridge import aio
>>> async def main():
...     event = shmbridge.Event.create(shmbridge.unique_name("doc_aio"))
...     waiter = asyncio.create_task(aio.wait(event, timeout=5))
...     event.set()
...     return await waiter
>>> asyncio.run(main())
True

Cancelling the awaiting task stops waiting for the result; the thread finishes its
wait (at most ``timeout``) in the background, so give long waits a timeout.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shmbridge._native import Channel, Event, Message, Mutex, Semaphore


async def wait(event: Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``, awaitable."""
    return await asyncio.to_thread(event.wait, timeout)


async def acquire(lock: Mutex | Semaphore, timeout: float | None = None) -> bool:
    """``lock.acquire(timeout=timeout)``, awaitable (release with ``lock.release()``)."""
    return await asyncio.to_thread(lock.acquire, True, timeout)


async def recv(channel: Channel, timeout: float | None = None) -> bytes:
    """``channel.recv(timeout)``, awaitable."""
    return await asyncio.to_thread(channel.recv, timeout)


async def recv_view(channel: Channel, timeout: float | None = None) -> Message:
    """``channel.recv_view(timeout)``, awaitable."""
    return await asyncio.to_thread(channel.recv_view, timeout)


async def send(channel: Channel, data: bytes, timeout: float | None = None) -> None:
    """``channel.send(data, timeout)``, awaitable (waits while the ring is full)."""
    await asyncio.to_thread(channel.send, data, timeout)
