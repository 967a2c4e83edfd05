//! Round trip of an empty worker call (Rust -> Python -> Rust over the JSON-lines
//! pipe transport) beside a `multiprocessing.Pipe` round trip between two Python
//! processes, in alternating rounds of one run.
//!
//! `cargo run --release -p shmbridge-bench --bin worker_roundtrip [CALLS_PER_ROUND]`
//! (from the repository root, with `.venv` set up).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shmbridge::worker::Worker;

const ROUNDS: usize = 5;

fn summary(mut times: Vec<u64>) -> (f64, f64) {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args().nth(1).map_or(Ok(2000), |n| n.parse())?;
    let python = if cfg!(windows) { ".venv/Scripts/python.exe" } else { ".venv/bin/python" };
    let worker = Worker::script("bench/worker_server.py").python(python).spawn()?;
    let timeout = Duration::from_secs(10);
    for _ in 0..100 {
        worker.call::<Value>("empty", json!({}), timeout)?; // warm up
    }
    let (mut ours, mut pipe) = (Vec::new(), Vec::new());
    let mut ours_total = Duration::ZERO;
    for _ in 0..ROUNDS {
        let round = Instant::now();
        for _ in 0..calls {
            let start = Instant::now();
            worker.call::<Value>("empty", json!({}), timeout)?;
            ours.push(start.elapsed().as_nanos() as u64);
        }
        ours_total += round.elapsed();
        let out =
            Command::new(python).arg("bench/pipe_roundtrip.py").arg(calls.to_string()).output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        pipe.extend(serde_json::from_slice::<Vec<u64>>(&out.stdout)?);
    }
    let (ours_median, ours_p99) = summary(ours.clone());
    let (pipe_median, pipe_p99) = summary(pipe);
    let rate = (ROUNDS * calls) as f64 / ours_total.as_secs_f64();
    println!("{ROUNDS} alternating rounds of {calls} empty calls");
    println!(
        "worker call, pipe transport (Rust -> Python): median {ours_median:7.1} us  p99 {ours_p99:7.1} us  {rate:8.0} calls/s"
    );
    println!(
        "multiprocessing.Pipe (Python -> Python):      median {pipe_median:7.1} us  p99 {pipe_p99:7.1} us  {:8.0} calls/s (1/median)",
        1e6 / pipe_median
    );
    println!("ratio of medians (worker / Pipe): {:.2}", ours_median / pipe_median);
    Ok(())
}
