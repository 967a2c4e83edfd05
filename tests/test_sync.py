"""Event, Semaphore, Mutex and SeqLock from Python: threading conventions, errors,
the GIL released while waiting, Ctrl-C, and a Rust process on the other side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import threading

import pytest
from conftest import DEADLINE, Peer, readline
from test_lifetimes import run_classified

import shmbridge
from shmbridge import Event, Mutex, Semaphore, SeqLock, SharedMemory


def test_event_in_segment_and_named(name: str) -> None:
    with SharedMemory(name, 4096, create=True) as shm:
        event = Event(shm, 64)
        assert not event.is_set() and not event.auto_reset
        assert not event.wait(0.01)
        event.set()
        assert event.wait() and event.wait(0) and event.is_set()
        same = Event(shm, 64)
        same.clear()
        assert not event.is_set()
        auto = Event(shm, 128, auto_reset=True)
        auto.set()
        assert auto.wait(1) and not auto.is_set()
        with pytest.raises(ValueError, match="is auto-reset, not manual-reset"):
            Event(shm, 128, auto_reset=False)
        with pytest.raises(ValueError, match="not aligned"):
            Event(shm, 3)
        with pytest.raises(ValueError, match="outside segment"):
            Event(shm, 4096)
        with pytest.raises(ValueError, match="holds an Event, not a Semaphore"):
            Semaphore(shm, 64)
        with pytest.raises(ValueError, match="non-negative"):
            event.wait(-1)
    named = Event.create(name + "e", auto_reset=True)
    assert Event.open(name + "e").auto_reset
    named.set()
    assert Event.open(name + "e").wait(1)
    with pytest.raises(FileNotFoundError):
        Event.open(name + "missing")


def test_waiting_releases_the_gil(name: str) -> None:
    event = Event.create(name)
    results = []
    waiter = threading.Thread(target=lambda: results.append(event.wait(DEADLINE)))
    waiter.start()
    sum(range(100_000))  # Python work in this thread while the other waits
    event.set()
    waiter.join(DEADLINE)
    assert results == [True]


def test_semaphore(name: str) -> None:
    sem = Semaphore.create(name, 2)
    assert sem.value == 2
    assert sem.acquire() and sem.acquire(blocking=False) is True
    assert sem.acquire(blocking=False) is False
    assert not sem.acquire(timeout=0.01)
    sem.release(3)
    assert Semaphore.open(name).value == 3
    with sem:
        assert sem.value == 2
    assert sem.value == 3
    with pytest.raises(ValueError, match="non-blocking"):
        sem.acquire(False, 1.0)
    with pytest.raises(ValueError, match="one or more"):
        sem.release(0)
    with pytest.raises(ValueError, match="overflow"):
        sem.release(2**32 - 1)
    with pytest.raises(OverflowError):
        sem.release(-1)


def test_mutex(name: str) -> None:
    with SharedMemory(name, 4096, create=True) as shm:
        a, b = Mutex(shm, 0), Mutex(shm, 0)
        assert a.acquire() and a.locked() and not a.owner_died
        assert not b.acquire(timeout=0.01) and not b.acquire(blocking=False)
        with pytest.raises(RuntimeError, match="already holds"):
            a.acquire()
        with pytest.raises(RuntimeError, match="release unlocked"):
            b.release()
        a.release()
        with b:
            assert a.locked()
        assert not a.locked()
        c = Mutex(shm, 16)
        assert c.acquire()
        del c  # collected while holding: released
        assert Mutex(shm, 16).acquire(blocking=False)


def test_seqlock(name: str) -> None:
    lock = SeqLock.create(name, 12)
    assert lock.size == 12 and lock.sequence == 0
    assert lock.write(b"hello world!") == 2
    assert SeqLock.open(name).read() == b"hello world!"
    lock.write(bytearray(b"x" * 12))
    assert lock.read() == b"x" * 12
    with pytest.raises(ValueError, match="outside"):
        lock.write(b"short")
    with SharedMemory(name + "s", 4096, create=True) as shm:
        with pytest.raises(ValueError, match="record size"):
            SeqLock(shm, 0)
        assert SeqLock(shm, 0, 100).size == 100
        assert SeqLock(shm, 0).size == 100


def test_event_ping_pong_with_rust(peer: Peer, name: str) -> None:
    ping = Event.create(name + "_ping", auto_reset=True)
    pong = Event.create(name + "_pong", auto_reset=True)
    assert peer.proc.stdin
    peer.proc.stdin.write(f"pong {name} 1000\n")
    peer.proc.stdin.flush()
    for round in range(1000):
        ping.set()
        assert pong.wait(DEADLINE), f"no pong in round {round}"
    assert peer.proc.stdout
    assert readline(peer.proc.stdout, "the Rust peer").strip() == "ok"


def test_mutex_of_a_killed_rust_owner_is_recovered(name: str) -> None:
    mutex = Mutex.create(name)
    holder = Peer()
    holder(f"hold {name}")
    assert mutex.locked() and not mutex.acquire(timeout=0.05), "a live owner keeps it"
    holder.proc.kill()
    holder.proc.wait(DEADLINE)
    assert mutex.acquire(timeout=DEADLINE)
    assert mutex.owner_died, "the takeover is reported"
    mutex.release()
    assert mutex.acquire(timeout=DEADLINE) and not mutex.owner_died
    mutex.release()


def wait_until_asleep_in_futex(pid: int) -> None:
    """Waits (with a deadline) until some thread of `pid` sleeps in futex(2), so a
    signal sent now interrupts the wait itself, not the code before it (Linux)."""
    futex = "202" if os.uname().machine == "x86_64" else "98"
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/syscall") as f:
                    if f.read().split(" ", 1)[0] == futex:
                        return
            except OSError:
                pass
        os.sched_yield()  # polling /proc: no signal tells when a thread enters futex()
    raise TimeoutError(f"process {pid} never slept in futex()")


@pytest.mark.parametrize(
    "setup, wait",
    [
        ("event = shmbridge.Event.create(n)", "event.wait()"),
        ("sem = shmbridge.Semaphore.create(n)", "sem.acquire()"),
        ("m = shmbridge.Mutex.create(n); m.acquire(); other = shmbridge.Mutex.open(n)", "other.acquire()"),
        ("tx = shmbridge.Channel.create(n, 4096); rx = shmbridge.Channel.open(n); tx.send(b'x'); rx.recv()", "rx.recv()"),
        (  # a sender waiting for room in a full ring
            "tx = shmbridge.Channel.create(n, 64); rx = shmbridge.Channel.open(n)\n"
            "tx.send(b'y' * 24); rx.recv(); tx.send(b'y' * 24); tx.send(b'y' * 24)",
            "tx.send(b'y' * 24)",
        ),
    ],
)
def test_ctrl_c_interrupts_a_blocked_wait(setup: str, wait: str) -> None:
    code = (
        "import shmbridge\n"
        f"n = shmbridge.unique_name('pytest_{os.getpid()}_sigint')\n"
        f"{setup}\n"
        "try:\n"
        "    print('waiting', flush=True)\n"
        f"    {wait}\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout
        assert readline(child.stdout, "the waiter").strip() == "waiting"
        wait_until_asleep_in_futex(child.pid)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=DEADLINE)
        assert out.strip() == "interrupted" and child.returncode == 0
    finally:
        if child.poll() is None:
            child.kill()


def test_seqlock_stuck_mid_write_times_out_and_never_holds_the_gil() -> None:
    # Issue: with an odd sequence (a writer stopped mid-write, or a corrupted word)
    # read() spun forever, with no timeout, deaf to Ctrl-C; write() spun holding the GIL.
    from test_lifetimes import run_classified

    out = run_classified(
        f"""
