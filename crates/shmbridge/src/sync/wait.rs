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
}

/// Runs `f`; while it runs, every blocking wait of this crate in this thread
/// returns early when a signal handler interrupts it (as a time-out: `false`,
/// `None`, [`ChannelError::Timeout`](crate::channel::ChannelError::Timeout),
/// [`Error::Busy`](crate::Error::Busy)), instead of going back to sleep.
///
/// For programs that handle signals while blocked: the Python binding runs its
/// waits this way, so Ctrl-C reaches Python at once, and its waits need not wake
/// up periodically to look for signals. On systems whose waits poll (macOS,
/// Windows) nothing changes.
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
/// condition met it covers twice what that took, after one that did not it
/// halves. On a busy machine spinning only burns the other side's CPU, and the
/// budget falls to the minimum by itself.
///
/// Halving alone is a trap in ping-pong: once one side oversleeps, the other's spin
/// fails, its budget shrinks, and both settle into sleeping for good. So every
/// [`PROBE_EVERY`]th wait spins up to the limit if the last wait was short: a pair
/// that can run spinning finds its way back, an idle waiter never probes, and a
/// probe costs at most the limit (20 us by default), never hundreds of
/// microseconds.
#[derive(Debug)]
pub(crate) struct Spinner {
    budget_ns: AtomicU32,
    limit_ns: AtomicU32,
    waits: AtomicU32,
    /// The last wait ended within [`SHORT_WAIT`]: the other side answers fast, and
    /// spinning may pay. Idle waits (long sleeps, time-outs) do not probe.
    last_wait_short: AtomicBool,
}

/// A wait that ends within this was a quick exchange, not idleness.
const SHORT_WAIT: Duration = Duration::from_millis(1);

/// Every this many waits, spin up to the limit whatever the budget says.
const PROBE_EVERY: u32 = 16;

impl Spinner {
    pub(crate) fn new() -> Self {
        Self {
            budget_ns: AtomicU32::new(2_000),
            limit_ns: AtomicU32::new(DEFAULT_SPIN_LIMIT.as_nanos() as u32),
            waits: AtomicU32::new(0),
            last_wait_short: AtomicBool::new(true),
        }
    }

    /// Caps the spinning (zero: never spin, sleep at once); at most one second.
    pub(crate) fn set_limit(&self, limit: Duration) {
        let ns = limit.min(Duration::from_secs(1)).as_nanos() as u32;
        self.limit_ns.store(ns, Ordering::Relaxed);
        self.budget_ns.store(ns, Ordering::Relaxed);
    }

    /// Checks `ready` until it holds or the budget is spent; whether it held.
    fn spin(&self, word: &AtomicU32, ready: &impl Fn(u32) -> bool) -> bool {
        let limit = self.limit_ns.load(Ordering::Relaxed);
        if limit == 0 {
            return false;
        }
        let probe = self.waits.fetch_add(1, Ordering::Relaxed).is_multiple_of(PROBE_EVERY)
            && self.last_wait_short.load(Ordering::Relaxed);
        let budget = if probe { limit } else { self.budget_ns.load(Ordering::Relaxed).min(limit) };
        let min = (MIN_BUDGET.as_nanos() as u32).min(limit);
        let start = Instant::now();
        let mut checks = 0u32;
        loop {
            if ready(word.load(Ordering::Acquire)) {
                let took = start.elapsed().as_nanos().min(u128::from(limit)) as u32;
                let grown = budget.max(took.saturating_mul(2)).clamp(min, limit);
                self.budget_ns.store(grown, Ordering::Relaxed);
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
        self.budget_ns.store((budget / 2).max(min), Ordering::Relaxed);
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
    if ready(word.load(Ordering::Acquire)) || spinner.spin(word, &ready) {
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
    }
}
