//! Self-describing arrays: no size, dtype or shape agreed by hand. Rust creates a
//! 1000x1000 float64 array; Python opens it by name alone, doubles it in place and
//! bumps its generation; then Python creates an int32 array in Fortran order that
//! Rust opens by name alone.

use shmbridge::array::SharedArray;

use crate::{Result, run_python, say};

/// Rows and columns.
const N: usize = 1000;

/// Runs the pair.
pub fn run() -> Result {
    let name = shmbridge::unique_name("frame")?;
    let frame = SharedArray::<f64>::create(&name, &[N, N])?;
    let values = frame.elements(); // in place, no references into shared memory
    for i in 0..values.len() {
        values.set(i, i as f64)?;
    }
    say!(
        "created {name}: shape {:?}, dtype {}, generation {}",
        frame.shape(),
        "float64",
        frame.generation()?
    );

    let answer = shmbridge::unique_name("fortran")?;
    run_python("shared_array", &[&name, &answer])?;

    let doubled = values.iter().enumerate().all(|(i, x)| x == 2.0 * i as f64);
    say!("every element doubled: {doubled}; generation now {}", frame.generation()?);
    let from_python = SharedArray::<i32>::open(&answer)?;
    say!(
        "opened {answer} by name: shape {:?}, order {:?}, strides {:?}, memory {:?}",
        from_python.shape(),
        from_python.order(),
        from_python.strides(),
        from_python.to_vec()?
    );
    let mut from_python = from_python.into_untyped().into_segment();
    from_python.unlink()?; // Python persisted it for us
    if !doubled || frame.generation()? != 1 {
        return Err("Python's changes are not visible".into());
    }
    Ok(())
}
