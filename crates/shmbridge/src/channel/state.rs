//! Reading a channel's header without taking part: for operators and tools
//! (`shmbridge info`), through a read-only mapping, changing nothing.

use std::sync::atomic::Ordering;

use super::ring::{self, Record};
use super::{
    CAPACITY, CONSUMER_CLOSED, CONSUMER_PID, HEAD, MAGIC, PRODUCER_CLOSED, PRODUCER_PID, RING,
    TAIL, VERSION,
};
use crate::error::{Error, Result};
use crate::segment::SharedMemory;
use crate::sys;

/// One end of a channel, as its header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndState {
    /// The process holding the end; `None` if nobody has claimed it (or the last
    /// holder let it go).
    pub pid: Option<u32>,
    /// Whether that process closed the end.
    pub closed: bool,
    /// Whether that process runs (`None` if no process holds the end).
    pub alive: Option<bool>,
}

/// A snapshot of a channel's header (see `docs/FORMAT.md`, "Channel"). The two
/// ends keep moving while it is read: the figures are each exact, but not
/// necessarily from the same instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelState {
    /// The ring's size in bytes.
    pub capacity: usize,
    /// Stream position after the last published record.
    pub head: u64,
    /// Stream position of the oldest byte the consumer still uses.
    pub tail: u64,
    /// Messages between `tail` and `head`: unread, or received and still held;
    /// `None` if the ring could not be walked (a record was found damaged).
    pub messages: Option<u64>,
    /// The producing end.
    pub producer: EndState,
    /// The consuming end.
    pub consumer: EndState,
}

impl ChannelState {
    /// Bytes of the ring in use (`head - tail`).
    pub fn used(&self) -> u64 {
        self.head.saturating_sub(self.tail)
    }

    /// Reads the channel header of `shm` (which may be mapped read-only), and
    /// counts the messages in its ring.
    ///
    /// # Errors
    ///
    /// [`Error::BadHeader`] if the segment holds no channel of this version, or
    /// its header does not fit the segment.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    /// use shmbridge::channel::{Channel, ChannelState};
    ///
    /// let name = shmbridge::unique_name("doc_state")?;
    /// let channel = Channel::create(&name, 4096)?;
    /// let tx = channel.sender()?;
    /// tx.send(b"one")?;
    /// tx.send(b"two")?;
    ///
    /// let look = SharedMemory::options().read_only(true).open(&name)?;
    /// let state = ChannelState::read(&look)?;
    /// assert_eq!((state.capacity, state.messages), (4096, Some(2)));
    /// assert_eq!(state.producer.pid, Some(std::process::id()));
    /// assert_eq!(state.consumer.pid, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read(shm: &SharedMemory) -> Result<Self> {
        let bad = |reason: String| Error::BadHeader {
            name: shm.name().to_owned(),
            what: "channel",
            reason,
        };
        if shm.len() < RING {
            return Err(bad(format!("{} bytes is too small for a channel header", shm.len())));
        }
        if shm.atomic_u64(0).load(Ordering::Acquire).to_ne_bytes() != MAGIC {
            return Err(bad("not a shmbridge channel".into()));
        }
        let version = shm.atomic_u32(8).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(bad(format!("channel version {version}; this build reads {VERSION}")));
        }
        let capacity = shm.atomic_u64(CAPACITY).load(Ordering::Relaxed);
        let capacity = usize::try_from(capacity)
            .ok()
            .filter(|&c| {
                c >= 64
                    && c.is_multiple_of(8)
                    && RING.checked_add(c).is_some_and(|e| e <= shm.len())
            })
            .ok_or_else(|| {
                bad(format!("capacity {capacity} does not fit the {}-byte segment", shm.len()))
            })?;
        // Tail first: it never passes head, so a head read after it is never behind.
        let tail = shm.atomic_u64(TAIL).load(Ordering::Acquire);
        let head = shm.atomic_u64(HEAD).load(Ordering::Acquire);
        let end = |pid_at: usize, closed_at: usize| {
            let pid = shm.atomic_u32(pid_at).load(Ordering::Acquire);
            let pid = (pid != 0).then_some(pid);
            EndState {
                pid,
                closed: shm.atomic_u32(closed_at).load(Ordering::Acquire) != 0,
                alive: pid.map(sys::process_alive),
            }
        };
        Ok(Self {
            capacity,
            head,
            tail,
            messages: count_messages(shm, capacity, tail, head),
            producer: end(PRODUCER_PID, PRODUCER_CLOSED),
            consumer: end(CONSUMER_PID, CONSUMER_CLOSED),
        })
    }
}

/// Walks the records from `tail` to `head` with the receiver's own checks;
/// `None` at the first one that does not pass (or if the producer overwrote the
/// room meanwhile, which a walk behind a live consumer can meet).
fn count_messages(shm: &SharedMemory, capacity: usize, tail: u64, head: u64) -> Option<u64> {
    let (mut read, mut messages) = (tail, 0u64);
    // Each record takes 8 bytes at least, so this bounds the walk.
    for _ in 0..=capacity / ring::RECORD_HEADER {
        let Some(place) = ring::next_record_place(read, head, capacity).ok()? else {
            return Some(messages);
        };
        let mut header = [0u8; ring::RECORD_HEADER];
        // SAFETY: `header` is this function's own buffer; the copy takes no
        // reference into the segment.
        unsafe { shm.read_at_raw(header.as_mut_ptr(), header.len(), (RING + place) as u64) }
            .ok()?;
        let [a, b, c, d, e, f, g, h] = header;
        let (len, flags) = (u32::from_ne_bytes([a, b, c, d]), u32::from_ne_bytes([e, f, g, h]));
        let bytes = match ring::interpret(place, read, head, capacity, len, flags).ok()? {
            Record::Message { bytes, .. } => {
                messages += 1;
                bytes
            }
            Record::Padding { bytes } | Record::Skip { bytes } => bytes,
        };
        read += bytes;
    }
    None
}
