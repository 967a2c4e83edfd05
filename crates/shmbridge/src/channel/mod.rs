//! A channel of byte messages in one named segment: one producing process, one
//! consuming process, zero-copy on both sides. Layout in `docs/FORMAT.md`.
//!
//! ```
//! use std::time::Duration;
//! use shmbridge::channel::Channel;
//!
//! let name = shmbridge::unique_name("doc_channel")?;
//! let channel = Channel::create(&name, 1 << 16)?;
//! let tx = channel.sender()?;
//! tx.send(b"frame 1")?;
//! let loan = tx.loan(5)?; // room in the ring: write in place, no copy
//! loan.bytes().copy_from_slice(b"hello")?;
//! loan.publish()?;
//!
//! let rx = Channel::open(&name)?.receiver()?; // in another process, usually
//! assert_eq!(rx.recv()?.to_vec()?, b"frame 1");
//! let held = rx.recv_timeout(Duration::from_secs(1))?; // in the ring until dropped
//! assert_eq!(held.bytes().get(0), Some(b'h')); // read in place
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Messages and loans are read and written in place through
//! [`SharedSlice`]s, or copied: the channel's protocol keeps a
//! held message's room and an unpublished loan's room for their owner, but only
//! code that follows it, while safe code must stay sound whatever writes the
//! segment. Plain slices (`Message::as_slice`, `Loan::as_mut_slice`) are `unsafe`
//! (see `docs/SAFETY.md`).
//!
//! ```
//! # use shmbridge::channel::Channel;
//! # let name = shmbridge::unique_name("doc_channel_typed")?;
//! # let channel = Channel::create(&name, 1 << 16)?;
//! # let (tx, rx) = (channel.sender()?, channel.receiver()?);
//! // Typed values in place: payloads start 8-aligned in the ring.
//! let loan = tx.loan(3 * 8)?;
//! let values = loan.bytes().cast::<f64>().expect("8-aligned");
//! (0..3).try_for_each(|i| values.set(i, i as f64 / 2.0))?;
//! loan.publish()?;
//! let message = rx.recv()?;
//! assert_eq!(message.bytes().cast::<f64>().unwrap().get(2), Some(1.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads, processes and `fork`
//!
//! Each end belongs to the process that claimed it. Inside that process, any
//! number of threads may share an end: sends are serialized (each message is
//! published whole and in order, none lost), receives hand each message to exactly
//! one thread, and a thread that waits gives up at its own deadline whatever the
//! others do. [`Sender::close`] / [`Receiver::close`] wake every waiting thread of
//! this process with [`ChannelError::ClosedHere`].
//!
//! A child made by `fork` inherits the parent's ends but does not own them: any
//! use there is [`ChannelError::WrongProcess`], and dropping them there closes
//! nothing. The child may open the channel again, and claim an end once the parent
//! has let it go.
//!
//! # Held messages and the end's lifetime
//!
//! A receiver may hold several received messages at once and release them in any
//! order; the ring's room behind the oldest held message stays taken until it is
//! released. A closed end stays claimed while its process still holds messages
//! (or, on the producing side, loans that bindings keep pinned), so a new receiver
//! can never be handed a message twice, or see a held message's bytes change.

mod receiver;
mod ring;
mod sender;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use receiver::{Lent, Message, RawMessage, Receiver};
pub use sender::{Loan, RawLoan, Sender};
pub use state::{ChannelState, EndState};

use crate::error::{Error, Result};
use crate::owner::Owner;
use crate::record::SegmentKind;
use crate::segment::SharedMemory;
use crate::shared_slice::SharedSlice;
use crate::sync::Readiness;
use crate::sync::wait::{Spinner, wait_until_or};
use crate::sys;

/// The first 8 bytes of every channel segment.
pub const MAGIC: [u8; 8] = *b"SHMBCHN\0";
/// The layout version this build writes and reads (2: records carry flags, and a
/// skipped record may stand where a loan was given up; 3: the consumer's pid and
/// `closed` words moved off the line of `tail`, which the producer no longer reads
/// on every send).
pub const VERSION: u32 = 3;
/// Where the ring starts.
const RING: usize = 192;
/// How often a waiting end checks whether the other is still alive.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);
/// How often an async sender looks again while another thread holds its turn
/// (the turn lives in this process's memory, which the waiter threads do not
/// watch).
const TURN_RECHECK: Duration = Duration::from_millis(1);

