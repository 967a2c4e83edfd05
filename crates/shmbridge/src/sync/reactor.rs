//! Waiting without a thread per waiter: the building block of every async form.
//!
//! A [`Readiness`] names a 32-bit word in shared memory and the value it held
//! when its owner found nothing to do; [`Readiness::register`] asks to be told,
//! once, when the word may have changed (or when a re-check time comes, for
//! liveness checks). A few waiter threads per process ("shards", each watching up
//! to 127 words with one `futex_waitv`, plus a control word) serve every
//! registration in the process, however many: registrations of the same word and
//! value share one entry.
//!
//! Being told is not being served: the waiter then tries its operation itself
//! (takes the message, the permit, the lock), on its own thread. So dropping a
//! registration, or the future around it, never consumes or loses anything; a
//! waiter that gives up after being told passes the wake-up on (see
//! [`Readiness::pass_on`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::wait::LOST_CHECK;
use crate::segment::SharedMemory;
use crate::sys;

/// Words one shard watches, besides its control word (`futex_waitv` takes 128).
const WORDS_PER_SHARD: usize = 127;

/// A word to wait on: ready once its value differs from the one seen.
///
/// Made by the primitives (`Event::readiness`, `Receiver::recv_readiness`, ...)
/// when the operation could not be done at once; it keeps the segment mapped.
pub struct Readiness {
    shm: Arc<SharedMemory>,
    word: usize,
    sleepers: usize,
    seen: u32,
    recheck: Option<Duration>,
}

impl Readiness {
    /// A readiness on the word at byte `word` of `shm` (holding `seen` now), whose
    /// waiters are counted in the word at byte `sleepers`.
    pub(crate) fn new(
        shm: Arc<SharedMemory>,
        word: usize,
        sleepers: usize,
        seen: u32,
        recheck: Option<Duration>,
    ) -> Self {
        Self { shm, word, sleepers, seen, recheck }
    }

    fn word(&self) -> &AtomicU32 {
        self.shm.atomic_u32(self.word)
    }

    /// Whether the word no longer holds the value seen, looked at in a guarded
    /// scope of the segment: a word whose page vanished (a peer shrank the
    /// segment) counts as changed, so that its waiters try their operation and get
    /// the error, instead of this process dying of SIGBUS or the waiters sleeping
    /// on a page nobody else sees.
    fn changed(&self) -> bool {
        self.shm.guarded(|| self.word().load(Ordering::SeqCst) != self.seen).unwrap_or(true)
    }

