//! The adaptive spinner keeps its bounds: a long probe after a wake-up stays within
//! the spin limit when the limit was raised, and a wait never spins past its
//! deadline. Measured in CPU time of the waiting thread (not wall time), with
//! margins of several times the expected figure: load can only hide a failure.
//! (Found by an outside attack; each failed on the code before the fix.)
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use shmbridge::SharedMemory;
use shmbridge::sync::Event;

/// One at a time: CPU figures of tests run side by side would mix.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn segment(size: usize) -> Arc<SharedMemory> {
    Arc::new(SharedMemory::create_unique("ts_spin_limits", size).unwrap())
}

/// A manual-reset event nobody sets, whose waiters spin up to `limit`.
fn unset_event(limit: Duration) -> Event {
    let event = Event::in_segment(segment(4096), 0, Some(false)).unwrap();
    event.set_spin_limit(limit);
    event
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Whether thread `tid` of this process sleeps in the kernel on a futex.
fn asleep_on_futex(tid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    let wchan = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).unwrap_or_default();
    state == Some("S") && wchan.contains("futex")
}

/// `set_spin_limit` documents a cap ("caps how long a waiter spins before
/// sleeping"), but a thread that has just woken a sleeper spins up to five limits
/// (a 1 s limit: 4.29 s, the u32 nanosecond budget saturated) on its next wait.
#[test]
fn a_waker_spins_no_longer_than_the_spin_limit() {
    let _alone = alone();
    let limit = Duration::from_millis(50);
    let shm = segment(4096);
    let ping = Event::in_segment(Arc::clone(&shm), 0, Some(true)).unwrap();
    let pong = Event::in_segment(Arc::clone(&shm), 64, Some(true)).unwrap();
    ping.set_spin_limit(Duration::ZERO); // the peer sleeps at once
    pong.set_spin_limit(limit);
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            ping.wait().unwrap();
            // A slow answer: 8 limits after the wake-up (this side's work).
            let until = Instant::now() + 8 * limit;
            while Instant::now() < until {
                std::thread::park_timeout(until - Instant::now());
            }
            pong.set().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let give_up = Instant::now() + Duration::from_secs(30);
        while !asleep_on_futex(tid) {
            assert!(Instant::now() < give_up, "the peer never slept");
            std::thread::yield_now();
        }
        ping.set().unwrap(); // wakes a sleeper: this thread's next wait probes long
        let before = thread_cpu();
        pong.wait().unwrap();
        let spun = thread_cpu() - before;
        assert!(
            spun < 2 * limit,
            "the waiter spun {spun:?} of CPU with a spin limit of {limit:?} (a long probe: 5 limits)"
        );
    });
}

/// A wait whose deadline has already passed (`wait_timeout(ZERO)`, what a poll and
/// the Python binding's first, GIL-holding attempt use) spins the whole budget: up
/// to the spin limit, one second at most, instead of returning at once. Also before
/// the change (84a8bae).
#[test]
fn a_wait_with_a_passed_deadline_returns_at_once() {
    let _alone = alone();
    let limit = Duration::from_millis(300);
    let event = unset_event(limit);
    let before = thread_cpu();
    assert!(!event.wait_timeout(Duration::ZERO).unwrap());
    let spun = thread_cpu() - before;
    assert!(spun < limit / 3, "wait_timeout(0) spun {spun:?} (spin limit {limit:?})");
}

/// A wait with a short timeout returns at its deadline (plus a small margin), not
/// after the spin budget, which ignores the deadline. Also before the change.
#[test]
fn a_short_timeout_is_kept_whatever_the_spin_limit() {
    let _alone = alone();
    let limit = Duration::from_millis(500);
    let event = unset_event(limit);
    let timeout = Duration::from_millis(10);
    let before = thread_cpu();
    assert!(!event.wait_timeout(timeout).unwrap());
    let spun = thread_cpu() - before;
    assert!(spun < limit / 5, "wait_timeout({timeout:?}) spun {spun:?} (spin limit {limit:?})");
}
