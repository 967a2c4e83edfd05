"""The Python participants of the crash campaign (crates/shmbridge-peer/src/bin/crash).

``python crash_participant.py ROLE ARGS...``, with the protocol of the Rust roles
(``roles.rs``): lines on stdout, flushed; ``ready`` once set up; ``go``/``resume``
read from stdin; survivors end with ``summary key=value ...``; a participant that
gives up waiting prints ``hang WHY`` and exits with status 3.
"""

from __future__ import annotations

import struct
import sys
from typing import Any, NoReturn

import shmbridge
from shmbridge import shared_memory

WAIT = 20.0


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def hear() -> str:
    return sys.stdin.readline().strip()


def give_up(why: str) -> NoReturn:
    say(f"hang {why}")
    sys.exit(3)


def message(i: int) -> bytes:
    return i.to_bytes(8, "little") + bytes((i + j) % 256 for j in range(i % 57))


def sequence(m: bytes) -> int | None:
    i = int.from_bytes(m[:8], "little")
    return i if len(m) >= 8 and m == message(i) else None


def producer(name: str, total: str = "") -> None:
    limit = int(total) if total else None
    channel = shmbridge.Channel.create(name, 16 * 1024)
    channel.send(message(0), timeout=WAIT)  # claims the sending end
    say("ready")
    if hear() != "go":
        return
    say("sent 0")
    i = 1
    while limit is None or i < limit:
        try:
            channel.send(message(i), timeout=WAIT)
        except BrokenPipeError:
            say("peer-died")
            if hear() != "resume":
                give_up("no new receiver")
            continue
        except TimeoutError:
            give_up(f"send {i}")
        say(f"sent {i}")
        i += 1
    channel.close()
    say(f"summary sent={i}")


def consumer(name: str, mode: str = "") -> None:
    log = mode == "log"
    channel = shmbridge.Channel.open(name)
    got = gaps = dups = 0
    first: int | None = None
    expected: int | None = None
    ready = False
    while True:
        if not ready:
            # The first recv claims the receiving end; say ready once it is ours.
            try:
                view = channel.recv_view(timeout=0)
            except TimeoutError:
                say("ready")
                ready = True
                continue
            say("ready")
            ready = True
        else:
            try:
                view = channel.recv_view(timeout=WAIT)
            except BrokenPipeError:
                end = "died"
                break
            except EOFError:
                end = "closed"
                break
            except TimeoutError:
                give_up("recv")
        i = sequence(bytes(view))
        if i is None:
            give_up("a damaged message")
        if log:
            say(f"got {i}")
        # release() says we are done; the room goes back with the object itself.
        view.release()
        del view
        if log:
            say(f"rel {i}")
        if first is None:
            first = i
        if expected is not None and i < expected:
            dups += 1
        elif expected is not None and i > expected:
            gaps += i - expected
        expected = i + 1 if expected is None else max(expected, i + 1)
        got += 1
    say(f"summary got={got} gaps={gaps} dups={dups} first={'-' if first is None else first} end={end}")


def locker(name: str, how: str, iterations: str = "") -> None:
    limit = int(iterations) if iterations else None
    shm = shmbridge.SharedMemory(name, 4096, create=True) if how == "create" else shmbridge.SharedMemory(name)
    mutex = shmbridge.Mutex(shm, 0)
    say("ready")
    if hear() != "go":
        return
    ops = takeovers = torn = 0
    while limit is None or ops < limit:
        if not mutex.acquire(timeout=WAIT):
            give_up("the lock")
        a, b = struct.unpack_from("<QQ", shm, 64)
        if mutex.owner_died:
            takeovers += 1
            b = a
        elif a != b:
            torn += 1
        struct.pack_into("<Q", shm, 64, a + 1)
        struct.pack_into("<Q", shm, 72, b + 1)
        mutex.release()
        ops += 1
    say(f"summary ops={ops} takeovers={takeovers} torn={torn}")


def seqlock_writer(name: str) -> None:
    lock = shmbridge.SeqLock.create(name, 64)
    say("ready")
    if hear() != "go":
        return
    k = 1
    while True:
        lock.write(struct.pack("<8Q", *([k] * 8)))
        k += 1


def array_writer(name: str) -> None:
    array = shmbridge.create_array(name, (4096,), "<f8")
    native: Any = array.base  # the SharedArray behind the NumPy view
    while native is not None and not hasattr(native, "bump_generation"):
        native = getattr(native, "base", None)
    say("ready")
    if hear() != "go":
        return
    k = 1
    while True:
        array[:] = k
        if native is not None:
            native.bump_generation()
        k += 1


def creator(kind: str, name: str) -> None:
    keep: list[Any] = []
    if kind == "dropin":
        keep.append(shared_memory.SharedMemory(name.lstrip("/"), create=True, size=64 * 1024))
    elif kind == "raw":
        keep.append(shmbridge.SharedMemory(name, 64 * 1024, create=True))
    elif kind == "array":
        keep.append(shmbridge.create_array(name, (64, 64), "<u4"))
    elif kind == "channel":
        channel = shmbridge.Channel.create(name, 8192)
        channel.send(b"hello")
        keep.append(channel)
    elif kind == "event":
        keep.append(shmbridge.Event.create(name))
    elif kind == "semaphore":
        keep.append(shmbridge.Semaphore.create(name, 1))
    elif kind == "mutex":
        mutex = shmbridge.Mutex.create(name)
        mutex.acquire()
        keep.append(mutex)
    elif kind == "seqlock":
        keep.append(shmbridge.SeqLock.create(name, 32))
    else:
        raise SystemExit(f"unknown kind {kind}")
    say("ready")
    while hear():
        pass


ROLES = {
    "producer": producer,
    "consumer": consumer,
    "locker": locker,
    "swriter": seqlock_writer,
    "awriter": array_writer,
    "creator": creator,
}

if __name__ == "__main__":
    ROLES[sys.argv[1]](*sys.argv[2:])
