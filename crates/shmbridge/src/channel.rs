//! A channel of byte messages in one named segment: single producer, single
//! consumer, zero-copy on both sides. Layout in `docs/FORMAT.md`.
//!
//! ```
//! use std::time::Duration;
//! use shmbridge::channel::Channel;
//!
//! let name = shmbridge::unique_name("doc_channel")?;
//! let channel = Channel::create(&name, 1 << 16)?;
//! let tx = channel.sender()?;
//! tx.send(b"frame 1")?;
//! let mut loan = tx.loan(5)?; // write in place, no copy
//! loan.copy_from_slice(b"hello");
//! loan.publish();
//!
//! let mut rx = Channel::open(&name)?.receiver()?; // in another process, usually
//! assert_eq!(&*rx.recv()?, b"frame 1");
//! assert_eq!(&*rx.recv_timeout(Duration::from_secs(1))?, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::segment::SharedMemory;
use crate::sync::wait::{Spinner, wait_until, wake};
use crate::sys;

/// The first 8 bytes of every channel segment.
pub const MAGIC: [u8; 8] = *b"SHMBCHN\0";
/// The layout version this build writes and reads.
pub const VERSION: u32 = 1;
/// Where the ring starts.
const RING: usize = 192;
/// A record header: the payload length (`u32`) and 4 reserved bytes.
const RECORD_HEADER: usize = 8;
/// A length that means "the rest of the ring is padding; go to its start".
const WRAP: u32 = u32::MAX;
/// How often a waiting side checks whether the other is still alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

// Word offsets in the header (see docs/FORMAT.md).
const CAPACITY: usize = 16;
const HEAD: usize = 64;
const HEAD_SIGNAL: usize = 72;
const CONSUMER_SLEEPERS: usize = 76;
const PRODUCER_PID: usize = 80;
const PRODUCER_CLOSED: usize = 84;
const TAIL: usize = 128;
const TAIL_SIGNAL: usize = 136;
const PRODUCER_SLEEPERS: usize = 140;
const CONSUMER_PID: usize = 144;
const CONSUMER_CLOSED: usize = 148;

/// Why a send or receive did not happen. Nothing is lost: a failed send leaves
/// the caller its data, a failed receive leaves the message in the ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// `try_send`: no room now.
    #[error("the channel is full")]
    Full,
    /// `try_recv`: no message now.
    #[error("the channel is empty")]
    Empty,
    /// The timeout passed first.
    #[error("timed out")]
    Timeout,
    /// The other end closed the channel (after sending everything, for a receiver).
    #[error("the other end closed the channel")]
    Closed,
    /// The other end's process died without closing; every message it published
    /// was delivered first.
    #[error("the other end (process {pid}) died without closing the channel")]
    PeerDied {
        /// The dead process.
        pid: u32,
    },
    /// The ring holds a record no sender publishes (something else wrote into
    /// the segment); receiving stops there rather than read out of bounds.
    #[error(
        "the channel's ring is corrupt at byte {at} of its stream: something other than its \
         sender wrote into the segment; create a new channel"
    )]
    Corrupt {
        /// The stream position (bytes received so far) of the bad record.
        at: u64,
    },
    /// A message larger than the channel can ever hold.
    #[error(
        "a message of {len} bytes is larger than this channel's limit of {max}: create a larger channel"
    )]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The largest message the channel takes (half its capacity, less 8).
        max: usize,
    },
}

/// A channel segment; [`sender`](Self::sender) and [`receiver`](Self::receiver)
/// claim its two ends.
#[derive(Debug, Clone)]
pub struct Channel {
    shm: Arc<SharedMemory>,
    capacity: usize,
}

