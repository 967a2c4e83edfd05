"""What the figures were measured on, and when."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from typing import Any

from shmbench import harness


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=harness.ROOT).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict[str, Any]:
    import numpy

    cpus = harness.CPUS
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cpus": len(cpus.all),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "rustc": _run("rustc", "--version"),
        "pinned": (
            f"yes: each pair's measuring end on CPU {cpus.main}, its peer on CPU {cpus.peer}"
            if cpus.pinned
            else "no"
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _run("git", "rev-parse", "--short=10", "HEAD"),
        "dirty": bool(_run("git", "status", "--porcelain", "--untracked-files=no")),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
