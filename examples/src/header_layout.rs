//! The spec's memory layout: an 8-byte big-endian size, then the data. Rust
//! writes a message this way, Python reads it and answers the same way at 4096.

use shmbridge::SharedMemory;

use crate::{Result, run_python, say};

/// Where Python writes its answer.
const ANSWER_AT: u64 = 4096;

/// Runs the pair.
pub fn run() -> Result {
    let name = shmbridge::unique_name("header")?;
    let mut shm = SharedMemory::create(&name, 8192)?;
    let data = "a message whose length Python learns from the header".as_bytes();
    // The spec: binary.BigEndian.PutUint64(shm.GetByteSlice(0), dataLen); shm.WriteAt(data, 8)
    shm.write_all_at(&(data.len() as u64).to_be_bytes(), 0)?;
    shm.write_all_at(data, 8)?;
    say!("wrote a {}-byte message behind a big-endian u64 size", data.len());

    run_python("header_layout", &[&name, &ANSWER_AT.to_string()])?;

    let mut size = [0u8; 8];
    shm.read_exact_at(&mut size, ANSWER_AT)?;
    let mut answer = vec![0; u64::from_be_bytes(size) as usize];
    shm.read_exact_at(&mut answer, ANSWER_AT + 8)?;
    let answer = String::from_utf8(answer)?;
    say!("read Python's {}-byte answer: {answer:?}", answer.len());
    if answer != String::from_utf8_lossy(data).to_uppercase() {
        return Err("unexpected answer".into());
    }
    Ok(())
}
