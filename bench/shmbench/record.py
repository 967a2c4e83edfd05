"""The machine-readable record (`docs/benchmarks.json`), the ratios it holds, and the
regression check of quick mode.

Every figure of ours that has a same-run peer (`ref`, and any further ones named in
`also`) gives a ratio: our time per operation over the peer's (below 1: ours is
faster). Quick mode measures again and fails when a ratio measured quiet is
`FACTOR` times or more the recorded one; the medians are compared, not the p99s,
which on a shared machine move by more than that from run to run. A ratio the
record does not hold (a figure added since) is measured but not compared, nor are the
figures in `UNGATED` (each says why). An idle waiter's CPU has no peer worth dividing by
(the stdlib's is ~0); it is compared as it is, above a floor of 0.1 % of a CPU.

This module reads and compares JSON only: the README test imports it without the
bench's dependencies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shmbench import fmt

SCHEMA = 1
FACTOR = 3.0
CPU_FLOOR = 0.001  # a fraction of one CPU under which idle figures are not compared
# Figures recorded and shown but not compared by quick mode, and why.
UNGATED = {
    # Two wake-ups from sleep and nothing else: on this VM each costs ~1 us or ~40 us
    # depending on whether the woken CPU was idle, so the ratio to the futex floor
    # swings 40x between runs whatever the code does (CI saw 36.6 against 1.07).
    "event_rust_py_blocking": "a round trip of two sleeps, which the CPUs' idle states decide",
    # An awaited receive either finds the peer's answer at its first, non-spinning try
    # (~1.4 us a round trip) or registers and is woken through the waiter threads and
    # the loop (~30-40 us): which one a run settles in depends on the two sides'
    # timing, not on the code (CI saw 80x the blocking round trip against 3.32 recorded
    # on the same commit). Shown, with its ratios, in every report.
    "aio_channel_rust_py": "an awaited receive that either meets the answer or waits for a wake-up",
}


def build(figures: list[Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The record: `meta` (machine, settings, times) and every figure."""
    return {"schema": SCHEMA, **meta, "figures": [f.to_json() for f in figures]}


def index(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Figures by (id, scenario)."""
    return {(f["id"], f["scenario"]): f for f in data["figures"]}


def ratio(data: dict[str, Any], figure_id: str, peer_id: str, scenario: str = "quiet", stat: str = "median") -> float | None:
    """figure / peer for one statistic, or None if either is missing."""
    figures = index(data)
    a, b = figures.get((figure_id, scenario)), figures.get((peer_id, scenario))
    if a is None or b is None or a.get(stat) is None or not b.get(stat):
        return None
    return float(a[stat]) / float(b[stat])


def gated(data: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """What quick mode compares, by key: (what it is, value)."""
    out: dict[str, tuple[str, float]] = {}
    figures = index(data)
    for (fid, scenario), f in figures.items():
        if scenario != "quiet" or not f["ours"] or fid in UNGATED:
            continue
        if f["unit"] == "cpu":
            out[f"{fid} (CPU)"] = (f"{f['label']}: share of a CPU", float(f["median"]))
        else:
            for peer_id in ([f["ref"]] if f.get("ref") else []) + list(f.get("also", ())):
                r = ratio(data, fid, peer_id)
                if r is not None:
                    peer = figures[(peer_id, scenario)]
                    at = f" [{fmt.size(f['size'])}]" if f.get("size") else ""
                    out[f"{fid} / {peer_id}"] = (f"{f['label']}{at} / {peer['label']}", r)
    return out


def regressions(recorded: dict[str, Any], measured: dict[str, Any], factor: float = FACTOR) -> tuple[dict[str, str], int]:
    """The regressions of `measured` against `recorded`, by key (one line each,
    naming the figure), and how many figures were compared."""
    before, now = gated(recorded), gated(measured)
    found, compared = {}, 0
    for key, (what, value) in sorted(now.items()):
        if key not in before:
            continue
        compared += 1
        old = before[key][1]
        if key.endswith("(CPU)"):
            if value >= factor * max(old, CPU_FLOOR):
                found[key] = f"{what}: {100 * value:.3f} % of a CPU, recorded {100 * old:.3f} % ({key})"
        elif old > 0 and value / old >= factor:
            found[key] = f"{what}: ratio {value:.3g}, recorded {old:.3g}, {value / old:.1f}x worse ({key})"
    return found, compared


def check(recorded: dict[str, Any], measured: dict[str, Any], factor: float = FACTOR) -> tuple[list[str], int]:
    """As `regressions`, the lines only."""
    found, compared = regressions(recorded, measured, factor)
    return list(found.values()), compared


def failing_groups(recorded: dict[str, Any], measured: dict[str, Any], factor: float = FACTOR) -> set[str]:
    """The groups of the figures that `check` finds worse."""
    groups = {fid: f["group"] for (fid, _), f in index(measured).items()}
    return {groups[key.split(" ")[0]] for key in regressions(recorded, measured, factor)[0]}


def merge(recorded: dict[str, Any], partial: dict[str, Any], groups: list[str]) -> dict[str, Any]:
    """`recorded` with the figures of `groups` replaced by those of `partial` (a run
    of those groups only). The run's own details stay those of `recorded`; under
    "merged" the record names each merged group and the run it comes from (the
    latest merge of a group replaces an earlier one)."""
    measured = set(groups)
    merged = [m for m in recorded.get("merged", []) if not measured & set(m["groups"])]
    merged.append(
        {
            "groups": list(groups),
            "mode": partial["mode"],
            "date": partial["machine"]["date"],
            "commit": partial["machine"]["commit"],
            "dirty": partial["machine"]["dirty"],
            "load_average": partial["load_average"],
            "duration_s": partial["duration_s"],
            "settings": partial["settings"],
        }
    )
    kept = [f for f in recorded["figures"] if f["group"] not in measured]
    return {**recorded, "merged": merged, "figures": kept + partial["figures"]}


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def dump(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