// Word offsets in the header (see docs/FORMAT.md).
const CAPACITY: usize = 16;
// The consumer's end words share the first line with what never changes: the
// producer reads `closed` on every send, and a line the consumer writes on every
// release (`tail`'s) would cost it a cache miss each time.
const CONSUMER_PID: usize = 32;
const CONSUMER_CLOSED: usize = 36;
const HEAD: usize = 64;
const HEAD_SIGNAL: usize = 72;
const CONSUMER_SLEEPERS: usize = 76;
const PRODUCER_PID: usize = 80;
const PRODUCER_CLOSED: usize = 84;
const TAIL: usize = 128;
const TAIL_SIGNAL: usize = 136;
const PRODUCER_SLEEPERS: usize = 140;

/// Why a send or receive did not happen. Nothing is lost: a failed send leaves
/// the caller its data, a failed receive leaves the message in the ring.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use shmbridge::channel::{Channel, ChannelError};
///
/// let channel = Channel::create(&shmbridge::unique_name("doc_chan_err")?, 4096)?;
/// let (tx, rx) = (channel.sender()?, channel.receiver()?);
/// assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
/// assert_eq!(rx.recv_timeout(Duration::from_millis(1)).unwrap_err(), ChannelError::Timeout);
/// tx.send(b"last")?;
/// drop(tx); // the sender closes: the receiver gets everything, then Closed
/// assert_eq!(rx.recv()?.to_vec()?, b"last");
/// assert_eq!(rx.recv().unwrap_err(), ChannelError::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// This end was closed (by another thread of this process, or before this call).
    #[error("this end of the channel was closed")]
    ClosedHere,
    /// The other end's process died without closing; every message it published
    /// was delivered first. Also reported when the other end was never claimed and
    /// the channel's creator (then `pid`) died without persisting it: no process
    /// meant to use the channel is left to claim it (see `docs/FORMAT.md`,
    /// "Ends").
    #[error("the other end (process {pid}) died without closing the channel")]
    PeerDied {
        /// The dead process.
        pid: u32,
    },
    /// This end belongs to another process: it was inherited across `fork`.
    #[error(
        "this end of the channel belongs to process {owner} (it was inherited across fork): \
         open the channel again in this process"
    )]
    WrongProcess {
        /// The process that claimed the end.
        owner: u32,
    },
    /// The ring holds positions or a record no end writes (something else wrote
    /// into the segment); the channel stops there rather than read or write out of
    /// bounds.
    #[error(
        "the channel's ring is corrupt at byte {at} of its stream: something other than its \
         two ends wrote into the segment; create a new channel"
    )]
    Corrupt {
        /// The stream position (bytes since the channel began) of the bad record.
        at: u64,
    },
    /// The ring has no room only because records this process pinned (loans a
    /// binding's users may still view) cannot be reused yet: waiting would only end
    /// when those go, so the send fails at once instead.
    #[error(
        "the channel's room is held by {loans} published or given-up loans whose objects are \
         still alive (a view such as np.ndarray(buffer=loan) keeps one): let them go, or use \
         a larger channel"
    )]
    Pinned {
        /// How many pinned records there are.
        loans: usize,
    },
    /// Another process shrank the channel's segment: pages of its ring are gone.
    /// The channel cannot be used any more.
    #[error(
        "another process shrank the channel's segment: pages of its ring are gone; create a \
         new channel"
    )]
    PagesLost,
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

impl From<ring::Corrupt> for ChannelError {
    fn from(ring::Corrupt(at): ring::Corrupt) -> Self {
        ChannelError::Corrupt { at }
    }
}

/// A channel segment; [`sender`](Self::sender) and [`receiver`](Self::receiver)
/// claim its two ends.
///
/// # Example
///
/// ```
/// use shmbridge::channel::Channel;
///
/// let name = shmbridge::unique_name("doc_channel")?;
/// let channel = Channel::create(&name, 1 << 20)?; // the producing process
/// let tx = channel.sender()?;
/// let rx = Channel::open(&name)?.receiver()?; // the consuming process, usually
/// tx.send(b"ping")?;
/// assert_eq!(rx.recv()?.to_vec()?, b"ping");
/// assert_eq!(channel.max_message(), channel.capacity() / 2 - 8);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Channel {
    shm: Arc<SharedMemory>,
    capacity: usize,
}

/// Which end, with the words that describe it.
#[derive(Debug, Clone, Copy)]
struct End {
    name: &'static str,
    pid: usize,
    closed: usize,
}

