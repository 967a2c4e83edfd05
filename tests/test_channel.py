"""The channel from Python: conventions, zero-copy views, arrays, closing, and
streams to and from a Rust process, with a killed producer."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from conftest import DEADLINE, Peer, readline

import shmbridge
from shmbridge import Channel, recv_array, send_array

STREAM = 10_000_000


PATTERN = bytes(range(256)) * 2


def stream_message(i: int) -> bytes:
    """The peer's stream message i: i as 8 bytes, then i % 57 bytes of (i + j) % 256."""
    start = i % 256
    return i.to_bytes(8, "little") + PATTERN[start : start + i % 57]


def test_send_recv_and_errors(name: str) -> None:
    tx = Channel.create(name, 4096)
    rx = Channel.open(name)
    assert (tx.capacity, tx.max_message, rx.name) == (4096, 2040, name)
    tx.send(b"one")
    tx.send(bytearray(b"two"))
    tx.send(memoryview(b"three"))
    assert [rx.recv(), rx.recv(), rx.recv(timeout=1)] == [b"one", b"two", b"three"]
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.01)
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0)
    with pytest.raises(ValueError, match="larger than this channel's limit"):
        tx.send(bytes(2041))
    with pytest.raises(ValueError, match="non-negative"):
        rx.recv(timeout=-1)
    with pytest.raises(ValueError, match="one sender at a time"):
        Channel.open(name).send(b"second sender")
    while True:
        try:
            tx.send(b"x" * 100, timeout=0)
        except TimeoutError:
            break
    assert len(rx.recv_batch(1000)) == 4096 // 112
    tx.close()
    with pytest.raises(EOFError):
        rx.recv()
    with pytest.raises(ValueError, match="not a shmbridge channel"):
        with shmbridge.SharedMemory(name + "raw", 4096, create=True):
            Channel.open(name + "raw")


def test_iteration_ends_at_close(name: str) -> None:
    with Channel.create(name, 4096) as tx:
        rx = Channel.open(name)
        for i in range(5):
            tx.send(bytes([i]))
    assert list(rx) == [bytes([i]) for i in range(5)]


def test_zero_copy_views(name: str) -> None:
    tx, rx = Channel.create(name, 4096), Channel.open(name)
    tx.send(b"abc")
    tx.send(b"def")
    tx.send(b"xyz")
    with rx.recv_view() as msg:
        mv = memoryview(msg)
        assert bytes(mv) == b"abc" and mv.readonly and len(msg) == 3 and msg.tobytes() == b"abc"
        assert rx.recv() == b"def", "receiving goes on while a message is held"
        with pytest.raises(BufferError, match="still open"):
            msg.release()
        mv.release()
    with pytest.raises(ValueError, match="released"):
        msg.tobytes()
    del msg  # released, and now unreachable: its room is free
    view = np.frombuffer(rx.recv_view(), dtype=np.uint8)  # the Message lives in view.base
    assert view.tobytes() == b"xyz"
    sent = 0
    while True:  # fill all the ring the held message leaves free
        try:
            tx.send(sent.to_bytes(8, "little") * 8, timeout=0)
        except TimeoutError:
            break
        sent += 1
        assert rx.recv() == (sent - 1).to_bytes(8, "little") * 8
    assert sent >= 40, sent
    assert view.tobytes() == b"xyz", "a held message's room is never reused"
    del view
    gc.collect()
    tx.send(b"room again", timeout=DEADLINE)  # the message's room came back with the array
    assert rx.recv() == b"room again"


def test_numpy_frames(name: str) -> None:
    tx, rx = Channel.create(name, 1 << 20), Channel.open(name)
    for array in [np.arange(12.0).reshape(3, 4), np.asfortranarray(np.ones((2, 5), np.int32)),
                  np.array(7, np.uint16), np.zeros((3, 0)), np.array([1 + 2j], np.complex64)]:
        send_array(tx, array)
        got = recv_array(rx)
        assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)
        assert got.flags.writeable
    send_array(tx, np.arange(4, dtype=np.int64))
    view = recv_array(rx, copy=False)
    assert view.tolist() == [0, 1, 2, 3] and not view.flags.writeable
    del view
    tx.send(b"not a frame")
    with pytest.raises(ValueError, match="not an array frame"):
        recv_array(rx)
    with pytest.raises(ValueError, match="larger"):
        send_array(tx, np.zeros(1 << 20))