impl Channel {
    /// Creates a channel whose ring holds `capacity` bytes (rounded up to 8;
    /// messages up to half of it).
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`]; [`Error::InvalidSize`] below 64 bytes.
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        let capacity = capacity.next_multiple_of(8);
        if capacity < 64 || capacity > isize::MAX as usize - RING {
            return Err(Error::InvalidSize {
                name: name.to_owned(),
                size: capacity as u64,
                reason: "a channel's ring holds 64 bytes at least",
            });
        }
        let shm = SharedMemory::create(name, RING + capacity)?;
        shm.atomic_u64(CAPACITY).store(capacity as u64, Ordering::Relaxed);
        shm.atomic_u32(8).store(VERSION, Ordering::Relaxed);
        shm.atomic_u64(0).store(u64::from_ne_bytes(MAGIC), Ordering::Release);
        Ok(Self { shm: Arc::new(shm), capacity })
    }

    /// Opens a channel by name.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::open`]; [`Error::BadHeader`] if the segment holds no
    /// channel of this version, or its header does not fit the segment.
    pub fn open(name: &str) -> Result<Self> {
        let shm = SharedMemory::options().min_size(RING).open(name)?;
        let bad = |reason: String| Error::BadHeader { name: shm.name().to_owned(), reason };
        if shm.atomic_u64(0).load(Ordering::Acquire).to_ne_bytes() != MAGIC {
            return Err(bad("not a shmbridge channel".into()));
        }
        let version = shm.atomic_u32(8).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(bad(format!("channel version {version}; this build reads {VERSION}")));
        }
        let capacity = shm.atomic_u64(CAPACITY).load(Ordering::Relaxed);
        match usize::try_from(capacity) {
            Ok(c)
                if c >= 64
                    && c.is_multiple_of(8)
                    && RING.checked_add(c).is_some_and(|end| end <= shm.len()) =>
            {
                Ok(Self { shm: Arc::new(shm), capacity: c })
            }
            _ => {
                Err(bad(format!("capacity {capacity} does not fit the {}-byte segment", shm.len())))
            }
        }
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest message this channel takes.
    pub fn max_message(&self) -> usize {
        self.capacity / 2 - RECORD_HEADER
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// Claims the producing end.
    ///
    /// # Errors
    ///
    /// [`Error::Incompatible`] if a live process other than this one has it.
    pub fn sender(&self) -> Result<Sender> {
        self.claim(PRODUCER_PID, PRODUCER_CLOSED, "sender")?;
        Ok(Sender { ends: Ends::new(self.clone()) })
    }

    /// Claims the consuming end.
    ///
    /// # Errors
    ///
    /// [`Error::Incompatible`] if a live process other than this one has it.
    pub fn receiver(&self) -> Result<Receiver> {
        self.claim(CONSUMER_PID, CONSUMER_CLOSED, "receiver")?;
        Ok(Receiver { ends: Ends::new(self.clone()), pending: 0 })
    }

    fn claim(&self, pid_at: usize, closed_at: usize, end: &str) -> Result<()> {
        let pid = self.shm.atomic_u32(pid_at);
        let me = std::process::id();
        loop {
            let current = pid.load(Ordering::Acquire);
            // Free: never claimed, its holder closed it, or its holder died.
            let closed = self.shm.atomic_u32(closed_at).load(Ordering::Acquire) != 0;
            if current != 0 && !closed && (current == me || sys::process_alive(current)) {
                return Err(Error::Incompatible {
                    name: self.name().to_owned(),
                    what: "the channel".into(),
                    reason: format!(
                        "already has a {end} in process {current}: one {end} at a time"
                    ),
                });
            }
            if pid.compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                self.shm.atomic_u32(closed_at).store(0, Ordering::Release);
                return Ok(());
            }
        }
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.shm.atomic_u32(offset)
    }

    fn counter(&self, offset: usize) -> &AtomicU64 {
        self.shm.atomic_u64(offset)
    }

    /// Copies `data` into the ring at `pos` (the caller owns that range).
    fn ring_write(&self, pos: usize, data: &[u8]) {
        // SAFETY: the producer owns [pos, pos + len) of the ring until it publishes,
        // and the consumer does not read past the published head; the range lies in
        // the segment (pos + len <= capacity, checked by the caller's reservation).
        unsafe { self.shm.write_all_at_raw(data.as_ptr(), data.len(), (RING + pos) as u64) }
            .expect("a reserved range lies in the ring");
    }

    fn ring_ptr(&self, pos: usize) -> *mut u8 {
        self.shm.as_mut_ptr().wrapping_add(RING + pos)
    }
}

/// What both ends share: the channel and their wait state.
#[derive(Debug)]
struct Ends {
    channel: Channel,
    spinner: Spinner,
}

impl Ends {
    fn new(channel: Channel) -> Self {
        Self { channel, spinner: Spinner::new() }
    }

    /// Sleeps until `signal` moves from `seen`, `until`, or a liveness check is due.
    fn sleep(&self, signal: usize, sleepers: usize, seen: u32, until: Option<Instant>) {
        let slice = Instant::now() + LIVENESS_CHECK;
        let until = until.map_or(slice, |d| d.min(slice));
        let c = &self.channel;
        wait_until(c.word(signal), c.word(sleepers), &self.spinner, Some(until), |v| v != seen);
    }

