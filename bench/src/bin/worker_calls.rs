//! An empty worker call (Rust -> Python -> Rust) over both transports, beside the
//! same request/response done by hand: JSON lines over a child's stdin/stdout, and
//! a `multiprocessing.Pipe` round trip between two Python processes. Driven by
//! `bench/shmbench/worker.py` (see `./dev bench`).
//!
//! `worker_calls ROUNDS CALLS PYTHON SERVER JSONL_SERVER MP_PIPE`: in each of ROUNDS
//! rounds, each contender in turn makes a few warm-up calls, then CALLS measured
//! ones. Prints `{"pipe": [...], "shm": [...], "jsonl": [...], "mp_pipe": [...]}`,
//! the ns of every measured call. SERVER is a `shmbridge.Server` script with a
//! function `empty`; JSONL_SERVER answers each JSON line with one; MP_PIPE runs
//! N `multiprocessing.Pipe` round trips for each line `N` on its stdin and prints
//! their ns as a JSON list.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shmbridge::worker::{Transport, Worker};
use shmbridge_bench::{Args, BoxError, json_list, nanos_since, print_object};

const WARMUP: usize = 50;
const TIMEOUT: Duration = Duration::from_secs(60);

/// A child process spoken to in lines over its stdin and stdout.
struct LineChild {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

impl LineChild {
    fn spawn(python: &str, script: &str) -> Result<Self, BoxError> {
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Self { child, stdin, stdout, line: String::new() })
    }

    fn ask(&mut self, line: &str) -> Result<&str, BoxError> {
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        self.line.clear();
        if self.stdout.read_line(&mut self.line)? == 0 {
            return Err("the child closed its stdout".into());
        }
        Ok(&self.line)
    }

    fn finish(mut self) -> Result<(), BoxError> {
        drop(self.stdin);
        self.child.wait()?;
        Ok(())
    }
}

/// One hand-written JSON-lines request and its answer, parsed as a real client would.
fn jsonl_call(server: &mut LineChild, id: u64) -> Result<(), BoxError> {
    let request = json!({"id": id, "function": "empty", "args": {}}).to_string();
    let answer: Value = serde_json::from_str(server.ask(&request)?)?;
    if answer["id"] != id {
        return Err(format!("answer {answer} is not for request {id}").into());
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let args = Args::from_env();
    let (rounds, calls): (usize, usize) = (args.get(0)?, args.get(1)?);
    let python = args.text(2)?;
    let (server, jsonl_server, mp_pipe) = (args.text(3)?, args.text(4)?, args.text(5)?);

    let pipe_worker = Worker::script(server).python(python).transport(Transport::Pipe).spawn()?;
    let shm_worker = Worker::script(server)
        .python(python)
        .transport(Transport::SharedMemory { capacity: 1 << 20 })
        .spawn()?;
    let mut jsonl = LineChild::spawn(python, jsonl_server)?;
    let mut mp = LineChild::spawn(python, mp_pipe)?;

    let worker_calls = |worker: &Worker, n: usize, times: &mut Vec<u64>| -> Result<(), BoxError> {
        for _ in 0..n {
            let start = Instant::now();
            worker.call::<Value>("empty", json!({}), TIMEOUT)?;
            times.push(nanos_since(start));
        }
        Ok(())
    };
    let (mut pipe, mut shm, mut hand, mut reference, mut warm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut id = 0;
    for _ in 0..rounds {
        worker_calls(&pipe_worker, WARMUP, &mut warm)?;
        worker_calls(&pipe_worker, calls, &mut pipe)?;
        worker_calls(&shm_worker, WARMUP, &mut warm)?;
        worker_calls(&shm_worker, calls, &mut shm)?;
        for i in 0..WARMUP + calls {
            id += 1;
            let start = Instant::now();
            jsonl_call(&mut jsonl, id)?;
            if i >= WARMUP {
                hand.push(nanos_since(start));
            }
        }
        // The Python pair times itself (and warms up first).
        let answer = mp.ask(&calls.to_string())?;
        reference.extend(serde_json::from_str::<Vec<u64>>(answer)?);
    }
    pipe_worker.shutdown()?;
    shm_worker.shutdown()?;
    jsonl.finish()?;
    mp.finish()?;
    print_object(&[
        json_list("pipe", &pipe),
        json_list("shm", &shm),
        json_list("jsonl", &hand),
        json_list("mp_pipe", &reference),
    ]);
    Ok(())
}
