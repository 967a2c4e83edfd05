//! The channel's own cost, in one thread (no other process, no waiting), so that
//! what the calls add around their copies shows:
//! - `send_recv_16b`: a 16-byte `send`, then a copying receive (`try_recv_with`);
//! - `batch_64b`: 64 messages of 64 bytes sent with one `send_batch`, drained with
//!   one `drain_with` (reported per message);
//! - `loan_publish_recv_16b`: a 16-byte `loan` + `publish`, then `try_recv` and the
//!   message's release.
//!
//! Run with `cargo bench -p shmbridge-bench --bench channel`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmbridge::channel::Channel;

fn channel(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel");
    let ch = Channel::create(&shmbridge::unique_name("bench_ch").unwrap(), 1 << 16).unwrap();
    let (tx, rx) = (ch.sender().unwrap(), ch.receiver().unwrap());
    let small = [7u8; 16];
    let mut out = [0u8; 16];
    group.bench_function("send_recv_16b", |b| {
        b.iter(|| {
            tx.send(black_box(&small)).unwrap();
            rx.try_recv_with(|m| m.copy_to(&mut out)).unwrap().unwrap();
        })
    });
    group.bench_function("loan_publish_recv_16b", |b| {
        b.iter(|| {
            let mut loan = tx.loan(16).unwrap();
            loan.copy_from_slice(black_box(&small));
            loan.publish().unwrap();
            black_box(rx.try_recv().unwrap().len());
        })
    });
    let batch = vec![[9u8; 64]; 64];
    let mut sink = [0u8; 64];
    group.throughput(Throughput::Elements(64));
    group.bench_function("batch_64b", |b| {
        b.iter(|| {
            let sent = tx.send_batch(batch.iter().map(|m| &m[..]), None).unwrap();
            let (got, _) = rx.drain_with(64, |m| m.copy_to(&mut sink)).unwrap();
            assert_eq!((sent, got), (64, 64));
        })
    });
    group.finish();
}

criterion_group!(benches, channel);
criterion_main!(benches);
