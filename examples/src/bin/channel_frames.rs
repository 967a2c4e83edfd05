//! Runs the `channel_frames` example pair (see `examples/src/channel_frames.rs` and `examples/channel_frames.py`).

fn main() -> shmbridge_examples::Result {
    shmbridge_examples::channel_frames::run()
}
