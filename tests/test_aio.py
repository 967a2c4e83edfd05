"""The awaitable forms: they keep the event loop running, take nothing when
cancelled or timed out, and use no thread per await."""

from __future__ import annotations

import asyncio
import gc
import os
import threading

import numpy as np
import pytest
from conftest import DEADLINE, PREFIX, Peer, readline

import shmbridge
from shmbridge import Channel, Event, Mutex, Semaphore, aio


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
        await aio.send_array(tx, np.arange(6.0).reshape(2, 3))
        array = await aio.recv_array(rx, timeout=30)
        mutex = Mutex.create(name + "m")
        taken = await aio.acquire(mutex, timeout=30)
        mutex.release()
        async with aio.locked(mutex, timeout=30):
            assert mutex.locked()
        timed_out = await aio.wait(Event.create(name + "never"), timeout=0.01)
        return [waiter.result(), ticks >= 3, got, seen, array.tolist(), taken, timed_out, mutex.locked()]

    assert asyncio.run(main()) == [
        True, True, b"over asyncio", b"view", [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], True, False, False
    ]
    assert shmbridge.aio is aio


def test_cancelled_and_timed_out_receives_lose_nothing(name: str) -> None:
    """10,000 cancel/time-out cycles interleaved with 10,000 sends: every message
    received exactly once, in order; the thread count stays flat."""

    async def main() -> tuple[list[int], int, int]:
        tx, rx = Channel.create(name, 1 << 16), Channel.open(name)
        got: list[int] = []
        before = len(os.listdir("/proc/self/task"))
        for i in range(10_000):
            # An await that times out before the message is sent takes nothing (it
            # may take an earlier message left for it: still in order).
            try:
                got.append(int.from_bytes(await aio.recv(rx, timeout=0.0001), "little"))
            except TimeoutError:
                pass
            tx.send(i.to_bytes(4, "little"))
            # One cancelled outright, at once or after the loop ran it (woken).
            task = asyncio.ensure_future(aio.recv(rx))
            if i % 2:
                await asyncio.sleep(0)
            task.cancel()
            try:
                got.append(int.from_bytes(await task, "little"))  # it may have finished first
            except asyncio.CancelledError:
                pass
        while True:
            try:
                got.append(int.from_bytes(await aio.recv(rx, timeout=0.2), "little"))
            except TimeoutError:
                break
        return got, before, len(os.listdir("/proc/self/task"))

    got, before, after = asyncio.run(main())
    assert got == list(range(10_000)), "every message exactly once, in order"
    assert after <= before + 4, f"threads grew from {before} to {after}"


def test_ten_thousand_awaits_over_a_thousand_objects() -> None:
    async def main() -> tuple[int, int, int]:
        base = shmbridge.unique_name(PREFIX + "_aio_many")
        shm = shmbridge.SharedMemory(base, 1000 * 16, create=True)
        events = [Event(shm, 16 * i, auto_reset=False) for i in range(1000)]
        before = len(os.listdir("/proc/self/task"))
        tasks = [asyncio.create_task(aio.wait(events[i % 1000], timeout=DEADLINE)) for i in range(10_000)]
        await asyncio.sleep(0)
        during = len(os.listdir("/proc/self/task"))
        for e in events:
            e.set()
        results = await asyncio.gather(*tasks)
        shm.close()
        return sum(results), before, during

    done, before, during = asyncio.run(main())
    assert done == 10_000
    assert during <= before + 16, f"{before} threads before, {during} with 10,000 awaits pending"


