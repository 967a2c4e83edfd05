"""Round-trip latency and channel throughput, shmbridge beside its peers, in one run.

Run with `./dev bench` (which installs posix_ipc and iceoryx2 from
bench/requirements.txt), or `.venv/bin/python bench/latency.py` after
`cargo build --release -p shmbridge-bench`.

Round trips (median and p99 of ROUNDS): an event or a small message sent from this
Python process and answered by another process:
- shmbridge Event, Rust peer, adaptive spin / blocking only;
- shmbridge Channel (16-byte messages), Rust peer;
- Rust <-> Rust shmbridge Event (the futex reference), adaptive / blocking only;
- multiprocessing.Pipe, os.pipe, posix_ipc semaphores, iceoryx2 events
  (blocking and polling): Python <-> Python.
Then: the CPU an idle waiter uses, and channel throughput Rust -> Python for
64-byte messages (batched receive) and 1 MiB frames (zero-copy receive) beside a
1 MiB memcpy.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import shmbridge
from shmbridge import Channel, Event

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "target" / "release" / "sync_peer"
ROUNDS = 20_000
WARMUP = 1_000


def summarize(times_ns: list[int]) -> tuple[float, float]:
    times = sorted(times_ns[WARMUP:])
    return statistics.median(times) / 1000, times[int(len(times) * 0.99)] / 1000


def measure(round_trip: Callable[[], object]) -> tuple[float, float]:
    times = []
    for _ in range(ROUNDS + WARMUP):
        start = time.perf_counter_ns()
        round_trip()
        times.append(time.perf_counter_ns() - start)
    return summarize(times)


results: list[tuple[str, float, float]] = []


def report(what: str, median: float, p99: float) -> None:
    results.append((what, median, p99))
    print(f"{what:<58} median {median:8.2f} us   p99 {p99:8.2f} us", flush=True)


def shmbridge_event(spin: int) -> tuple[float, float]:
    name = shmbridge.unique_name("bench_ev")
    ping, pong = Event.create(name + "_ping", auto_reset=True), Event.create(name + "_pong", auto_reset=True)
    pong.set_spin_limit(spin / 1e6)
    peer = subprocess.Popen([PEER, "event", name, str(ROUNDS + WARMUP), str(spin)])

    def trip() -> None:
        ping.set()
        if not pong.wait(60):
            raise TimeoutError("no pong")

    result = measure(trip)
    peer.wait()
    return result


def shmbridge_channel() -> tuple[float, float]:
    name = shmbridge.unique_name("bench_ch")
    tx, rx = Channel.create(name + "_ping", 4096), Channel.create(name + "_pong", 4096)
    peer = subprocess.Popen([PEER, "channel", name, str(ROUNDS + WARMUP)])
    message = b"0123456789abcdef"
    result = measure(lambda: (tx.send(message), rx.recv(60)))
    peer.wait()
    return result


def rust_rust(spin: int) -> tuple[float, float]:
    out = subprocess.run([PEER, "rust_rust", str(ROUNDS), str(spin)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    return r["median_us"], r["p99_us"]


# --- Python <-> Python peers (children forked by multiprocessing) ---

def _pipe_echo(conn) -> None:  # type: ignore[no-untyped-def]
    for _ in range(ROUNDS + WARMUP):
        conn.send(conn.recv())


def mp_pipe() -> tuple[float, float]:
    parent, child = mp.Pipe()
    proc = mp.Process(target=_pipe_echo, args=(child,))
    proc.start()
    result = measure(lambda: (parent.send(b"x"), parent.recv()))
    proc.join()
    return result


def _os_pipe_echo(r: int, w: int) -> None:
    for _ in range(ROUNDS + WARMUP):
        os.write(w, os.read(r, 1))


def os_pipe() -> tuple[float, float]:
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    proc = mp.Process(target=_os_pipe_echo, args=(to_child, from_child))
    proc.start()
    result = measure(lambda: (os.write(from_parent, b"x"), os.read(to_parent, 1)))
    proc.join()
    return result


def _posix_echo(ping_name: str, pong_name: str) -> None:
    import posix_ipc

    ping, pong = posix_ipc.Semaphore(ping_name), posix_ipc.Semaphore(pong_name)
    for _ in range(ROUNDS + WARMUP):
        ping.acquire()
        pong.release()


def posix_semaphores() -> tuple[float, float]:
    import posix_ipc

    names = (f"/bench_ping_{os.getpid()}", f"/bench_pong_{os.getpid()}")
    ping, pong = (posix_ipc.Semaphore(n, posix_ipc.O_CREX) for n in names)
    proc = mp.Process(target=_posix_echo, args=names)
    proc.start()
    result = measure(lambda: (ping.release(), pong.acquire()))
    proc.join()
    ping.unlink()
    pong.unlink()
    return result


def _iox_echo(service: str, polling: bool) -> None:
    import iceoryx2 as iox2

    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    ping = node.service_builder(iox2.ServiceName.new(service + "_ping")).event().open_or_create()
    pong = node.service_builder(iox2.ServiceName.new(service + "_pong")).event().open_or_create()
    listener, notifier = ping.listener_builder().create(), pong.notifier_builder().create()
    for _ in range(ROUNDS + WARMUP):
        if polling:
            while not listener.try_wait():
                pass
        else:
            listener.blocking_wait()
        notifier.notify()


def iceoryx2_events(polling: bool) -> tuple[float, float]:
    import iceoryx2 as iox2

    service = f"bench_{os.getpid()}_{int(polling)}"
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    ping = node.service_builder(iox2.ServiceName.new(service + "_ping")).event().open_or_create()
    pong = node.service_builder(iox2.ServiceName.new(service + "_pong")).event().open_or_create()
    notifier, listener = ping.notifier_builder().create(), pong.listener_builder().create()
    proc = mp.Process(target=_iox_echo, args=(service, polling))
    proc.start()
    time.sleep(0.5)  # the child's listener must exist before the first notify (iceoryx2 drops earlier ones)

    def trip() -> None:
        notifier.notify()
        if polling:
            while not listener.try_wait():
                pass
        else:
            listener.blocking_wait()

    result = measure(trip)
    proc.join()
    return result


def idle_waiter_cpu() -> float:
    event = Event.create(shmbridge.unique_name("bench_idle"))
    start = time.process_time()
    event.wait(1.0)
    return time.process_time() - start


def throughput_small() -> float:
    name = shmbridge.unique_name("bench_tp")
    rx = Channel.create(name, 1 << 20)
    count = 2_000_000
    start = time.perf_counter()
    peer = subprocess.Popen([PEER, "produce", name, str(count), "64"], stdout=subprocess.DEVNULL)
    received = 0
    while received < count:
        received += len(rx.recv_batch(8192, timeout=60))
    elapsed = time.perf_counter() - start
    peer.wait()
    return count / elapsed


def throughput_frames() -> tuple[float, float, float]:
    """1 MiB frames Rust -> Python: (GB/s seen by the Python receiver, the producer's
    own GB/s, the same copies into shared memory without a channel)."""
    name = shmbridge.unique_name("bench_frames")
    rx = Channel.create(name, 16 << 20)
    count, size = 4000, 1 << 20
    start = time.perf_counter()
    peer = subprocess.Popen([PEER, "produce", name, str(count), str(size)], stdout=subprocess.PIPE, text=True)
    for _ in range(count):
        with rx.recv_view(timeout=60) as message:
            assert len(message) == size  # zero-copy: the frame is read in place
    received = count * size / (time.perf_counter() - start) / 1e9
    produced = float(peer.communicate()[0])
    memcpy = float(subprocess.run([PEER, "memcpy", str(count), str(size)], capture_output=True, text=True, check=True).stdout)
    return received, produced, memcpy


def main() -> None:
    if not PEER.exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "shmbridge-bench", "--bin", "sync_peer"], cwd=ROOT, check=True)
    mp.set_start_method("fork")
    print(f"{ROUNDS} round trips each (after {WARMUP} warm-up), one run, {os.cpu_count()} CPUs\n")
    report("shmbridge Event, Rust <-> Python, adaptive spin", *shmbridge_event(20))
    report("shmbridge Event, Rust <-> Python, blocking only", *shmbridge_event(0))
    report("shmbridge Channel 16 B message, Rust <-> Python", *shmbridge_channel())
    report("shmbridge Event, Rust <-> Rust, adaptive spin", *rust_rust(20))
    report("shmbridge Event, Rust <-> Rust, blocking only (futex)", *rust_rust(0))
    report("multiprocessing.Pipe, Python <-> Python", *mp_pipe())
    report("os.pipe, Python <-> Python", *os_pipe())
    report("posix_ipc semaphores, Python <-> Python", *posix_semaphores())
    report("iceoryx2 events, Python <-> Python, blocking", *iceoryx2_events(False))
    report("iceoryx2 events, Python <-> Python, polling", *iceoryx2_events(True))
    blocking = results[1][1] / results[4][1]
    print(f"\nblocking-only Rust <-> Python vs the Rust <-> Rust futex round trip: {blocking:.2f}x (median)")
    print(f"CPU used by a Python waiter idle for 1 s: {idle_waiter_cpu() * 1000:.2f} ms")
    print(f"channel, 64 B messages Rust -> Python, batched receive: {throughput_small() / 1e6:.2f} M messages/s")
    received, produced, memcpy = throughput_frames()
    print(f"channel, 1 MiB frames Rust -> Python (one copy into the ring, zero-copy receive): "
          f"{received:.2f} GB/s received ({produced:.2f} GB/s in the producer's loop); the same "
          f"1 MiB copies into shared memory without a channel: {memcpy:.2f} GB/s "
          f"({100 * received / memcpy:.0f} % of memcpy)")


if __name__ == "__main__":
    main()
