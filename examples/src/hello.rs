//! The spec's basic usage: Rust writes, Python reads and answers, Rust reads the
//! answer.

use std::io::{Read, Seek, SeekFrom, Write};

use shmbridge::SharedMemory;

use crate::{Result, run_python, say};

/// Runs the pair.
pub fn run() -> Result {
    // The spec names it "/my_data"; a unique name keeps runs from colliding.
    let name = shmbridge::unique_name("my_data")?;
    let mut shm = SharedMemory::create(&name, 1024 * 1024)?;
    let data = b"Hello from Rust!";
    shm.write_all(data)?;

    shm.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0; data.len()];
    shm.read_exact(&mut buf)?;
    say!(
        "created {name} ({} bytes), wrote and read back {:?}",
        shm.len(),
        String::from_utf8_lossy(&buf)
    );

    run_python("hello", &[&name])?;

    let mut answer = [0u8; 18];
    shm.read_exact_at(&mut answer, 0)?;
    let answer = String::from_utf8_lossy(&answer);
    say!("read Python's answer: {answer:?}");
    if answer != "Hello from Python!" {
        return Err(format!("unexpected answer {answer:?}").into());
    }
    shm.close()?;
    Ok(())
}
