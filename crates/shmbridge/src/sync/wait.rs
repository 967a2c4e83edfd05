//! The one wait loop every primitive uses: spin briefly (adaptively, bounded in
//! time), then sleep on the word in the kernel, re-checking after every wake-up.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};

use crate::segment::SharedMemory;
use crate::sys;

thread_local! {
    /// This thread's waits give up when a signal handler runs (see [`return_on_signal`]).
    static RETURN_ON_SIGNAL: Cell<bool> = const { Cell::new(false) };
    /// A wait of this thread gave up because of a signal, and the caller has not
    /// asked yet ([`interrupted`]).
    static INTERRUPTED: Cell<bool> = const { Cell::new(false) };
    /// This thread woke a sleeper (of any word) since its last spin: an answer to
    /// what it just did comes after that sleeper's wake-up (see [`Spinner`]).
    static WOKE_A_SLEEPER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`; while it runs, every blocking wait of this crate in this thread
/// returns early when a signal handler interrupts it (as a time-out: `false`,
/// `None`, [`ChannelError::Timeout`](crate::channel::ChannelError::Timeout),
/// [`Error::Busy`](crate::Error::Busy)), instead of going back to sleep.
///
/// For programs that handle signals while blocked: the Python binding runs its
/// waits this way, so Ctrl-C reaches Python at once, and its waits need not wake
/// up periodically to look for signals. On Windows, whose waits no signal
/// interrupts (Ctrl-C runs its handler on a thread of its own), nothing changes.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// let event = shmbridge::sync::Event::create(&shmbridge::unique_name("doc_sig")?, false)?;
/// // A wait that a signal (say SIGINT, with a handler installed) would cut short:
/// let set = shmbridge::sync::return_on_signal(|| event.wait_timeout(Duration::from_millis(10)));
/// assert!(!set?);
/// # Ok::<(), shmbridge::Error>(())
/// ```
pub fn return_on_signal<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RETURN_ON_SIGNAL.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(RETURN_ON_SIGNAL.with(|r| r.replace(true)));
    f()
}

/// Whether a wait of this thread gave up because of a signal since the last call
/// (see [`return_on_signal`]); loops that wait again after a wake-up ask this.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.with(|i| i.replace(false))
}

/// An instant already past, read from the clock once per process: the deadline
/// of a `try_` call or of a first attempt, so that a call that goes ahead at once
/// reads no clock (a read costs ~25 ns on the machines measured, a sixth of a
/// channel's send and receive together).
pub(crate) fn past() -> Instant {
    static PAST: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *PAST.get_or_init(Instant::now)
}

/// Whether `deadline` has passed (without reading the clock for [`past`]).
pub(crate) fn passed(deadline: Instant) -> bool {
    deadline <= past() || Instant::now() >= deadline
}

/// Sleeps on `word` as [`sys::wait_on`] does; `true` if this thread returns on
/// signals and a signal cut the sleep short (then [`interrupted`] says so too).
pub(crate) fn sleep_on(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let signalled = sys::wait_on(word, expected, timeout);
    if signalled && RETURN_ON_SIGNAL.with(Cell::get) {
        INTERRUPTED.with(|i| i.set(true));
        return true;
    }
    false
}

/// The longest a waiter spins by default before it sleeps. A futex wake-up costs
/// 5 to 50 us on the machines measured (more when the CPU that must run the
/// sleeper is idle); spinning longer than that only burns a CPU the other side
/// may need.
pub(crate) const DEFAULT_SPIN_LIMIT: Duration = Duration::from_micros(20);
/// The least budget a spinner keeps: enough for an answer already on its way.
const MIN_BUDGET: Duration = Duration::from_nanos(500);
/// The clock is read once per this many checks of the word (a check is a few ns,
/// a clock read ~20 ns).
const CHECKS_PER_CLOCK_READ: u32 = 32;

