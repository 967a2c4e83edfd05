//! The spec's NumPy integration: a 1000x1000 float64 array filled in Rust,
//! doubled in place by NumPy, checked in Rust.

use shmbridge::SharedMemory;

use crate::{Result, run_python, say};

/// Rows and columns.
const N: usize = 1000;

/// Runs the pair.
pub fn run() -> Result {
    let name = shmbridge::unique_name("numpy_array")?;
    let shm = SharedMemory::create(&name, N * N * 8)?;
    // A SharedSlice reads and writes the mapping in place without making Rust
    // references to memory another process may change.
    let data = shm.slice::<f64>(0, N * N)?;
    for i in 0..N * N {
        data.set(i, i as f64)?;
    }
    say!("filled {N}x{N} float64 with 0..{} in {name}", N * N);

    run_python("numpy_array", &[&name])?;

    let doubled = data.iter().enumerate().all(|(i, x)| x == 2.0 * i as f64);
    let sum: f64 = data.iter().sum();
    say!("every element doubled: {doubled}; sum {sum:.1}");
    if !doubled {
        return Err("NumPy's changes are not visible".into());
    }
    Ok(())
}
