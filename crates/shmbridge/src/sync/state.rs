//! Reading a primitive's words without taking part: for operators and tools
//! (`shmbridge info`), through a read-only mapping, changing nothing.
//!
//! The word numbers are those of `docs/FORMAT.md` ("Synchronization primitives"),
//! which every primitive's own file follows.

use std::sync::atomic::Ordering;

use super::{FLAGS, INITIALIZED, KIND_SHIFT, Kind, SETTINGS};
use crate::error::{Error, Result};
use crate::segment::SharedMemory;
use crate::sys;

/// What a primitive's words say now (see `docs/FORMAT.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrimitiveState {
    /// All-zero memory: no primitive has been set up there yet.
    Fresh,
    /// An [`Event`](super::Event).
    Event {
        /// Whether it is set.
        set: bool,
        /// Whether it is auto-reset.
        auto_reset: bool,
        /// Waiters asleep on it.
        sleepers: u32,
    },
    /// A [`Semaphore`](super::Semaphore).
    Semaphore {
        /// Its count.
        count: u32,
        /// Waiters asleep on it.
        sleepers: u32,
    },
    /// A [`Mutex`](super::Mutex).
    Mutex {
        /// The process holding it, if any.
        owner: Option<u32>,
        /// Whether that process runs (`false`: the next locker takes it over).
        owner_alive: Option<bool>,
        /// Waiters asleep on it.
        sleepers: u32,
    },
    /// A [`SeqLock`](super::SeqLock).
    SeqLock {
        /// Its sequence number (odd while a write is under way).
        sequence: u32,
        /// The process writing, or that wrote last (`None` before any write).
        writer: Option<u32>,
        /// Whether that process runs.
        writer_alive: Option<bool>,
        /// The record's size in bytes.
        record_size: usize,
    },
}

impl PrimitiveState {
    /// The kind's name, as the CLI prints it (`fresh` for zero memory).
    pub fn kind_name(&self) -> &'static str {
        match self {
            PrimitiveState::Fresh => "fresh",
            PrimitiveState::Event { .. } => "event",
            PrimitiveState::Semaphore { .. } => "semaphore",
            PrimitiveState::Mutex { .. } => "mutex",
            PrimitiveState::SeqLock { .. } => "seqlock",
        }
    }

    /// Reads the primitive at `offset` (8-aligned) of `shm`, which may be mapped
    /// read-only.
    ///
    /// # Errors
    ///
    /// [`Error::Misaligned`] / [`Error::OutOfBounds`] for a bad place;
    /// [`Error::Incompatible`] if the words hold no primitive.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    /// use shmbridge::sync::{PrimitiveState, Semaphore};
    ///
    /// let name = shmbridge::unique_name("doc_prim")?;
    /// let semaphore = Semaphore::create(&name, 3)?;
    /// let look = SharedMemory::options().read_only(true).open(&name)?;
    /// assert_eq!(
    ///     PrimitiveState::read(&look, 0)?,
    ///     PrimitiveState::Semaphore { count: 3, sleepers: 0 }
    /// );
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn read(shm: &SharedMemory, offset: usize) -> Result<Self> {
        let name = shm.name().to_owned();
        if !offset.is_multiple_of(8) {
            return Err(Error::Misaligned {
                name,
                offset: offset as u64,
                type_name: "a primitive",
                align: 8,
            });
        }
        if offset.checked_add(16).is_none_or(|end| end > shm.len()) {
            return Err(Error::OutOfBounds {
                name,
                offset: offset as u64,
                len: 16,
                size: shm.len() as u64,
            });
        }
        let word = |i: usize| shm.atomic_u32(offset + 4 * i).load(Ordering::Acquire);
        let flags = word(FLAGS);
        if flags == 0 && word(0) == 0 && word(1) == 0 && word(3) == 0 {
            return Ok(PrimitiveState::Fresh);
        }
        let kind = Kind::from_bits((flags & !INITIALIZED) >> KIND_SHIFT);
        let Some(kind) = kind.filter(|_| flags & INITIALIZED != 0) else {
            return Err(Error::Incompatible {
                name,
                what: format!("the words at offset {offset}"),
                reason: format!("hold no primitive (flags {flags:#010x})"),
            });
        };
        let settings = flags & SETTINGS;
        let pid = |v: u32| (v != 0).then_some(v);
        Ok(match kind {
            Kind::Event => PrimitiveState::Event {
                set: word(0) != 0,
                auto_reset: settings & 1 != 0,
                sleepers: word(1),
            },
            Kind::Semaphore => PrimitiveState::Semaphore { count: word(0), sleepers: word(1) },
            Kind::Mutex => PrimitiveState::Mutex {
                owner: pid(word(0)),
                owner_alive: pid(word(0)).map(sys::process_alive),
                sleepers: word(1),
            },
            Kind::SeqLock => PrimitiveState::SeqLock {
                sequence: word(0),
                writer: pid(word(1)),
                writer_alive: pid(word(1)).map(sys::process_alive),
                record_size: settings as usize,
            },
        })
    }
}
