//! The demo: every example pair of the spec, one after the other, each Rust side
//! starting its Python partner as a child process and both printing what they saw.

use shmbridge_examples::{
    Result, header_layout, hello, numpy_array, python, shared_array, typed_slices,
};

/// An example's title and its Rust side.
type Example = (&'static str, fn() -> Result);

fn main() -> Result {
    println!("shmbridge demo: Rust and Python sharing memory (Python: {})", python().display());
    let examples: [Example; 5] = [
        ("hello: Rust writes, Python reads and answers", hello::run),
        ("typed slices", typed_slices::run),
        ("NumPy: a 1000x1000 float64 array doubled in Python, checked in Rust", numpy_array::run),
        ("header layout: size-prefixed data", header_layout::run),
        ("self-describing arrays: opened by name alone", shared_array::run),
    ];
    for (title, run) in examples {
        println!("\n== {title}");
        run()?;
    }
    println!("\nall {} examples passed", examples.len());
    Ok(())
}