def test_rust_to_python_stream(peer: Peer, name: str) -> None:
    rx = Channel.create(name, 1 << 20)
    peer.proc.stdin.write(f"cproduce {name} {STREAM}\n")  # type: ignore[union-attr]
    peer.proc.stdin.flush()  # type: ignore[union-attr]
    received, total = 0, 0
    while received < STREAM:
        batch = rx.recv_batch(4096, timeout=DEADLINE)
        for msg in batch:
            i = int.from_bytes(msg[:8], "little")
            assert i == received and len(msg) == 8 + i % 57, f"message {received} lost, duplicated or reordered"
            received += 1
        total += int(np.frombuffer(b"".join(batch), dtype=np.uint8).sum(dtype=np.uint64))
    with pytest.raises(EOFError):
        rx.recv(timeout=DEADLINE)
    reply = readline(peer.proc.stdout, "the Rust peer").split()  # type: ignore[arg-type]
    assert reply == ["ok", str(total % 2**64)], "checksum of every byte sent"


def test_python_to_rust_stream(peer: Peer, name: str) -> None:
    tx = Channel.create(name, 1 << 20)
    peer.proc.stdin.write(f"cconsume {name} {STREAM}\n")  # type: ignore[union-attr]
    peer.proc.stdin.flush()  # type: ignore[union-attr]
    total = 0
    for start in range(0, STREAM, 4096):
        batch = [stream_message(i) for i in range(start, min(start + 4096, STREAM))]
        for msg in batch:
            tx.send(msg)
        total += int(np.frombuffer(b"".join(batch), dtype=np.uint8).sum(dtype=np.uint64))
    tx.close()
    reply = readline(peer.proc.stdout, "the Rust peer").split()  # type: ignore[arg-type]
    assert reply == ["ok", str(total % 2**64)]


def test_killed_rust_producer(name: str) -> None:
    rx = Channel.create(name, 1 << 16)
    producer = Peer()
    producer.proc.stdin.write(f"cproduce_forever {name}\n")  # type: ignore[union-attr]
    producer.proc.stdin.flush()  # type: ignore[union-attr]
    received = 0
    while received < 10_000:
        assert rx.recv(timeout=DEADLINE)[:8] == received.to_bytes(8, "little")
        received += 1
    producer.proc.kill()
    producer.proc.wait(DEADLINE)
    with pytest.raises(BrokenPipeError, match="died"):
        while True:
            msg = rx.recv(timeout=DEADLINE)
            assert msg[:8] == received.to_bytes(8, "little"), "published messages arrive in order"
            received += 1


def test_loans_write_in_place(name: str) -> None:
    tx, rx = Channel.create(name, 4096), Channel.open(name)
    with tx.loan(5) as loan:
        assert len(loan) == 5
        memoryview(loan)[:] = b"hello"
    assert rx.recv() == b"hello"
    with pytest.raises(KeyError):
        with tx.loan(3) as loan:
            memoryview(loan)[:] = b"bad"
            raise KeyError("a failed write")
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0)  # the failed loan was discarded, nothing sent
    loan = tx.loan(4)
    with pytest.raises(BufferError, match="open Loan"):
        tx.send(b"x")  # from this thread it would wait for itself
    with pytest.raises(BufferError, match="open Loan"):
        tx.loan(1)
    view = np.frombuffer(loan, dtype=np.uint8)
    view[:] = [1, 2, 3, 4]
    with pytest.raises(BufferError, match="still open"):
        loan.publish()
    del view
    loan.publish()
    with pytest.raises(ValueError, match="already published"):
        loan.publish()
    assert rx.recv() == bytes([1, 2, 3, 4])
    forgotten = tx.loan(8)
    del forgotten
    gc.collect()
    tx.send(b"after")  # the collected loan was discarded
    assert rx.recv() == b"after"
    with pytest.raises(ValueError, match="larger"):
        tx.loan(3000)
    while True:
        try:
            tx.send(b"y" * 200, timeout=0)
        except TimeoutError:
            break
    with pytest.raises(TimeoutError):
        tx.loan(200, timeout=0.01)


def test_two_threads_receiving_on_one_channel_do_not_deadlock() -> None:
    from conftest import run_isolated

    result = run_isolated(
        """
import threading, shmbridge
ch = shmbridge.Channel.create(shmbridge.unique_name("pytest_two_readers"), 4096)
outcomes = []
def reader():
    try:
        ch.recv(timeout=0.3)
    except TimeoutError:
        outcomes.append("timeout")
threads = [threading.Thread(target=reader) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
tx = shmbridge.Channel.open(ch.name)
tx.send(b"x")
with ch.recv_view(timeout=5) as m:   # releasing takes the receiver lock too
    pass
print(sorted(outcomes))
""",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['timeout', 'timeout']"
