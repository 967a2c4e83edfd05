"""Awaitable forms of shmbridge's blocking calls, for asyncio code.

They wait for *readiness*, never in a thread of their own: a few waiter threads
per process (shared by every await, whatever their number) watch the words in
shared memory, and a file descriptor tells the event loop when one may have
changed. The operation itself (taking the message, the permit, the lock) is done
by the coroutine, on the loop's thread, so cancelling or timing out an await can
never consume, lose or duplicate anything:

>>> import asyncio, shmbridge
>>> from shmbridge import aio
>>> async def main():
...     event = shmbridge.Event.create(shmbridge.unique_name("doc_aio"))
...     waiter = asyncio.create_task(aio.wait(event, timeout=5))
...     await asyncio.sleep(0)
...     event.set()
...     return await waiter
>>> asyncio.run(main())
True

Every function takes ``timeout`` (seconds, ``None`` for no limit) and works with
``asyncio.timeout``, ``asyncio.wait_for``, ``TaskGroup`` and cancellation. On a
time-out ``wait`` and ``acquire`` return False, as their blocking forms do; the
channel functions raise TimeoutError.

An operation that can go ahead at once (a set event, a message waiting) does so
without suspending, as ``asyncio.Queue.get`` and a stream's buffered ``read`` do:
it costs about what the blocking call costs. A loop that receives from a channel
that is never empty therefore does not let other tasks run by itself; add
``await asyncio.sleep(0)`` where that matters. Only an operation that must wait
enters ``asyncio.timeout`` and registers with the waiter threads.

Cancel-safety, per function: ``wait``, ``acquire``, ``locked``: nothing is taken
unless the call returns (an auto-reset set or a permit it was woken for goes on
to the next waiter). ``recv``, ``recv_view``, ``recv_array``: a message is taken
only when the call returns it. ``send``, ``send_array``: the message is copied
and published in one step when the call returns; cancelled, nothing was sent.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from shmbridge._native import Channel, Event, Message, Mutex, Semaphore

__all__ = ["acquire", "locked", "recv", "recv_array", "recv_view", "send", "send_array", "wait"]


class _LoopWaiter:
    """Readiness of shmbridge objects for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from shmbridge._native import _AsyncWaiter

        self._loop = loop
        self._native = _AsyncWaiter()
        self._futures: dict[int, asyncio.Future[None]] = {}
        loop.add_reader(self._native.fileno(), self._on_ready)

    def _on_ready(self) -> None:
        for token in self._native.drain():
            future = self._futures.pop(token, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def ready(self, obj: Any, op: str, size: int = 0) -> None:
        """Returns once `op` on `obj` may be able to go ahead (try it then)."""
        token = self._native.watch(obj, op, size)
        if token is None:
            return
        future = self._loop.create_future()
        self._futures[token] = future
        try:
            await future
        except BaseException:
            self._futures.pop(token, None)
            self._native.unwatch(token, True)  # a wake-up received goes on to another waiter
            raise
        self._native.unwatch(token, False)


_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaiter] = weakref.WeakKeyDictionary()


def _waiter() -> _LoopWaiter:
    loop = asyncio.get_running_loop()
    waiter = _waiters.get(loop)
    if waiter is None:
        waiter = _waiters[loop] = _LoopWaiter(loop)
    return waiter


def _seconds(timeout: Any) -> float | None:
    """The timeout as the blocking forms take it: ``None``, or anything that
    converts to a float (an int, a NumPy number, a ``Decimal``...), not negative,
    not NaN; TypeError and ValueError otherwise. Checked before the fast path, which
    never reaches ``asyncio.timeout`` (that would take a negative or NaN timeout as
    zero, and a ``Decimal`` not at all)."""
    if timeout is None:
        return None
    if type(timeout) is float or type(timeout) is int:
        seconds = float(timeout)
    elif isinstance(timeout, (str, bytes, bytearray)) or not (
        hasattr(type(timeout), "__float__") or hasattr(type(timeout), "__index__")
    ):
        raise TypeError(f"timeout must be a real number or None, not {type(timeout).__name__}")
    else:
        seconds = float(timeout)
    if not seconds >= 0:
        raise ValueError(f"timeout must be a non-negative number, not {timeout}")
    return seconds


async def wait(event: Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)``, awaitable: whether the event was set (for an
    auto-reset event, the set is taken)."""
    timeout = _seconds(timeout)
    if event.wait(0):
        return True
    try:
        async with asyncio.timeout(timeout):
            while not event.wait(0):
                await _waiter().ready(event, "wait")
            return True
    except TimeoutError:
        return False


async def acquire(lock: Mutex | Semaphore, timeout: float | None = None) -> bool:
    """``lock.acquire(timeout=timeout)``, awaitable: whether it was taken (release
    with ``lock.release()``)."""
    timeout = _seconds(timeout)
    if lock.acquire(False):
        return True
    try:
        async with asyncio.timeout(timeout):
            while not lock.acquire(False):
                await _waiter().ready(lock, "acquire")
            return True
    except TimeoutError:
        return False


@asynccontextmanager
async def locked(lock: Mutex | Semaphore, timeout: float | None = None) -> AsyncIterator[Mutex | Semaphore]:
    """``async with aio.locked(lock):`` holds the lock (or a permit) for the block;
    TimeoutError if it does not come within ``timeout``."""
    if not await acquire(lock, timeout):
        raise TimeoutError(f"{lock!r} was not acquired within {timeout} s")
    try:
        yield lock
    finally:
        lock.release()


async def _channel_op(channel: Channel, op: str, size: int, attempt: Any, timeout: float | None) -> Any:
    timeout = _seconds(timeout)
    try:
        return attempt()
    except TimeoutError:
        pass
    async with asyncio.timeout(timeout):
        while True:
            try:
                return attempt()
            except TimeoutError:
                pass
            await _waiter().ready(channel, op, size)


async def recv(channel: Channel, timeout: float | None = None) -> bytes:
    """``channel.recv(timeout)``, awaitable (EOFError once the sender closed and
    everything was received; TimeoutError)."""
    return await _channel_op(channel, "recv", 0, lambda: channel.recv(0), timeout)  # type: ignore[no-any-return]


async def recv_view(channel: Channel, timeout: float | None = None) -> Message:
    """``channel.recv_view(timeout)``, awaitable: a zero-copy ``Message``."""
    return await _channel_op(channel, "recv", 0, lambda: channel.recv_view(0), timeout)  # type: ignore[no-any-return]


async def recv_array(channel: Channel, timeout: float | None = None, *, copy: bool = True) -> np.ndarray:
    """``shmbridge.recv_array(channel, timeout, copy=copy)``, awaitable."""
    from shmbridge._frames import recv_array as recv_array_now

    return await _channel_op(channel, "recv", 0, lambda: recv_array_now(channel, 0, copy=copy), timeout)  # type: ignore[no-any-return]


async def send(channel: Channel, data: Any, timeout: float | None = None) -> None:
    """``channel.send(data, timeout)``, awaitable: waits while the ring is full."""
    size = memoryview(data).nbytes
    await _channel_op(channel, "send", size, lambda: channel.send(data, 0), timeout)


async def send_array(channel: Channel, array: Any, timeout: float | None = None) -> None:
    """``shmbridge.send_array(channel, array, timeout)``, awaitable."""
    from shmbridge._frames import frame_size
    from shmbridge._frames import send_array as send_array_now

    size = frame_size(array)
    await _channel_op(channel, "send", size, lambda: send_array_now(channel, array, 0), timeout)
