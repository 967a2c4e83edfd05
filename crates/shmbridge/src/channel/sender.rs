//! The producing end: room is reserved in the ring, written, and published by
//! advancing `head`; threads of the owning process take turns through a local lock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ring::{self, FLAG_SKIP, WRAP};
use super::{
    CONSUMER, Channel, ChannelError, HEAD, HEAD_SIGNAL, PRODUCER, PRODUCER_SLEEPERS, TAIL,
    TAIL_SIGNAL, Waiting,
};
use crate::error::{Error, Result};
use crate::owner::Owner;
use crate::shared_slice::SharedSlice;
use crate::sync::Readiness;
use crate::sync::local_lock::{Acquired, LocalLock};
use crate::sync::wait::{passed, past, wake_after_rmw};

/// The producing end: `send`, `try_send`, `send_timeout`, `send_batch`, and
/// `loan` to write a message in place. Dropping it closes the channel for the
/// receiver, which gets every message sent before.
///
/// Threads of this process may share a sender (`&Sender` is enough to send): each
/// message is published whole, in the order the sends took their turn.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use shmbridge::channel::{Channel, ChannelError};
///
/// let channel = Channel::create(&shmbridge::unique_name("doc_sender")?, 256)?;
/// let tx = channel.sender()?;
/// tx.send(b"one")?; // waits while full
/// tx.send_timeout(b"two", Duration::from_secs(1))?;
/// let sent = tx.send_batch([&b"three"[..], b"four"], None)?; // published together
/// assert_eq!(sent, 2);
/// while tx.try_send(&[0; 100]).is_ok() {} // fill the ring
/// assert_eq!(tx.try_send(&[0; 100]).unwrap_err(), ChannelError::Full);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sender {
    channel: Channel,
    owner: Owner,
    /// Held from a reservation to its publish (or discard): one message at a time.
    turn: LocalLock,
    /// The next free stream position (the lock holder alone changes it).
    head: AtomicU64,
    /// `tail` as last read from the segment. It only grows, so room it shows is
    /// there; the segment's word, on a line the consumer writes at every release,
    /// is read again only when this shows too little (a cache miss saved per send).
    seen_tail: AtomicU64,
    /// Published or given-up records whose room must not be reused yet: a binding
    /// may still hand out views of them (see [`RawLoan`]). Oldest first.
    pins: std::sync::Mutex<VecDeque<u64>>,
    /// The oldest pinned position (`u64::MAX`: none), for the fast path.
    pin_floor: AtomicU64,
    /// `close` was called in this process.
    closed: AtomicBool,
    /// The close reached the segment (`producer_closed` set). That happens only
    /// between turns, so the receiver never sees the close before a message
    /// published in a turn that did not see it.
    close_done: AtomicBool,
    waiting: Waiting,
}

impl Sender {
    /// The end just claimed by `owner`: it starts where the last producer stopped.
    pub(super) fn start(channel: Channel, owner: Owner) -> Result<Self> {
        let head = channel.counter(HEAD).load(Ordering::Acquire);
        let tail = channel.counter(TAIL).load(Ordering::Acquire);
        if let Err(ring::Corrupt(at)) = ring::room(head, tail, channel.capacity, 0) {
            channel.let_go(PRODUCER, owner);
            return Err(Error::BadHeader {
                name: channel.name().to_owned(),
                what: "channel",
                reason: format!("the ring's positions are corrupt (head {head}, tail {at})"),
            });
        }
        Ok(Self {
            channel,
            owner,
            turn: LocalLock::new(),
            head: AtomicU64::new(head),
            seen_tail: AtomicU64::new(tail),
            pins: std::sync::Mutex::new(VecDeque::new()),
            pin_floor: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            close_done: AtomicBool::new(false),
            waiting: Waiting::new(),
        })
    }

