"""How every measurement is taken: contenders alternating in rounds, summarized the
same way, recorded as figures with their same-run peer.

A *contender* is one way of doing the job (shmbridge's or a peer's). A group of
contenders is started together, then measured in rounds: each round runs one block
of every contender, in an order that rotates from round to round, so that drift on
a shared machine hits all of them alike. A block returns samples in nanoseconds per
operation; the figure is the median (and p99) of all of a contender's samples.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "target" / "release"
PEERS = Path(__file__).resolve().parent / "peers"
# How long any one wait may take, in seconds: a peer waits for its next block while
# every other contender of its group runs (minutes, for 256 MiB pickles under load).
PATIENCE = 600


@dataclass
class Settings:
    """What a run measures and how much: the full run, or the quick one of CI."""

    quick: bool
    pin: bool = True
    # Round trips: rounds of `trips` measured round trips (after `trip_warmup`).
    rt_rounds: int = 9
    trips: int = 2000
    trip_warmup: int = 200
    loaded_runs: int = 4
    # Blocks of throughput, hand-off, per-call and worker measurements.
    rounds: int = 7
    sweep_sizes: tuple[int, ...] = (16, 64, 256, 1024, 4096, 16384, 65536)
    handoff_sizes: tuple[int, ...] = (1 << 10, 64 << 10, 1 << 20, 16 << 20, 256 << 20)
    open_sizes: tuple[int, ...] = (1 << 20, 64 << 20, 256 << 20)
    array_sizes: tuple[int, ...] = (1 << 20, 256 << 20, 1 << 30)
    create_sizes: tuple[int, ...] = (4 << 10, 1 << 20, 64 << 20)
    idle_seconds: float = 1.0
    idle_rounds: int = 3
    worker_calls: int = 1000
    with_load: bool = True

    @classmethod
    def for_mode(cls, quick: bool, pin: bool) -> Settings:
        if not quick:
            return cls(quick=False, pin=pin)
        return cls(
            quick=True,
            pin=pin,
            rt_rounds=3,
            rounds=5,
            sweep_sizes=(64, 4096, 65536),
            handoff_sizes=(1 << 10, 1 << 20, 16 << 20),
            open_sizes=(1 << 20,),
            array_sizes=(1 << 20,),
            create_sizes=(4 << 10, 1 << 20),
            idle_rounds=1,
            worker_calls=500,
            with_load=False,
        )


# --- where processes run ------------------------------------------------------------


class Cpus:
    """The measuring process runs on one CPU, its peer on another (when pinning is
    on and two are available), so that a pair's figures do not depend on whether
    the scheduler happened to put both ends on one CPU. CPU-bound load runs
    anywhere."""

    def __init__(self, pin: bool) -> None:
        self.all = sorted(os.sched_getaffinity(0))
        self.pinned = pin and len(self.all) >= 2
        self.main = self.all[0]
        self.peer = self.all[1] if self.pinned else self.all[0]

    def pin_main(self) -> None:
        if self.pinned:
            os.sched_setaffinity(0, {self.main})

    def pin_peer(self) -> None:
        """For a forked peer, at its start."""
        if self.pinned:
            os.sched_setaffinity(0, {self.peer})

    def env(self) -> dict[str, str]:
        """The environment of peer scripts, which pin themselves (peers/_pin.py)."""
        env = dict(os.environ)
        if self.pinned:
            env["SHMBENCH_PEER_CPU"] = str(self.peer)
        return env

    def preexec(self, where: str) -> Callable[[], None]:
        cpus = {"main": {self.main}, "peer": {self.peer}, "any": set(self.all)}[where]
        pinned = self.pinned or where == "any"

        def pin() -> None:
            if pinned:
                os.sched_setaffinity(0, cpus)

        return pin


CPUS = Cpus(pin=False)  # replaced by configure()


def configure(settings: Settings) -> None:
    global CPUS
    CPUS = Cpus(settings.pin)
    CPUS.pin_main()


# Every process the bench starts, so that a failure can end them all (by pid).
SPAWNED: list[Any] = []


def spawned(proc: Any) -> Any:
    """Remember a process we started (a Popen or a multiprocessing.Process)."""
    SPAWNED.append(proc)
    return proc


def kill_spawned() -> None:
    """End every process the bench started that is still running."""
    while SPAWNED:
        proc = SPAWNED.pop()
        alive = proc.poll() is None if isinstance(proc, subprocess.Popen) else proc.is_alive()
        if alive:
            proc.kill()
            if isinstance(proc, subprocess.Popen):
                proc.wait()
            else:
                proc.join()


def rust(program: str, *args: object, where: str = "peer", stdout: int | None = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start one of the bench's Rust programs (bench/src/bin)."""
    return spawned(
        subprocess.Popen(
            [str(TARGET / program), *map(str, args)],
            stdout=stdout,
            text=True,
            preexec_fn=CPUS.preexec(where),
            cwd=ROOT,
        )
    )


def rust_json(program: str, *args: object, where: str = "main") -> dict[str, Any]:
    """Run a Rust program to the end; its one JSON line."""
    proc = rust(program, *args, where=where)
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{program} {' '.join(map(str, args))} failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


