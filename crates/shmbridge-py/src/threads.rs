//! Which thread is calling: for the checks that catch a thread about to wait for
//! itself (acquiring a lock it holds, sending while it holds a loan).

use std::sync::atomic::{AtomicU64, Ordering};

/// A number for the calling thread, unique in this process (0 is nobody).
pub(crate) fn thread_key() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static KEY: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    KEY.with(|k| *k)
}
