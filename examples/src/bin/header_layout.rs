//! Runs the `header_layout` example pair (see `examples/src/header_layout.rs` and `examples/header_layout.py`).

fn main() -> shmbridge_examples::Result {
    shmbridge_examples::header_layout::run()
}
