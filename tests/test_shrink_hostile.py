"""A peer shrinks a segment (``ftruncate``) under every operation that is not a
plain copy: the channel's header words and records, a SeqLock's record, an
array's generation counter, the words of an Event, a Semaphore and a Mutex.

Each case runs in a fresh interpreter with a deadline: the call must raise
OSError (errno EIO), or return normally for the calls that cannot fail (dropping
a message or an end, closing), and the process must exit by itself with status 0.
SIGBUS (which killed every case before the guarded scopes) or a hang fails the test.

Two shrinks: to 0 bytes (every page goes, the channel's header too) and to one
page (the channel's header and a SeqLock's header stay; what lies past the first
page goes). The Event, Semaphore and Mutex sit at byte 8192 of a three-page
segment, so that both shrinks take them.
"""

from __future__ import annotations

import pytest
from conftest import PREFIX
from test_lifetimes import run_classified

HEADER = f"""
import asyncio, gc, os, sys, threading, time
import shmbridge, shmbridge.aio
from shmbridge import Channel, Event, Mutex, SeqLock, Semaphore, SharedMemory
name = shmbridge.unique_name({PREFIX!r} + "_shrink")

def shrink():
    fd = os.open("/dev/shm" + name, os.O_RDWR)
    os.ftruncate(fd, SIZE)
    os.close(fd)

def raises_eio(call, what):
    try:
        call()
    except OSError as e:
        assert e.errno == 5, (what, e.errno, e)
        assert "shr" in str(e) or "vanished" in str(e), (what, str(e))
        print(what, "OSError EIO", flush=True)
        return
    raise AssertionError(what + ": no error")

BIG = b"b" * 8000        # a record reaching well past the ring's first page

# Returns once a thread of this process sleeps in a futex wait on a word of the
# segment (x86_64: syscall 202, whose first argument is the word's address, which
# must lie in the segment's mapping). Elsewhere it returns at once: the shrink may
# then come before the wait, which every case accepts as well.
def asleep_on_segment(deadline=10.0):
    if os.uname().machine != "x86_64":
        return
    # By inode: a created segment's mapping shows the unnamed file it was made as.
    inode = str(os.stat("/dev/shm" + name).st_ino)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) > 4 and fields[4] == inode:
                lo, hi = fields[0].split("-")
                ranges.append((int(lo, 16), int(hi, 16)))
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{{tid}}/syscall") as f:
                    fields = f.read().split()
            except OSError:
                continue
            if len(fields) > 1 and fields[0] == "202":
                word = int(fields[1], 16)
                if any(lo <= word < hi for lo, hi in ranges):
                    return
        os.sched_yield()
    raise AssertionError("no thread ever slept on a word of the segment")

# Returns once an await of this loop waits through shmbridge.aio's waiter.
async def registered(deadline=10.0):
    until = time.monotonic() + deadline
    while not shmbridge.aio._waiter()._futures:
        assert time.monotonic() < until, "the await never registered"
        await asyncio.sleep(0)           # lets the await's task run
"""

# Each case: (setup, then the hostile call(s)); `shrink()` is the peer's act.
CASES: dict[str, str] = {
    "channel_send": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(b"a")
shrink()
raises_eio(lambda: tx.send(BIG), "send")
raises_eio(lambda: tx.send(b"c"), "send again")
""",
    "channel_send_many": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(b"a")
shrink()
raises_eio(lambda: tx.send_many([BIG, BIG]), "send_many")
""",
    "channel_send_parts": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(b"a")
shrink()
raises_eio(lambda: tx.send_parts([b"head", BIG]), "send_parts")
""",
    "channel_recv": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(BIG)
shrink()
raises_eio(lambda: rx.recv(timeout=1), "recv")
""",
    "channel_recv_batch": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(BIG); tx.send(BIG)
shrink()
raises_eio(lambda: rx.recv_batch(5), "recv_batch")
""",
    "channel_recv_view_tobytes": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(BIG)
shrink()
def view_then_copy():
    m = rx.recv_view(timeout=1)   # the record's header may still be there
    m.tobytes()
raises_eio(view_then_copy, "recv_view + tobytes")
gc.collect()
""",
    "channel_message_drop": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(BIG)
m = rx.recv_view()
shrink()
raises_eio(m.tobytes, "tobytes")
del m                              # gives the room back: stores the tail
gc.collect()
print("dropped", flush=True)
""",
    "channel_message_release": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(BIG)
m = rx.recv_view()
shrink()
m.release()
del m
gc.collect()
print("released", flush=True)
""",
    "channel_loan_publish": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name)
tx.send(BIG)                       # the loan's record header lands past the first page
loan = tx.loan(8000)
shrink()
raises_eio(loan.publish, "publish")
del loan
gc.collect()
""",
    "channel_loan_discard": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name)
tx.send(BIG)
loan = tx.loan(8000)
shrink()
try:
    loan.discard()
except OSError as e:
    assert e.errno == 5, e
del loan
gc.collect()
print("discarded", flush=True)
""",
    "channel_close": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(b"a"); rx.recv()
