"""The crash campaign's quick run: every scenario once (`./dev crash N` runs many).

Each trial kills one participant (SIGKILL or SIGTERM) at a random moment and checks
that nothing published was lost or duplicated, no survivor hung or crashed, and
nothing of the trial was left in /dev/shm once its last process had gone. The driver
is `crates/shmbridge-peer/src/bin/crash`; a failing run prints its seed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cargo_binary

pytestmark = pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="Linux: /dev/shm")


def test_quick_crash_campaign() -> None:
    cargo_binary("shmbridge-cli", "shmbridge")
    crash = cargo_binary("shmbridge-peer", "crash")
    trials = 30  # one of each scenario, language pairing and kind
    result = subprocess.run(
        [str(crash), "--trials", str(trials), "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert f"crash campaign: {trials} trials" in report
    total = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    assert total.split()[1:] == [str(trials), "0", "0", "0", "0", "0", "0"], report


def test_the_readme_quotes_the_recorded_campaign() -> None:
    """The crash figures in the README are docs/crash.md as `./dev crash` wrote it."""
    from crash_readme import ROOT, spliced

    readme = (ROOT / "README.md").read_text()
    assert readme == spliced(readme, (ROOT / "docs/crash.md").read_text()), (
        "README.md's crash figures differ from docs/crash.md: run ./dev crash N"
    )
