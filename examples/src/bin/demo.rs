//! The demo: every example pair of the spec, one after the other, each Rust side
//! starting its Python partner as a child process and both printing what they saw.

use shmbridge_examples::{
    Result, channel_frames, header_layout, hello, numpy_array, process_buffer, python,
    shared_array, typed_slices,
};

/// An example's title and its Rust side.
type Example = (&'static str, fn() -> Result);

fn main() -> Result {
    println!("shmbridge demo: Rust and Python sharing memory (Python: {})", python().display());
    let examples: [Example; 7] = [
        ("hello: Rust writes, Python reads and answers", hello::run),
        ("typed slices", typed_slices::run),
        ("NumPy: a 1000x1000 float64 array doubled in Python, checked in Rust", numpy_array::run),
        ("header layout: size-prefixed data", header_layout::run),
        ("self-describing arrays: opened by name alone", shared_array::run),
        ("coordination: Rust calls process_buffer in a Python worker", process_buffer::run),
        (
            "beyond the spec: frames through a channel, an event, zero-copy views",
            channel_frames::run,
        ),
    ];
    for (title, run) in examples {
        println!("\n== {title}");
        run()?;
    }
    println!("\nall {} examples passed", examples.len());
    Ok(())
}