const PRODUCER: End = End { name: "sender", pid: PRODUCER_PID, closed: PRODUCER_CLOSED };
const CONSUMER: End = End { name: "receiver", pid: CONSUMER_PID, closed: CONSUMER_CLOSED };

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
        let shm =
            SharedMemory::options().kind(SegmentKind::Channel).create(name, RING + capacity)?;
        shm.guarded(|| {
            shm.atomic_u64(CAPACITY).store(capacity as u64, Ordering::Relaxed);
            shm.atomic_u32(8).store(VERSION, Ordering::Relaxed);
            shm.atomic_u64(0).store(u64::from_ne_bytes(MAGIC), Ordering::Release);
        })
        .map_err(|_| shm.pages_lost_error())?;
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
        let bad = |reason: String| Error::BadHeader {
            name: shm.name().to_owned(),
            what: "channel",
            reason,
        };
        let (magic, version, capacity) = shm
            .guarded(|| {
                let magic = shm.atomic_u64(0).load(Ordering::Acquire).to_ne_bytes();
                let version = shm.atomic_u32(8).load(Ordering::Relaxed);
                (magic, version, shm.atomic_u64(CAPACITY).load(Ordering::Relaxed))
            })
            .map_err(|_| shm.pages_lost_error())?;
        if magic != MAGIC {
            return Err(bad("not a shmbridge channel".into()));
        }
        if version != VERSION {
            return Err(bad(format!(
                "channel layout version {version}; this build reads version {VERSION}: both \
                 ends must come from shmbridge builds of the same channel layout (create the \
                 channel again with this one)"
            )));
        }
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
        ring::max_message(self.capacity)
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The segment the channel lives in (its header, then the ring at byte 192).
    pub fn segment(&self) -> &Arc<SharedMemory> {
        &self.shm
    }

    /// Claims the producing end for this process.
    ///
    /// # Errors
    ///
    /// [`Error::Incompatible`] if a live process (this one included) has it, or
    /// closed it but still holds loans from it; [`Error::BadHeader`] if the ring's
    /// positions are corrupt.
    pub fn sender(&self) -> Result<Sender> {
        self.shm
            .guarded(|| {
                let owner = self.claim(PRODUCER)?;
                Sender::start(self.clone(), owner)
            })
            .map_err(|_| self.shm.pages_lost_error())?
    }

    /// Claims the consuming end for this process.
    ///
    /// # Errors
    ///
    /// [`Error::Incompatible`] if a live process (this one included) has it, or
    /// closed it but still holds messages from it; [`Error::BadHeader`] if the
    /// ring's positions are corrupt.
    pub fn receiver(&self) -> Result<Receiver> {
        self.shm
            .guarded(|| {
                let owner = self.claim(CONSUMER)?;
                Receiver::start(self.clone(), owner)
            })
            .map_err(|_| self.shm.pages_lost_error())?
    }

    fn claim(&self, end: End) -> Result<Owner> {
        let pid = self.word(end.pid);
        let me = Owner::current();
        loop {
            let current = pid.load(Ordering::Acquire);
            if current != 0 && (current == me.pid() || sys::process_alive(current)) {
                let closed = self.word(end.closed).load(Ordering::Acquire) != 0;
                let end = end.name;
                let reason = if closed {
                    format!(
                        "its previous {end}, in process {current}, was closed but still holds \
                         messages or loans from it: release them first"
                    )
                } else if current == me.pid() {
                    format!(
                        "already has a {end} in this process ({current}): one {end} at a time \
                         (a {end} closed while a loan or send was under way counts until that \
                         ends)"
                    )
                } else {
                    format!("already has a {end} in process {current}: one {end} at a time")
                };
                return Err(Error::Incompatible {
                    name: self.name().to_owned(),
                    what: "the channel".into(),
                    reason,
                });
            }
            if pid.compare_exchange(current, me.pid(), Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                self.word(end.closed).store(0, Ordering::Release);
                return Ok(me);
            }
        }
    }

    /// Gives the end up (its process closed it and holds nothing from it any more).
    fn let_go(&self, end: End, owner: Owner) {
        let _ = self.word(end.pid).compare_exchange(
            owner.pid(),
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.shm.atomic_u32(offset)
    }

    /// Runs `f`, which touches the header's words or the ring, in a guarded scope
    /// of the segment: a page another process removed (by shrinking the segment)
    /// is [`ChannelError::PagesLost`], never a SIGBUS, whatever `f` returned. Every
    /// public operation of the ends runs this way; no caller's code runs inside
    /// (a callback reading a message in place must fault as any view does, not
    /// read zeros).
    #[inline]
    fn guarded<R>(&self, f: impl FnOnce() -> Result<R, ChannelError>) -> Result<R, ChannelError> {
        self.shm.guarded(f).unwrap_or(Err(ChannelError::PagesLost))
    }

    /// As [`guarded`](Self::guarded), for bodies that take or give back the
    /// sender's turn: `f`'s result if it ran (it does not when pages were lost
    /// before), and whether pages were lost, so that the caller can end a turn
    /// that `f` took, or would have ended, before reporting the error.
    #[inline]
    fn guarded_keeping<R>(&self, f: impl FnOnce() -> R) -> (Option<R>, bool) {
        let mut result = None;
        let lost = self.shm.guarded(|| result = Some(f())).is_err();
        (result, lost)
    }

    /// As [`guarded`](Self::guarded), for what cannot report an error (closing,
    /// releasing, dropping): a lost page only ends it early.
    #[inline]
    fn guarded_quietly(&self, f: impl FnOnce()) {
        let _ = self.shm.guarded(f);
    }

    fn counter(&self, offset: usize) -> &AtomicU64 {
        self.shm.atomic_u64(offset)
    }

    /// A readiness on the header word at `word` (holding `seen`), whose sleepers are
    /// counted at `sleepers`.
    fn readiness(&self, word: usize, sleepers: usize, seen: u32, recheck: Duration) -> Readiness {
        Readiness::new(Arc::clone(&self.shm), word, sleepers, seen, Some(recheck))
    }

    /// The address of ring offset `at` (< capacity).
    fn ring_ptr(&self, at: usize) -> *mut u8 {
        debug_assert!(at <= self.capacity);
        self.shm.as_mut_ptr().wrapping_add(RING + at)
    }

    /// `len` bytes of the ring at `at`, as a [`SharedSlice`]; the caller checked
    /// that they lie in the ring.
    fn ring_slice(&self, at: usize, len: usize) -> SharedSlice<'_, u8> {
        debug_assert!(at + len <= self.capacity);
        SharedSlice::new(&self.shm, RING + at, len)
    }

    /// Reads the record header (length, flags) at ring offset `place`.
    fn read_header(&self, place: usize) -> Result<(u32, u32), ChannelError> {
        let mut header = [0u8; ring::RECORD_HEADER];
        self.copy_out(place, &mut header)?;
        let [a, b, c, d, e, f, g, h] = header;
        Ok((u32::from_ne_bytes([a, b, c, d]), u32::from_ne_bytes([e, f, g, h])))
    }

    /// Writes a record header at ring offset `place`.
    fn write_header(&self, place: usize, len: u32, flags: u32) -> Result<(), ChannelError> {
        let mut header = [0u8; ring::RECORD_HEADER];
        header[..4].copy_from_slice(&len.to_ne_bytes());
        header[4..].copy_from_slice(&flags.to_ne_bytes());
        self.copy_in(place, &header)
    }

    /// Copies ring bytes at `place` into `dst`, guarded: pages a peer removed by
    /// shrinking the segment are [`ChannelError::PagesLost`], never a signal.
    fn copy_out(&self, place: usize, dst: &mut [u8]) -> Result<(), ChannelError> {
        debug_assert!(place + dst.len() <= self.capacity);
        // SAFETY: `dst` is the caller's own buffer; the range lies in the ring (the
        // callers checked it), which another process may write meanwhile: the copy
        // takes no reference into it.
        unsafe { self.shm.read_at_raw(dst.as_mut_ptr(), dst.len(), (RING + place) as u64) }
            .map(drop)
            .map_err(|_| ChannelError::PagesLost)
    }

    /// Copies `src` into the ring at `place`, guarded as [`copy_out`](Self::copy_out).
    fn copy_in(&self, place: usize, src: &[u8]) -> Result<(), ChannelError> {
        debug_assert!(place + src.len() <= self.capacity);
        // SAFETY: the producer owns this room of the ring until it publishes it
        // (ring::room), `src` is the caller's own data, and no reference into the
        // ring is created.
        unsafe { self.shm.write_all_at_raw(src.as_ptr(), src.len(), (RING + place) as u64) }
            .map_err(|_| ChannelError::PagesLost)
    }
}

