"""The bench behind `./dev bench`: every performance figure the README states,
measured beside its peers in the same run, quiet and under CPU-bound load.

Modules, one per group of measurements: `roundtrip`, `throughput`, `idle`,
`worker`, `percall`, `handoff`, `memory` (the Rust floors and segment costs),
`aio` (awaited round trips beside blocking ones and asyncio's own ways);
`harness` (how contenders alternate and are summarized), `load`, `machine`;
`record` (the JSON record, ratios and the regression check), `report` (the
markdown), `readme` (the README's generated section), `plots`. The Rust ends live
in `bench/src/bin`, the Python peer scripts in `peers/`.
"""
