//! A lock between the threads of one process that waits with a deadline and can be
//! abandoned: what serializes the threads that share one end of a channel.
//!
//! Unlike `std::sync::Mutex`, a waiter gives up at its deadline, or as soon as the
//! condition it is told to watch (the end was closed) holds, and the lock is not
//! tied to a guard's scope: a binding may hold it across calls (a Python `Loan`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

const FREE: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and someone may be asleep waiting for it.
const CONTENDED: u32 = 2;

/// A waiter re-checks its abandon condition at least this often, so a wake-up
/// that raced with its falling asleep costs at most this much.
const RECHECK: Duration = Duration::from_millis(50);

/// How a wait for the lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The caller holds the lock.
    Yes,
    /// The deadline passed first.
    TimedOut,
    /// The abandon condition held first.
    Abandoned,
}

#[derive(Debug, Default)]
pub(crate) struct LocalLock {
    word: AtomicU32,
}

impl LocalLock {
    pub(crate) const fn new() -> Self {
        Self { word: AtomicU32::new(FREE) }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> bool {
        self.word.compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Takes the lock, waiting until `deadline` (forever if `None`) unless
    /// `abandon()` holds first.
    pub(crate) fn lock_until(
        &self,
        deadline: Option<Instant>,
        abandon: impl Fn() -> bool,
    ) -> Acquired {
        if self.try_lock() {
            return Acquired::Yes;
        }
        loop {
            if abandon() {
                return Acquired::Abandoned;
            }
            // Say that someone waits; if the lock was free meanwhile, it is ours (held
            // as contended, which costs the unlocker one spare wake-up at most).
            if self.word.swap(CONTENDED, Ordering::Acquire) == FREE {
                return Acquired::Yes;
            }
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return Acquired::TimedOut,
                Some(d) => (d - now).min(RECHECK),
                None => RECHECK,
            };
            if super::wait::sleep_on(&self.word, CONTENDED, Some(slice)) {
                return Acquired::TimedOut;
            }
        }
    }

    /// Whether some thread holds the lock now.
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != FREE
    }

    /// Releases the lock (held by the caller, whichever thread took it).
    pub(crate) fn unlock(&self) {
        if self.word.swap(FREE, Ordering::Release) == CONTENDED {
            sys::wake(&self.word, 1);
        }
    }

    /// Wakes every waiter, so that each re-checks its abandon condition now.
    pub(crate) fn wake_all(&self) {
        sys::wake(&self.word, i32::MAX as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_times_out_and_abandons() {
        let lock = LocalLock::new();
        assert!(lock.try_lock());
        assert!(!lock.try_lock());
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(lock.lock_until(Some(soon), || false), Acquired::TimedOut);
        assert_eq!(lock.lock_until(None, || true), Acquired::Abandoned);
        lock.unlock();
        assert_eq!(lock.lock_until(None, || false), Acquired::Yes);
        lock.unlock();
    }

    #[test]
    fn threads_take_turns() {
        let lock = LocalLock::new();
        let counter = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        assert_eq!(lock.lock_until(None, || false), Acquired::Yes);
                        let v = counter.load(Ordering::Relaxed);
                        std::hint::spin_loop();
                        counter.store(v + 1, Ordering::Relaxed);
                        lock.unlock();
                    }
                });
            }
        });
        assert_eq!(counter.load(Ordering::Relaxed), 4000);
    }
}