import os, signal, sys, threading, time
import shmbridge
from shmbridge import SeqLock, SharedMemory
name = shmbridge.unique_name("pytest_{os.getpid()}_seq")
lock = SeqLock.create(name, 8)
lock.write(b"12345678")
raw = SharedMemory(name)
raw.write_at((3).to_bytes(4, sys.byteorder), 0)            # sequence: odd, mid-write
raw.write_at(os.getpid().to_bytes(4, sys.byteorder), 4)    # by a live writer (us)
for call in (lambda: lock.read(timeout=0.2), lambda: lock.write(b"abcdefgh", timeout=0.2)):
    ticks = []
    ticker = threading.Thread(target=lambda: [ticks.append(1) for _ in range(10)] and sum(range(10**6)))
    ticker.start()
    start = time.monotonic()
    try:
        call()
        raise AssertionError("no timeout")
    except TimeoutError:
        pass
    elapsed = time.monotonic() - start
    ticker.join()
    assert 0.2 <= elapsed < 5, elapsed
    assert len(ticks) == 10, "another thread ran while we waited"
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    lock.read()                                              # no timeout: Ctrl-C ends it
    raise AssertionError("read returned")
except KeyboardInterrupt:
    pass
raw.write_at((4).to_bytes(4, sys.byteorder), 0)             # the write "finishes"
assert lock.read() == b"12345678"
print("ok")
"""
    )
    assert out.strip().endswith("ok")


def test_every_waiter_keeps_its_own_deadline_behind_other_threads(name: str) -> None:
    """Eight threads wait on one object that never becomes available, each with its
    own timeout: each returns False by its deadline (plus a margin for a loaded
    machine). A Mutex held by one thread makes the others wait, as threading.Lock."""
    event = Event.create(name + "e")
    sem = Semaphore.create(name + "s", 0)
    mutex = Mutex.create(name + "m")
    seq = SeqLock.create(name + "q", 8)
    raw = SharedMemory(name + "q")
    raw.write_at((1).to_bytes(4, sys.byteorder), 0)  # mid-write...
    raw.write_at(os.getpid().to_bytes(4, sys.byteorder), 4)  # ...by a live writer

    def seq_read(timeout: float) -> bool:
        try:
            seq.read(timeout=timeout)
            return True
        except TimeoutError:
            return False

    assert mutex.acquire()
    for what, wait in [
        ("event", lambda t: event.wait(t)),
        ("semaphore", lambda t: sem.acquire(timeout=t)),
        ("mutex", lambda t: mutex.acquire(timeout=t)),
        ("seqlock", seq_read),
    ]:
        late: list[float] = []
        got: list[bool] = []

        def one(timeout: float, wait=wait) -> None:  # type: ignore[no-untyped-def]
            start = time.monotonic()
            got.append(wait(timeout))
            late.append(time.monotonic() - start - timeout)

        threads = [threading.Thread(target=one, args=(0.03 + 0.03 * i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE)
        assert got == [False] * 8, what
        assert max(late) < 2.0, (what, late)
    with pytest.raises(RuntimeError, match="already holds"):
        mutex.acquire(timeout=0.01)  # the holding thread itself
    raw.write_at((2).to_bytes(4, sys.byteorder), 0)
    mutex.release()


def test_an_auto_reset_event_takes_any_set_value_a_peer_wrote() -> None:
    # Issue: a state word holding 2 (written by a peer, or left in memory that was not
    # zero) made wait(timeout) spin for ever, since only 1 was taken.
    run_classified(
        """
import shmbridge, time
shm = shmbridge.SharedMemory(shmbridge.unique_name("t_ev2"), 64, create=True)
ev = shmbridge.Event(shm, 0, auto_reset=True)
shm.write_at((2).to_bytes(4, "little"), 0)
assert ev.wait(timeout=5) is True
assert ev.wait(timeout=0.05) is False, "taken twice"
print("survived")
""",
        60,
    )
