//! Runs the `typed_slices` example pair (see `examples/src/typed_slices.rs` and `examples/typed_slices.py`).

fn main() -> shmbridge_examples::Result {
    shmbridge_examples::typed_slices::run()
}