/// What each end keeps to wait for the other: a spinner, and a rate-limited watch
/// on the other end's process (a system call at most every 100 ms, and only on the
/// way to sleeping).
#[derive(Debug)]
struct Waiting {
    spinner: Spinner,
    peer: std::sync::Mutex<PeerCheck>,
    /// Calls of [`Waiting::peer_gone_cheaply`], to look at liveness now and then.
    polls: AtomicU32,
}

/// [`Waiting::peer_gone_cheaply`] asks the OS once per this many calls (and at most
/// every [`LIVENESS_CHECK`]); otherwise it only reads the other end's `closed` word.
const POLLS_PER_LIVENESS_CHECK: u32 = 256;

#[derive(Debug, Default)]
struct PeerCheck {
    watch: Option<sys::ProcessWatch>,
    checked: Option<Instant>,
    alive: bool,
    /// When the channel's creator was last looked at (while the other end was
    /// unclaimed), and whether it was found dead.
    creator_checked: Option<Instant>,
    creator_dead: bool,
}

impl Waiting {
    fn new() -> Self {
        Self {
            spinner: Spinner::new(),
            peer: std::sync::Mutex::new(PeerCheck::default()),
            polls: AtomicU32::new(0),
        }
    }

    /// As [`peer_gone`](Self::peer_gone), for paths that do not sleep (polling,
    /// `try_*`): reads the other end's `closed` word, and only every
    /// [`POLLS_PER_LIVENESS_CHECK`]th call asks whether its process lives.
    fn peer_gone_cheaply(&self, channel: &Channel, peer: End) -> Option<ChannelError> {
        if channel.word(peer.closed).load(Ordering::Acquire) != 0 {
            return Some(ChannelError::Closed);
        }
        if self.polls.fetch_add(1, Ordering::Relaxed).is_multiple_of(POLLS_PER_LIVENESS_CHECK) {
            return self.peer_gone(channel, peer);
        }
        None
    }

