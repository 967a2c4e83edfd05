//! Runs the `numpy_array` example pair (see `examples/src/numpy_array.rs` and `examples/numpy_array.py`).

fn main() -> shmbridge_examples::Result {
    shmbridge_examples::numpy_array::run()
}
