//! The one wait loop every primitive uses: spin briefly (adaptively, bounded),
//! then sleep on the word in the kernel, re-checking after every wake-up.

use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::Instant;

use crate::sys;

/// The fewest and most checks a waiter makes before it sleeps.
const MIN_SPIN: u32 = 8;
const MAX_SPIN: u32 = 1 << 14;

/// A per-handle spin budget that adapts: it doubles when spinning found the
/// condition met, halves when it did not. On a busy machine spinning only burns
/// the other side's CPU, and the budget falls to the minimum by itself.
///
/// Halving alone is a trap in ping-pong: once one side oversleeps, the other's spin
/// fails, its budget shrinks, and both settle into sleeping for good. So every
/// [`PROBE_EVERY`]th wait spins the whole limit if the last wait was short: a pair
/// that can run spinning finds its way back, and an idle waiter never probes.
#[derive(Debug)]
pub(crate) struct Spinner {
    budget: AtomicU32,
    limit: AtomicU32,
    waits: AtomicU32,
    /// The last wait ended within [`SHORT_WAIT`]: the other side answers fast, and
    /// spinning may pay. Idle waits (long sleeps, time-outs) do not probe.
    last_wait_short: std::sync::atomic::AtomicBool,
}

/// A wait that ends within this was a quick exchange, not idleness.
const SHORT_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Every this many waits, spin the whole limit whatever the budget says.
const PROBE_EVERY: u32 = 16;

impl Spinner {
    pub(crate) fn new() -> Self {
        Self {
            budget: AtomicU32::new(256),
            limit: AtomicU32::new(MAX_SPIN),
            waits: AtomicU32::new(0),
            last_wait_short: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Caps the spinning (0: never spin, sleep at once).
    pub(crate) fn set_limit(&self, limit: u32) {
        self.limit.store(limit.min(MAX_SPIN), Ordering::Relaxed);
        self.budget.store(limit.min(MAX_SPIN), Ordering::Relaxed);
    }

    /// Checks `ready` up to the budget; whether it became true.
    fn spin(&self, word: &AtomicU32, ready: &impl Fn(u32) -> bool) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let probe = self.waits.fetch_add(1, Ordering::Relaxed).is_multiple_of(PROBE_EVERY)
            && self.last_wait_short.load(Ordering::Relaxed);
        let budget = if probe { limit } else { self.budget.load(Ordering::Relaxed).min(limit) };
        for _ in 0..budget {
            if ready(word.load(Ordering::Acquire)) {
                self.budget
                    .store((budget * 2).clamp(MIN_SPIN.min(limit), limit), Ordering::Relaxed);
                return true;
            }
            std::hint::spin_loop();
        }
        self.budget.store((budget / 2).max(MIN_SPIN.min(limit)), Ordering::Relaxed);
        false
    }
}

/// Waits until `ready(word)` or `deadline`; `true` if ready. `sleepers` counts the
/// processes asleep on `word`, so that [`wake`] can skip the system call when
/// nobody sleeps.
pub(crate) fn wait_until(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    spinner: &Spinner,
    deadline: Option<Instant>,
    ready: impl Fn(u32) -> bool,
) -> bool {
    wait_until_or(word, sleepers, spinner, deadline, ready, || true)
}

/// As [`wait_until`], asking `may_sleep()` once, after spinning failed and before
/// sleeping: the place for checks too costly for the fast path (is the other side
/// alive?). If it says no, returns `false` at once.
pub(crate) fn wait_until_or(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    spinner: &Spinner,
    deadline: Option<Instant>,
    ready: impl Fn(u32) -> bool,
    may_sleep: impl FnOnce() -> bool,
) -> bool {
    if ready(word.load(Ordering::Acquire)) || spinner.spin(word, &ready) {
        spinner.last_wait_short.store(true, Ordering::Relaxed);
        return true;
    }
    if !may_sleep() {
        return false;
    }
    let asleep_at = Instant::now();
    let done = sleep_until(word, sleepers, deadline, ready);
    spinner.last_wait_short.store(asleep_at.elapsed() < SHORT_WAIT, Ordering::Relaxed);
    done
}

/// The sleeping half of [`wait_until`].
fn sleep_until(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
    ready: impl Fn(u32) -> bool,
) -> bool {
    loop {
        let timeout = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return ready(word.load(Ordering::Acquire)),
            },
        };
        sleepers.fetch_add(1, Ordering::SeqCst);
        // Registered as a sleeper before the last look (SeqCst, paired with the
        // waker's fence): either we see the change, or the waker sees us and wakes.
        let seen = word.load(Ordering::SeqCst);
        if !ready(seen) {
            sys::wait_on(word, seen, timeout);
        }
        sleepers.fetch_sub(1, Ordering::SeqCst);
        if ready(word.load(Ordering::Acquire)) {
            return true;
        }
    }
}

/// Wakes up to `count` sleepers on `word`, after the caller changed it.
pub(crate) fn wake(word: &AtomicU32, sleepers: &AtomicU32, count: u32) {
    fence(Ordering::SeqCst);
    if sleepers.load(Ordering::SeqCst) > 0 {
        sys::wake(word, count);
    }
}
