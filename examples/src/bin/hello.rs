//! Runs the `hello` example pair (see `examples/src/hello.rs` and `examples/hello.py`).

fn main() -> shmbridge_examples::Result {
    shmbridge_examples::hello::run()
}