/// A per-handle spin budget, in time, that adapts: after a spin that found the
/// condition met it covers twice what that took, after two in a row that did not
/// it halves. On a busy machine spinning only burns the other side's CPU, and the
/// budget falls to the minimum by itself.
///
/// Halving alone is a trap in ping-pong: once one side oversleeps, the other's spin
/// fails, its budget shrinks, and both settle into sleeping for good. Two probes
/// lead back, both only after a short wait (an idle waiter never probes):
///
/// - every [`PROBE_EVERY`]th wait spins up to the limit (20 us by default): enough
///   where the other side, when it answers, was running;
/// - in a trap the other side was asleep, and its answer comes after its wake-up
///   (tens of microseconds), then its work: no 20 us spin sees it, every wait of
///   each side finds the other asleep, and one preemption of either is enough to
///   fall in. The thread that has just woken a sleeper knows it ([`wake`] notes
///   it), so its next wait spins up to [`LONG_PROBE`] limits (100 us by default,
///   never more than [`LONG_PROBE_MAX`] or the limit if larger): long enough to
///   see the sleeper wake and answer. This side then answers at once, the other's
///   next probe sees it within its budget, both budgets grow, and the pair spins
///   again: a signal that finds the other side awake ends the streak. Where the
///   other side's answers really are slow, every signal wakes it; after
///   [`LONG_PROBE_STREAK`] long probes in a row (or one that saw nothing) they
///   pause for a number of waits that doubles up to [`LONG_PROBE_PAUSE_MAX`]:
///   a waker spins long in about 1.5 % of its waits there.
#[derive(Debug)]
pub(crate) struct Spinner {
    budget_ns: AtomicU32,
    limit_ns: AtomicU32,
    waits: AtomicU32,
    /// The last wait ended within [`SHORT_WAIT`]: the other side answers fast, and
    /// spinning may pay. Idle waits (long sleeps, time-outs) do not probe.
    last_wait_short: AtomicBool,
    /// The last spin ended without the condition.
    missed: AtomicBool,
    /// Long probes since a signal of this thread last found the other side awake.
    long_streak: AtomicU32,
    /// Waits still to pass before long probes resume, and the next such pause.
    long_pause: AtomicU32,
    long_pause_next: AtomicU32,
}

/// A wait that ends within this was a quick exchange, not idleness.
const SHORT_WAIT: Duration = Duration::from_millis(1);

/// Every this many waits, spin up to the limit whatever the budget says.
const PROBE_EVERY: u32 = 16;

/// A long probe spins up to this many spin limits (100 us by default): the other
/// side's wake-up from sleep, then its answer; but no longer than
/// [`LONG_PROBE_MAX`] unless the limit itself is longer (see [`long_probe`]).
const LONG_PROBE: u32 = 5;
/// The longest a long probe lasts beyond the spin limit: a raised limit (a user who
/// wants spinning) is not multiplied.
const LONG_PROBE_MAX: Duration = Duration::from_micros(100);

/// How long a long probe spins (ns) for a spin limit of `limit` ns: five limits,
/// at most [`LONG_PROBE_MAX`], at least the limit itself.
fn long_probe(limit: u32) -> u32 {
    limit.saturating_mul(LONG_PROBE).min(LONG_PROBE_MAX.as_nanos() as u32).max(limit)
}
/// At most this many long probes in a row (as many as it takes the other side to
/// probe once by itself, [`PROBE_EVERY`]) while every signal still wakes it.
const LONG_PROBE_STREAK: u32 = PROBE_EVERY;
/// The first pause of long probes after a streak that did not get the pair
/// spinning, in waits; each next one doubles, up to [`LONG_PROBE_PAUSE_MAX`].
const LONG_PROBE_PAUSE: u32 = 16;
const LONG_PROBE_PAUSE_MAX: u32 = 1024;

impl Spinner {
    pub(crate) fn new() -> Self {
        Self {
            budget_ns: AtomicU32::new(2_000),
            limit_ns: AtomicU32::new(DEFAULT_SPIN_LIMIT.as_nanos() as u32),
            waits: AtomicU32::new(0),
            last_wait_short: AtomicBool::new(true),
            missed: AtomicBool::new(false),
            long_streak: AtomicU32::new(0),
            long_pause: AtomicU32::new(0),
            long_pause_next: AtomicU32::new(LONG_PROBE_PAUSE),
        }
    }

    /// Whether this wait may probe long, given whether this thread woke a
    /// sleeper since its last wait (see the type's docs).
    fn long_probe_due(&self, woke: bool) -> bool {
        if !woke {
            // The last signal found the other side awake: the pair spins. (Stores
            // only when something changes: this runs on every spin.)
            if self.long_streak.load(Ordering::Relaxed) != 0 {
                self.long_streak.store(0, Ordering::Relaxed);
            }
            if self.long_pause_next.load(Ordering::Relaxed) != LONG_PROBE_PAUSE {
                self.long_pause_next.store(LONG_PROBE_PAUSE, Ordering::Relaxed);
            }
            return false;
        }
        let pause = self.long_pause.load(Ordering::Relaxed);
        if pause > 0 {
            self.long_pause.store(pause - 1, Ordering::Relaxed);
            return false;
        }
        if self.long_streak.fetch_add(1, Ordering::Relaxed) < LONG_PROBE_STREAK {
            return true;
        }
        self.pause_long_probes();
        false
    }

    /// Ends a streak of long probes that did not get the pair spinning again.
    fn pause_long_probes(&self) {
        let next = self.long_pause_next.load(Ordering::Relaxed);
        self.long_pause.store(next, Ordering::Relaxed);
        self.long_pause_next.store((next * 2).min(LONG_PROBE_PAUSE_MAX), Ordering::Relaxed);
        self.long_streak.store(0, Ordering::Relaxed);
    }

