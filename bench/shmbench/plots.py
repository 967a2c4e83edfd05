"""PNG plots of a run (matplotlib, pinned in bench/requirements.txt): latency
distributions of the round trips, messages/s against message size, hand-off time
against array size. Each has a quiet and a loaded panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from shmbench.harness import Figure  # noqa: E402


def _panels(title: str) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, 2, figsize=(14, 6), sharey=True, constrained_layout=True)
    fig.suptitle(title)
    return fig, list(axes)


def roundtrips(figures: list[Figure], path: Path) -> None:
    """ECDFs of every round trip, quiet and loaded (all loaded runs pooled)."""
    fig, (quiet, loaded) = _panels("Round trips: share of round trips that took at most x")
    for ax, title, match in ((quiet, "quiet", lambda s: s == "quiet"), (loaded, "two CPU-bound processes (all runs)", lambda s: s.startswith("loaded"))):
        samples: dict[str, list[float]] = {}
        labels: dict[str, str] = {}
        for f in figures:
            if f.group == "roundtrip" and match(f.scenario):
                samples.setdefault(f.id, []).extend(f.samples)
                labels[f.id] = f.label
        for i, (fid, values) in enumerate(samples.items()):
            x = np.sort(np.asarray(values)) / 1000
            y = np.arange(1, len(x) + 1) / len(x)
            ax.plot(x, y, label=labels[fid], linestyle="-" if i < 10 else "--")
        ax.set_xscale("log")
        ax.set_xlabel("round trip (us, log scale)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    quiet.set_ylabel("share of round trips")
    quiet.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _by_size(figures: list[Figure], group: str, scenario: str) -> dict[str, tuple[str, list[int], list[float]]]:
    out: dict[str, tuple[str, list[int], list[float]]] = {}
    for f in figures:
        if f.group == group and f.scenario == scenario and f.size is not None and "@" in f.id:
            kind = f.id.split("@")[0]
            label, sizes, values = out.setdefault(kind, (f.label, [], []))
            sizes.append(f.size)
            values.append(f.median)
    return out


def throughput(figures: list[Figure], path: Path) -> None:
    fig, axes = _panels("Channel throughput against message size")
    for ax, scenario in zip(axes, ("quiet", "loaded")):
        for label, sizes, ns in _by_size(figures, "throughput", scenario).values():
            order = np.argsort(sizes)
            ax.plot(np.asarray(sizes)[order], 1e9 / np.asarray(ns)[order], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size (bytes)")
        ax.set_title(scenario if scenario == "quiet" else "two CPU-bound processes")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("messages/s")
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def handoff(figures: list[Figure], path: Path) -> None:
    fig, axes = _panels("Hand-off of a NumPy array between two processes")
    for ax, scenario in zip(axes, ("quiet", "loaded")):
        for label, sizes, ns in _by_size(figures, "handoff", scenario).values():
            order = np.argsort(sizes)
            ax.plot(np.asarray(sizes)[order], np.asarray(ns)[order] / 1000, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("array size (bytes)")
        ax.set_title(scenario if scenario == "quiet" else "two CPU-bound processes")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("one-way hand-off (us, median)")
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# Every plot: its file's name and the group whose figures it shows.
PLOTS = (("roundtrip_latency.png", "roundtrip"), ("throughput_vs_size.png", "throughput"), ("handoff_vs_size.png", "handoff"))


def draw(figures: list[Figure], directory: Path) -> list[str]:
    """Every plot the figures allow, into `directory`; their file names."""
    directory.mkdir(parents=True, exist_ok=True)
    made = []
    groups = {f.group for f in figures}
    for name, group in PLOTS:
        if group in groups:
            fn = {"roundtrip": roundtrips, "throughput": throughput, "handoff": handoff}[group]
            fn(figures, directory / name)
            made.append(name)
    return made
