"""An empty worker call, Rust -> Python -> Rust (`shmbridge::worker::Worker`, both
transports), beside the same request/response done by hand: JSON lines over a
Python child's stdin/stdout from Rust, and a `multiprocessing.Pipe` round trip
between two Python processes. The Rust program `worker_calls` alternates them
itself (a Rust caller cannot be timed from here); the caller runs on this
process's CPU, every Python server on the other."""

from __future__ import annotations

import subprocess
import sys

from shmbench import harness
from shmbench.harness import Figure, Settings

GROUP = "worker"
CONTENDERS = (
    ("pipe", "worker call, Transport::Pipe (Rust -> Python)", True),
    ("shm", "worker call, Transport::SharedMemory (Rust -> Python)", True),
    ("jsonl", "hand-written JSON lines over a pipe (Rust -> Python)", False),
    ("mp_pipe", "multiprocessing.Pipe request/response (Python -> Python)", False),
)


def measure(s: Settings, scenario: str) -> list[Figure]:
    peers = harness.PEERS
    proc = harness.spawned(
        subprocess.Popen(
            [
                str(harness.TARGET / "worker_calls"),
                str(s.rounds),
                str(s.worker_calls),
                sys.executable,
                str(peers / "worker_server.py"),
                str(peers / "jsonl_server.py"),
                str(peers / "mp_pipe_calls.py"),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=harness.CPUS.env(),
            preexec_fn=harness.CPUS.preexec("main"),
            cwd=harness.ROOT,
        )
    )
    result = harness.read_json_line(proc)
    harness.finish(proc)
    figures = []
    for key, label, ours in CONTENDERS:
        ordered = sorted(float(ns) for ns in result[key])
        blocks = [harness.median(result[key][i : i + s.worker_calls]) for i in range(0, len(result[key]), s.worker_calls)]
        figures.append(
            Figure(
                id=f"worker_{key}",
                label=label,
                group=GROUP,
                scenario=scenario,
                median=harness.median(ordered),
                p99=harness.quantile(ordered, 0.99),
                n=len(ordered),
                ours=ours,
                ref=None if key == "mp_pipe" else "worker_mp_pipe",
                spread=(min(blocks), max(blocks)),
                samples=ordered,
            )
        )
    return figures