    /// Whether the other end is gone: `Closed`, or `PeerDied` if its process is.
    fn peer_gone(&self, pid_at: usize, closed_at: usize) -> Option<ChannelError> {
        if self.channel.word(closed_at).load(Ordering::Acquire) != 0 {
            return Some(ChannelError::Closed);
        }
        let pid = self.channel.word(pid_at).load(Ordering::Acquire);
        (pid != 0 && !sys::process_alive(pid)).then_some(ChannelError::PeerDied { pid })
    }
}

/// The producing end: `send`, `try_send`, `send_timeout`, and `loan` to write a
/// message in place. Dropping it closes the channel for the receiver, which gets
/// every message sent before.
#[derive(Debug)]
pub struct Sender {
    ends: Ends,
}

impl Sender {
    /// Sends a copy of `data`, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// [`ChannelError::TooLarge`], [`ChannelError::Closed`] (the receiver closed),
    /// [`ChannelError::PeerDied`].
    pub fn send(&self, data: &[u8]) -> Result<(), ChannelError> {
        self.send_deadline(data, None)
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Full`], and as [`send`](Self::send).
    pub fn try_send(&self, data: &[u8]) -> Result<(), ChannelError> {
        self.send_deadline(data, Some(Instant::now())).map_err(|e| match e {
            ChannelError::Timeout => ChannelError::Full,
            e => e,
        })
    }

    /// Sends, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Timeout`], and as [`send`](Self::send).
    pub fn send_timeout(&self, data: &[u8], timeout: Duration) -> Result<(), ChannelError> {
        self.send_deadline(data, Instant::now().checked_add(timeout))
    }

    /// Sends, waiting until `deadline` (forever if `None`) for room.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(
        &self,
        data: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), ChannelError> {
        let mut loan = self.loan_deadline(data.len(), deadline)?;
        loan.copy_from_slice(data);
        loan.publish();
        Ok(())
    }

    /// Reserves room for a message of `len` bytes, to be written in place and
    /// published with [`Loan::publish`] (dropping the loan publishes nothing).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn loan(&self, len: usize) -> Result<Loan<'_>, ChannelError> {
        self.loan_deadline(len, None)
    }

    /// Reserves room, waiting until `deadline` (forever if `None`).
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn loan_deadline(
        &self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<Loan<'_>, ChannelError> {
        let c = &self.ends.channel;
        if len > c.max_message() {
            return Err(ChannelError::TooLarge { len, max: c.max_message() });
        }
        let record = RECORD_HEADER + len.next_multiple_of(8);
        loop {
            if let Some(gone) = self.consumer_closed() {
                return Err(gone);
            }
            let head = c.counter(HEAD).load(Ordering::Relaxed);
            let tail = c.counter(TAIL).load(Ordering::Acquire);
            let free = c.capacity - (head - tail) as usize;
            let pos = (head % c.capacity as u64) as usize;
            let skip = if pos + record > c.capacity { c.capacity - pos } else { 0 };
            if free >= skip + record {
                return Ok(Loan { sender: self, head, skip, len, published: false });
            }
            let seen = c.word(TAIL_SIGNAL).load(Ordering::Acquire);
            if c.counter(TAIL).load(Ordering::Acquire) != tail {
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ChannelError::Timeout);
            }
            if let Some(gone) = self.ends.peer_gone(CONSUMER_PID, CONSUMER_CLOSED) {
                return Err(gone);
            }
            self.ends.sleep(TAIL_SIGNAL, PRODUCER_SLEEPERS, seen, deadline);
        }
    }

    /// Writes the record header (and a wrap marker) of a reserved message and
    /// advances `head` past it.
    fn publish_at(&self, head: u64, skip: usize, len: usize) {
        let c = &self.ends.channel;
        let capacity = c.capacity;
        if skip > 0 {
            c.ring_write((head % capacity as u64) as usize, &WRAP.to_ne_bytes());
        }
        let record_at = (head as usize + skip) % capacity;
        c.ring_write(record_at, &(len as u32).to_ne_bytes());
        let record = RECORD_HEADER + len.next_multiple_of(8);
        c.counter(HEAD).store(head + (skip + record) as u64, Ordering::Release);
        c.word(HEAD_SIGNAL).fetch_add(1, Ordering::Release);
        wake(c.word(HEAD_SIGNAL), c.word(CONSUMER_SLEEPERS), 1);
    }

    /// Reserves room as [`loan_deadline`](Self::loan_deadline) does, for bindings
    /// that hold the reservation across calls (the Python `Loan`): the payload's
    /// address and a token for [`publish_raw`](Self::publish_raw).
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn reserve_raw(
        &self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<RawLoan, ChannelError> {
        let loan = self.loan_deadline(len, deadline)?;
        let raw = RawLoan {
            head: loan.head,
            skip: loan.skip,
            len,
            ptr: loan.sender.ends.channel.ring_ptr(loan.payload_pos()),
        };
        Ok(raw)
    }

    /// Publishes a message reserved with [`reserve_raw`](Self::reserve_raw).
    ///
    /// # Safety
    ///
    /// `loan` must come from `reserve_raw` on this sender, with no other message
    /// sent, loaned or published by it in between (one reservation at a time, as
    /// the borrow of [`Loan`] enforces in Rust).
    pub unsafe fn publish_raw(&self, loan: RawLoan) {
        self.publish_at(loan.head, loan.skip, loan.len);
    }

    fn consumer_closed(&self) -> Option<ChannelError> {
        (self.ends.channel.word(CONSUMER_CLOSED).load(Ordering::Acquire) != 0)
            .then_some(ChannelError::Closed)
    }

    /// Closes the channel: the receiver gets what was sent, then `Closed`.
    pub fn close(&self) {
        let c = &self.ends.channel;
        c.word(PRODUCER_CLOSED).store(1, Ordering::Release);
        c.word(HEAD_SIGNAL).fetch_add(1, Ordering::Release);
        wake(c.word(HEAD_SIGNAL), c.word(CONSUMER_SLEEPERS), 1);
    }

    /// The largest message this channel takes.
    pub fn max_message(&self) -> usize {
        self.ends.channel.max_message()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.close();
    }
}

