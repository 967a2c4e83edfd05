//! `Event`: set / clear / wait, manual- or auto-reset.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::reactor::{Readiness, WhenReady};
use super::wait::{Spinner, wait_until, wake};
use super::{Kind, Place, create_named, open_named};
use crate::error::Result;
use crate::segment::SharedMemory;

const STATE: usize = 0;
const SLEEPERS: usize = 1;
const AUTO_RESET: u32 = 1;

/// A flag that processes wait for: `set` wakes the waiters.
///
/// A manual-reset event stays set until `clear`, waking every waiter; an
/// auto-reset event lets exactly one waiter through per `set` and clears itself.
/// Layout: 16 bytes (`state`, `sleepers`, `flags`, reserved; `docs/FORMAT.md`).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use shmbridge::sync::Event;
///
/// let name = shmbridge::unique_name("doc_event")?;
/// let ready = Event::create(&name, false)?; // manual reset
/// let other = Event::open(&name)?; // in another process, usually
/// assert!(!other.wait_timeout(Duration::from_millis(1))?);
/// ready.set()?;
/// assert!(other.wait_timeout(Duration::from_secs(1))?);
/// assert!(other.is_set()?); // stays set until cleared
/// ready.clear()?;
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct Event {
    place: Place,
    auto_reset: bool,
    spinner: Spinner,
}

impl Event {
    /// Bytes an event takes in a segment.
    pub const SIZE: usize = 16;

    /// Creates an event in a new segment of its own, unset.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`].
    pub fn create(name: &str, auto_reset: bool) -> Result<Self> {
        Self::in_segment(create_named(name, Self::SIZE, Kind::Event)?, 0, Some(auto_reset))
    }

    /// Opens an event created with [`create`](Self::create).
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::open`]; [`Error::Incompatible`](crate::Error::Incompatible)
    /// if the segment holds another primitive.
    pub fn open(name: &str) -> Result<Self> {
        Self::in_segment(open_named(name, Self::SIZE)?, 0, None)
    }

    /// The event at `offset` (8-aligned) of `shm`. Fresh (zero) memory becomes an
    /// unset event, auto-reset if `auto_reset` says so; an existing event keeps its
    /// mode, and `auto_reset`, if given, must match it.
    ///
    /// # Errors
    ///
    /// [`Error::Misaligned`](crate::Error::Misaligned),
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds), [`Error::ReadOnly`](crate::Error::ReadOnly)
    /// for a bad place; [`Error::Incompatible`](crate::Error::Incompatible) if another
    /// primitive, or an event of the other mode, is there.
    pub fn in_segment(
        shm: Arc<SharedMemory>,
        offset: usize,
        auto_reset: Option<bool>,
    ) -> Result<Self> {
        let place = Place::new(shm, offset, Self::SIZE, Kind::Event)?;
        let (settings, _) =
            place.init(Kind::Event, auto_reset.map(|a| if a { AUTO_RESET } else { 0 }))?;
        let mode = settings & AUTO_RESET != 0;
        if auto_reset.is_some_and(|a| a != mode) {
            let (is, not) =
                if mode { ("auto-reset", "manual-reset") } else { ("manual-reset", "auto-reset") };
            let reason =
                format!("is {is}, not {not}: open it without asking for a mode, or with its own");
            return Err(place.incompatible(Kind::Event, reason));
        }
        Ok(Self { place, auto_reset: mode, spinner: Spinner::new() })
    }

    /// Sets the event, waking the waiters (one, for an auto-reset event).
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`](crate::Error::PagesLost) if another process shrank the
    /// segment, taking the event's page (now or before): the set may not have
    /// reached anyone. So for every method of this type.
    pub fn set(&self) -> Result<()> {
        self.place.guarded(|| {
            self.place.word(STATE).store(1, Ordering::Release);
            let count = if self.auto_reset { 1 } else { i32::MAX as u32 };
            wake(self.place.word(STATE), self.place.word(SLEEPERS), count);
        })
    }

    /// Clears the event.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn clear(&self) -> Result<()> {
        self.place.guarded(|| self.place.word(STATE).store(0, Ordering::Release))
    }

    /// Whether the event is set.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn is_set(&self) -> Result<bool> {
        self.place.guarded(|| self.place.word(STATE).load(Ordering::Acquire) != 0)
    }

    /// Whether this is an auto-reset event.
    pub fn is_auto_reset(&self) -> bool {
        self.auto_reset
    }

    /// Waits until the event is set (and, auto-reset, takes the set).
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set): the event's page vanished before or during the
    /// wait (a wait ends within half a second of that).
    pub fn wait(&self) -> Result<()> {
        self.wait_deadline(None).map(drop)
    }

    /// Waits at most `timeout`; whether the event was set.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (forever if `None`); whether the event was set.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool> {
        self.place.guarded(|| self.wait_unguarded(deadline))
    }

    /// The body of [`wait_deadline`](Self::wait_deadline), in its guarded scope.
    fn wait_unguarded(&self, deadline: Option<Instant>) -> bool {
        let (shm, state) = (&*self.place.shm, self.place.word(STATE));
        let sleepers = self.place.word(SLEEPERS);
        loop {
            // A wait stops (false) when the page is lost; the scope reports that.
            if !wait_until(shm, state, sleepers, &self.spinner, deadline, |v| v != 0) {
                return false;
            }
            if !self.auto_reset {
                return true;
            }
            // Take whatever non-zero value is there (a hostile peer may store 2): a
            // compare with 1 alone would spin forever on such a value.
            let seen = state.load(Ordering::Acquire);
            if seen != 0
                && state.compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                return true;
            }
            // Another waiter took this set; wait for the next (wait_until checks the
            // deadline again).
            if self.place.pages_lost() {
                return false;
            }
        }
    }

    /// Takes the event if it is set (for an auto-reset event, clears it), without
    /// waiting; else says what to wait for.
    fn try_take(&self) -> std::result::Result<(), Readiness> {
        let state = self.place.word(STATE);
        loop {
            let seen = state.load(Ordering::Acquire);
            if seen == 0 {
                return Err(self.place.readiness(STATE, SLEEPERS, 0, None));
            }
            if !self.auto_reset
                || state.compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Waits until the event is set (and, auto-reset, takes the set), without
    /// blocking a thread: a future for any async runtime.
    ///
    /// Cancel-safe: dropping the future before it completes takes nothing (an
    /// auto-reset set it was woken for goes on to the next waiter). Time-outs come
    /// from the runtime (`tokio::time::timeout`, ...).
    ///
    /// # Example
    ///
    /// ```
    /// let event = shmbridge::sync::Event::create(&shmbridge::unique_name("doc_async")?, true)?;
    /// event.set()?;
    /// futures_executor_block_on(event.wait_async())?;
    /// # fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_async(&self) -> impl std::future::Future<Output = Result<()>> + '_ {
        WhenReady::new(move || self.place.attempt(|| self.try_take()))
    }

    /// What to wait for while the event is not set (`None` if it is set now, or
    /// its page vanished: wait then, to get the error), for bindings that wait
    /// their own way (see [`Readiness`]). Takes nothing.
    pub fn readiness(&self) -> Option<Readiness> {
        let state = self.place.guarded(|| self.place.word(STATE).load(Ordering::Acquire));
        match state {
            Ok(0) => Some(self.place.readiness(STATE, SLEEPERS, 0, None)),
            _ => None,
        }
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

    /// The segment the event lives in.
    pub fn segment(&self) -> &Arc<SharedMemory> {
        &self.place.shm
    }
}