    /// Sends a copy of `data`, waiting while the ring is full.
    ///
    /// # Errors
    ///
    /// [`ChannelError::TooLarge`], [`ChannelError::Closed`] (the receiver closed),
    /// [`ChannelError::PeerDied`], [`ChannelError::ClosedHere`],
    /// [`ChannelError::WrongProcess`], [`ChannelError::Corrupt`].
    pub fn send(&self, data: &[u8]) -> Result<(), ChannelError> {
        self.send_deadline(data, None)
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Full`], and as [`send`](Self::send).
    pub fn try_send(&self, data: &[u8]) -> Result<(), ChannelError> {
        self.send_deadline(data, Some(past())).map_err(|e| match e {
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
        // Room already there needs no deadline, nor a clock read to make one.
        match self.send_deadline(data, Some(past())) {
            Err(ChannelError::Timeout) => {
                self.send_deadline(data, Instant::now().checked_add(timeout))
            }
            sent => sent,
        }
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
        self.send_parts_deadline(&[data], deadline)
    }

    /// Sends a copy of `data` when the ring has room, without blocking a thread: a
    /// future for any async runtime. Cancel-safe: the message is copied and
    /// published in one step when the future completes, so dropping it before
    /// sends nothing, and never half a message.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_async(&self, data: &[u8]) -> Result<(), ChannelError> {
        crate::sync::reactor::WhenReady::new(move || self.try_send_or_readiness(data)).await
    }

    /// What to wait for while a message of `len` bytes cannot be sent now (`None`
    /// if it can, or cannot ever: send then), for bindings that wait their own way
    /// (see [`Readiness`]). Sends nothing.
    pub fn send_readiness(&self, len: usize) -> Option<Readiness> {
        // A lost page gives None: the caller then sends, and gets the error.
        self.channel.guarded(|| Ok(self.send_readiness_unguarded(len))).unwrap_or(None)
    }

    /// The body of [`send_readiness`](Self::send_readiness), in its guarded scope.
    fn send_readiness_unguarded(&self, len: usize) -> Option<Readiness> {
        let c = &self.channel;
        let seen = c.word(TAIL_SIGNAL).load(Ordering::Acquire);
        if self.usable().is_err() || len > self.max_message() {
            return None;
        }
        if self.turn.is_locked() {
            return Some(c.readiness(TAIL_SIGNAL, PRODUCER_SLEEPERS, seen, super::TURN_RECHECK));
        }
        match self.room_at(self.head.load(Ordering::Relaxed), len) {
            Ok(None) => {}
            _ => return None,
        }
        if self.waiting.peer_gone(c, CONSUMER).is_some() {
            return None;
        }
        Some(c.readiness(TAIL_SIGNAL, PRODUCER_SLEEPERS, seen, super::LIVENESS_CHECK))
    }

    /// One step of [`send_async`](Self::send_async): sent, failed, or what to wait
    /// for.
    fn try_send_or_readiness(&self, data: &[u8]) -> Result<Result<(), ChannelError>, Readiness> {
        match self.channel.guarded(|| Ok(self.try_send_or_readiness_unguarded(data))) {
            Ok(step) => step,
            Err(e) => Ok(Err(e)),
        }
    }

    /// The body of [`try_send_or_readiness`](Self::try_send_or_readiness), in its
    /// guarded scope.
    fn try_send_or_readiness_unguarded(
        &self,
        data: &[u8],
    ) -> Result<Result<(), ChannelError>, Readiness> {
        let c = &self.channel;
        let seen = c.word(TAIL_SIGNAL).load(Ordering::Acquire);
        let busy = self.turn.is_locked();
        match self.send_deadline(data, Some(past())) {
            Err(ChannelError::Timeout) => {}
            done => return Ok(done),
        }
        if let Some(gone) = self.waiting.peer_gone(c, CONSUMER) {
            return Ok(Err(gone));
        }
        let recheck =
            if busy || self.turn.is_locked() { super::TURN_RECHECK } else { super::LIVENESS_CHECK };
        Err(c.readiness(TAIL_SIGNAL, PRODUCER_SLEEPERS, seen, recheck))
    }

    /// Sends one message made of `parts` laid end to end (a header and a payload,
    /// say), copied once, straight into the ring.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn send_parts_deadline(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<(), ChannelError> {
        self.channel.guarded(|| self.send_parts_unguarded(parts, deadline))
    }

    /// The body of [`send_parts_deadline`](Self::send_parts_deadline), in its
    /// guarded scope.
    fn send_parts_unguarded(
        &self,
        parts: &[&[u8]],
        deadline: Option<Instant>,
    ) -> Result<(), ChannelError> {
        let len = parts.iter().map(|p| p.len()).sum();
        let raw = self.reserve_unguarded(len, deadline)?;
        // Guarded copies (a peer shrinking the segment is an error, not a signal).
        let mut place = raw.ptr as usize - self.channel.ring_ptr(0) as usize;
        for part in parts {
            if let Err(e) = self.channel.copy_in(place, part) {
                self.discard_unguarded(raw, false);
                return Err(e);
            }
            place += part.len();
        }
        self.publish_unguarded(raw, false)
    }

    /// Sends the messages of `batch` in order, waiting for room until `deadline`
    /// (forever if `None`); returns how many were sent. Those that fit in the ring
    /// at once are published together, with one wake-up of the receiver.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout), if not even the first message could
    /// be sent; a failure after some were sent ends the batch early, returning the
    /// count (the caller still has the rest).
    pub fn send_batch<'a>(
        &self,
        batch: impl IntoIterator<Item = &'a [u8]>,
        deadline: Option<Instant>,
    ) -> Result<usize, ChannelError> {
        // Messages published before a page vanished may never reach the receiver:
        // the whole batch is reported lost.
        self.channel.guarded(|| self.send_batch_unguarded(batch, deadline))
    }

    /// The body of [`send_batch`](Self::send_batch), in its guarded scope.
    fn send_batch_unguarded<'a>(
        &self,
        batch: impl IntoIterator<Item = &'a [u8]>,
        deadline: Option<Instant>,
    ) -> Result<usize, ChannelError> {
        let max = self.max_message();
        let fail = |e, sent| if sent > 0 { Ok(sent) } else { Err(e) };
        let mut sent = 0;
        let mut batch = batch.into_iter().peekable();
        while let Some(&first) = batch.peek() {
            if first.len() > max {
                return fail(ChannelError::TooLarge { len: first.len(), max }, sent);
            }
            if let Err(e) = self.acquire_turn(deadline) {
                return fail(e, sent);
            }
            // Write as many as fit now under one turn, then publish them together.
            let start = self.head.load(Ordering::Relaxed);
            let (mut head, mut written, mut stop) = (start, 0, None);
            while let Some(&data) = batch.peek() {
                if data.len() > max {
                    break; // reported at the top of the next round
                }
                match self.room_at(head, data.len()) {
                    Ok(Some((padding, _))) => match self.write_record(head, padding, data) {
                        Ok(next) => {
                            head = next;
                            batch.next();
                            written += 1;
                        }
                        Err(e) => {
                            stop = Some(e);
                            break;
                        }
                    },
                    Ok(None) if written > 0 => break, // publish what is written first
                    Ok(None) => {
                        if let Err(e) = self.wait_for_room(head, data.len(), deadline) {
                            stop = Some(e);
                            break;
                        }
                    }
                    Err(e) => {
                        stop = Some(e);
                        break;
                    }
                }
            }
            let published = if written > 0 { self.publish_to(head) } else { Ok(()) };
            self.end_turn();
            match published.map(|()| stop) {
                Ok(None) => sent += written,
                Ok(Some(e)) => return fail(e, sent + written),
                Err(e) => return fail(e, sent),
            }
        }
        Ok(sent)
    }

    /// Reserves room for a message of `len` bytes, to be written in place and
    /// published with [`Loan::publish`] (dropping the loan publishes nothing).
    /// Other threads' sends wait until the loan is published or dropped.
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
        let raw = self.reserve_raw(len, deadline)?;
        Ok(Loan { sender: self, raw: Some(raw) })
    }

    /// Reserves room as [`loan_deadline`](Self::loan_deadline) does, for bindings
    /// that hold the reservation across calls (the Python `Loan`): where to write,
    /// and a token for [`publish_raw`](Self::publish_raw) or
    /// [`discard_raw`](Self::discard_raw). This end's turn is held until then.
    ///
    /// # Errors
    ///
    /// As [`send_timeout`](Self::send_timeout).
    pub fn reserve_raw(
        &self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<RawLoan, ChannelError> {
        match self.channel.guarded_keeping(|| self.reserve_unguarded(len, deadline)) {
            (Some(reserved), false) => reserved,
            (Some(Ok(_)), true) => {
                // Reserved on pages that vanished meanwhile: give the turn back, or
                // this process's other threads would wait for it forever.
                self.turn.unlock();
                Err(ChannelError::PagesLost)
            }
            _ => Err(ChannelError::PagesLost),
        }
    }

    /// The body of [`reserve_raw`](Self::reserve_raw), in the caller's guarded scope.
    fn reserve_unguarded(
        &self,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<RawLoan, ChannelError> {
        if len > self.max_message() {
            return Err(ChannelError::TooLarge { len, max: self.max_message() });
        }
        self.acquire_turn(deadline)?;
        loop {
            let head = self.head.load(Ordering::Relaxed);
            match self.room_at(head, len) {
                Ok(Some((padding, _))) => {
                    let place = ((head + padding as u64) % self.channel.capacity as u64) as usize;
                    let ptr = self.channel.ring_ptr(place + ring::RECORD_HEADER);
                    return Ok(RawLoan { head, padding, len, ptr });
                }
                Ok(None) => {}
                Err(e) => {
                    self.end_turn();
                    return Err(e);
                }
            }
            if let Err(e) = self.wait_for_room(head, len, deadline) {
                self.end_turn();
                return Err(e);
            }
        }
    }

    /// Publishes a message reserved with [`reserve_raw`](Self::reserve_raw), and
    /// ends this end's turn. With `pin`, the record's room is not reused until
    /// [`unpin`](Self::unpin) (`unsafe`) is called with the loan's
    /// [`RawLoan::position`]: for a binding whose users may still hold views of the
    /// loan's memory.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the receiver closed, [`ChannelError::ClosedHere`]
    /// if this end was closed meanwhile: the message is not published (with `pin`,
    /// its room is still kept out of use until `unpin`, as a discarded loan's);
    /// [`ChannelError::WrongProcess`] in a `fork`ed child, which changes nothing.
    ///
    /// # Safety
    ///
    /// `loan` must come from `reserve_raw` on this sender, and be published or
    /// discarded once.
    pub unsafe fn publish_raw(&self, loan: RawLoan, pin: bool) -> Result<(), ChannelError> {
        match self.channel.guarded_keeping(|| self.publish_unguarded(loan, pin)) {
            (Some(published), false) => published,
            (None, _) => {
                // Refused at once (the pages were already lost): the turn that the
                // reservation holds goes back all the same.
                self.give_turn_back();
                Err(ChannelError::PagesLost)
            }
            (Some(_), true) => Err(ChannelError::PagesLost),
        }
    }

    /// The body of [`publish_raw`](Self::publish_raw), in the caller's guarded
    /// scope, with its contract.
    fn publish_unguarded(&self, loan: RawLoan, pin: bool) -> Result<(), ChannelError> {
        if !self.owner.is_current() {
            // A fork()ed child's copy of a loan: the turn and the room are the parent's.
            return Err(ChannelError::WrongProcess { owner: self.owner.pid() });
        }
        let published = self.write_header_of(&loan, 0).and_then(|head| self.publish_to(head));
        if pin {
            match published {
                Ok(()) => self.pin(loan.head),
                Err(_) => self.skip_and_pin(&loan),
            }
        }
        self.end_turn();
        published
    }

    /// Gives up a reservation made with [`reserve_raw`](Self::reserve_raw), and
    /// ends this end's turn. With `pin`, the room stays taken (a record the
    /// receiver steps over stands in it) until [`unpin`](Self::unpin); without, it
    /// is simply not used.
    ///
    /// # Safety
    ///
    /// As [`publish_raw`](Self::publish_raw).
    pub unsafe fn discard_raw(&self, loan: RawLoan, pin: bool) {
        // A lost page: the ring is gone, there is no room left to keep; the turn
        // goes back all the same.
        if let (None, _) = self.channel.guarded_keeping(|| self.discard_unguarded(loan, pin)) {
            self.give_turn_back();
        }
    }

    /// Ends the turn of a reservation whose publish or discard was refused because
    /// pages were lost (in the owning process only, as a publish would).
    fn give_turn_back(&self) {
        if self.owner.is_current() {
            self.turn.unlock();
        }
    }

    /// The body of [`discard_raw`](Self::discard_raw), in the caller's guarded
    /// scope, with its contract.
    fn discard_unguarded(&self, loan: RawLoan, pin: bool) {
        if !self.owner.is_current() {
            return; // a fork()ed child's copy: the parent's loan is not ours to end
        }
        if pin {
            self.skip_and_pin(&loan);
        }
        self.end_turn();
    }

    /// Puts a record the receiver steps over in a reservation's room, moves the head
    /// past it even if the channel was closed (a receiver that attaches later, and
    /// this end's later sends, must not use the room), and pins it: views of the
    /// room that a binding's users still hold can then never write into another
    /// message. If the ring is gone, there is nothing to protect.
    fn skip_and_pin(&self, loan: &RawLoan) {
        if let Ok(head) = self.write_header_of(loan, FLAG_SKIP) {
            let c = &self.channel;
            self.head.store(head, Ordering::Relaxed);
            c.counter(HEAD).store(head, Ordering::Release);
            c.word(HEAD_SIGNAL).fetch_add(1, Ordering::SeqCst);
            wake_after_rmw(c.word(HEAD_SIGNAL), c.word(super::CONSUMER_SLEEPERS), 1);
            self.pin(loan.head);
        }
    }

    /// Whether this process owns this end (false in a `fork`ed child's copy, which
    /// can do nothing with it).
    pub fn is_owned_here(&self) -> bool {
        self.owner.is_current()
    }

    /// Lets the room of a pinned record (published or discarded with `pin`) be
    /// reused.
    ///
    /// # Safety
    ///
    /// Nothing may use a view of the record's room through a reference after this
    /// call: the next messages may be written there. A pin exists because some
    /// code (a binding) still hands out views of the room, and keys are stream
    /// positions, easy to guess, so a safe call could pull the room from under
    /// them; hence `unsafe`. Unpin each record pinned with `publish_raw` or
    /// `discard_raw` once, when nothing views it any more.
    pub unsafe fn unpin(&self, position: u64) {
        self.channel.guarded_quietly(|| self.unpin_unguarded(position));
    }

    /// The body of [`unpin`](Self::unpin), in its guarded scope.
    fn unpin_unguarded(&self, position: u64) {
        let mut pins = self.pins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(i) = pins.iter().position(|&p| p == position) {
            pins.remove(i);
        }
        self.pin_floor.store(pins.front().copied().unwrap_or(u64::MAX), Ordering::Release);
        let empty = pins.is_empty();
        drop(pins);
        // A thread of ours may be waiting for this room.
        crate::sys::wake(self.channel.word(TAIL_SIGNAL), i32::MAX as u32);
        if empty && self.close_done.load(Ordering::Acquire) && self.owner.is_current() {
            self.channel.let_go(PRODUCER, self.owner);
        }
    }

    /// Closes the channel: the receiver gets what was sent, then `Closed`. Every
    /// thread of this process waiting in this sender is woken with
    /// [`ChannelError::ClosedHere`]. Idempotent; a no-op in a process that does not
    /// own this end (a `fork`ed child).
    ///
    /// A send under way when `close` is called finishes first (or, if it did not
    /// publish yet, fails); a loan still open is refused at publish, and the close
    /// reaches the receiver when that loan ends.
    pub fn close(&self) {
        if !self.owner.is_current() || self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // A lost page ends the close early: nobody can see the channel any more.
        self.channel.guarded_quietly(|| self.close_unguarded());
    }

    /// The rest of [`close`](Self::close), in its guarded scope.
    fn close_unguarded(&self) {
        // Our own waiters: for the turn, and for room (moving the room's signal, so
        // that async waiters, which look at its value, see it too).
        self.turn.wake_all();
        self.channel.word(TAIL_SIGNAL).fetch_add(1, Ordering::SeqCst);
        crate::sys::wake(self.channel.word(TAIL_SIGNAL), i32::MAX as u32);
        self.finish_close_between_turns();
    }

    /// Ends the caller's turn; if the end was closed meanwhile, completes the close.
    fn end_turn(&self) {
        self.turn.unlock();
        // Paired with close(): it sets `closed`, then tries the turn; this thread frees
        // the turn, then looks at `closed`. One of the two sees the other.
        if self.closed.load(Ordering::SeqCst) {
            self.finish_close_between_turns();
        }
    }

    /// Marks the segment closed, if no turn is under way (else the turn's end will).
    fn finish_close_between_turns(&self) {
        if !self.turn.try_lock() {
            return;
        }
        if !self.close_done.swap(true, Ordering::AcqRel) {
            let c = &self.channel;
            c.word(PRODUCER.closed).store(1, Ordering::Release);
            c.word(HEAD_SIGNAL).fetch_add(1, Ordering::SeqCst);
            wake_after_rmw(c.word(HEAD_SIGNAL), c.word(super::CONSUMER_SLEEPERS), 1);
            if self.pins.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_empty() {
                c.let_go(PRODUCER, self.owner);
            }
        }
        self.turn.unlock();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The largest message this channel takes.
    pub fn max_message(&self) -> usize {
        self.channel.max_message()
    }

    /// The channel this end belongs to.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Checks that this end may be used here, now.
    fn usable(&self) -> Result<(), ChannelError> {
        if !self.owner.is_current() {
            return Err(ChannelError::WrongProcess { owner: self.owner.pid() });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::ClosedHere);
        }
        Ok(())
    }

    fn acquire_turn(&self, deadline: Option<Instant>) -> Result<(), ChannelError> {
        self.usable()?;
        // A lost page abandons too: whoever holds the turn may never give it back
        // through the ring (the scope around this reports the loss).
        let abandon = || self.closed.load(Ordering::Acquire) || self.channel.shm.pages_lost();
        match self.turn.lock_until(deadline, abandon) {
            Acquired::Yes if self.closed.load(Ordering::Acquire) => {
                self.end_turn();
                Err(ChannelError::ClosedHere)
            }
            Acquired::Yes => Ok(()),
            Acquired::TimedOut => Err(ChannelError::Timeout),
            Acquired::Abandoned => Err(ChannelError::ClosedHere),
        }
    }

    /// Room for `len` bytes at `head` now (see [`ring::room`]), counting pinned
    /// records as taken; [`ChannelError::Pinned`] if only they are in the way.
    fn room_at(&self, head: u64, len: usize) -> Result<Option<(usize, usize)>, ChannelError> {
        let c = &self.channel;
        if c.word(CONSUMER.closed).load(Ordering::Acquire) != 0 {
            return Err(ChannelError::Closed);
        }
        // The consumer gave back at least up to the tail seen last (its release of
        // that room happened before the load that saw it): look there first.
        let mut tail = self.seen_tail.load(Ordering::Acquire);
        let mut room = ring::room(head, tail, c.capacity, len)?;
        if room.is_none() {
            tail = c.counter(TAIL).load(Ordering::Acquire);
            room = ring::room(head, tail, c.capacity, len)?;
            // Kept only once checked: a corrupt value is reported each time it is
            // read, and a sender recovers when the word is right again.
            self.seen_tail.store(tail, Ordering::Release);
        }
        let oldest_pin = self.pin_floor.load(Ordering::Acquire);
        if oldest_pin >= tail || room.is_none() {
            return Ok(room);
        }
        match ring::room(head, oldest_pin, c.capacity, len)? {
            Some(room) => Ok(Some(room)),
            None => Err(ChannelError::Pinned {
                loans: self.pins.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len(),
            }),
        }
    }

    /// Waits (holding the turn) until the ring may have room for `len` bytes at
    /// `head`: the receiver released something, or a pin was dropped. Callers
    /// check the room again after.
    fn wait_for_room(
        &self,
        head: u64,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<(), ChannelError> {
        let c = &self.channel;
        let seen = c.word(TAIL_SIGNAL).load(Ordering::Acquire);
        // Look again after reading the signal, so a release in between is not missed.
        if self.room_at(head, len)?.is_some() {
            return Ok(());
        }
        self.usable()?;
        if deadline.is_some_and(passed) {
            return Err(ChannelError::Timeout);
        }
        self.waiting.wait(c, TAIL_SIGNAL, PRODUCER_SLEEPERS, seen, deadline, CONSUMER)
    }

    /// Writes `data` as a record at `head` (after `padding`); returns the head
    /// after it. The caller holds the turn and checked the room.
    fn write_record(&self, head: u64, padding: usize, data: &[u8]) -> Result<u64, ChannelError> {
        let capacity = self.channel.capacity as u64;
        let place = ((head + padding as u64) % capacity) as usize;
        self.channel.copy_in(place + ring::RECORD_HEADER, data)?;
        let loan = RawLoan { head, padding, len: data.len(), ptr: self.channel.ring_ptr(place) };
        self.write_header_of(&loan, 0)
    }

    /// Writes the padding marker (if any) and the record header of a reservation;
    /// returns the head after the record.
    fn write_header_of(&self, loan: &RawLoan, flags: u32) -> Result<u64, ChannelError> {
        let c = &self.channel;
        let capacity = c.capacity as u64;
        if loan.padding > 0 {
            c.write_header((loan.head % capacity) as usize, WRAP, 0)?;
        }
        let place = ((loan.head + loan.padding as u64) % capacity) as usize;
        c.write_header(place, loan.len as u32, flags)?;
        Ok(loan.head + (loan.padding + ring::record_len(loan.len)) as u64)
    }

    /// Makes every record up to `head` visible to the receiver, unless the channel
    /// was closed (by either end) first.
    fn publish_to(&self, head: u64) -> Result<(), ChannelError> {
        // Under the turn: a close waits for the turn's end to reach the segment.
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::ClosedHere);
        }
        let c = &self.channel;
        if c.word(CONSUMER.closed).load(Ordering::Acquire) != 0 {
            return Err(ChannelError::Closed);
        }
        self.head.store(head, Ordering::Relaxed);
        c.counter(HEAD).store(head, Ordering::Release);
        c.word(HEAD_SIGNAL).fetch_add(1, Ordering::SeqCst);
        wake_after_rmw(c.word(HEAD_SIGNAL), c.word(super::CONSUMER_SLEEPERS), 1);
        Ok(())
    }

    fn pin(&self, position: u64) {
        let mut pins = self.pins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pins.push_back(position);
        self.pin_floor.store(pins[0], Ordering::Release);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &self.channel.name())
            .field("owner", &self.owner.pid())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// A reservation made by [`Sender::reserve_raw`]: where to write, and what to
/// publish. It holds the sender's turn until given to
/// [`Sender::publish_raw`] or [`Sender::discard_raw`].
#[derive(Debug)]
pub struct RawLoan {
    head: u64,
    padding: usize,
    len: usize,
    ptr: *mut u8,
}

impl RawLoan {
    /// Where the payload goes: valid for [`len`](Self::len) bytes while the channel
    /// lives, until published (or, if pinned, until unpinned).
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

    /// The loan's stream position, the key for [`Sender::unpin`].
    pub fn position(&self) -> u64 {
        self.head
    }
}

// SAFETY: a RawLoan is a position in a ring plus its address in a mapping; it owns
// nothing and may be published from any thread (publish_raw's contract applies).
unsafe impl Send for RawLoan {}
// SAFETY: as for Send; &RawLoan only reads the fields.
unsafe impl Sync for RawLoan {}

/// Room for one message in the ring, written in place; [`publish`](Self::publish)
/// hands it to the receiver, dropping it sends nothing.
///
/// Until it is published the room is this loan's alone under the channel's
/// protocol (the receiver does not read it, other threads' sends wait). Code that
/// ignores the protocol could still touch it (another handle to the segment, a
/// misbehaving peer), so safe code writes through a [`SharedSlice`]
/// ([`bytes`](Self::bytes): one write per byte or a guarded bulk copy); a plain
/// `&mut [u8]` is [`as_mut_slice`](Self::as_mut_slice), `unsafe`.
///
/// # Example
///
/// ```
/// use shmbridge::channel::Channel;
///
/// let channel = Channel::create(&shmbridge::unique_name("doc_loan")?, 4096)?;
/// let (tx, rx) = (channel.sender()?, channel.receiver()?);
/// let loan = tx.loan(4)?;
/// loan.bytes().copy_from_slice(&7u32.to_le_bytes())?; // straight into the ring
/// loan.publish()?;
/// drop(tx.loan(16)?); // dropped unpublished: nothing is sent
/// assert_eq!(rx.recv()?.to_vec()?, 7u32.to_le_bytes());
/// assert!(rx.try_recv().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Loan<'a> {
    sender: &'a Sender,
    /// `None` once published.
    raw: Option<RawLoan>,
}

impl Loan<'_> {
    fn raw(&self) -> &RawLoan {
        self.raw.as_ref().expect("a loan is published once, consuming it")
    }