/// A reservation made by [`Sender::reserve_raw`]: where to write, and what to
/// publish. Dropping it publishes nothing.
#[derive(Debug)]
pub struct RawLoan {
    head: u64,
    skip: usize,
    len: usize,
    ptr: *mut u8,
}

impl RawLoan {
    /// Where the payload goes: valid for [`len`](Self::len) bytes while the channel
    /// lives, until published.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The payload's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

// SAFETY: a RawLoan is a position in a ring plus its address in a mapping; it owns
// nothing and may be published from any thread (publish_raw's contract applies).
unsafe impl Send for RawLoan {}
// SAFETY: as for Send; &RawLoan only reads the fields.
unsafe impl Sync for RawLoan {}

/// Room for one message in the ring, written in place; [`publish`](Self::publish)
/// hands it to the receiver.
pub struct Loan<'a> {
    sender: &'a Sender,
    head: u64,
    skip: usize,
    len: usize,
    published: bool,
}

impl Loan<'_> {
    fn payload_pos(&self) -> usize {
        let capacity = self.sender.ends.channel.capacity;
        ((self.head as usize + self.skip) % capacity) + RECORD_HEADER
    }

    /// Publishes the message; the receiver can take it at once.
    pub fn publish(mut self) {
        self.sender.publish_at(self.head, self.skip, self.len);
        self.published = true;
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the loan owns [payload_pos, +len) of the ring (reserved, not yet
        // published, so the consumer does not read it), and borrows the sender,
        // which keeps the mapping alive.
        unsafe {
            std::slice::from_raw_parts(
                self.sender.ends.channel.ring_ptr(self.payload_pos()),
                self.len,
            )
        }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; &mut self makes this the only reference to the range.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.sender.ends.channel.ring_ptr(self.payload_pos()),
                self.len,
            )
        }
    }
}

impl fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan").field("len", &self.len).field("published", &self.published).finish()
    }
}

/// The consuming end: `recv`, `try_recv`, `recv_timeout`. A message is a
/// zero-copy view of the ring, released when dropped. Dropping the receiver
/// closes the channel for the sender.
#[derive(Debug)]
pub struct Receiver {
    ends: Ends,
    /// Bytes of the message handed out and not yet released.
    pending: usize,
}

