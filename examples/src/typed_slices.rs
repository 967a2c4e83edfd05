//! The spec's typed slices: zero-copy views of the segment as numbers, on both
//! sides.

use shmbridge::SharedMemory;

use crate::{Result, run_python, say};

/// Runs the pair.
// The spec's own values, kept literal so the two read side by side.
#[allow(clippy::approx_constant)]
pub fn run() -> Result {
    let name = shmbridge::unique_name("floats")?;
    let shm = SharedMemory::create(&name, 1024 * 8)?;

    let floats = shm.slice_from::<f64>(0)?; // the spec's GetFloat64Slice(0)
    floats.set(0, 3.14159)?;
    floats.set(1, 2.71828)?;
    shm.slice::<i32>(4096, 4)?.copy_from_slice(&[1, -2, 3, -4])?;
    shm.slice::<u16>(6144, 3)?.copy_from_slice(&[7, 8, 9])?;
    say!("wrote f64 [3.14159, 2.71828] at 0, i32 [1, -2, 3, -4] at 4096, u16 [7, 8, 9] at 6144");

    run_python("typed_slices", &[&name])?;

    let total = shm.read_value::<i64>(16)?;
    let scaled = shm.slice::<f32>(8000, 2)?.to_vec()?;
    say!("read Python's answers: i64 sum {total} at 16, f32 {scaled:?} at 8000");
    if total != -2 + 7 + 8 + 9 || scaled != [6.28318, 5.43656] {
        return Err("unexpected answers".into());
    }
    Ok(())
}
