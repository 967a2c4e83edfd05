//! Runs the `shared_array` example pair (see `examples/src/shared_array.rs` and `examples/shared_array.py`).

fn main() -> shmbridge_examples::Result {
    shmbridge_examples::shared_array::run()
}