    /// Counts one more sleeper on the word (or one fewer); nothing if its page
    /// vanished.
    fn count_sleeper(&self, delta: i32) {
        let sleepers = self.shm.atomic_u32(self.sleepers);
        let _ = self.shm.guarded(|| {
            if delta > 0 {
                sleepers.fetch_add(1, Ordering::SeqCst);
            } else {
                sleepers.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }

    /// Calls `notify` once, on a waiter thread of this crate, when the word may
    /// have changed, or when the re-check time of this readiness comes (a liveness
    /// check is due). If the word already changed, `notify` runs before this
    /// returns. Dropping the [`Registration`] before then cancels it.
    ///
    /// `notify` should only wake whoever waits (a `Waker`, a file descriptor), not
    /// do the operation: the waiter tries it again itself.
    pub fn register(self, notify: impl FnOnce() + Send + 'static) -> Registration {
        reactor().register(self, Box::new(notify))
    }

    /// Wakes one sleeper of this word, in any process: what a waiter that was told
    /// the word changed, but gives up without acting, does so that a wake-up meant
    /// for one waiter is not lost (an auto-reset event's set, a semaphore permit, a
    /// message).
    pub fn pass_on(&self) {
        sys::wake(self.word(), 1);
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("segment", &self.shm.name())
            .field("word", &self.word)
            .field("seen", &self.seen)
            .finish()
    }
}

/// A registered wait; dropping it cancels the wait if it has not fired.
pub struct Registration {
    shard: Arc<Shard>,
    key: Key,
    id: u64,
    /// The word, for [`pass_on`](Self::pass_on).
    shm: Arc<SharedMemory>,
    word: usize,
}

impl Registration {
    /// Whether the notification was sent (the word may have changed, or a
    /// re-check is due).
    pub fn fired(&self) -> bool {
        !self.shard.lock().entries.get(&self.key).is_some_and(|e| e.waiters.contains_key(&self.id))
    }

    /// As [`Readiness::pass_on`]: wakes one sleeper of the word.
    pub fn pass_on(&self) {
        sys::wake(self.shm.atomic_u32(self.word), 1);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.shard.lock();
        if let Some(entry) = state.entries.get_mut(&self.key) {
            entry.waiters.remove(&self.id);
            if entry.waiters.is_empty() {
                let entry = state.entries.remove(&self.key).expect("just found");
                entry.leave();
                drop(state);
                self.shard.kick();
            }
        }
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").field("id", &self.id).finish()
    }
}

/// An entry is one word and the value seen: (address, value).
type Key = (usize, u32);

type Notify = Box<dyn FnOnce() + Send>;

struct Waiter {
    notify: Notify,
    /// When to notify even if the word did not change.
    recheck_at: Option<Instant>,
}

struct Entry {
    readiness: Readiness,
    waiters: HashMap<u64, Waiter>,
}

impl Entry {
    /// Stops counting as a sleeper of the word.
    fn leave(&self) {
        self.readiness.count_sleeper(-1);
    }
}

#[derive(Default)]
struct ShardState {
    entries: HashMap<Key, Entry>,
}

/// One waiter thread and what it watches.
struct Shard {
    /// Bumped (and woken) whenever the entries change, so the thread looks again.
    control: AtomicU32,
    state: Mutex<ShardState>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ShardState> {
        // Nothing panics while the lock is held; the state stays consistent anyway.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn kick(&self) {
        self.control.fetch_add(1, Ordering::SeqCst);
        sys::wake(&self.control, 1);
    }

    /// The thread: wait on every word (and the control word), fire what changed or
    /// is due, repeat.
    fn run(self: Arc<Self>) {
        loop {
            let control = self.control.load(Ordering::SeqCst);
            // The segments stay mapped while we sleep on their words: clones of the
            // entries' segments are held until the wait returns.
            let mut held: Vec<(Arc<SharedMemory>, usize, u32)> = Vec::new();
            let due = {
                let state = self.lock();
                held.extend(state.entries.values().map(|e| {
                    let r = &e.readiness;
                    (Arc::clone(&r.shm), r.word, r.seen)
                }));
                state
                    .entries
                    .values()
                    .flat_map(|e| e.waiters.values().filter_map(|w| w.recheck_at))
                    .min()
            };
            let mut waits: Vec<(&AtomicU32, u32)> = Vec::with_capacity(held.len() + 1);
            waits.push((&self.control, control));
            waits.extend(held.iter().map(|(shm, offset, seen)| (shm.atomic_u32(*offset), *seen)));
            let mut timeout = due.map(|d| d.saturating_duration_since(Instant::now()));
            if waits.len() > 1 {
                // A word whose page a peer removed is woken by nobody: look at the
                // words (fire, guarded) at least this often.
                timeout = Some(timeout.map_or(LOST_CHECK, |t| t.min(LOST_CHECK)));
            }
            sys::wait_on_many(&waits, timeout);
            drop(waits);
            drop(held);
            self.fire();
        }
    }

    /// Removes and notifies the waiters whose word changed or whose re-check is due.
    fn fire(&self) {
        let now = Instant::now();
        let mut notify = Vec::new();
        {
            let mut state = self.lock();
            state.entries.retain(|_, entry| {
                let changed = entry.readiness.changed();
                if changed {
                    notify.extend(entry.waiters.drain().map(|(_, w)| w.notify));
                } else {
                    let due: Vec<u64> = entry
                        .waiters
                        .iter()
                        .filter(|(_, w)| w.recheck_at.is_some_and(|at| at <= now))
                        .map(|(&id, _)| id)
                        .collect();
                    for id in due {
                        notify.push(entry.waiters.remove(&id).expect("just found").notify);
                    }
                }
                let keep = !entry.waiters.is_empty();
                if !keep {
                    entry.leave();
                }
                keep
            });
        }
        for n in notify {
            n();
        }
    }
}

/// The process's shards.
struct Reactor {
    shards: Mutex<Vec<Arc<Shard>>>,
    next_id: AtomicU64,
}

fn reactor() -> &'static Reactor {
    static REACTOR: OnceLock<Reactor> = OnceLock::new();
    REACTOR.get_or_init(|| Reactor { shards: Mutex::new(Vec::new()), next_id: AtomicU64::new(1) })
}

impl Reactor {
    fn register(&self, readiness: Readiness, notify: Notify) -> Registration {
        let key = (readiness.word() as *const AtomicU32 as usize, readiness.seen);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let recheck_at = readiness.recheck.map(|d| Instant::now() + d);
        // The shards' list stays locked until the entry is in, so two registrations
        // cannot both take a shard's last free place.
        let mut shards = self.shards.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The shard already watching this word and value, else one with room, else a
        // new one.
        let shard = shards
            .iter()
            .find(|s| s.lock().entries.contains_key(&key))
            .or_else(|| shards.iter().find(|s| s.lock().entries.len() < WORDS_PER_SHARD))
            .cloned()
            .unwrap_or_else(|| {
                let shard = Arc::new(Shard { control: AtomicU32::new(0), state: Mutex::default() });
                let thread = Arc::clone(&shard);
                std::thread::Builder::new()
                    .name("shmbridge-waiter".into())
                    .spawn(move || thread.run())
                    .expect("a waiter thread can be started");
                shards.push(Arc::clone(&shard));
                shard
            });
        let (shm, word) = (Arc::clone(&readiness.shm), readiness.word);
        let registration = |shard| Registration { shard, key, id, shm, word };
        let mut state = shard.lock();
        drop(shards);
        let waiter = Waiter { notify, recheck_at };
        if let Some(entry) = state.entries.get_mut(&key) {
            entry.waiters.insert(id, waiter);
            drop(state);
            return registration(shard);
        }
        // Count as a sleeper before the last look (SeqCst, paired with the waker's
        // change of the word and look at the sleepers): either we see the change now,
        // or the waker sees us and wakes the shard.
        readiness.count_sleeper(1);
        let changed = readiness.changed();
        let entry = Entry { readiness, waiters: HashMap::from([(id, waiter)]) };
        if changed {
            entry.leave();
            drop(state);
            for (_, w) in entry.waiters {
                (w.notify)();
            }
            return registration(shard);
        }
        state.entries.insert(key, entry);
        drop(state);
        shard.kick();
        registration(shard)
    }
}

/// A future that runs `attempt` on each poll and, while it cannot proceed, waits
/// for the [`Readiness`] it returns, with no thread of its own. Dropped before it
/// completes, it consumes nothing, and passes on a wake-up it was given.
pub(crate) struct WhenReady<A> {
    attempt: A,
    registration: Option<Registration>,
    told: Arc<Told>,
}

/// What the notification tells the future: that it fired, and whom to wake.
#[derive(Default)]
struct Told {
    fired: std::sync::atomic::AtomicBool,
    waker: Mutex<Option<std::task::Waker>>,
}

impl<A> WhenReady<A> {
    pub(crate) fn new(attempt: A) -> Self {
        Self { attempt, registration: None, told: Arc::default() }
    }
}

impl<A, T> std::future::Future for WhenReady<A>
where
    A: FnMut() -> Result<T, Readiness> + Unpin,
{
    type Output = T;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            let readiness = match (this.attempt)() {
                Ok(done) => {
                    this.registration = None;
                    return Poll::Ready(done);
                }
                Err(readiness) => readiness,
            };
            *this.told.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            if this.registration.is_some() && !this.told.fired.load(Ordering::Acquire) {
                return Poll::Pending; // still waiting; the waker is up to date
            }
            this.told.fired.store(false, Ordering::Release);
            let told = Arc::clone(&this.told);
            this.registration = Some(readiness.register(move || {
                told.fired.store(true, Ordering::Release);
                if let Some(waker) = told.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    waker.wake();
                }
            }));
            if !this.told.fired.load(Ordering::Acquire) {
                return Poll::Pending;
            }
            // It changed while registering: try again now.
        }
    }
}

