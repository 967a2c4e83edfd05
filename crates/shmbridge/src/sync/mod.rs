//! Synchronization that lives in shared memory, usable from every process that
//! maps the segment: [`Event`], [`Semaphore`], [`Mutex`] (which detects an owner
//! that died) and [`SeqLock`]. Byte layouts are in `docs/FORMAT.md`.
//!
//! Each primitive lives either in a segment of its own (`X::create(name, ...)`,
//! `X::open(name)`) or at an 8-aligned offset of any segment
//! (`X::in_segment(shm, offset, ...)`). All-zero memory is a valid, fresh primitive,
//! so a new segment needs no set-up. Waiting spins briefly (adaptively, bounded),
//! then sleeps in the kernel (a shared futex on Linux, the kernel's `ulock` on
//! macOS, an event per sleeping thread on Windows), so an idle waiter burns no CPU. Every wait has a timeout form.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use shmbridge::SharedMemory;
//! use shmbridge::sync::{Event, Mutex};
//!
//! let shm = Arc::new(SharedMemory::create_unique("doc_sync", 4096)?);
//! let ready = Event::in_segment(Arc::clone(&shm), 0, Some(false))?;
//! let lock = Mutex::in_segment(Arc::clone(&shm), 64)?;
//! {
//!     let _guard = lock.lock()?.unwrap_or_else(|died| died.into_guard());
//!     ready.set()?;
//! }
//! assert!(ready.wait_timeout(Duration::from_secs(1))?);
//! # Ok::<(), shmbridge::Error>(())
//! ```

mod event;
pub(crate) mod local_lock;
mod mutex;
pub(crate) mod reactor;
#[cfg(unix)]
mod ready_queue;
mod semaphore;
mod seqlock;
mod state;
pub(crate) mod wait;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub use event::Event;
pub use mutex::{LockResult, Mutex, MutexGuard, OwnerDied};
pub use reactor::{Readiness, Registration};
#[cfg(unix)]
pub use ready_queue::ReadyQueue;
pub use semaphore::Semaphore;
pub use seqlock::SeqLock;
pub use state::PrimitiveState;
pub use wait::return_on_signal;

use crate::error::{Error, Result};
use crate::record::SegmentKind;
use crate::segment::SharedMemory;

/// Word 2 of every primitive: who it is and how it was set up.
const FLAGS: usize = 2;
/// Set once a primitive is initialized.
const INITIALIZED: u32 = 1 << 31;
/// Bits 24..31: the kind; bits 0..24: its settings.
const KIND_SHIFT: u32 = 24;
const SETTINGS: u32 = (1 << KIND_SHIFT) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Kind {
    Event = 1,
    Semaphore = 2,
    Mutex = 3,
    SeqLock = 4,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Event => "an Event",
            Kind::Semaphore => "a Semaphore",
            Kind::Mutex => "a Mutex",
            Kind::SeqLock => "a SeqLock",
        }
    }

    fn from_bits(bits: u32) -> Option<Self> {
        [Kind::Event, Kind::Semaphore, Kind::Mutex, Kind::SeqLock]
            .into_iter()
            .find(|k| *k as u32 == bits)
    }
}

/// Where a primitive's words are: a segment, kept alive by the `Arc`, and an
/// offset that was checked to be aligned and in bounds.
#[derive(Debug, Clone)]
struct Place {
    shm: Arc<SharedMemory>,
    offset: usize,
}

impl Place {
    fn new(shm: Arc<SharedMemory>, offset: usize, size: usize, kind: Kind) -> Result<Self> {
        let name = shm.name().to_owned();
        if !offset.is_multiple_of(8) {
            return Err(Error::Misaligned {
                name,
                offset: offset as u64,
                type_name: kind.name(),
                align: 8,
            });
        }
        if offset.checked_add(size).is_none_or(|end| end > shm.len()) {
            return Err(Error::OutOfBounds {
                name,
                offset: offset as u64,
                len: size as u64,
                size: shm.len() as u64,
            });
        }
        if !shm.is_writable() {
            return Err(Error::ReadOnly { name });
        }
        Ok(Self { shm, offset })
    }

