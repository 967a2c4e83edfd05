//! The consuming end: records are read in order; a received message keeps its
//! room in the ring until it is released, in any order, and `tail` follows the
//! oldest message still held.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ring::{self, Record};
use super::{
    CONSUMER, CONSUMER_SLEEPERS, Channel, ChannelError, HEAD, HEAD_SIGNAL, PRODUCER,
    PRODUCER_SLEEPERS, TAIL, TAIL_SIGNAL, Waiting,
};
use crate::error::{Error, Result};
use crate::owner::Owner;
use crate::shared_slice::SharedSlice;
use crate::sync::Readiness;
use crate::sync::wait::{passed, past, wake_after_rmw};

/// The consuming end: `recv`, `try_recv`, `recv_timeout`. A message is a
/// zero-copy view of the ring, released when dropped; several may be held at
/// once. Dropping the receiver closes the channel for the sender.
///
/// Threads of this process may share a receiver: each message goes to exactly one
/// of them.
///
/// # Example
///
/// ```
/// use shmbridge::channel::Channel;
///
/// let channel = Channel::create(&shmbridge::unique_name("doc_receiver")?, 4096)?;
/// let (tx, rx) = (channel.sender()?, channel.receiver()?);
/// for text in ["a", "b", "c"] {
///     tx.send(text.as_bytes())?;
/// }
/// let a = rx.recv()?; // held, zero-copy
/// let b = rx.recv()?;
/// drop(a); // released in any order
/// assert_eq!(b.to_vec()?, b"b");
/// assert_eq!(rx.try_recv()?.to_vec()?, b"c");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Receiver {
    channel: Channel,
    owner: Owner,
    /// Never held while waiting.
    state: std::sync::Mutex<State>,
    closed: AtomicBool,
    waiting: Waiting,
}

struct State {
    /// The next record to read (a stream position).
    read: u64,
    /// Records read but not yet given back, oldest first; `tail` is the start of
    /// the oldest (or `read` when none).
    held: VecDeque<Held>,
    /// The `tail` last published to the producer.
    tail: u64,
}

struct Held {
    start: u64,
    released: bool,
}

/// A message taken by [`Receiver::recv_raw`]: where its bytes are, and the key to
/// give it back with [`Receiver::release_raw`] (`unsafe`: see there).
#[derive(Debug)]
pub struct RawMessage {
    position: u64,
    ptr: *const u8,
    len: usize,
}

impl RawMessage {
    /// The first byte: valid for [`len`](Self::len) bytes until released.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The message's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key for [`Receiver::release_raw`].
    pub fn position(&self) -> u64 {
        self.position
    }
}

// SAFETY: a RawMessage is a position plus an address in a mapping; it owns nothing
// and may be released from any thread.
unsafe impl Send for RawMessage {}
// SAFETY: as for Send; &RawMessage only reads the fields.
unsafe impl Sync for RawMessage {}

impl Receiver {
    /// The end just claimed by `owner`: it starts at the oldest message not yet
    /// released (a receiver that died holding messages leaves them to its successor).
    pub(super) fn start(channel: Channel, owner: Owner) -> Result<Self> {
        let tail = channel.counter(TAIL).load(Ordering::Acquire);
        let head = channel.counter(HEAD).load(Ordering::Acquire);
        if ring::next_record_place(tail, head, channel.capacity).is_err() {
            channel.let_go(CONSUMER, owner);
            return Err(Error::BadHeader {
                name: channel.name().to_owned(),
                what: "channel",
                reason: format!("the ring's positions are corrupt (head {head}, tail {tail})"),
            });
        }
        Ok(Self {
            channel,
            owner,
            state: std::sync::Mutex::new(State { read: tail, held: VecDeque::new(), tail }),
            closed: AtomicBool::new(false),
            waiting: Waiting::new(),
        })
    }