    /// Whether the other end is gone: `Closed` if it closed, `PeerDied` if its
    /// process is dead (checked at most every [`LIVENESS_CHECK`]).
    fn peer_gone(&self, channel: &Channel, peer: End) -> Option<ChannelError> {
        if channel.word(peer.closed).load(Ordering::Acquire) != 0 {
            return Some(ChannelError::Closed);
        }
        let pid = channel.word(peer.pid).load(Ordering::Acquire);
        let mut check = self.peer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if pid == 0 {
            return Self::creator_gone(&mut check, channel, now);
        }
        let stale = check.watch.as_ref().is_none_or(|w| w.pid() != pid);
        if stale {
            check.watch = Some(sys::ProcessWatch::new(pid));
            check.checked = None;
        }
        if check.checked.is_none_or(|at| now - at >= LIVENESS_CHECK) {
            check.alive = check.watch.as_ref().is_some_and(sys::ProcessWatch::is_alive);
            check.checked = Some(now);
        }
        (!check.alive).then_some(ChannelError::PeerDied { pid })
    }

    /// The other end is unclaimed (never claimed, or let go): whoever was to take
    /// it leaves no trace in the channel. What can be known is the channel's
    /// creator, from its ownership record: if the creator died without persisting
    /// the channel, and is not this process, nobody made the channel to outlive it,
    /// and waiting for an end to be claimed would be waiting forever: reported as
    /// `PeerDied` with the creator's pid. A channel whose creator lives (this
    /// process included), or that is persistent, or that has no record, may still
    /// get its other end: keep waiting (give a timeout). Checked at most every
    /// [`LIVENESS_CHECK`] (it reads `/proc`).
    fn creator_gone(
        check: &mut PeerCheck,
        channel: &Channel,
        now: Instant,
    ) -> Option<ChannelError> {
        let record = channel.shm.record().filter(|r| r.is_reclaimable())?;
        if check.creator_checked.is_none_or(|at| now - at >= LIVENESS_CHECK) {
            check.creator_dead = record.creator_state() == crate::record::CreatorState::Dead;
            check.creator_checked = Some(now);
        }
        check.creator_dead.then_some(ChannelError::PeerDied { pid: record.creator_pid() })
    }

    /// Waits for the word at `signal` to move from `seen`: spins, then (if the
    /// other end still lives) sleeps until it moves, `deadline`, or the next
    /// liveness check is due. Callers re-check everything after.
    fn wait(
        &self,
        channel: &Channel,
        signal: usize,
        sleepers: usize,
        seen: u32,
        deadline: Option<Instant>,
        peer: End,
    ) -> Result<(), ChannelError> {
        let mut gone = None;
        let slice = Instant::now() + LIVENESS_CHECK;
        let until = deadline.map_or(slice, |d| d.min(slice));
        wait_until_or(
            &channel.shm,
            channel.word(signal),
            channel.word(sleepers),
            &self.spinner,
            Some(until),
            |v| v != seen,
            || {
                gone = self.peer_gone(channel, peer);
                gone.is_none()
            },
        );
        if channel.shm.pages_lost() {
            // The signal word may be a private page now, which the peer never moves.
            return Err(ChannelError::PagesLost);
        }
        if crate::sync::wait::interrupted() {
            return Err(ChannelError::Timeout);
        }
        gone.map_or(Ok(()), Err)
    }
}
