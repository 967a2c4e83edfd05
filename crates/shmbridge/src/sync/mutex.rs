//! `Mutex`: mutual exclusion between processes that survives the death of its
//! owner.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::reactor::{Readiness, WhenReady};
use super::wait::{Spinner, wait_until, wake};
use super::{Kind, Place, create_named, my_pid, open_named};
use crate::error::Result;
use crate::segment::SharedMemory;
use crate::sys;

/// The lock word: 0 when free, else the owner's process id.
const OWNER: usize = 0;
const SLEEPERS: usize = 1;
/// How often a waiter checks whether the owner is still alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// A lock shared between processes, which detects an owner that died holding it.
///
/// The lock word holds the owner's process id. A waiter checks, every 100 ms and
/// before it sleeps, whether that process still exists; if not, it takes the lock
/// over and is told so through [`OwnerDied`], so it can repair the data the dead
/// owner may have left half-changed. Never a silent hang.
///
/// Threads of one process exclude each other too, but a thread that locks twice
/// deadlocks (as with `std::sync::Mutex`). A recycled process id can make a dead
/// owner look alive; on Linux pids are reused only after the whole range cycles.
///
/// Layout: 16 bytes (`owner`, `sleepers`, `flags`, reserved; `docs/FORMAT.md`).
///
/// # Example
///
/// ```
/// use shmbridge::sync::Mutex;
///
/// let name = shmbridge::unique_name("doc_mutex")?;
/// let lock = Mutex::create(&name)?;
/// let other = Mutex::open(&name)?; // in another process, usually
/// let guard = match lock.lock()? {
///     Ok(guard) => guard,
///     Err(died) => {
///         // The last owner (process `died.dead_owner()`) died holding the lock:
///         // repair what it may have left half-changed, then carry on.
///         died.into_guard()
///     }
/// };
/// assert!(other.try_lock()?.is_none()); // held
/// drop(guard);
/// assert!(other.try_lock()?.is_some());
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct Mutex {
    place: Place,
    spinner: Spinner,
}

/// Holding the lock; dropping it unlocks.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
}

/// The lock was taken over from a process that died holding it: the data it
/// protects may be half-updated. The lock is held; repair, then drop the guard.
#[derive(Debug)]
#[must_use = "the lock is held: repair the data, then drop the guard"]
pub struct OwnerDied<'a> {
    guard: MutexGuard<'a>,
    pid: u32,
}

impl<'a> OwnerDied<'a> {
    /// The guard (the lock is held).
    pub fn into_guard(self) -> MutexGuard<'a> {
        self.guard
    }

    /// The process that died holding the lock.
    pub fn dead_owner(&self) -> u32 {
        self.pid
    }
}

/// A lock taken normally (`Ok`) or taken over from a dead owner (`Err`).
pub type LockResult<'a> = std::result::Result<MutexGuard<'a>, OwnerDied<'a>>;

impl Mutex {
    /// Bytes a mutex takes in a segment.
    pub const SIZE: usize = 16;

    /// Creates an unlocked mutex in a new segment of its own.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`].
    pub fn create(name: &str) -> Result<Self> {
        Self::in_segment(create_named(name, Self::SIZE, Kind::Mutex)?, 0)
    }