    /// Caps the spinning (zero: never spin, sleep at once); at most one second.
    pub(crate) fn set_limit(&self, limit: Duration) {
        let ns = limit.min(Duration::from_secs(1)).as_nanos() as u32;
        self.limit_ns.store(ns, Ordering::Relaxed);
        self.budget_ns.store(ns, Ordering::Relaxed);
    }

    /// Checks `ready` until it holds or the budget is spent; whether it held. A long
    /// probe is made only for a wait that may last that long (`deadline`).
    fn spin(
        &self,
        word: &AtomicU32,
        ready: &impl Fn(u32) -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        // The note is this wait's, whether it spins or not: a later, unrelated wait
        // must not probe long on it.
        let woke = WOKE_A_SLEEPER.with(|w| w.replace(false));
        let limit = self.limit_ns.load(Ordering::Relaxed);
        if limit == 0 {
            return false;
        }
        let start = Instant::now();
        // A spin never outlasts the wait's deadline (one that has passed: no spin).
        let left = deadline.map_or(u32::MAX, |d| {
            d.saturating_duration_since(start).as_nanos().min(u128::from(u32::MAX)) as u32
        });
        if left == 0 {
            return false;
        }
        let long = long_probe(limit);
        let every = self.waits.fetch_add(1, Ordering::Relaxed).is_multiple_of(PROBE_EVERY);
        let stored = self.budget_ns.load(Ordering::Relaxed).min(limit);
        let short = self.last_wait_short.load(Ordering::Relaxed);
        let probing_long = short && left >= long && self.long_probe_due(woke);
        let budget = if !short {
            stored
        } else if probing_long {
            long
        } else if every {
            limit
        } else {
            stored
        }
        .min(left);
        let min = (MIN_BUDGET.as_nanos() as u32).min(limit);
        let mut checks = 0u32;
        loop {
            if ready(word.load(Ordering::Acquire)) {
                let took = start.elapsed().as_nanos().min(u128::from(limit)) as u32;
                let grown = stored.max(took.saturating_mul(2)).clamp(min, limit);
                self.budget_ns.store(grown, Ordering::Relaxed);
                self.missed.store(false, Ordering::Relaxed);
                return true;
            }
            checks += 1;
            if checks.is_multiple_of(CHECKS_PER_CLOCK_READ)
                && start.elapsed().as_nanos() >= u128::from(budget)
            {
                break;
            }
            std::hint::spin_loop();
        }
        if probing_long {
            self.pause_long_probes();
        }
        // One late answer (a preemption, a page fault) says little: the budget halves
        // on the second miss in a row. A failed probe never changes it.
        if self.missed.swap(true, Ordering::Relaxed) {
            self.budget_ns.store((stored / 2).max(min), Ordering::Relaxed);
        }
        false
    }
}

/// The longest one sleep lasts before the waiter looks whether `shm` lost pages.
/// A sleeper whose word's page a peer removed (by shrinking the segment) is
/// woken by nobody: the kernel keeps it queued on the vanished page, and this
/// process's wakers now write a private page in its place. Waits already wake this
/// often or more for liveness checks (the channel, `Mutex`, `SeqLock`) and for
/// signals (the Python binding's slices); an idle `Event` or `Semaphore` waiter
/// wakes twice a second for this.
pub(crate) const LOST_CHECK: Duration = Duration::from_millis(500);

/// Waits until `ready(word)` or `deadline`; `true` if ready. `sleepers` counts the
/// processes asleep on `word`, so that [`wake`] can skip the system call when
/// nobody sleeps. Both words lie in `shm`, and the caller runs in a guarded scope
/// of it ([`SharedMemory::guarded`]): if `shm` loses pages, the wait returns
/// `false` within [`LOST_CHECK`], and callers that loop must look at
/// [`SharedMemory::pages_lost`] before waiting again.
pub(crate) fn wait_until(
    shm: &SharedMemory,
    word: &AtomicU32,
    sleepers: &AtomicU32,
    spinner: &Spinner,
    deadline: Option<Instant>,
    ready: impl Fn(u32) -> bool,
) -> bool {
    wait_until_or(shm, word, sleepers, spinner, deadline, ready, || true)
}

/// As [`wait_until`], asking `may_sleep()` once, after spinning failed and before
/// sleeping: the place for checks too costly for the fast path (is the other side
/// alive?). If it says no, returns `false` at once.
pub(crate) fn wait_until_or(
    shm: &SharedMemory,
    word: &AtomicU32,
    sleepers: &AtomicU32,
    spinner: &Spinner,
    deadline: Option<Instant>,
    ready: impl Fn(u32) -> bool,
    may_sleep: impl FnOnce() -> bool,
) -> bool {
    if ready(word.load(Ordering::Acquire)) || spinner.spin(word, &ready, deadline) {
        spinner.last_wait_short.store(true, Ordering::Relaxed);
        return true;
    }
    if !may_sleep() {
        return false;
    }
    let asleep_at = Instant::now();
    let done = sleep_until(shm, word, sleepers, deadline, ready);
    spinner.last_wait_short.store(asleep_at.elapsed() < SHORT_WAIT, Ordering::Relaxed);
    done
}