    fn word(&self, index: usize) -> &AtomicU32 {
        self.shm.atomic_u32(self.offset + 4 * index)
    }

    /// Runs `f`, which touches the primitive's words, in a guarded scope of the
    /// segment: a page another process removed (by shrinking the segment) is
    /// [`Error::PagesLost`], never a SIGBUS, whatever `f` returned.
    fn guarded<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        self.shm.guarded(f).map_err(|_| self.shm.pages_lost_error())
    }

    /// As [`guarded`](Self::guarded), for an `f` that may fail itself.
    fn try_guarded<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        self.guarded(f)?
    }

    /// As [`guarded`](Self::guarded), for the async forms' attempts: done (with
    /// `Err(PagesLost)` if pages vanished), or what to wait for.
    fn attempt<R>(
        &self,
        f: impl FnOnce() -> std::result::Result<R, Readiness>,
    ) -> std::result::Result<Result<R>, Readiness> {
        match self.guarded(f) {
            Ok(Ok(done)) => Ok(Ok(done)),
            Ok(Err(readiness)) => Err(readiness),
            Err(lost) => Ok(Err(lost)),
        }
    }

    /// Whether the segment lost pages: wait loops stop then (their words may be
    /// private pages nobody else writes).
    fn pages_lost(&self) -> bool {
        self.shm.pages_lost()
    }

    /// A readiness on word `index` (which holds `seen`), whose sleepers are counted
    /// in word `sleepers`.
    fn readiness(
        &self,
        index: usize,
        sleepers: usize,
        seen: u32,
        recheck: Option<std::time::Duration>,
    ) -> Readiness {
        Readiness::new(
            Arc::clone(&self.shm),
            self.offset + 4 * index,
            self.offset + 4 * sleepers,
            seen,
            recheck,
        )
    }

    /// Claims fresh (all-zero) memory for `kind` with `settings`, or checks what is
    /// there; returns the settings in effect and whether this call initialized it.
    fn init(&self, kind: Kind, settings: Option<u32>) -> Result<(u32, bool)> {
        let want = INITIALIZED | (kind as u32) << KIND_SHIFT | settings.unwrap_or(0);
        let exchanged = self.guarded(|| {
            self.word(FLAGS).compare_exchange(0, want, Ordering::AcqRel, Ordering::Acquire)
        })?;
        match exchanged {
            Ok(_) => Ok((settings.unwrap_or(0), true)),
            Err(found) => {
                let found_kind = Kind::from_bits((found & !INITIALIZED) >> KIND_SHIFT);
                if found & INITIALIZED == 0 || found_kind != Some(kind) {
                    let holds = found_kind.map_or("something that is not a primitive", Kind::name);
                    return Err(
                        self.incompatible(kind, format!("holds {holds}, not {}", kind.name()))
                    );
                }
                Ok((found & SETTINGS, false))
            }
        }
    }

    fn incompatible(&self, kind: Kind, reason: String) -> Error {
        Error::Incompatible {
            name: self.shm.name().to_owned(),
            what: format!("{} at offset {}", kind.name(), self.offset),
            reason,
        }
    }
}

/// A new segment holding one primitive of `size` bytes at offset 0.
fn create_named(name: &str, size: usize, kind: Kind) -> Result<Arc<SharedMemory>> {
    let kind = match kind {
        Kind::Event => SegmentKind::Event,
        Kind::Semaphore => SegmentKind::Semaphore,
        Kind::Mutex => SegmentKind::Mutex,
        Kind::SeqLock => SegmentKind::SeqLock,
    };
    Ok(Arc::new(SharedMemory::options().kind(kind).create(name, size)?))
}

/// An existing segment holding one primitive at offset 0.
fn open_named(name: &str, size: usize) -> Result<Arc<SharedMemory>> {
    Ok(Arc::new(SharedMemory::options().min_size(size).open(name)?))
}

/// This process's id, as lock owners record it.
fn my_pid() -> u32 {
    crate::owner::current_pid()
}
