//! Segment costs beside plain memory, in one run:
//! - `open_map`: opening + mapping an existing segment of 1 MiB and 256 MiB (should
//!   not depend on size);
//! - `io_64b`: 64-byte `read_at`/`write_at` beside a 64-byte `copy_from_slice`;
//! - `bulk_256mib`: `write_all_at` of 256 MiB beside a memcpy between two heap
//!   buffers of the same size.
//!
//! Run with `cargo bench -p shmbridge-bench --bench segment`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shmbridge::SharedMemory;

const MIB: usize = 1 << 20;

fn open_map(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_map");
    for size in [MIB, 256 * MIB] {
        let owner = SharedMemory::create_unique("bench_open", size).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(size / MIB), &owner, |b, owner| {
            b.iter(|| black_box(SharedMemory::open(owner.name()).unwrap().as_ptr()))
        });
    }
    group.finish();
}

fn io_64b(c: &mut Criterion) {
    let mut group = c.benchmark_group("io_64b");
    let mut shm = SharedMemory::create_unique("bench_io", MIB).unwrap();
    let mut heap = vec![0u8; MIB];
    let mut buf = [7u8; 64];
    group.bench_function("shm_write_at", |b| {
        b.iter(|| shm.write_at(black_box(&buf), black_box(4096)).unwrap())
    });
    group.bench_function("shm_read_at", |b| {
        b.iter(|| shm.read_at(black_box(&mut buf), black_box(4096)).unwrap())
    });
    group.bench_function("memcpy", |b| {
        b.iter(|| heap[black_box(4096)..4096 + 64].copy_from_slice(black_box(&buf)))
    });
    group.finish();
}

fn bulk(c: &mut Criterion) {
    let size = 256 * MIB;
    let mut group = c.benchmark_group("bulk_256mib");
    group.throughput(Throughput::Bytes(size as u64)).sample_size(10);
    let src = vec![1u8; size];
    let mut shm = SharedMemory::create_unique("bench_bulk", size).unwrap();
    let mut heap = vec![0u8; size];
    group.bench_function("shm_write_all_at", |b| b.iter(|| shm.write_all_at(&src, 0).unwrap()));
    group.bench_function("memcpy", |b| b.iter(|| heap.copy_from_slice(black_box(&src))));
    group.finish();
}

criterion_group!(benches, open_map, io_64b, bulk);
criterion_main!(benches);
