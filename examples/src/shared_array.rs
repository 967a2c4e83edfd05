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
    let mut frame = SharedArray::<f64>::create(&name, &[N, N])?;
    for (i, x) in frame.as_mut_slice()?.iter_mut().enumerate() {
        *x = i as f64;
    }
    say!(
        "created {name}: shape {:?}, dtype {}, generation {}",
        frame.shape(),
        "float64",
        frame.generation()?
    );

    let answer = shmbridge::unique_name("fortran")?;
    run_python("shared_array", &[&name, &answer])?;

    let doubled = frame.as_slice().iter().enumerate().all(|(i, &x)| x == 2.0 * i as f64);
    say!("every element doubled: {doubled}; generation now {}", frame.generation()?);
    let from_python = SharedArray::<i32>::open(&answer)?;
    say!(
        "opened {answer} by name: shape {:?}, order {:?}, strides {:?}, memory {:?}",
        from_python.shape(),
        from_python.order(),
        from_python.strides(),
        from_python.as_slice()
    );
    let mut from_python = from_python.into_untyped().into_segment();
    from_python.unlink()?; // Python persisted it for us
    if !doubled || frame.generation()? != 1 {
        return Err("Python's changes are not visible".into());
    }
    Ok(())
}
