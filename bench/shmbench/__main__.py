"""`./dev bench [--quick]`: run the bench (see shmbench/__init__.py).

Full run: every group quiet, then with two CPU-bound processes (the round trips
`loaded_runs` times; not the awaited ones, `aio`, measured quiet only); writes
docs/benchmarks.json, docs/benchmarks.md, the plots in docs/bench/, and the README's
generated Performance section.

`--only G1,G2 --merge`: those groups only, as in a full run, put into the record in
place of its figures of those groups (the record then names them and their run);
docs/benchmarks.md and the README rendered again, the plots left as they are.

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

from shmbench import aio, handoff, harness, idle, load, machine, memory, percall, readme, record, report, roundtrip, throughput, worker
from shmbench.harness import ROOT, Figure, Settings

GROUPS: dict[str, Callable[[Settings, str], list[Figure]]] = {
    "roundtrip": lambda s, scenario: harness.run_group(roundtrip.GROUP, scenario, roundtrip.contenders(s), s.rt_rounds),
    "throughput": throughput.measure,
    "idle": idle.measure,
    "worker": worker.measure,
    "percall": percall.measure,
    "handoff": handoff.measure,
    "memory": memory.measure,
    "aio": aio.measure,
}
# Groups measured quiet only: under CPU-bound load, the asyncio peers' round trips
# (a thread or a socket wake-up each way) take long enough to stretch the run for
# figures that say little more than the quiet ones.
QUIET_ONLY = {"aio"}
LOAD_PROCESSES = 2
DOCS = ROOT / "docs"
RECORD = DOCS / "benchmarks.json"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./dev bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI mode: fewer rounds, quiet only, check against the record")
    parser.add_argument("--only", help=f"comma-separated groups ({', '.join(GROUPS)}); writes target/bench/partial.json only")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: put the groups' figures into docs/benchmarks.json in place of the recorded ones "
        "(the rest of the record stays; it names the groups merged and when) and render the docs again",
    )
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place both ends of each pair")
    parser.add_argument("--no-load", action="store_true", help="skip the loaded scenario")
    parser.add_argument("--record", type=Path, default=RECORD, help="the record quick mode compares with")
    args = parser.parse_args(argv)

    if args.merge and (not args.only or args.quick):
        parser.error("--merge goes with --only, and not with --quick")
    s = Settings.for_mode(args.quick, pin=not args.no_pin)
    if args.no_load:
        s.with_load = False
    groups = list(GROUPS) if not args.only else args.only.split(",")
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups: {', '.join(sorted(unknown))}")
    if args.merge and args.no_load and set(groups) - QUIET_ONLY:
        parser.error("--merge without the loaded scenario would drop the record's loaded figures of those groups")
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
            for group in (g for g in groups if g not in QUIET_ONLY):
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
        "loaded_runs": s.loaded_runs if s.with_load and set(groups) - QUIET_ONLY else 0,
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
    if args.merge:
        data = record.merge(record.load(RECORD), data, groups)
        write_docs(data, None)
        print(f"\nmerged {', '.join(groups)} into docs/benchmarks.json; wrote docs/benchmarks.md and README.md's section "
              f"({meta['duration_s']:.0f} s)")
        return 0
    if args.only or args.no_load:
        path = ROOT / "target" / "bench" / "partial.json"
        record.dump(data, path)
        print(f"\npartial run: wrote {path.relative_to(ROOT)} only ({meta['duration_s']:.0f} s)")
        return 0

    made = write_docs(data, figures)
    print(f"\nwrote docs/benchmarks.json, docs/benchmarks.md, docs/bench/ ({', '.join(made)}) and README.md's section "
          f"({meta['duration_s']:.0f} s)")
    return 0


def write_docs(data: dict[str, Any], figures: list[Figure] | None) -> list[str]:
    """The record, the plots (drawn from `figures`' samples; None: the plots in
    docs/bench stay), docs/benchmarks.md and the README's section; the plots' names."""
    from shmbench import plots  # matplotlib: only the runs that write the docs need it

    record.dump(data, RECORD)
    if figures is None:
        made = [name for name, _ in plots.PLOTS if (DOCS / "bench" / name).is_file()]
    else:
        made = plots.draw(figures, DOCS / "bench")
    (DOCS / "benchmarks.md").write_text(report.render(data, made))
    readme_path = ROOT / "README.md"
    readme_path.write_text(readme.rewrite(readme_path.read_text(), data))
    return made


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
