//! What a segment's life costs: creating (and removing at drop) a segment of 4 KiB
//! and of 1 MiB, the same kept persistent, and opening (and closing) one. The
//! figures the ownership records of issue 12 must not move: run this before and
//! after a change to create or open, in the same conditions.
//!
//! Each is measured twice: in wall time, and in the CPU time of the benchmarking
//! thread (user and kernel, `CLOCK_THREAD_CPUTIME_ID`), which a busy machine
//! disturbs far less than wall time (time spent waiting for a CPU is not in it).
//!
//! Run with `cargo bench -p shmbridge-bench --bench lifecycle`. With
//! `SHMBRIDGE_TRACKER=target/release/shmbridge` the run also pays what a creating
//! process pays with a reclaim tracker running (started at the first create, then a
//! look at the connection at most once a second).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use shmbridge::SharedMemory;

/// This thread's CPU time (user and kernel).
fn thread_cpu() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// `routine` run `iters` times, in this thread's CPU time.
fn cpu_time(iters: u64, mut routine: impl FnMut()) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        routine();
    }
    thread_cpu() - start
}

fn create(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_drop_cpu");
    let name = shmbridge::unique_name("bench_life").unwrap();
    group.bench_function("4096", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || drop(black_box(SharedMemory::create(&name, 4096).unwrap())))
        })
    });
    let owner = SharedMemory::create_unique("bench_life", 4096).unwrap();
    group.bench_function("open_4096", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || drop(black_box(SharedMemory::open(owner.name()).unwrap())))
        })
    });
    drop(owner);
    group.finish();

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