def _asleep_in(pid: int | str, syscall: str) -> bool:
    """Whether a thread of `pid` sleeps in the system call numbered `syscall`
    (x86_64: futex 202, futex_waitv 449)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/syscall") as f:
                if f.read().split(" ", 1)[0] == syscall:
                    return True
        except OSError:
            pass
    return False


# How long a sleeper sleeps at most before it looks whether its segment lost pages
# (`LOST_CHECK` in crates/shmbridge/src/sync/wait.rs): a wake-up lost in between is
# found by then anyway, so only an answer sooner shows one passed on.
LOST_CHECK = 0.5


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="reads x86_64 syscall numbers from /proc")
@pytest.mark.parametrize("kind", ["event", "semaphore"])
def test_cancelled_waits_pass_on_what_they_were_woken_for(kind: str, peer: Peer, name: str) -> None:
    """An auto-reset set or a permit that woke an await, which is then cancelled
    before it could take it, goes to the next waiter: here a Rust process asleep in
    a 30 s wait. Passed on, it answers at once; lost, only when its next look for lost
    pages finds the set, half a second after it fell asleep.

    An attempt needs the await's waiter thread first in line; both sleepers re-queue
    every half second, so the order can turn, and then the Rust waiter is served
    directly. Such an attempt, or an answer late on a loaded machine, is tried again;
    the test fails if no attempt shows the wake-up passed on."""
    outcomes = []
    for attempt in range(6):
        outcomes.append(_cancel_a_woken_await(kind, peer, f"{name}_{attempt}"))
        if outcomes[-1] == "passed on":
            return
    pytest.fail(f"the wake-up was never passed on promptly: {outcomes}")


def _cancel_a_woken_await(kind: str, peer: Peer, name: str) -> str:
    """One attempt: "passed on", "served directly" or "late (<seconds>)"."""
    import select
    import time

    keep: list[Event] = []
    assert peer.proc.stdin is not None and peer.proc.stdout is not None
    stdout = peer.proc.stdout

    async def main() -> tuple[bool, float]:
        if kind == "event":
            obj: Event | Semaphore = Event.create(name + "_ping", auto_reset=True)
            keep.append(Event.create(name + "_pong", auto_reset=True))
            task = asyncio.create_task(aio.wait(obj))  # type: ignore[arg-type]
            command, give = f"pong {name} 1", obj.set  # type: ignore[union-attr]
        else:
            obj = Semaphore.create(name, 0)
            task = asyncio.create_task(aio.acquire(obj))
            command, give = f"take {name}", obj.release  # type: ignore[union-attr]
        keep.append(obj)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the await registers...
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not _asleep_in("self", "449"):  # ...and its waiter thread sleeps: first in line
            assert asyncio.get_running_loop().time() < deadline, "the waiter thread never slept"
            os.sched_yield()
        assert peer.proc.stdin is not None
        commanded = time.monotonic()
        peer.proc.stdin.write(command + "\n")
        peer.proc.stdin.flush()
        while not _asleep_in(peer.proc.pid, "202"):  # the Rust waiter is asleep
            assert asyncio.get_running_loop().time() < deadline, "the Rust waiter never slept"
            os.sched_yield()
        give()  # one wake-up: to the await's waiter thread if it is still first in line
        fd = aio._waiter()._native.fileno()
        ready = select.select([fd, stdout], [], [], DEADLINE)[0]
        assert ready, "neither the await nor the Rust waiter was told"
        told = fd in ready
        task.cancel()  # ...and the await gives up before the loop runs it
        with pytest.raises(asyncio.CancelledError):
            await task
        return told, commanded

    told, commanded = asyncio.run(main())
    reply = readline(stdout, "the Rust waiter", deadline=DEADLINE)
    answered_after = time.monotonic() - commanded
    assert reply.strip() == "ok", f"the wake-up was not passed on: {reply!r}"
    if not told:
        return "served directly"
    return "passed on" if answered_after < LOST_CHECK else f"late ({answered_after:.3f} s)"


def test_with_timeouts_task_groups_and_other_loops(name: str) -> None:
    async def main() -> list[object]:
        tx, rx = Channel.create(name, 256), Channel.open(name)
        results: list[object] = []
        async with asyncio.TaskGroup() as group:
            group.create_task(aio.send(tx, b"a" * 24))
            receiving = group.create_task(aio.recv(rx))
        results.append(receiving.result())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await aio.recv(rx)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(aio.recv(rx), 0.01)
        while True:  # fill the ring; then a send waits, and times out
            try:
                tx.send(b"b" * 24, timeout=0)
            except TimeoutError:
                break
        with pytest.raises(TimeoutError):
            await aio.send(tx, b"c" * 24, timeout=0.01)
        tx.close()
        drained = 0
        with pytest.raises(EOFError):
            while True:
                await aio.recv(rx, timeout=DEADLINE)
                drained += 1
        results.append(drained > 0)
        return results

    assert asyncio.run(main()) == [b"a" * 24, True]
    # A second loop (another thread) works alongside.
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(aio.wait(Event.create(name + "x"), timeout=0.01))))
    t.start()
    t.join(DEADLINE)
    assert out == [False]


def test_awaited_round_trip_with_a_rust_peer(peer: Peer, name: str) -> None:
    """A Rust process answers events; the awaiting loop stays responsive."""
    ping, pong = Event.create(name + "_ping", auto_reset=True), Event.create(name + "_pong", auto_reset=True)
    assert peer.proc.stdin is not None
    peer.proc.stdin.write(f"pong {name} 1000\n")
    peer.proc.stdin.flush()

    async def main() -> int:
        done = 0
        for _ in range(1000):
            ping.set()
            assert await aio.wait(pong, timeout=DEADLINE)
            done += 1
        return done

    assert asyncio.run(main()) == 1000
    assert peer.proc.stdout is not None
    assert peer.proc.stdout.readline().strip() == "ok"


def test_timeouts_are_checked_as_the_blocking_forms_check_them(name: str) -> None:
    """Also when the operation could go ahead at once (it does, without entering
    asyncio.timeout, which takes a negative or NaN timeout as zero)."""
    event = Event.create(name + "e")
    event.set()
    tx = Channel.create(name + "c", 4096)
    rx = Channel.open(name + "c")
    tx.send(b"waiting")
    for bad, error in [(-1, ValueError), (float("nan"), ValueError), ("1", TypeError), ([], TypeError)]:
        with pytest.raises(error):
            event.wait(bad)  # type: ignore[arg-type]
        with pytest.raises(error):
            asyncio.run(aio.wait(event, bad))  # type: ignore[arg-type]
        with pytest.raises(error):
            asyncio.run(aio.recv(rx, bad))  # type: ignore[arg-type]
        with pytest.raises(error):
            asyncio.run(aio.send(tx, b"x", bad))  # type: ignore[arg-type]
    assert asyncio.run(aio.recv(rx, np.float32(0.0))) == b"waiting"  # type: ignore[arg-type]
    assert asyncio.run(aio.wait(event, True))
    del event, tx, rx
    gc.collect()  # the refused calls' tracebacks hold the objects in cycles


def test_what_can_go_ahead_at_once_does_without_suspending(name: str) -> None:
    """As asyncio.Queue.get: no other task runs in between (the README says so, and
    that a task looping on a never-empty channel must yield by itself)."""
    event = Event.create(name + "e")
    event.set()
    tx = Channel.create(name + "c", 4096)
    rx = Channel.open(name + "c")

    async def main() -> list[str]:
        ran: list[str] = []
        other = asyncio.create_task(asyncio.sleep(0, "other"))
        other.add_done_callback(lambda t: ran.append(t.result()))
        assert await aio.wait(event, DEADLINE)
        await aio.send(tx, b"one", DEADLINE)
        assert await aio.recv(rx, DEADLINE) == b"one"
        ran.append("ready operations")
        await other
        return ran

    assert asyncio.run(main()) == ["ready operations", "other"]
    del event, tx, rx
    gc.collect()