    /// Publishes the message; the receiver can take it at once.
    ///
    /// # Errors
    ///
    /// [`ChannelError::Closed`] if the receiver closed, [`ChannelError::ClosedHere`]
    /// if this end was closed (by another thread) meanwhile: nothing is sent.
    pub fn publish(mut self) -> Result<(), ChannelError> {
        let raw = self.raw.take().expect("a loan is published once, consuming it");
        // SAFETY: raw came from reserve_raw on this sender and is used once (taken).
        unsafe { self.sender.publish_raw(raw, false) }
    }
}

impl Loan<'_> {
    /// The payload's length.
    pub fn len(&self) -> usize {
        self.raw().len
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.raw().len == 0
    }

    /// The payload's room, as a [`SharedSlice`] of bytes: written in place one byte
    /// at a time or by a guarded bulk copy ([`SharedSlice::copy_from_slice`]).
    pub fn bytes(&self) -> SharedSlice<'_, u8> {
        let raw = self.raw();
        let c = &self.sender.channel;
        c.ring_slice(raw.ptr as usize - c.ring_ptr(0) as usize, raw.len)
    }

    /// The payload's room, as a plain mutable slice (to serialize into in place).
    ///
    /// # Safety
    ///
    /// Nothing else may read or write the room while the slice lives: no other
    /// handle to the channel's segment in this process, and no other process (the
    /// channel's receiver follows the protocol and does not; a peer that ignores it
    /// could, so only use this with peers you trust). `docs/SAFETY.md`.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        let raw = self.raw();
        // SAFETY: the loan owns [ptr, ptr + len) of the ring under the protocol
        // (reserved, not yet published, so the receiver does not read it, and this
        // end's turn keeps other threads' sends out); it borrows the sender, which
        // keeps the mapping; the address is in the ring, so non-null even for len 0;
        // &mut self makes this the only reference through the loan, and the caller
        // vouches for everyone else.
        unsafe { std::slice::from_raw_parts_mut(raw.ptr, raw.len) }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            // SAFETY: raw came from reserve_raw on this sender and is used once. No
            // reference into it outlives the loan (they borrow it), so nothing pins.
            unsafe { self.sender.discard_raw(raw, false) };
        }
    }
}

impl fmt::Debug for Loan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan").field("len", &self.raw.as_ref().map(|r| r.len)).finish()
    }
}
