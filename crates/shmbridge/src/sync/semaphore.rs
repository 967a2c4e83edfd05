//! `Semaphore`: a counter that `acquire` takes from and `release` adds to.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::reactor::{Readiness, WhenReady};
use super::wait::{Spinner, wait_until, wake};
use super::{Kind, Place, create_named, open_named};
use crate::error::{Error, Result};
use crate::segment::SharedMemory;

const COUNT: usize = 0;
const SLEEPERS: usize = 1;

/// A counting semaphore shared between processes.
///
/// Layout: 16 bytes (`count`, `sleepers`, `flags`, reserved; `docs/FORMAT.md`).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use shmbridge::sync::Semaphore;
///
/// let slots = Semaphore::create(&shmbridge::unique_name("doc_semaphore")?, 2)?;
/// assert!(slots.try_acquire()?);
/// assert!(slots.acquire_timeout(Duration::from_secs(1))?);
/// assert!(!slots.try_acquire()?); // both taken
/// slots.release(1)?;
/// assert_eq!(slots.value()?, 1);
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct Semaphore {
    place: Place,
    spinner: Spinner,
}

impl Semaphore {
    /// Bytes a semaphore takes in a segment.
    pub const SIZE: usize = 16;

    /// Creates a semaphore with count `value` in a new segment of its own.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`].
    pub fn create(name: &str, value: u32) -> Result<Self> {
        Self::in_segment(create_named(name, Self::SIZE, Kind::Semaphore)?, 0, value)
    }

    /// Opens a semaphore created with [`create`](Self::create).
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::open`]; [`Error::Incompatible`] if another primitive is there.
    pub fn open(name: &str) -> Result<Self> {
        Self::in_segment(open_named(name, Self::SIZE)?, 0, 0)
    }

    /// The semaphore at `offset` (8-aligned) of `shm`. Fresh (zero) memory becomes
    /// a semaphore whose count is `initial`; an existing one keeps its count.
    ///
    /// # Errors
    ///
    /// As [`Event::in_segment`](super::Event::in_segment).
    pub fn in_segment(shm: Arc<SharedMemory>, offset: usize, initial: u32) -> Result<Self> {
        let place = Place::new(shm, offset, Self::SIZE, Kind::Semaphore)?;
        let (_, fresh) = place.init(Kind::Semaphore, None)?;
        let semaphore = Self { place, spinner: Spinner::new() };
        if fresh && initial > 0 {
            semaphore.release(initial)?;
        }
        Ok(semaphore)
    }

    /// Takes one from the count, waiting while it is 0.
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] if another process shrank the segment, taking the
    /// semaphore's page (before or during the call; a wait ends within half a
    /// second of that). So for every method of this type.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_deadline(None).map(drop)
    }

    /// Takes one if the count is above 0, without waiting.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn try_acquire(&self) -> Result<bool> {
        self.place.guarded(|| self.take_one())
    }

    /// The body of [`try_acquire`](Self::try_acquire), in a guarded scope.
    fn take_one(&self) -> bool {
        let count = self.place.word(COUNT);
        count.fetch_update(Ordering::Acquire, Ordering::Relaxed, |c| c.checked_sub(1)).is_ok()
    }

    /// Waits at most `timeout`; whether one was taken.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.acquire_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (forever if `None`); whether one was taken.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_deadline(&self, deadline: Option<Instant>) -> Result<bool> {
        self.place.guarded(|| {
            loop {
                if self.take_one() {
                    return true;
                }
                let (count, sleepers) = (self.place.word(COUNT), self.place.word(SLEEPERS));
                let shm = &*self.place.shm;
                // False also when the page is lost; the scope reports that.
                if !wait_until(shm, count, sleepers, &self.spinner, deadline, |c| c > 0) {
                    return false;
                }
            }
        })
    }

    /// Takes one from the count when it is above 0, without blocking a thread: a
    /// future for any async runtime. Cancel-safe: dropping it before it completes
    /// takes nothing (a permit it was woken for goes on to the next waiter).
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_async(&self) -> impl std::future::Future<Output = Result<()>> + '_ {
        WhenReady::new(move || {
            self.place.attempt(|| {
                if self.take_one() {
                    Ok(())
                } else {
                    Err(self.place.readiness(COUNT, SLEEPERS, 0, None))
                }
            })
        })
    }

    /// What to wait for while the count is 0 (`None` if a permit is there now, or
    /// the page vanished: acquire then, to get the error), for bindings that wait
    /// their own way (see [`Readiness`]). Takes nothing.
    pub fn readiness(&self) -> Option<Readiness> {
        match self.place.guarded(|| self.place.word(COUNT).load(Ordering::Acquire)) {
            Ok(0) => Some(self.place.readiness(COUNT, SLEEPERS, 0, None)),
            _ => None,
        }
    }

    /// Adds `n` to the count, waking up to `n` waiters.
    ///
    /// # Errors
    ///
    /// [`Error::Incompatible`] if the count would pass `u32::MAX` (nothing is
    /// added); [`Error::PagesLost`] as for [`acquire`](Self::acquire).
    pub fn release(&self, n: u32) -> Result<()> {
        let count = self.place.word(COUNT);
        self.place.try_guarded(|| {
            count
                .fetch_update(Ordering::Release, Ordering::Relaxed, |c| c.checked_add(n))
                .map_err(|c| Error::Incompatible {
                    name: self.place.shm.name().to_owned(),
                    what: format!("a Semaphore at offset {}", self.place.offset),
                    reason: format!("has count {c}; releasing {n} more would overflow it"),
                })?;
            wake(count, self.place.word(SLEEPERS), n);
            Ok(())
        })
    }

    /// The current count.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn value(&self) -> Result<u32> {
        self.place.guarded(|| self.place.word(COUNT).load(Ordering::Acquire))
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