    /// Waits for the next message.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] once the sender closed and everything it sent was
    /// received; [`ChannelError::PeerDied`] likewise if its process died;
    /// [`ChannelError::ClosedHere`], [`ChannelError::WrongProcess`],
    /// [`ChannelError::Corrupt`].
    pub fn recv(&self) -> Result<Message<'_>, ChannelError> {
        self.recv_deadline(None)
    }

    /// The next message if there is one now.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Empty`], and as [`recv`](Self::recv).
    pub fn try_recv(&self) -> Result<Message<'_>, ChannelError> {
        self.recv_deadline(Some(past())).map_err(|e| match e {
            ChannelError::Timeout => ChannelError::Empty,
            e => e,
        })
    }

    /// Waits at most `timeout` for the next message.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Timeout`], and as [`recv`](Self::recv).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message<'_>, ChannelError> {
        // A message already there needs no deadline, nor a clock read to make one.
        match self.recv_deadline(Some(past())) {
            Err(ChannelError::Timeout) => self.recv_deadline(Instant::now().checked_add(timeout)),
            received => received,
        }
    }

    /// Waits until `deadline` (forever if `None`) for the next message.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Option<Instant>) -> Result<Message<'_>, ChannelError> {
        let raw = self.recv_raw(deadline)?;
        Ok(Message { receiver: self, raw })
    }

    /// Takes the next message without a borrow, for bindings that hold messages
    /// across calls; give it back with [`release_raw`](Self::release_raw). Its room
    /// in the ring stays taken until then.
    ///
    /// # Errors
    ///
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_raw(&self, deadline: Option<Instant>) -> Result<RawMessage, ChannelError> {
        self.channel.guarded(|| self.recv_unguarded(deadline))
    }

    /// The body of [`recv_raw`](Self::recv_raw), in its guarded scope.
    fn recv_unguarded(&self, deadline: Option<Instant>) -> Result<RawMessage, ChannelError> {
        self.wait_for(deadline, || {
            let mut state = self.lock();
            let taken = self.take(&mut state);
            // Padding or skipped records stepped over are room the producer may need.
            self.advance_tail(&mut state);
            Ok(taken?.map(|(position, payload, len)| RawMessage {
                position,
                ptr: self.channel.ring_ptr(payload).cast_const(),
                len,
            }))
        })
    }

    /// Waits for the next message without blocking a thread: a future for any async
    /// runtime. Cancel-safe: a message is taken only when the future completes, so
    /// dropping it (a time-out, a cancelled task) loses nothing. Time-outs come
    /// from the runtime (`tokio::time::timeout`, ...).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub async fn recv_async(&self) -> Result<Message<'_>, ChannelError> {
        let raw =
            crate::sync::reactor::WhenReady::new(move || self.try_take_or_readiness()).await?;
        Ok(Message { receiver: self, raw })
    }

    /// What to wait for while no message is there (`None` if one is, or the channel
    /// ended: receive then), for bindings that wait their own way (see
    /// [`Readiness`]). Takes nothing.
    pub fn recv_readiness(&self) -> Option<Readiness> {
        // A lost page gives None: the caller then receives, and gets the error.
        self.channel.guarded(|| Ok(self.recv_readiness_unguarded())).unwrap_or(None)
    }

    /// The body of [`recv_readiness`](Self::recv_readiness), in its guarded scope.
    fn recv_readiness_unguarded(&self) -> Option<Readiness> {
        let c = &self.channel;
        let seen = c.word(HEAD_SIGNAL).load(Ordering::Acquire);
        if self.usable().is_err()
            || c.counter(HEAD).load(Ordering::Acquire) != self.lock().read
            || self.waiting.peer_gone(c, PRODUCER).is_some()
        {
            return None;
        }
        Some(c.readiness(HEAD_SIGNAL, CONSUMER_SLEEPERS, seen, super::LIVENESS_CHECK))
    }

    /// One step of [`recv_async`](Self::recv_async): a message, why the channel
    /// ended, or what to wait for.
    fn try_take_or_readiness(&self) -> Result<Result<RawMessage, ChannelError>, Readiness> {
        match self.channel.guarded(|| Ok(self.try_take_or_readiness_unguarded())) {
            Ok(step) => step,
            Err(e) => Ok(Err(e)),
        }
    }

    /// The body of [`try_take_or_readiness`](Self::try_take_or_readiness), in its
    /// guarded scope.
    fn try_take_or_readiness_unguarded(
        &self,
    ) -> Result<Result<RawMessage, ChannelError>, Readiness> {
        let c = &self.channel;
        let seen = c.word(HEAD_SIGNAL).load(Ordering::Acquire);
        let take = || -> Result<Option<RawMessage>, ChannelError> {
            self.usable()?;
            let mut state = self.lock();
            let taken = self.take(&mut state);
            self.advance_tail(&mut state);
            Ok(taken?.map(|(position, payload, len)| RawMessage {
                position,
                ptr: c.ring_ptr(payload).cast_const(),
                len,
            }))
        };
        match take() {
            Ok(Some(raw)) => return Ok(Ok(raw)),
            Ok(None) => {}
            Err(e) => return Ok(Err(e)),
        }
        if let Some(gone) = self.waiting.peer_gone(c, PRODUCER) {
            // Everything published was delivered: only now report the end.
            return Ok(match take() {
                Ok(Some(raw)) => Ok(raw),
                Ok(None) => Err(gone),
                Err(e) => Err(e),
            });
        }
        Err(c.readiness(HEAD_SIGNAL, CONSUMER_SLEEPERS, seen, super::LIVENESS_CHECK))
    }

    /// Gives back a message taken by [`recv_raw`](Self::recv_raw) (its key,
    /// [`RawMessage::position`]); unknown keys are ignored. A no-op in a process
    /// that does not own this end (a `fork`ed child).
    ///
    /// # Safety
    ///
    /// Nothing may read the message's room through a reference after this call:
    /// the sender may then write there. Keys are stream positions, easy to guess
    /// (the first message is at 0), so a safe call could free the room of a
    /// [`Message`] that another part of the program still derefs; hence `unsafe`.
    /// Release each message taken with `recv_raw` once, and only it.
    pub unsafe fn release_raw(&self, position: u64) {
        if !self.owner.is_current() {
            return;
        }
        // A lost page: the ring is gone, there is no room left to give back.
        self.channel.guarded_quietly(|| self.release_unguarded(position));
    }

    /// The rest of [`release_raw`](Self::release_raw), in its guarded scope.
    fn release_unguarded(&self, position: u64) {
        let mut state = self.lock();
        if let Some(held) = state.held.iter_mut().find(|h| h.start == position) {
            held.released = true;
        }
        self.advance_tail(&mut state);
    }

    /// Copies a message taken by [`recv_raw`](Self::recv_raw) (and not yet
    /// released) into `dst`, which must be exactly as long; guarded, so pages a
    /// peer removed are [`ChannelError::PagesLost`], never a signal.
    ///
    /// # Errors
    ///
    /// [`ChannelError::PagesLost`]; [`ChannelError::TooLarge`] if `dst` has the
    /// wrong length.
    pub fn copy_raw(&self, raw: &RawMessage, dst: &mut [u8]) -> Result<(), ChannelError> {
        if dst.len() != raw.len {
            return Err(ChannelError::TooLarge { len: raw.len, max: dst.len() });
        }
        self.copy_raw_at(raw, 0, dst)
    }

    /// Copies `dst.len()` bytes of a held message, from byte `offset` of it, into
    /// `dst` (guarded, as [`copy_raw`](Self::copy_raw)).
    ///
    /// # Errors
    ///
    /// [`ChannelError::PagesLost`]; [`ChannelError::TooLarge`] if the range runs
    /// past the message's end.
    pub fn copy_raw_at(
        &self,
        raw: &RawMessage,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), ChannelError> {
        if offset.checked_add(dst.len()).is_none_or(|end| end > raw.len) {
            return Err(ChannelError::TooLarge {
                len: offset.saturating_add(dst.len()),
                max: raw.len,
            });
        }
        let place = raw.ptr as usize - self.channel.ring_ptr(0) as usize;
        self.channel.copy_out(place + offset, dst)
    }

    /// Takes the next message if there is one now, lends it to `f`, and releases it
    /// at once: the copying receive, in one step.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Empty`], and as [`recv`](Self::recv) for a closed channel.
    pub fn try_recv_with<R>(&self, f: impl FnOnce(Lent<'_>) -> R) -> Result<R, ChannelError> {
        let mut f = Some(f);
        match self.drain_with(1, |bytes| f.take().map(|f| f(bytes)))? {
            (1, Some(Some(result))) => Ok(result),
            _ => Err(ChannelError::Empty),
        }
    }

    /// Takes up to `max` messages that are there now, lending each to `f` and
    /// releasing it at once; returns how many, and `f`'s last result.
    ///
    /// # Errors
    ///
    /// Only if it took none: [`ChannelError::Empty`], or why the channel ended (as
    /// [`recv`](Self::recv)).
    pub fn drain_with<R>(
        &self,
        max: usize,
        mut f: impl FnMut(Lent<'_>) -> R,
    ) -> Result<(usize, Option<R>), ChannelError> {
        self.usable()?;
        let drained = self.drain_now(max, &mut f)?;
        if drained.0 > 0 {
            return Ok(drained);
        }
        let c = &self.channel;
        let Some(gone) = c.guarded(|| Ok(self.waiting.peer_gone_cheaply(c, PRODUCER)))? else {
            return Err(ChannelError::Empty);
        };
        // Everything published before the end is delivered before the end is told.
        let drained = self.drain_now(max, &mut f)?;
        if drained.0 > 0 { Ok(drained) } else { Err(gone) }
    }

    /// The body of [`drain_with`](Self::drain_with): what is there now. Each
    /// record is taken in a guarded scope, and `f` runs outside it: a view of
    /// the message that `f` reads in place faults as any view does, instead of
    /// reading zeros.
    fn drain_now<R>(
        &self,
        max: usize,
        f: &mut impl FnMut(Lent<'_>) -> R,
    ) -> Result<(usize, Option<R>), ChannelError> {
        let mut state = self.lock();
        let (mut taken, mut last, mut failed) = (0, None, None);
        while taken < max {
            match self.channel.guarded(|| self.take(&mut state)) {
                Ok(Some((position, payload, len))) => {
                    last = Some(f(Lent { channel: &self.channel, payload, len }));
                    if let Some(held) = state.held.iter_mut().rev().find(|h| h.start == position) {
                        held.released = true;
                    }
                    taken += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // What `f` got was whole (its copies are guarded themselves); a page lost
        // here shows at the next call.
        self.channel.guarded_quietly(|| self.advance_tail(&mut state));
        match failed {
            Some(e) if taken == 0 => Err(e),
            _ => Ok((taken, last)),
        }
    }

    /// How many received messages this end still holds.
    pub fn held(&self) -> usize {
        self.lock().held.iter().filter(|h| !h.released).count()
    }

    /// Closes the channel: the sender's next send gets `Closed`, and every thread
    /// of this process waiting in this receiver is woken with
    /// [`ChannelError::ClosedHere`]. Messages held stay valid until released; the
    /// end stays claimed until then. Idempotent; a no-op in a process that does not
    /// own this end.
    pub fn close(&self) {
        if !self.owner.is_current() || self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // A lost page ends the close early: nobody can see the channel any more.
        self.channel.guarded_quietly(|| self.close_unguarded());
    }

    /// The rest of [`close`](Self::close), in its guarded scope.
    fn close_unguarded(&self) {
        let c = &self.channel;
        c.word(CONSUMER.closed).store(1, Ordering::Release);
        c.word(TAIL_SIGNAL).fetch_add(1, Ordering::SeqCst);
        wake_after_rmw(c.word(TAIL_SIGNAL), c.word(PRODUCER_SLEEPERS), 1);
        // Our own waiters sleep on the head's signal: move it, so none misses this.
        c.word(HEAD_SIGNAL).fetch_add(1, Ordering::Release);
        crate::sys::wake(c.word(HEAD_SIGNAL), i32::MAX as u32);
        let state = self.lock();
        if state.held.iter().all(|h| h.released) {
            c.let_go(CONSUMER, self.owner);
        }
    }

    /// Whether this process owns this end (false in a `fork`ed child's copy, which
    /// can do nothing with it).
    pub fn is_owned_here(&self) -> bool {
        self.owner.is_current()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The channel this end belongs to (keeps the mapping alive).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked (nothing there does).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn usable(&self) -> Result<(), ChannelError> {
        if !self.owner.is_current() {
            return Err(ChannelError::WrongProcess { owner: self.owner.pid() });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::ClosedHere);
        }
        Ok(())
    }

    /// Reads the next message's record, stepping over padding and skipped records:
    /// `(position, payload place, length)`, now held; `None` if there is none yet.
    fn take(&self, state: &mut State) -> Result<Option<(u64, usize, usize)>, ChannelError> {
        // Checked under the state lock: close() sets `closed`, then looks (under the
        // lock) for held messages before letting the end go. A take that passed an
        // earlier check must not hold a message of an end already let go, which
        // another receiver may have claimed.
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::ClosedHere);
        }
        let c = &self.channel;
        loop {
            let head = c.counter(HEAD).load(Ordering::Acquire);
            let Some(place) = ring::next_record_place(state.read, head, c.capacity)? else {
                return Ok(None);
            };
            let (len, flags) = c.read_header(place)?;
            let start = state.read;
            match ring::interpret(place, start, head, c.capacity, len, flags)? {
                Record::Padding { bytes } | Record::Skip { bytes } => {
                    state.held.push_back(Held { start, released: true });
                    state.read += bytes;
                }
                Record::Message { payload, len, bytes } => {
                    state.held.push_back(Held { start, released: false });
                    state.read += bytes;
                    return Ok(Some((start, payload, len)));
                }
            }
        }
    }

    /// Drops released records from the front of `held` and, if the oldest byte in
    /// use moved, tells the producer (and lets go of a closed end holding nothing).
    fn advance_tail(&self, state: &mut State) {
        while state.held.front().is_some_and(|h| h.released) {
            state.held.pop_front();
        }
        let tail = state.held.front().map_or(state.read, |h| h.start);
        if tail != state.tail {
            state.tail = tail;
            let c = &self.channel;
            c.counter(TAIL).store(tail, Ordering::Release);
            c.word(TAIL_SIGNAL).fetch_add(1, Ordering::SeqCst);
            wake_after_rmw(c.word(TAIL_SIGNAL), c.word(PRODUCER_SLEEPERS), 1);
        }
        if state.held.is_empty() && self.closed.load(Ordering::Acquire) {
            self.channel.let_go(CONSUMER, self.owner);
        }
    }

    /// Runs `attempt` until it gives something, waiting for the producer in
    /// between; delivers everything published before reporting the end.
    fn wait_for<T>(
        &self,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> Result<Option<T>, ChannelError>,
    ) -> Result<T, ChannelError> {
        let c = &self.channel;
        loop {
            self.usable()?;
            if let Some(found) = attempt()? {
                return Ok(found);
            }
            let seen = c.word(HEAD_SIGNAL).load(Ordering::Acquire);
            // Look again after reading the signal, so a publish in between is not missed.
            if let Some(found) = attempt()? {
                return Ok(found);
            }
            let waited = match self.waiting.peer_gone_cheaply(c, PRODUCER) {
                Some(gone) => Err(gone),
                None if deadline.is_some_and(passed) => {
                    return Err(ChannelError::Timeout);
                }
                None => {
                    self.waiting.wait(c, HEAD_SIGNAL, CONSUMER_SLEEPERS, seen, deadline, PRODUCER)
                }
            };
            if let Err(gone) = waited {
                // Everything published was delivered: only now report the end.
                return match attempt()? {
                    Some(found) => Ok(found),
                    None => Err(gone),
                };
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("channel", &self.channel.name())
            .field("owner", &self.owner.pid())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A message lent to a closure by [`Receiver::drain_with`] or
/// [`Receiver::try_recv_with`]; it is released when the closure returns.
pub struct Lent<'a> {
    channel: &'a Channel,
    payload: usize,
    len: usize,
}

impl Lent<'_> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the message into `dst` (exactly [`len`](Self::len) bytes), guarded:
    /// pages a peer removed by shrinking the segment are
    /// [`ChannelError::PagesLost`], never a signal.
    ///
    /// # Errors
    ///
    /// [`ChannelError::PagesLost`]; [`ChannelError::TooLarge`] if `dst` has the
    /// wrong length.
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<(), ChannelError> {
        if dst.len() != self.len {
            return Err(ChannelError::TooLarge { len: self.len, max: dst.len() });
        }
        self.channel.copy_out(self.payload, dst)
    }

    /// A copy of the message (guarded, as [`copy_to`](Self::copy_to)).
    ///
    /// # Errors
    ///
    /// [`ChannelError::PagesLost`].
    pub fn to_vec(&self) -> Result<Vec<u8>, ChannelError> {
        let mut bytes = vec![0; self.len];
        self.copy_to(&mut bytes)?;
        Ok(bytes)
    }

    /// The message in place, as a [`SharedSlice`]: zero-copy, each byte read
    /// afresh, sound whatever another process writes there (see [`Message::bytes`]).
    pub fn bytes(&self) -> SharedSlice<'_, u8> {
        self.channel.ring_slice(self.payload, self.len)
    }

    /// The message in place, as a plain slice: zero-copy and unguarded, like every
    /// view of shared memory (see [`SharedMemory`](crate::SharedMemory)'s notes on
    /// peers).
    ///
    /// # Safety
    ///
    /// As [`Message::as_slice`]: nothing may write the message's room while the
    /// slice lives.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: [payload, payload + len) is a published record checked to lie in
        // the ring (a non-null address, even for len 0), held until `f` returns, which
        // this borrow cannot outlive; the caller vouches that nothing writes it.
        unsafe { std::slice::from_raw_parts(self.channel.ring_ptr(self.payload), self.len) }
    }
}

impl fmt::Debug for Lent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lent").field("len", &self.len).finish()
    }
}

/// A received message, in place in the ring, released when dropped.
///
/// Its room is this message's alone under the channel's protocol: the sender does
/// not reuse it before the message is dropped. That promise binds only code that
/// follows the protocol, though: another handle to the same segment (in this
/// process too: `SharedMemory::open` of the channel's name) or a misbehaving peer
/// can write there at any moment. So safe code reads the bytes in place through a
/// [`SharedSlice`] ([`bytes`](Self::bytes): each byte read afresh, unguarded like
/// every zero-copy access) or copies them out ([`to_vec`](Self::to_vec),
/// [`copy_to`](Self::copy_to): guarded against a peer shrinking the segment); a
/// plain `&[u8]` is [`as_slice`](Self::as_slice), `unsafe`.
///
/// # Example
///
/// ```
/// use shmbridge::channel::Channel;
///
/// let channel = Channel::create(&shmbridge::unique_name("doc_message")?, 4096)?;
/// let (tx, rx) = (channel.sender()?, channel.receiver()?);
/// tx.send(&[1, 2, 3])?;
/// let message = rx.recv()?;
/// assert_eq!(message.len(), 3);
/// assert_eq!(message.bytes().get(2), Some(3)); // in place
/// let copy: Vec<u8> = message.to_vec()?; // a guarded copy
/// assert_eq!(copy, [1, 2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Message<'a> {
    receiver: &'a Receiver,
    raw: RawMessage,
}

