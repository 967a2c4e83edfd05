//! Beyond the spec: synchronization and a channel in shared memory. Rust streams
//! 100 frames (480x640 float32) through a channel, writing each in place; Python
//! views each frame without a copy and answers its mean on a second channel; an
//! event says when the Python side is ready.

use std::time::Duration;

use shmbridge::channel::Channel;
use shmbridge::sync::Event;

use crate::{Result, run_python_async, say};

/// Frames sent.
const FRAMES: usize = 100;
/// Pixels per frame.
const PIXELS: usize = 480 * 640;

/// Runs the pair.
pub fn run() -> Result {
    let name = shmbridge::unique_name("frames")?;
    let frames = Channel::create(&name, 16 << 20)?;
    let means = Channel::create(&format!("{name}_means"), 4096)?;
    let ready = Event::create(&format!("{name}_ready"), true)?;
    let tx = frames.sender()?;
    let rx = means.receiver()?;
    let mut python = run_python_async("channel_frames", &[&name, &FRAMES.to_string()])?;
    if !ready.wait_timeout(Duration::from_secs(60))? {
        return Err("the Python side did not get ready".into());
    }
    say!("streaming {FRAMES} frames of 480x640 float32 through {name}");
    let mut worst = 0f64;
    for i in 0..FRAMES {
        let loan = tx.loan(PIXELS * 4)?;
        // Written in place, one pixel at a time (the ring keeps payloads 8-aligned).
        let pixels = loan.bytes().cast::<f32>().ok_or("a payload aligned for f32")?;
        for p in 0..PIXELS {
            pixels.set(p, (i + p % 640) as f32)?;
        }
        loan.publish()?;
        let answer = rx.recv_timeout(Duration::from_secs(60))?;
        let mean = f64::from_ne_bytes(answer.to_vec()?[..8].try_into()?);
        let expected = i as f64 + 319.5;
        worst = worst.max((mean - expected).abs());
    }
    drop(tx); // closes the channel: Python's loop ends
    let status = python.wait()?;
    say!("all {FRAMES} means came back; largest error {worst:.1e}; Python exited: {status}");
    if worst > 1e-3 || !status.success() {
        return Err("wrong means".into());
    }
    Ok(())
}
