//! Round trip of an empty worker call (Rust -> Python -> Rust), over the pipe
//! transport and the shared-memory transport, beside a `multiprocessing.Pipe` round
//! trip between two Python processes, in alternating rounds of one run.
//!
//! `cargo run --release -p shmbridge-bench --bin worker_roundtrip [CALLS_PER_ROUND]`
//! (from the repository root, with `.venv` set up).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shmbridge::worker::{Transport, Worker};

const ROUNDS: usize = 5;

fn summary(mut times: Vec<u64>) -> (f64, f64) {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calls: usize = std::env::args().nth(1).map_or(Ok(2000), |n| n.parse())?;
    let python = if cfg!(windows) { ".venv/Scripts/python.exe" } else { ".venv/bin/python" };
    let pipe_worker = Worker::script("bench/worker_server.py").python(python).spawn()?;
    let shm_worker = Worker::script("bench/worker_server.py")
        .python(python)
        .transport(Transport::SharedMemory { capacity: 1 << 20 })
        .spawn()?;
    let timeout = Duration::from_secs(10);
    let rounds = |worker: &Worker, times: &mut Vec<u64>| -> Result<Duration, shmbridge::Error> {
        let round = Instant::now();
        for _ in 0..calls {
            let start = Instant::now();
            worker.call::<Value>("empty", json!({}), timeout)?;
            times.push(start.elapsed().as_nanos() as u64);
        }
        Ok(round.elapsed())
    };
    let (mut warm, mut pipe_times, mut shm_times, mut reference) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rounds(&pipe_worker, &mut warm)?;
    rounds(&shm_worker, &mut warm)?;
    let (mut pipe_total, mut shm_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        pipe_total += rounds(&pipe_worker, &mut pipe_times)?;
        shm_total += rounds(&shm_worker, &mut shm_times)?;
        let out =
            Command::new(python).arg("bench/pipe_roundtrip.py").arg(calls.to_string()).output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        reference.extend(serde_json::from_slice::<Vec<u64>>(&out.stdout)?);
    }
    let total = (ROUNDS * calls) as f64;
    let (pipe_median, pipe_p99) = summary(pipe_times);
    let (shm_median, shm_p99) = summary(shm_times);
    let (ref_median, ref_p99) = summary(reference);
    println!("{ROUNDS} alternating rounds of {calls} empty calls");
    println!(
        "worker call, pipe transport (Rust -> Python):          median {pipe_median:7.1} us  p99 {pipe_p99:7.1} us  {:8.0} calls/s",
        total / pipe_total.as_secs_f64()
    );
    println!(
        "worker call, shared-memory transport (Rust -> Python): median {shm_median:7.1} us  p99 {shm_p99:7.1} us  {:8.0} calls/s",
        total / shm_total.as_secs_f64()
    );
    println!(
        "multiprocessing.Pipe (Python -> Python):               median {ref_median:7.1} us  p99 {ref_p99:7.1} us  {:8.0} calls/s (1/median)",
        1e6 / ref_median
    );
    println!(
        "ratio of medians to multiprocessing.Pipe: pipe transport {:.2}, shared-memory transport {:.2}",
        pipe_median / ref_median,
        shm_median / ref_median
    );
    Ok(())
}
