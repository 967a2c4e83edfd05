//! Runs the `process_buffer` example pair (see `examples/src/process_buffer.rs` and `examples/process_buffer.py`).

fn main() -> shmbridge_examples::Result {
    shmbridge_examples::process_buffer::run()
}