impl Receiver {
    /// Waits for the next message.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] once the sender closed and everything it sent was
    /// received; [`ChannelError::PeerDied`] likewise if its process died.
    pub fn recv(&mut self) -> Result<Message<'_>, ChannelError> {
        self.recv_deadline(None)
    }

    /// The next message if there is one now.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Empty`], and as [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Message<'_>, ChannelError> {
        self.recv_deadline(Some(Instant::now())).map_err(|e| match e {
            ChannelError::Timeout => ChannelError::Empty,
            e => e,
        })
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Timeout`], and as [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Message<'_>, ChannelError> {
        self.recv_deadline(Instant::now().checked_add(timeout))
    }

    /// Waits until `deadline` (forever if `None`) for the next message.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Message<'_>, ChannelError> {
        let (pos, len, record) = self.next(deadline)?;
        self.pending = record;
        Ok(Message { receiver: self, pos, len })
    }

    /// Finds the next record: (payload position, length, bytes to release).
    fn next(&self, deadline: Option<Instant>) -> Result<(usize, usize, usize), ChannelError> {
        let c = &self.ends.channel;
        loop {
            let tail = c.counter(TAIL).load(Ordering::Relaxed);
            let head = c.counter(HEAD).load(Ordering::Acquire);
            if head != tail {
                let pos = (tail % c.capacity as u64) as usize;
                // A ring shrunk under us (pages gone) is as unusable as a corrupt one.
                let Some(len) = self.read_len(pos) else {
                    return Err(ChannelError::Corrupt { at: tail });
                };
                if len == WRAP {
                    // Padding up to the ring's end: release it and look at the start.
                    self.release((c.capacity - pos) as u64);
                    continue;
                }
                let len = len as usize;
                let record = RECORD_HEADER + len.next_multiple_of(8);
                if len > c.max_message() || (tail + record as u64) > head {
                    // The sender publishes whole records only; anything else means a
                    // corrupted ring, which must not become an out-of-bounds view.
                    return Err(ChannelError::Corrupt { at: tail });
                }
                return Ok((pos + RECORD_HEADER, len, record));
            }
            let seen = c.word(HEAD_SIGNAL).load(Ordering::Acquire);
            if c.counter(HEAD).load(Ordering::Acquire) != head {
                continue;
            }
            if let Some(gone) = self.ends.peer_gone(PRODUCER_PID, PRODUCER_CLOSED) {
                // Everything published was delivered: only now report the end.
                if c.counter(HEAD).load(Ordering::Acquire) == tail {
                    return Err(gone);
                }
                continue;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ChannelError::Timeout);
            }
            self.ends.sleep(HEAD_SIGNAL, CONSUMER_SLEEPERS, seen, deadline);
        }
    }

    /// The length word of the record at `pos`; `None` if pages of the ring vanished.
    fn read_len(&self, pos: usize) -> Option<u32> {
        let c = &self.ends.channel;
        let mut len = [0u8; 4];
        // SAFETY: [pos, pos + 4) lies in the ring (records are 8-aligned and pos < capacity);
        // the sender published it before advancing head, which we read with acquire.
        unsafe { c.shm.read_at_raw(len.as_mut_ptr(), 4, (RING + pos) as u64) }.ok()?;
        Some(u32::from_ne_bytes(len))
    }

    fn release(&self, bytes: u64) {
        let c = &self.ends.channel;
        c.counter(TAIL).fetch_add(bytes, Ordering::Release);
        c.word(TAIL_SIGNAL).fetch_add(1, Ordering::Release);
        wake(c.word(TAIL_SIGNAL), c.word(PRODUCER_SLEEPERS), 1);
    }

    /// Closes the channel: the sender's next send gets `Closed`.
    pub fn close(&self) {
        let c = &self.ends.channel;
        c.word(CONSUMER_CLOSED).store(1, Ordering::Release);
        c.word(TAIL_SIGNAL).fetch_add(1, Ordering::Release);
        wake(c.word(TAIL_SIGNAL), c.word(PRODUCER_SLEEPERS), 1);
    }

    /// Takes the next message's length and position without a borrow, for bindings
    /// that hold the message across calls; release it with
    /// [`release_raw`](Self::release_raw) before the next receive.
    ///
    /// # Errors
    ///
    /// As [`recv_deadline`](Self::recv_deadline).
    pub fn recv_raw(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<(*const u8, usize), ChannelError> {
        let (pos, len, record) = self.next(deadline)?;
        self.pending = record;
        Ok((self.ends.channel.ring_ptr(pos).cast_const(), len))
    }

    /// Releases the message taken by [`recv_raw`](Self::recv_raw) (no-op if none).
    pub fn release_raw(&mut self) {
        let record = std::mem::take(&mut self.pending);
        if record > 0 {
            self.release(record as u64);
        }
    }

    /// The segment the channel lives in (keeps the mapping alive).
    pub fn segment(&self) -> &Arc<SharedMemory> {
        &self.ends.channel.shm
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
    }
}

/// A received message: a zero-copy view of the ring, released when dropped.
pub struct Message<'a> {
    receiver: &'a mut Receiver,
    pos: usize,
    len: usize,
}

impl Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: [pos, pos + len) is a published record that the sender will not
        // overwrite before the receiver releases it (on drop of this message); the
        // receiver's borrow keeps the mapping alive.
        unsafe {
            std::slice::from_raw_parts(self.receiver.ends.channel.ring_ptr(self.pos), self.len)
        }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        self.receiver.release_raw();
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.len).finish()
    }
}
