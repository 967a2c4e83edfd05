//! The spec's coordination example: Rust writes data into shared memory, then
//! calls `process_buffer` in a Python worker that registered it with
//! `@server.register`, passing the segment; Python answers `{"status": "done"}`.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use shmbridge::SharedMemory;
use shmbridge::worker::Worker;

use crate::{Result, python, repo_root, say};

/// The size of the data: 64 MiB.
const SIZE: usize = 64 << 20;

/// Runs the pair.
pub fn run() -> Result {
    let name = shmbridge::unique_name("my_data")?;
    let mut shm = SharedMemory::create(&name, SIZE)?;
    let large_data: Vec<u8> = (0..SIZE).map(|i| (i % 256) as u8).collect();
    shm.write_all(&large_data)?;
    say!("wrote {} MiB into {name}", SIZE >> 20);

    let worker =
        Worker::script(repo_root().join("examples/process_buffer.py")).python(python()).spawn()?;
    say!("started the worker (pid {}), which registered {:?}", worker.pid(), worker.functions());

    // The spec: queue.Call("process_buffer", 10, {"shm_name": "/my_data", "size": len(largeData)})
    let reply: Value = worker.call(
        "process_buffer",
        json!({"shm_name": shm.name(), "size": SIZE}),
        Duration::from_secs(10),
    )?;
    println!("[python] process_buffer read {}", reply["saw"].as_str().unwrap_or("?"));
    say!("process_buffer answered status {} and checksum {}", reply["status"], reply["checksum"]);
    let expected: u64 = large_data.iter().map(|&b| u64::from(b)).sum();
    if reply["status"] != "done" || reply["checksum"] != expected {
        return Err(format!("unexpected reply {reply}").into());
    }

    // The segment itself can be the argument: it arrives opened.
    let reply: Value =
        worker.call("first_bytes", json!({"shm": &shm, "n": 4}), Duration::from_secs(10))?;
    say!("first_bytes with the segment itself as argument answered {reply}");

    let status = worker.shutdown()?;
    say!("worker shut down: {status}");
    std::io::stdout().flush()?;
    Ok(())
}
