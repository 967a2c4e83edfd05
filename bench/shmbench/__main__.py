"""`./dev bench [--quick]`: run the bench (see shmbench/__init__.py).

Full run: every group quiet, then with two CPU-bound processes (the round trips
`loaded_runs` times); writes docs/benchmarks.json, docs/benchmarks.md, the plots in
docs/bench/, and the README's generated Performance section.

Quick run (CI): the quiet measurements with fewer rounds; compares every quiet
ratio with the one recorded in docs/benchmarks.json and exits 1, naming the
figures, if any is 3x or more worse. Writes only target/bench/quick.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shmbench import handoff, harness, idle, load, machine, memory, percall, readme, record, report, roundtrip, throughput, worker
from shmbench.harness import ROOT, Figure, Settings

GROUPS: dict[str, Callable[[Settings, str], list[Figure]]] = {
    "roundtrip": lambda s, scenario: harness.run_group(roundtrip.GROUP, scenario, roundtrip.contenders(s), s.rt_rounds),
    "throughput": throughput.measure,
    "idle": idle.measure,
    "worker": worker.measure,
    "percall": percall.measure,
    "handoff": handoff.measure,
    "memory": memory.measure,
}
LOAD_PROCESSES = 2
DOCS = ROOT / "docs"
RECORD = DOCS / "benchmarks.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI mode: fewer rounds, quiet only, check against the record")
    parser.add_argument("--only", help=f"comma-separated groups ({', '.join(GROUPS)}); writes target/bench/partial.json only")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place both ends of each pair")
    parser.add_argument("--no-load", action="store_true", help="skip the loaded scenario")
    parser.add_argument("--record", type=Path, default=RECORD, help="the record quick mode compares with")
    args = parser.parse_args(argv)

    s = Settings.for_mode(args.quick, pin=not args.no_pin)
    if args.no_load:
        s.with_load = False
    groups = list(GROUPS) if not args.only else args.only.split(",")
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups: {', '.join(sorted(unknown))}")
    harness.configure(s)
    build()

    began = time.monotonic()
    meta: dict[str, Any] = {"mode": "quick" if s.quick else "full", "machine": machine.describe(), "load_average": {"start": machine.load_average()}}
    figures: list[Figure] = []
    try:
        for group in groups:
            print(f"==> {group}, quiet", file=sys.stderr, flush=True)
            figures += GROUPS[group](s, "quiet")
        if s.with_load:
            for group in groups:
                runs = [f"loaded-{i + 1}" for i in range(s.loaded_runs)] if group == "roundtrip" else ["loaded"]
                for scenario in runs:
                    print(f"==> {group}, {scenario} ({LOAD_PROCESSES} CPU-bound processes)", file=sys.stderr, flush=True)
                    with load.cpu_load(LOAD_PROCESSES):
                        figures += GROUPS[group](s, scenario)
    finally:
        harness.kill_spawned()
    meta["load_average"]["end"] = machine.load_average()
    meta["duration_s"] = round(time.monotonic() - began, 1)
    meta["settings"] = {
        "rt_rounds": s.rt_rounds,
        "trips": s.trips,
        "trip_warmup": s.trip_warmup,
        "rounds": s.rounds,
        "loaded_runs": s.loaded_runs if s.with_load else 0,
        "load_processes": LOAD_PROCESSES,
    }
    data = record.build(figures, meta)
    summary(data)

    if s.quick:
        if not args.record.is_file():
            print(f"quick bench: no record to compare with ({args.record})", file=sys.stderr)
            return 2
        recorded = record.load(args.record)
        failures, compared = record.check(recorded, data)
        if failures:
            # A shared machine can make one block of a group look 3x worse; a real
            # regression looks so again. Measure the groups concerned once more.
            again = sorted({g for g in record.failing_groups(recorded, data)})
            print(f"\n{len(failures)} ratios look {record.FACTOR:g}x worse; measuring {', '.join(again)} again:")
            for line in failures:
                print(f"  {line}")
            figures = [f for f in figures if f.group not in again]
            for group in again:
                figures += GROUPS[group](s, "quiet")
            harness.kill_spawned()
            data["figures"] = record.build(figures, {})["figures"]
            failures, compared = record.check(recorded, data)
        meta["duration_s"] = round(time.monotonic() - began, 1)
        data["duration_s"] = meta["duration_s"]
        record.dump(data, ROOT / "target" / "bench" / "quick.json")
        print(f"\nquick bench: {compared} figures compared with {args.record} ({meta['duration_s']:.0f} s)")
        if failures:
            print(f"FAILED: {len(failures)} ratios are {record.FACTOR:g}x or more worse than recorded, twice:")
            for line in failures:
                print(f"  {line}")
            return 1
        print(f"no ratio is {record.FACTOR:g}x or more worse than recorded")
        return 0
    if args.only or args.no_load:
        path = ROOT / "target" / "bench" / "partial.json"
        record.dump(data, path)
        print(f"\npartial run: wrote {path.relative_to(ROOT)} only ({meta['duration_s']:.0f} s)")
        return 0

    from shmbench import plots  # matplotlib: only the full run needs it

    record.dump(data, RECORD)
    made = plots.draw(figures, DOCS / "bench")
    (DOCS / "benchmarks.md").write_text(report.render(data, made))
    readme_path = ROOT / "README.md"
    readme_path.write_text(readme.rewrite(readme_path.read_text(), data))
    print(f"\nwrote docs/benchmarks.json, docs/benchmarks.md, docs/bench/ ({', '.join(made)}) and README.md's section "
          f"({meta['duration_s']:.0f} s)")
    return 0


def build() -> None:
    """The Rust ends, built in release (quick when nothing changed)."""
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "shmbridge-bench"], cwd=ROOT, check=True)


def summary(data: dict[str, Any]) -> None:
    """The quiet figures of ours with their ratios, on stdout."""
    print()
    for key, (what, value) in sorted(record.gated(data).items()):
        shown = f"{100 * value:.3f} % CPU" if key.endswith("(CPU)") else f"ratio {value:.3g}"
        print(f"  {shown:>16}  {what}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