def read_json_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args!r} ended without answering (exit {proc.wait()})")
    result: dict[str, Any] = json.loads(line)
    return result


def finish(proc: subprocess.Popen[str], timeout: float = PATIENCE) -> None:
    """Wait for a peer that has done its count; kill it (ours) if it does not end."""
    try:
        if proc.wait(timeout) != 0:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def finish_forked(proc: Any, what: str, timeout: float = PATIENCE) -> None:
    """As `finish`, for a peer forked with multiprocessing (`proc.join` rather than
    `wait`): kill it if it does not end; RuntimeError naming `what` if it failed."""
    proc.join(timeout)
    if proc.exitcode != 0:
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        raise RuntimeError(f"the {what} peer failed ({proc.exitcode})")


# --- contenders and rounds ------------------------------------------------------------


@dataclass
class Contender:
    """One way of doing the job. `block()` returns samples, ns per operation."""

    id: str
    label: str
    block: Callable[[], list[float]]
    ours: bool = True
    ref: str | None = None  # the id of its same-run peer (the ratio's denominator)
    floor: str | None = None  # a floor to quote a second ratio against
    also: tuple[str, ...] = ()  # further same-run peers whose ratios are recorded and gated
    size: int | None = None  # bytes, for sweeps
    start: Callable[[], None] | None = None
    stop: Callable[[], None] | None = None
    quiet_only: bool = False  # not measured under load (a pure spin would not end)


@dataclass
class Figure:
    """One measured figure: ns per operation (or a CPU fraction, unit "cpu")."""

    id: str
    label: str
    group: str
    scenario: str
    median: float
    p99: float | None
    n: int
    ours: bool
    ref: str | None = None
    floor: str | None = None
    also: tuple[str, ...] = ()
    size: int | None = None
    unit: str = "ns"
    spread: tuple[float, float] | None = None  # min and max of the block medians
    samples: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "label": self.label,
            "group": self.group,
            "scenario": self.scenario,
            "unit": self.unit,
            "median": round_sig(self.median),
            "p99": None if self.p99 is None else round_sig(self.p99),
            "n": self.n,
            "ours": self.ours,
        }
        for key in ("ref", "floor", "size"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.spread is not None:
            out["spread"] = [round_sig(v) for v in self.spread]
        if self.also:
            out["also"] = list(self.also)
        return out


def round_sig(x: float, digits: int = 4) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of sorted values."""
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def run_group(
    group: str,
    scenario: str,
    contenders: Sequence[Contender],
    rounds: int,
    with_p99: bool = True,
) -> list[Figure]:
    """Start every contender, run `rounds` rounds of one block each (rotating the
    order), stop them; a figure per contender."""
    contenders = [c for c in contenders if not (c.quiet_only and scenario != "quiet")]
    started: list[Contender] = []
    samples: dict[str, list[float]] = {c.id: [] for c in contenders}
    block_medians: dict[str, list[float]] = {c.id: [] for c in contenders}
    try:
        for c in contenders:
            if c.start:
                c.start()
            started.append(c)
        for r in range(rounds):
            shift = r % len(contenders)
            for c in contenders[shift:] + contenders[:shift]:
                got = c.block()
                samples[c.id].extend(got)
                block_medians[c.id].append(median(got))
            progress(f"{group} [{scenario}] round {r + 1}/{rounds}")
    except BaseException:
        kill_spawned()  # the peers would wait for round trips that will not come
        raise
    finally:
        errors = []
        for c in started:
            if c.stop:
                try:
                    c.stop()
                except Exception as e:  # stop the others all the same
                    errors.append(f"{c.id}: {e}")
        if errors and sys.exc_info()[0] is None:
            raise RuntimeError("; ".join(errors))
    figures = []
    for c in contenders:
        ordered = sorted(samples[c.id])
        figures.append(
            Figure(
                id=c.id,
                label=c.label,
                group=group,
                scenario=scenario,
                median=median(ordered),
                p99=quantile(ordered, 0.99) if with_p99 else None,
                n=len(ordered),
                ours=c.ours,
                ref=c.ref,
                floor=c.floor,
                also=c.also,
                size=c.size,
                spread=(min(block_medians[c.id]), max(block_medians[c.id])),
                samples=ordered,
            )
        )
    return figures


def timed_calls(fn: Callable[[], object], calls: int, samples: int) -> list[float]:
    """`samples` samples of ns per call, each the mean over calls // samples calls
    (a timer around each call would cost more than many of the calls timed)."""
    per = max(1, calls // samples)
    out = []
    clock = time.perf_counter_ns
    for _ in range(samples):
        start = clock()
        for _ in range(per):
            fn()
        out.append((clock() - start) / per)
    return out


def timed_trips(trip: Callable[[], object], count: int, warmup: int) -> list[float]:
    """ns of each of `count` round trips, after `warmup` unmeasured ones."""
    for _ in range(warmup):
        trip()
    clock = time.perf_counter_ns
    out = []
    for _ in range(count):
        start = clock()
        trip()
        out.append(float(clock() - start))
    return out


_last_progress = [0.0]


def progress(message: str) -> None:
    now = time.monotonic()
    if now - _last_progress[0] > 2:
        print(f"  .. {message}", file=sys.stderr, flush=True)
        _last_progress[0] = now