impl Message<'_> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.raw.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// The message in place, as a [`SharedSlice`] of bytes: zero-copy, each byte
    /// read afresh (so a peer writing the room meanwhile gives wrong bytes, never
    /// undefined behaviour), unguarded like every zero-copy access.
    pub fn bytes(&self) -> SharedSlice<'_, u8> {
        let c = &self.receiver.channel;
        c.ring_slice(self.raw.ptr as usize - c.ring_ptr(0) as usize, self.raw.len)
    }

    /// Copies the message into `dst`, which must be exactly as long (guarded, as
    /// [`to_vec`](Self::to_vec)).
    ///
    /// # Errors
    ///
    /// [`ChannelError::PagesLost`]; [`ChannelError::TooLarge`] if `dst` has the
    /// wrong length.
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<(), ChannelError> {
        self.receiver.copy_raw(&self.raw, dst)
    }

    /// The message in place, as a plain slice: zero-copy and unguarded.
    ///
    /// # Safety
    ///
    /// Nothing may write the message's room while the slice lives: no other
    /// handle to the channel's segment in this process, and no other process (the
    /// channel's sender follows the protocol and does not; a peer that ignores it
    /// could, so only use this with peers you trust). `docs/SAFETY.md`.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: [ptr, ptr + len) is a published record checked to lie in the ring
        // (non-null even for len 0), which the sender does not reuse before this
        // message is released (on drop); the receiver's borrow keeps the mapping
        // alive; the caller vouches for every other writer.
        unsafe { std::slice::from_raw_parts(self.raw.ptr, self.raw.len) }
    }

    /// A copy of the message, guarded: pages a peer removed by shrinking the
    /// segment are [`ChannelError::PagesLost`], never a signal.
    ///
    /// # Errors
    ///
    /// [`ChannelError::PagesLost`].
    pub fn to_vec(&self) -> Result<Vec<u8>, ChannelError> {
        let mut bytes = vec![0; self.raw.len];
        self.receiver.copy_raw(&self.raw, &mut bytes)?;
        Ok(bytes)
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        // SAFETY: this message's own key, released once; nothing borrowed from the
        // message (`as_slice`, `bytes`) outlives it.
        unsafe { self.receiver.release_raw(self.raw.position) };
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("len", &self.raw.len).finish()
    }
}