shrink()
rx.close(); tx.close()             # store the ends' closed words
print("closed", flush=True)
""",
    "channel_drop_ends": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name); tx.send(b"a"); m = rx.recv_view()
shrink()
del m, rx, tx                      # the message, then both ends: release, close
gc.collect()
print("dropped", flush=True)
""",
    "channel_recv_blocked": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name)
out = []
def blocked():
    try:
        rx.recv()                  # no timeout: waiting when the pages go
        out.append("message")
    except OSError as e:
        out.append(e.errno)
t = threading.Thread(target=blocked); t.start()
asleep_on_segment()
shrink()
t.join(30)
assert not t.is_alive() and out == [5], out
print("recv OSError EIO", flush=True)
""",
    "channel_recv_async": """
tx = Channel.create(name, 1 << 16); rx = Channel.open(name)
async def main():
    task = asyncio.ensure_future(shmbridge.aio.recv(rx))
    await registered()
    shrink()
    try:
        await asyncio.wait_for(task, 30)
    except OSError as e:
        assert e.errno == 5, e
        print("aio recv OSError EIO", flush=True)
        return
    raise AssertionError("no error")
asyncio.run(main())
""",
    "seqlock_read": """
o = SeqLock.create(name, 16384)
shrink()
raises_eio(lambda: o.read(timeout=1), "read")
""",
    "seqlock_write": """
o = SeqLock.create(name, 16384)
shrink()
raises_eio(lambda: o.write(b"x" * 16384, timeout=1), "write")
""",
    "array_generation": """
import numpy as np
a = shmbridge.create_array(name, (4096,), np.float64).base
shrink()
raises_eio(lambda: a.generation, "generation")
raises_eio(a.bump_generation, "bump_generation")
""",
    "event_set": """
shm = SharedMemory.create(name, 3 * 4096); ev = Event(shm, 8192)
shrink()
raises_eio(ev.set, "set")
raises_eio(ev.clear, "clear")
raises_eio(ev.is_set, "is_set")
""",
    "event_wait": """
shm = SharedMemory.create(name, 3 * 4096); ev = Event(shm, 8192)
shrink()
raises_eio(lambda: ev.wait(1), "wait")
""",
    "event_wait_blocked": """
shm = SharedMemory.create(name, 3 * 4096); ev = Event(shm, 8192)
out = []
def blocked():
    try:
        out.append(ev.wait())      # no timeout: asleep when the page goes
    except OSError as e:
        out.append(e.errno)
t = threading.Thread(target=blocked); t.start()
asleep_on_segment()
shrink()
t.join(30)
assert not t.is_alive() and out == [5], out
print("wait OSError EIO", flush=True)
""",
    "event_wait_async": """
shm = SharedMemory.create(name, 3 * 4096); ev = Event(shm, 8192)
async def main():
    task = asyncio.ensure_future(shmbridge.aio.wait(ev))
    await registered()
    shrink()
    try:
        await asyncio.wait_for(task, 30)
    except OSError as e:
        assert e.errno == 5, e
        print("aio wait OSError EIO", flush=True)
        return
    raise AssertionError("no error")
asyncio.run(main())
""",
    "semaphore": """
shm = SharedMemory.create(name, 3 * 4096); sem = Semaphore(shm, 8192, 1)
shrink()
raises_eio(lambda: sem.acquire(timeout=1), "acquire")
raises_eio(lambda: sem.acquire(False), "try acquire")
raises_eio(sem.release, "release")
raises_eio(lambda: sem.value, "value")
""",
    "mutex_lock": """
shm = SharedMemory.create(name, 3 * 4096); mutex = Mutex(shm, 8192)
shrink()
raises_eio(lambda: mutex.acquire(timeout=1), "acquire")
raises_eio(mutex.locked, "locked")
""",
    "mutex_unlock": """
shm = SharedMemory.create(name, 3 * 4096); mutex = Mutex(shm, 8192)
assert mutex.acquire()
shrink()
raises_eio(mutex.release, "release")
""",
    "mutex_drop_held": """
shm = SharedMemory.create(name, 3 * 4096); mutex = Mutex(shm, 8192)
assert mutex.acquire()
shrink()
del mutex                          # collected while holding the lock: unlocks
gc.collect()
print("dropped", flush=True)
""",
}

# With one page left, the channel's header words are all there, and the ring's
# pages past the first are reached only through copies, which were guarded already
# (`test_channel_hostile.py` shrinks a ring to one page); an array's generation
# counter sits in its first page too. So the shrink to one page runs the cases whose
# words or records lie past the first page.
PAST_THE_FIRST_PAGE = sorted(c for c in CASES if not c.startswith(("channel_", "array_")))


def run(case: str, size: int) -> str:
    code = HEADER + f"SIZE = {size}\n" + CASES[case] + '\nprint("survived", flush=True)\n'
    out = run_classified(code, timeout=120)
    assert out.rstrip().endswith("survived"), out
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_shrinking_to_nothing_is_an_error_never_a_bus_error(case: str) -> None:
    run(case, 0)


@pytest.mark.parametrize("case", PAST_THE_FIRST_PAGE)
def test_shrinking_to_one_page_is_an_error_never_a_bus_error(case: str) -> None:
    run(case, 4096)
