//! What a segment's life costs: creating (and removing at drop) a segment of 4 KiB
//! and of 1 MiB, the same kept persistent, and opening (and closing) one. The
//! figures the ownership records of issue 12 must not move: run this before and
//! after a change to create or open, in the same conditions.
//!
//! Run with `cargo bench -p shmbridge-bench --bench lifecycle`. With
//! `SHMBRIDGE_TRACKER=target/release/shmbridge` the run also pays what a creating
//! process pays with a reclaim tracker running (started at the first create, then a
//! look at the connection at most once a second).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shmbridge::SharedMemory;

fn create(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_drop");
    for size in [4096, 1 << 20] {
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let name = shmbridge::unique_name("bench_life").unwrap();
            b.iter(|| drop(black_box(SharedMemory::create(&name, size).unwrap())))
        });
    }
    group.bench_function("persistent_4096", |b| {
        let name = shmbridge::unique_name("bench_life").unwrap();
        b.iter(|| {
            let shm = SharedMemory::options().persist(true).create(&name, 4096).unwrap();
            drop(black_box(shm));
            shmbridge::unlink(&name).unwrap();
        })
    });
    group.finish();
    let mut group = c.benchmark_group("open_drop");
    let owner = SharedMemory::create_unique("bench_life", 4096).unwrap();
    group.bench_function("4096", |b| {
        b.iter(|| drop(black_box(SharedMemory::open(owner.name()).unwrap())))
    });
    group.finish();
}

criterion_group!(benches, create);
criterion_main!(benches);
