//! The channel's own cost per call, in one thread and one process (no waiting, no
//! other process), so that what the calls add around their copies shows: the best
//! of many rounds, in ns per iteration. Not part of `./dev bench`; run it pinned to
//! one CPU on a busy machine:
//!
//! ```text
//! taskset -c 1 cargo run --release -q -p shmbridge-bench --bin channel_costs [ROUNDS]
//! ```
//!
//! - `send_recv_16b`: a 16-byte `send`, then a copying receive (`try_recv_with`);
//! - `send_recv_view_16b`: a 16-byte `send`, then `try_recv` and the message's drop;
//! - `loan_16b`: a 16-byte `loan` + `publish`, then `try_recv` and the drop;
//! - `loan_drain_16b`: a 16-byte `loan` + `publish`, then a copying receive;
//! - `batch_64x64b`: 64 messages of 64 bytes in one `send_batch`, drained by one
//!   `drain_with` (per iteration: per 64 messages).

use std::hint::black_box;
use std::time::Instant;

use shmbridge::channel::Channel;
use shmbridge_bench::{Args, BoxError};

fn main() -> Result<(), BoxError> {
    let args = Args::from_env();
    let rounds: u32 = args.get(0).unwrap_or(300);
    let ch = Channel::create(&shmbridge::unique_name("bench_costs")?, 1 << 16)?;
    let (tx, rx) = (ch.sender()?, ch.receiver()?);
    let small = [7u8; 16];
    let mut out = [0u8; 16];
    let batch = vec![[9u8; 64]; 64];
    let mut sink = [0u8; 64];
    let best = |what: &str, iterations: u32, op: &mut dyn FnMut() -> Result<(), BoxError>| {
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..iterations {
                op()?;
            }
            best = best.min(start.elapsed().as_nanos() as f64 / f64::from(iterations));
        }
        println!("{what:<20} {best:8.1} ns");
        Ok::<(), BoxError>(())
    };
    best("send_recv_16b", 5000, &mut || {
        tx.send(black_box(&small))?;
        rx.try_recv_with(|m| m.copy_to(&mut out))??;
        Ok(())
    })?;
    best("send_recv_view_16b", 5000, &mut || {
        tx.send(black_box(&small))?;
        black_box(rx.try_recv()?.len());
        Ok(())
    })?;
    best("loan_16b", 5000, &mut || {
        let loan = tx.loan(16)?;
        loan.bytes().copy_from_slice(black_box(&small))?;
        loan.publish()?;
        black_box(rx.try_recv()?.len());
        Ok(())
    })?;
    best("loan_drain_16b", 5000, &mut || {
        let loan = tx.loan(16)?;
        loan.bytes().copy_from_slice(black_box(&small))?;
        loan.publish()?;
        rx.try_recv_with(|m| m.copy_to(&mut out))??;
        Ok(())
    })?;
    best("batch_64x64b", 200, &mut || {
        tx.send_batch(batch.iter().map(|m| &m[..]), None)?;
        rx.drain_with(64, |m| m.copy_to(&mut sink))?;
        Ok(())
    })?;
    Ok(())
}
