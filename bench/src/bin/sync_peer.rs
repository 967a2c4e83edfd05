//! The Rust side of `bench/latency.py`, and the Rust <-> Rust reference.
//!
//! - `event NAME ROUNDS SPIN`: answers each set of event NAME_ping by setting NAME_pong;
//! - `channel NAME ROUNDS`: answers each message on channel NAME_ping on NAME_pong;
//! - `produce NAME COUNT SIZE`: sends COUNT messages of SIZE bytes, each copied into
//!   the ring in place (a loan), from a buffer the producer owns;
//!   prints the producer's own GB/s;
//! - `memcpy COUNT SIZE`: the same copies into a shared segment, no channel; prints GB/s;
//! - `rust_rust ROUNDS SPIN`: measures an event round trip between this process and
//!   a child running `event`; prints `{"median_us": .., "p99_us": ..}`.

use std::time::{Duration, Instant};

use shmbridge::channel::Channel;
use shmbridge::sync::Event;

const T: Duration = Duration::from_secs(60);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "event" => {
            let (ping, pong) = events(&arg(1), false)?;
            let spin = Duration::from_micros(arg(3).parse()?); // microseconds
            ping.set_spin_limit(spin);
            for _ in 0..arg(2).parse::<u64>()? {
                if !ping.wait_timeout(T)? {
                    return Err("no ping".into());
                }
                pong.set()?;
            }
        }
        "channel" => {
            let rx = Channel::open(&format!("{}_ping", arg(1)))?.receiver()?;
            let tx = Channel::open(&format!("{}_pong", arg(1)))?.sender()?;
            for _ in 0..arg(2).parse::<u64>()? {
                let msg = rx.recv_timeout(T)?;
                tx.send(&msg)?;
            }
        }
        "produce" => {
            let tx = Channel::open(&arg(1))?.sender()?;
            let size: usize = arg(3).parse()?;
            let mut frame = vec![7u8; size];
            let count: u64 = arg(2).parse()?;
            let start = Instant::now();
            for i in 0..count {
                frame[..8].copy_from_slice(&i.to_le_bytes());
                let mut loan = tx.loan(size)?;
                loan.copy_from_slice(&frame); // the one copy: into the ring, in place
                loan.publish()?;
            }
            let secs = start.elapsed().as_secs_f64();
            println!("{:.3}", (count as usize * size) as f64 / secs / 1e9);
        }
        "memcpy" => {
            // The reference for `produce`: the same 1 MiB copies into a 16-frame shared
            // segment, with no channel around them.
            let size: usize = arg(2).parse()?;
            let count: usize = arg(1).parse()?;
            let mut region = shmbridge::SharedMemory::create_unique("bench_memcpy", 16 * size)?;
            region.as_mut_slice()?.fill(1); // fault the pages in, as the ring's are after a lap
            let frame = vec![7u8; size];
            let start = Instant::now();
            for i in 0..count {
                let at = (i % 16) * size;
                region.as_mut_slice()?[at..at + size].copy_from_slice(&frame);
            }
            let secs = start.elapsed().as_secs_f64();
            println!("{:.3}", (count * size) as f64 / secs / 1e9);
        }
        "consume" => {
            let rx = Channel::open(&arg(1))?.receiver()?;
            for _ in 0..arg(2).parse::<u64>()? {
                rx.recv_timeout(T)?;
            }
        }
        "rust_rust" => {
            let rounds: usize = arg(1).parse()?;
            let spin_us: u64 = arg(2).parse()?;
            let spin = Duration::from_micros(spin_us);
            let name = shmbridge::unique_name("bench_rr")?;
            let (ping, pong) = events(&name, true)?;
            pong.set_spin_limit(spin);
            let mut child = std::process::Command::new(std::env::current_exe()?)
                .args(["event", &name, &(rounds + 1000).to_string(), &spin_us.to_string()])
                .spawn()?;
            let mut times = Vec::with_capacity(rounds);
            for i in 0..rounds + 1000 {
                let start = Instant::now();
                ping.set()?;
                if !pong.wait_timeout(T)? {
                    return Err("no pong".into());
                }
                if i >= 1000 {
                    times.push(start.elapsed().as_nanos() as f64 / 1000.0);
                }
            }
            child.wait()?;
            times.sort_by(f64::total_cmp);
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            println!("{{\"median_us\": {:.3}, \"p99_us\": {:.3}}}", at(0.5), at(0.99));
        }
        other => return Err(format!("unknown mode {other:?}").into()),
    }
    Ok(())
}

fn events(name: &str, create: bool) -> shmbridge::Result<(Event, Event)> {
    let (ping, pong) = (format!("{name}_ping"), format!("{name}_pong"));
    if create {
        Ok((Event::create(&ping, true)?, Event::create(&pong, true)?))
    } else {
        Ok((Event::open(&ping)?, Event::open(&pong)?))
    }
}