impl<A> Drop for WhenReady<A> {
    fn drop(&mut self) {
        // Told, but giving up without acting: the wake-up may have been meant for
        // one waiter only, so hand it to the next.
        if let Some(registration) = &self.registration
            && self.told.fired.load(Ordering::Acquire)
        {
            registration.pass_on();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn word_segment() -> Arc<SharedMemory> {
        Arc::new(SharedMemory::create_unique("t_reactor", 4096).unwrap())
    }

    #[test]
    fn notifies_once_when_the_word_changes_and_not_after_cancel() {
        let shm = word_segment();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let reg =
            Readiness::new(Arc::clone(&shm), 0, 4, 0, None).register(move || tx.send(1).unwrap());
        let cancelled =
            Readiness::new(Arc::clone(&shm), 0, 4, 0, None).register(move || tx2.send(2).unwrap());
        drop(cancelled);
        assert!(!reg.fired());
        shm.atomic_u32(0).store(1, Ordering::SeqCst);
        sys::wake(shm.atomic_u32(0), 1);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert!(reg.fired());
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "the cancelled one stays quiet"
        );
        assert_eq!(shm.atomic_u32(4).load(Ordering::SeqCst), 0, "no sleeper left counted");
    }

    #[test]
    fn already_changed_fires_at_once_and_rechecks_fire_on_time() {
        let shm = word_segment();
        shm.atomic_u32(0).store(5, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        let _r = Readiness::new(Arc::clone(&shm), 0, 4, 0, None)
            .register(move || t.send("now").unwrap());
        assert_eq!(rx.try_recv(), Ok("now"));
        let _r = Readiness::new(Arc::clone(&shm), 8, 12, 0, Some(Duration::from_millis(20)))
            .register(move || tx.send("recheck").unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok("recheck"));
    }

    #[test]
    fn thousands_of_registrations_on_hundreds_of_words_use_few_threads() {
        let shm = Arc::new(SharedMemory::create_unique("t_reactor_many", 8 * 1024).unwrap());
        let (tx, rx) = mpsc::channel();
        let regs: Vec<Registration> = (0..4000)
            .map(|i| {
                let tx = tx.clone();
                let word = 8 * (i % 500);
                Readiness::new(Arc::clone(&shm), word, word + 4, 0, None)
                    .register(move || tx.send(i).unwrap())
            })
            .collect();
        for w in 0..500 {
            shm.atomic_u32(8 * w).store(1, Ordering::SeqCst);
            sys::wake(shm.atomic_u32(8 * w), 1);
        }
        for _ in 0..4000 {
            rx.recv_timeout(Duration::from_secs(20)).expect("every registration fires");
        }
        assert!(regs.iter().all(Registration::fired));
        let shards = reactor().shards.lock().unwrap().len();
        // 500 words need 4 shards; other tests of this binary may add a few.
        assert!(shards <= 8, "{shards} shards for 500 words");
    }
}
