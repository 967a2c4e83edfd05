"""The loaded scenario: CPU-bound processes that the bench starts and stops itself."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from shmbench import harness

# A busy loop that never sleeps and never touches memory worth mentioning.
SPIN = "while True:\n    pass\n"


@contextlib.contextmanager
def cpu_load(processes: int = 2) -> Iterator[list[int]]:
    """Run `processes` CPU-bound Python processes (on any CPU) for the duration;
    yields their pids. They are killed (they are ours, by pid) on the way out,
    whatever happens inside."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(processes):
            procs.append(subprocess.Popen([sys.executable, "-c", SPIN], preexec_fn=harness.CPUS.preexec("any")))
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