/// The sleeping half of [`wait_until`].
fn sleep_until(
    shm: &SharedMemory,
    word: &AtomicU32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
    ready: impl Fn(u32) -> bool,
) -> bool {
    loop {
        let timeout = match deadline {
            None => LOST_CHECK,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(LOST_CHECK),
                _ => return ready(word.load(Ordering::Acquire)),
            },
        };
        sleepers.fetch_add(1, Ordering::SeqCst);
        // Registered as a sleeper before the last look (SeqCst, paired with the
        // waker's SeqCst change of the word and load of `sleepers`): either we see
        // the change, or the waker sees us and wakes. (Those touches may be what
        // finds the page gone: then do not sleep.)
        let seen = word.load(Ordering::SeqCst);
        let signalled = !ready(seen) && !shm.pages_lost() && sleep_on(word, seen, Some(timeout));
        sleepers.fetch_sub(1, Ordering::SeqCst);
        if ready(word.load(Ordering::Acquire)) {
            return true;
        }
        if signalled || shm.pages_lost() {
            return false;
        }
    }
}

/// Wakes up to `count` sleepers on `word`, after the caller changed it (with any
/// ordering: this fences first).
pub(crate) fn wake(word: &AtomicU32, sleepers: &AtomicU32, count: u32) {
    fence(Ordering::SeqCst);
    wake_after_rmw(word, sleepers, count);
}

/// As [`wake`], for a caller whose change of `word` was a SeqCst read-modify-write
/// (which orders it before the look at `sleepers` without a separate fence).
pub(crate) fn wake_after_rmw(word: &AtomicU32, sleepers: &AtomicU32, count: u32) {
    if sleepers.load(Ordering::SeqCst) > 0 {
        sys::wake(word, count);
        WOKE_A_SLEEPER.with(|w| w.set(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that keeps waking a sleeper probes long for a streak, then pauses
    /// for longer and longer; a signal that finds the other side awake starts
    /// afresh. (The decisions only: no clock is involved.)
    #[test]
    fn long_probes_come_in_streaks_then_pause() {
        let spinner = Spinner::new();
        let streak = |s: &Spinner| (0..LONG_PROBE_STREAK).all(|_| s.long_probe_due(true));
        assert!(streak(&spinner), "a waker probes long {LONG_PROBE_STREAK} times in a row");
        let paused =
            |s: &Spinner, waits: u32| (0..=waits).filter(|_| s.long_probe_due(true)).count() == 0;
        // The streak's end, then the first pause.
        assert!(paused(&spinner, LONG_PROBE_PAUSE), "then a pause of {LONG_PROBE_PAUSE} waits");
        assert!(streak(&spinner));
        assert!(paused(&spinner, 2 * LONG_PROBE_PAUSE), "the next pause is twice as long");
        // A signal that found the other side awake: the pair spins again.
        assert!(!spinner.long_probe_due(false), "no long probe without a wake-up");
        assert!(streak(&spinner));
        assert!(paused(&spinner, LONG_PROBE_PAUSE), "pauses start short again");
    }

    /// A long probe that saw nothing pauses long probes at once.
    #[test]
    fn a_long_probe_that_saw_nothing_pauses_them() {
        let spinner = Spinner::new();
        spinner.set_limit(Duration::from_micros(1));
        let word = AtomicU32::new(0);
        WOKE_A_SLEEPER.with(|w| w.set(true));
        assert!(!spinner.spin(&word, &|v| v != 0, None), "nothing changes the word");
        assert!(!spinner.long_probe_due(true), "paused after the long probe's miss");
        assert!(!WOKE_A_SLEEPER.with(Cell::get), "the spin took the note");
    }

    /// Waking a sleeper leaves the note for this thread's next spin; a wake with
    /// nobody asleep does not.
    #[test]
    fn waking_a_sleeper_is_noted_for_the_next_spin() {
        let (word, sleepers) = (AtomicU32::new(0), AtomicU32::new(0));
        WOKE_A_SLEEPER.with(|w| w.set(false));
        wake(&word, &sleepers, 1);
        assert!(!WOKE_A_SLEEPER.with(Cell::get));
        sleepers.store(1, Ordering::SeqCst); // as a sleeper registers itself
        wake(&word, &sleepers, 1);
        assert!(WOKE_A_SLEEPER.with(Cell::get));
    }
}
