//! Floors and references in plain memory, and the segment's own costs in Rust,
//! driven by `bench/shmbench` (see `./dev bench`). Each mode prints one JSON line.
//!
//! - `memcpy SIZE SAMPLES`: a copy of SIZE bytes between two heap buffers whose pages
//!   are in memory; each sample is the mean of enough copies to take ~1 ms, in ns
//!   per copy (`{"ns": [...]}`): the floor of every hand-off of SIZE bytes.
//! - `ring_copy SIZE COUNT CAPACITY`: COUNT copies of a SIZE-byte frame into a shared
//!   segment of CAPACITY bytes laid out as the channel's ring lays its records out
//!   (an 8-byte header, the payload padded to 8, wrapping to the start when a record
//!   does not fit), pages faulted in first: the channel's frame copy without the
//!   channel (`{"ns": [total]}`).
//! - `segment ROUNDS`: per round, in turn, ns per operation of: open + map of a 1 MiB
//!   and a 256 MiB segment; 64-byte `read_at`/`write_at` beside a 64-byte
//!   `copy_from_slice`; `write_all_at` of 256 MiB beside a heap memcpy of 256 MiB.

use std::hint::black_box;
use std::time::Instant;

use shmbridge::SharedMemory;
use shmbridge_bench::{Args, BoxError, json_floats, json_list, nanos_since, print_object};

const MIB: usize = 1 << 20;
/// The channel's record header (`crates/shmbridge/src/channel/ring.rs`).
const RECORD_HEADER: usize = 8;

fn main() -> Result<(), BoxError> {
    let args = Args::from_env();
    match args.text(0)? {
        "memcpy" => memcpy(args.get(1)?, args.get(2)?),
        "ring_copy" => ring_copy(args.get(1)?, args.get(2)?, args.get(3)?),
        "segment" => segment(args.get(1)?),
        other => Err(format!("unknown mode {other:?}").into()),
    }
}

fn memcpy(size: usize, samples: usize) -> Result<(), BoxError> {
    let src = vec![7u8; size];
    let mut dst = vec![1u8; size]; // written once: its pages are in memory
    // About 1 ms of copying per sample at ~10 GB/s, at least one copy.
    let reps = (10 * MIB / size.max(1)).max(1);
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        for _ in 0..reps {
            black_box(&mut dst).copy_from_slice(black_box(&src));
        }
        times.push(nanos_since(start) / reps as u64);
    }
    print_object(&[json_list("ns", &times)]);
    Ok(())
}

fn ring_copy(size: usize, count: u64, capacity: usize) -> Result<(), BoxError> {
    let mut region = SharedMemory::create_unique("bench_ring_copy", capacity)?;
    // SAFETY: the segment was just made under a unique name that nobody else knows,
    // and this is its only handle: nothing else writes it while the slice lives.
    let ring = unsafe { region.as_mut_slice()? };
    ring.fill(1); // fault the pages in, as the ring's are after its first lap
    let mut frame = vec![7u8; size];
    let record = RECORD_HEADER + size.next_multiple_of(8);
    let mut place = 0;
    let start = Instant::now();
    for i in 0..count {
        if place + record > capacity {
            place = 0; // the ring pads the rest and wraps
        }
        frame[..8].copy_from_slice(&i.to_le_bytes());
        ring[place..place + RECORD_HEADER].copy_from_slice(&(size as u64).to_le_bytes());
        ring[place + RECORD_HEADER..place + RECORD_HEADER + size].copy_from_slice(&frame);
        black_box(&mut ring[place..place + RECORD_HEADER]);
        place += record;
    }
    let elapsed = nanos_since(start);
    print_object(&[json_list("ns", &[elapsed])]);
    Ok(())
}

/// Mean ns of `reps` calls of `f`.
fn per_call(reps: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    nanos_since(start) as f64 / reps as f64
}

fn segment(rounds: usize) -> Result<(), BoxError> {
    let small = SharedMemory::create_unique("bench_open", MIB)?;
    let large = SharedMemory::create_unique("bench_open", 256 * MIB)?;
    let mut io = SharedMemory::create_unique("bench_io", MIB)?;
    let mut heap = vec![0u8; MIB];
    let mut buf = [7u8; 64];
    let bulk_src = vec![1u8; 256 * MIB];
    let mut bulk = SharedMemory::create_unique("bench_bulk", 256 * MIB)?;
    let mut bulk_heap = vec![0u8; 256 * MIB];
    bulk.write_all_at(&bulk_src, 0)?; // fault both destinations in
    bulk_heap.copy_from_slice(&bulk_src);

    let names = [
        "open_map_1mib",
        "open_map_256mib",
        "write_at_64",
        "read_at_64",
        "copy_64",
        "write_all_at_256mib",
        "memcpy_256mib",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); names.len()];
    for _ in 0..rounds {
        let mut failed = None;
        let mut record = |i: usize, ns: f64| times[i].push(ns);
        record(
            0,
            per_call(200, || {
                if let Err(e) = SharedMemory::open(small.name()) {
                    failed = Some(e);
                }
            }),
        );
        record(
            1,
            per_call(200, || {
                if let Err(e) = SharedMemory::open(large.name()) {
                    failed = Some(e);
                }
            }),
        );
        if let Some(e) = failed {
            return Err(e.into());
        }
        let mut io_failed = None;
        record(
            2,
            per_call(200_000, || {
                if let Err(e) = io.write_at(black_box(&buf), black_box(4096)) {
                    io_failed = Some(e);
                }
            }),
        );
        record(
            3,
            per_call(200_000, || {
                if let Err(e) = io.read_at(black_box(&mut buf), black_box(4096)) {
                    io_failed = Some(e);
                }
            }),
        );
        record(
            4,
            per_call(200_000, || {
                black_box(&mut heap[..])[black_box(4096)..4096 + 64]
                    .copy_from_slice(black_box(&buf));
            }),
        );
        record(
            5,
            per_call(2, || {
                if let Err(e) = bulk.write_all_at(&bulk_src, 0) {
                    io_failed = Some(e);
                }
            }),
        );
        record(6, per_call(2, || black_box(&mut bulk_heap).copy_from_slice(black_box(&bulk_src))));
        if let Some(e) = io_failed {
            return Err(e.into());
        }
    }
    let fields: Vec<String> = names.iter().zip(&times).map(|(n, t)| json_floats(n, t)).collect();
    print_object(&fields);
    Ok(())
}