    /// Opens a mutex created with [`create`](Self::create).
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::open`]; [`Error::Incompatible`](crate::Error::Incompatible)
    /// if another primitive is there.
    pub fn open(name: &str) -> Result<Self> {
        Self::in_segment(open_named(name, Self::SIZE)?, 0)
    }

    /// The mutex at `offset` (8-aligned) of `shm`; fresh (zero) memory is unlocked.
    ///
    /// # Errors
    ///
    /// As [`Event::in_segment`](super::Event::in_segment).
    pub fn in_segment(shm: Arc<SharedMemory>, offset: usize) -> Result<Self> {
        let place = Place::new(shm, offset, Self::SIZE, Kind::Mutex)?;
        place.init(Kind::Mutex, None)?;
        Ok(Self { place, spinner: Spinner::new() })
    }

    /// Takes the lock, waiting as long as a live process holds it.
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`](crate::Error::PagesLost) if another process shrank the
    /// segment, taking the lock's page (before or during the call; a wait ends
    /// within 100 ms of that): the lock is not taken. So for every method of this
    /// type.
    pub fn lock(&self) -> Result<LockResult<'_>> {
        loop {
            // Without a deadline, only a lost page ends the wait without the lock.
            if let Some(taken) = self.lock_deadline(None)? {
                return Ok(taken);
            }
        }
    }

    /// Takes the lock if it is free (or its owner is dead), without waiting.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<Option<LockResult<'_>>> {
        self.lock_deadline(Some(Instant::now()))
    }

    /// Waits at most `timeout` for the lock.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<LockResult<'_>>> {
        self.lock_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (forever if `None`) for the lock; `None` if it did not
    /// come in time.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn lock_deadline(&self, deadline: Option<Instant>) -> Result<Option<LockResult<'_>>> {
        // A guard taken on a private page (the lock's page was replaced while we
        // waited) is dropped with the scope's error: its unlock, guarded too, then
        // does nothing.
        self.place.guarded(|| self.lock_unguarded(deadline))
    }

    /// The body of [`lock_deadline`](Self::lock_deadline), in its guarded scope.
    fn lock_unguarded(&self, deadline: Option<Instant>) -> Option<LockResult<'_>> {
        let owner = self.place.word(OWNER);
        let me = my_pid();
        loop {
            let held_by = owner.load(Ordering::Acquire);
            if held_by == 0 {
                if owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    return Some(Ok(MutexGuard { mutex: self }));
                }
                continue;
            }
            if held_by != me && !sys::process_alive(held_by) {
                if owner.compare_exchange(held_by, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
                {
                    return Some(Err(OwnerDied {
                        guard: MutexGuard { mutex: self },
                        pid: held_by,
                    }));
                }
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return None;
            }
            // Sleep until the word changes, waking now and then to check the owner.
            let slice = now + LIVENESS_CHECK;
            let until = deadline.map_or(slice, |d| d.min(slice));
            let (shm, sleepers) = (&*self.place.shm, self.place.word(SLEEPERS));
            wait_until(shm, owner, sleepers, &self.spinner, Some(until), |v| v != held_by);
            if super::wait::interrupted() || self.place.pages_lost() {
                return None;
            }
        }
    }

    /// Takes the lock when it is free (or its owner died), without blocking a
    /// thread: a future for any async runtime. While the lock is held it checks
    /// every 100 ms whether its owner still lives. Cancel-safe: dropping it before
    /// it completes takes nothing.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn lock_async(&self) -> impl std::future::Future<Output = Result<LockResult<'_>>> + '_ {
        WhenReady::new(move || {
            self.place.attempt(|| match self.lock_unguarded(Some(Instant::now())) {
                Some(taken) => Ok(taken),
                None => Err(self.waiting_for(self.place.word(OWNER).load(Ordering::Acquire))),
            })
        })
    }

    /// What to wait for while the lock is held (`None` if it can be taken now, or
    /// its page vanished: lock then, to get the error), for bindings that wait
    /// their own way (see [`Readiness`]): the owner word's change, or a liveness
    /// check of the owner every 100 ms. Takes nothing.
    pub fn readiness(&self) -> Option<Readiness> {
        match self.place.guarded(|| self.place.word(OWNER).load(Ordering::Acquire)) {
            Err(_) | Ok(0) => None,
            Ok(held_by) if held_by != my_pid() && !sys::process_alive(held_by) => None,
            Ok(held_by) => Some(self.waiting_for(held_by)),
        }
    }

    fn waiting_for(&self, held_by: u32) -> Readiness {
        self.place.readiness(OWNER, SLEEPERS, held_by, Some(LIVENESS_CHECK))
    }

    /// Whether some process holds the lock.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn is_locked(&self) -> Result<bool> {
        self.place.guarded(|| self.place.word(OWNER).load(Ordering::Acquire) != 0)
    }

    /// Releases the lock without a guard: for bindings that keep the lock across
    /// calls (the Python `acquire`/`release` pair), having forgotten the guard.
    /// Returns `false`, changing nothing, if this process does not hold the lock
    /// (a child made by `fork` never releases its parent's lock).
    ///
    /// # Safety
    ///
    /// The caller must hold the lock (its guard forgotten with `mem::forget`), and
    /// nothing may use that guard afterwards.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock): the lock's page vanished, so no other process can
    /// see this lock any more.
    pub unsafe fn force_unlock(&self) -> Result<bool> {
        self.unlock()
    }

    /// The process holding the lock, if any (it may have died).
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn owner_pid(&self) -> Result<Option<u32>> {
        self.place.guarded(|| match self.place.word(OWNER).load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        })
    }

    /// Unlocks if this process holds the lock. A guard inherited by a `fork`ed
    /// child finds another process's id in the word and leaves it alone.
    fn unlock(&self) -> Result<bool> {
        self.place.guarded(|| {
            let owner = self.place.word(OWNER);
            if owner.compare_exchange(my_pid(), 0, Ordering::Release, Ordering::Relaxed).is_err() {
                return false;
            }
            wake(owner, self.place.word(SLEEPERS), 1);
            true
        })
    }

    /// Caps how long a waiter spins before sleeping (default 20 us; zero: sleep
    /// at once, at most one second). Spinning answers a busy peer in well under a
    /// microsecond; sleeping costs a wake-up (5 to 50 us) but no CPU. A spin never
    /// outlasts the wait's deadline (a zero timeout does not spin); right after this
    /// thread woke a sleeper, one wait may spin up to five limits but no more than
    /// 100 us (or the limit, if that is longer), to see the sleeper's answer.
    pub fn set_spin_limit(&self, limit: Duration) {
        self.spinner.set_limit(limit);
    }
}

impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // False only in a forked child, whose copy of the guard must not release the
        // parent's lock. An error (the lock's page vanished) leaves nothing to do.
        let _ = self.mutex.unlock();
    }
}
