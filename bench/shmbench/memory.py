"""The segment's own costs in Rust beside plain memory (the Rust program `memory`
alternates them in rounds): open + map of a 1 MiB and a 256 MiB segment, 64-byte
`read_at` / `write_at` beside a 64-byte `copy_from_slice`, and `write_all_at` of
256 MiB beside a heap memcpy of 256 MiB. (The memcpy floors of the hand-offs and the
ring-shaped copy of the frame bench come from the same program.)"""

from __future__ import annotations

from shmbench import harness
from shmbench.harness import Figure, Settings

GROUP = "memory"
FIGURES = (
    ("open_map_1mib", "open + map a 1 MiB segment (Rust)", True, None),
    ("open_map_256mib", "open + map a 256 MiB segment (Rust)", True, "open_map_1mib"),
    ("write_at_64", "write_at 64 B (Rust)", True, "copy_64"),
    ("read_at_64", "read_at 64 B (Rust)", True, "copy_64"),
    ("copy_64", "copy_from_slice 64 B, heap (Rust)", False, None),
    ("write_all_at_256mib", "write_all_at 256 MiB (Rust)", True, "memcpy_256mib"),
    ("memcpy_256mib", "memcpy 256 MiB, heap (Rust)", False, None),
)


def measure(s: Settings, scenario: str) -> list[Figure]:
    # Cheap, and opening goes through fast and slow phases on this VM (~7 us and
    # ~28 us per open, a few rounds at a time): more rounds than elsewhere.
    result = harness.rust_json("memory", "segment", max(s.rounds, 9))
    figures = []
    for key, label, ours, ref in FIGURES:
        ordered = sorted(float(ns) for ns in result[key])
        figures.append(
            Figure(
                id=f"rust_{key}",
                label=label,
                group=GROUP,
                scenario=scenario,
                median=harness.median(ordered),
                p99=None,
                n=len(ordered),
                ours=ours,
                ref=None if ref is None else f"rust_{ref}",
                spread=(ordered[0], ordered[-1]),
                samples=ordered,
            )
        )
    return figures
