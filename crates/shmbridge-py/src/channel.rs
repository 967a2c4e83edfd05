//! `shmbridge.Channel`, `Message` and `Loan`: the core's channel for Python, with
//! `queue`-like conventions.
//!
//! Lifetime rule: a `Message` or `Loan` keeps its room in the ring for as long as
//! the Python object lives, whatever its `release()`/`publish()`/`discard()` said:
//! NumPy's `np.ndarray(buffer=msg)` keeps only a reference to the object, so the
//! room must not be reused while the object can be reached. A released message's
//! room is freed when the object is collected (at once, in CPython, when the last
//! reference goes); the receiver goes on receiving meanwhile. A published or
//! discarded loan's room is pinned the same way on the sending side.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use pyo3::exceptions::{
    PyBrokenPipeError, PyBufferError, PyEOFError, PyOSError, PyRuntimeError, PyStopIteration,
    PyTimeoutError, PyValueError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use shmbridge::channel::{self, ChannelError, RawLoan, RawMessage};

use crate::buffer;
use crate::errors::to_py;
use crate::input::{InputBytes, SendPtr, bytes_at};
use crate::sole_reference::{Site, only_the_caller_holds};
use crate::sync::{deadline, wait_interruptibly};
use crate::threads::thread_key;

fn channel_error(e: ChannelError) -> PyErr {
    let msg = e.to_string();
    match e {
        ChannelError::Full | ChannelError::Empty | ChannelError::Timeout => {
            PyTimeoutError::new_err(msg)
        }
        ChannelError::Closed => PyEOFError::new_err(msg),
        ChannelError::ClosedHere => PyValueError::new_err(msg),
        ChannelError::PeerDied { .. } => PyBrokenPipeError::new_err(msg),
        ChannelError::WrongProcess { .. } => PyRuntimeError::new_err(msg),
        ChannelError::TooLarge { .. } => PyValueError::new_err(msg),
        ChannelError::Pinned { .. } => PyBufferError::new_err(msg),
        ChannelError::Corrupt { .. } => PyOSError::new_err(msg),
        // As SharedMemory's copies: an I/O failure of the memory behind the object.
        ChannelError::PagesLost => PyOSError::new_err((5, msg)), // EIO
        // Whatever a later version adds.
        _ => PyOSError::new_err(msg),
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` passes: once
/// with the GIL held and no waiting (the fast path), then in GIL-free,
/// signal-checked slices (see `wait_interruptibly`).
fn attempt_until<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    attempt: impl Fn(Instant) -> Result<T, ChannelError> + Sync,
) -> PyResult<T> {
    let waited = wait_interruptibly(py, deadline, |until| match attempt(until) {
        Err(ChannelError::Timeout) => None,
        other => Some(other),
    })?;
    waited.unwrap_or(Err(ChannelError::Timeout)).map_err(channel_error)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A channel of byte messages between two processes (one sender, one receiver),
/// in one segment: ``Channel.create(name, capacity)`` / ``Channel.open(name)``.
/// The first ``send`` makes this object the sender, the first ``recv`` the
/// receiver (for this process).
///
/// ``recv(timeout=None)`` raises TimeoutError on time-out (like a queue), EOFError
/// once the sender closed and everything was received, BrokenPipeError if the
/// sender's process died. Iterating yields messages until the sender closes.
///
/// Threads may share a Channel: sends are serialized (none is lost), each message
/// goes to one receiving thread, every wait honours its own timeout, and
/// ``close()`` wakes every waiting thread with ValueError. A child made by ``fork``
/// cannot use its parent's ends (RuntimeError): open the channel again there.
/// Waits release the GIL and are interruptible by Ctrl-C.
#[pyclass(module = "shmbridge", name = "Channel", frozen)]
pub(crate) struct Channel {
    channel: channel::Channel,
    /// Each end, once claimed (lock-free to read: every send and receive does).
    sender: OnceLock<Arc<channel::Sender>>,
    receiver: OnceLock<Arc<channel::Receiver>>,
    /// Held while an end is claimed, and by `close`, so a claim never follows it.
    claiming: Mutex<()>,
    closed: AtomicBool,
    /// The thread holding an open `Loan` of this channel (0: none): its own sends
    /// would wait for itself.
    loan_thread: AtomicU64,
}

impl Channel {
    fn wrap(channel: channel::Channel) -> Self {
        Self {
            channel,
            sender: OnceLock::new(),
            receiver: OnceLock::new(),
            claiming: Mutex::new(()),
            closed: AtomicBool::new(false),
            loan_thread: AtomicU64::new(0),
        }
    }

    fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(channel_error(ChannelError::ClosedHere));
        }
        Ok(())
    }

    /// The sending end, claimed at first use.
    pub(crate) fn sender(&self) -> PyResult<&Arc<channel::Sender>> {
        self.check_open()?;
        let loan_thread = self.loan_thread.load(Ordering::Acquire);
        if loan_thread != 0 && loan_thread == thread_key() {
            return Err(PyBufferError::new_err(
                "this thread holds an open Loan of this channel: publish or discard it first",
            ));
        }
        match self.sender.get() {
            Some(sender) => Ok(sender),
            None => self.claim(&self.sender, || self.channel.sender()),
        }
    }

    /// The receiving end, claimed at first use.
    pub(crate) fn receiver(&self) -> PyResult<&Arc<channel::Receiver>> {
        self.check_open()?;
        match self.receiver.get() {
            Some(receiver) => Ok(receiver),
            None => self.claim(&self.receiver, || self.channel.receiver()),
        }
    }

    /// Claims an end for this object (once, even with threads racing).
    fn claim<'a, E>(
        &self,
        end: &'a OnceLock<Arc<E>>,
        make: impl FnOnce() -> shmbridge::Result<E>,
    ) -> PyResult<&'a Arc<E>> {
        let _claiming = lock(&self.claiming);
        self.check_open()?; // not after close()
        if let Some(claimed) = end.get() {
            return Ok(claimed);
        }
        let claimed = Arc::new(make().map_err(to_py)?);
        Ok(end.get_or_init(|| claimed))
    }

    /// Takes the next message (held until released), waiting at most `timeout`.
    fn take(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<(Arc<channel::Receiver>, RawMessage)> {
        let receiver = self.receiver()?;
        let raw = attempt_until(py, deadline(timeout)?, |until| receiver.recv_raw(Some(until)))?;
        Ok((Arc::clone(receiver), raw))
    }
}

/// Gives a taken message back when dropped, unless defused.
struct Held<'a>(&'a channel::Receiver, Option<u64>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(position) = self.1 {
            // SAFETY: the key of a message taken with recv_raw for this guard, which
            // releases it once, here; the message was only copied, never viewed.
            unsafe { self.0.release_raw(position) };
        }
    }
}

#[pymethods]
impl Channel {
    /// Create a channel whose ring holds ``capacity`` bytes (messages up to half).
    #[classmethod]
    fn create(_cls: &Bound<'_, PyType>, name: &str, capacity: usize) -> PyResult<Self> {
        Ok(Self::wrap(channel::Channel::create(name, capacity).map_err(to_py)?))
    }

    /// Open a channel by name.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        Ok(Self::wrap(channel::Channel::open(name).map_err(to_py)?))
    }

    /// The segment's name.
    #[getter]
    fn name(&self) -> &str {
        self.channel.name()
    }

    /// The ring's size in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.channel.capacity()
    }

    /// The largest message the channel takes.
    #[getter]
    fn max_message(&self) -> usize {
        self.channel.max_message()
    }

    /// True once close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Send a copy of a bytes-like object; wait while the ring is full, at most
    /// ``timeout`` seconds (TimeoutError). EOFError if the receiver closed,
    /// BrokenPipeError if its process died, ValueError if the message is larger
    /// than ``max_message`` or this channel was closed, BufferError if this thread
    /// holds an open Loan of the channel or the ring is full only of room held by
    /// loan objects still alive.
    #[pyo3(signature = (data, timeout = None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        let sender = self.sender()?;
        let data = InputBytes::get(data, false)?;
        let bytes = SendPtr((data.ptr, data.len));
        attempt_until(py, deadline(timeout)?, |until| {
            let bytes = &bytes; // the whole wrapper, not its field (closures capture fields)
            let (ptr, len) = bytes.0;
            // SAFETY: ptr/len come from a buffer export (or bytes object) that `data`
            // holds for this whole call.
            let slice = unsafe { bytes_at(ptr, len) };
            sender.send_deadline(slice, Some(until))
        })
    }

    /// Send one message made of the bytes-like objects of ``parts`` laid end to end
    /// (a header and a payload, say), copied once, straight into the ring; waits as
    /// ``send`` does.
    #[pyo3(signature = (parts, timeout = None))]
    fn send_parts(
        &self,
        py: Python<'_>,
        parts: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let sender = self.sender()?;
        let inputs =
            parts.try_iter()?.map(|m| InputBytes::get(&m?, false)).collect::<PyResult<Vec<_>>>()?;
        let parts = SendPtr(inputs.iter().map(|i| (i.ptr, i.len)).collect::<Vec<_>>());
        attempt_until(py, deadline(timeout)?, |until| {
            let parts = &parts; // the whole wrapper (closures capture fields)
            let slices: Vec<&[u8]> = parts
                .0
                .iter()
                // SAFETY: each (ptr, len) comes from an export held in `inputs` for this
                // whole call.
                .map(|&(ptr, len)| unsafe { bytes_at(ptr, len) })
                .collect();
            sender.send_parts_deadline(&slices, Some(until))
        })
    }

    /// Send each bytes-like object of ``messages`` in order, publishing as many as
    /// fit at once together (one wake-up of the receiver); wait for room at most
    /// ``timeout`` seconds in all. Returns how many were sent: fewer than given only
    /// if the timeout passed (or the channel ended) part-way; if none could be sent,
    /// raises as ``send`` does.
    #[pyo3(signature = (messages, timeout = None))]
    fn send_many(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let sender = self.sender()?;
        let inputs = messages
            .try_iter()?
            .map(|m| InputBytes::get(&m?, false))
            .collect::<PyResult<Vec<_>>>()?;
        let parts = SendPtr(inputs.iter().map(|i| (i.ptr, i.len)).collect::<Vec<_>>());
        let deadline = deadline(timeout)?;
        let mut sent = 0;
        while sent < inputs.len() {
            let result = attempt_until(py, deadline, |until| {
                let parts = &parts; // the whole wrapper (closures capture fields)
                let slices = parts.0[sent..].iter().map(|&(ptr, len)| {
                    // SAFETY: each (ptr, len) comes from an export held in `inputs` for
                    // this whole call.
                    unsafe { bytes_at(ptr, len) }
                });
                sender.send_batch(slices, Some(until))
            });
            match result {
                Ok(n) => sent += n,
                Err(e) if sent > 0 => {
                    drop(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Reserve room for a message of ``size`` bytes, to be written in place: a
    /// ``Loan`` (writable buffer protocol) that ``publish()`` sends; a ``with`` block
    /// publishes on success and discards on an exception. Waits while the ring is
    /// full, at most ``timeout`` seconds. Until the loan is published or discarded,
    /// other threads' sends wait (this thread's raise BufferError).
    #[pyo3(signature = (size, timeout = None))]
    fn loan(slf: &Bound<'_, Self>, size: usize, timeout: Option<f64>) -> PyResult<Loan> {
        let this = slf.get();
        let sender = this.sender()?;
        let deadline = deadline(timeout)?;
        let raw = attempt_until(slf.py(), deadline, |until| sender.reserve_raw(size, Some(until)))?;
        this.loan_thread.store(thread_key(), Ordering::Release);
        Ok(Loan {
            channel: slf.clone().unbind(),
            sender: Arc::clone(sender),
            position: raw.position(),
            ptr: raw.as_mut_ptr() as usize,
            len: raw.len(),
            raw: Mutex::new(Some(raw)),
            pinned: AtomicBool::new(false),
            exports: AtomicUsize::new(0),
        })
    }

    /// Receive a copy of the next message as bytes, waiting at most ``timeout``
    /// seconds (see the class docstring for the errors).
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let receiver = self.receiver()?;
        // The fast path: a message is there; copy it out and free its room at once.
        match receiver.try_recv_with(|lent| copy_lent(py, &lent)) {
            Ok(bytes) => return bytes,
            Err(ChannelError::Empty) => {}
            Err(e) => return Err(channel_error(e)),
        }
        let (receiver, raw) = self.take(py, timeout)?;
        let _held = Held(&receiver, Some(raw.position()));
        PyBytes::new_with(py, raw.len(), |buf| receiver.copy_raw(&raw, buf).map_err(channel_error))
    }

    /// Receive up to ``max_messages`` messages as a list of bytes: wait (at most
    /// ``timeout`` seconds) for the first, then take what is already there.
    #[pyo3(signature = (max_messages = 1024, timeout = None))]
    fn recv_batch<'py>(
        &self,
        py: Python<'py>,
        max_messages: usize,
        timeout: Option<f64>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let mut batch = Vec::with_capacity(max_messages.min(1024));
        if max_messages == 0 {
            return Ok(batch);
        }
        batch.push(self.recv(py, timeout)?);
        let receiver = self.receiver()?;
        // The rest, and any end of the channel, wait for the next call.
        let mut failed = None;
        let _ = receiver.drain_with(max_messages - 1, |lent| match copy_lent(py, &lent) {
            Ok(bytes) => batch.push(bytes),
            Err(e) => failed = Some(e),
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(batch),
        }
    }

    /// Receive the next message as a zero-copy ``Message`` (read-only buffer
    /// protocol), waiting at most ``timeout`` seconds. Its room in the ring stays
    /// taken while the Message object lives.
    #[pyo3(signature = (timeout = None))]
    fn recv_view(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Message> {
        let (receiver, raw) = self.take(py, timeout)?;
        Ok(Message {
            position: raw.position(),
            ptr: raw.as_ptr() as usize,
            len: raw.len(),
            raw,
            receiver,
            released: AtomicBool::new(false),
            exports: AtomicUsize::new(0),
            room_returned: AtomicBool::new(false),
        })
    }

    /// Close this object's ends: the other side gets EOFError (after the rest of
    /// the messages, for a receiver), and every thread waiting on this object
    /// wakes with ValueError. Messages and loans already taken stay valid.
    /// Idempotent.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _no_claim_under_way = lock(&self.claiming);
        if let Some(sender) = self.sender.get() {
            sender.close();
        }
        if let Some(receiver) = self.receiver.get() {
            receiver.close();
        }
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.recv(py, None).map_err(|e| {
            if e.is_instance_of::<PyEOFError>(py) { PyStopIteration::new_err(()) } else { e }
        })
    }

    /// Use in a ``with`` block; ``__exit__`` ends it (see the class).
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Close this object's ends (as ``close()``).
    fn __exit__(
        &self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        let closed = if self.closed() { ", closed" } else { "" };
        format!(
            "<shmbridge.Channel name={:?} capacity={}{closed}>",
            self.channel.name(),
            self.channel.capacity()
        )
    }
}

/// A copy of a lent message, as bytes (guarded against pages a peer removed).
fn copy_lent<'py>(py: Python<'py>, lent: &channel::Lent<'_>) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, lent.len(), |buf| lent.copy_to(buf).map_err(channel_error))
}

/// A received message, viewed in place in the channel's ring (read-only buffer
/// protocol: ``memoryview(msg)``, ``numpy.frombuffer(msg, ...)``).
///
/// ``release()`` (or the end of a ``with`` block) says you are done: the object can
/// no longer be read or viewed anew, and its room in the ring is given back at once
/// if nothing but your own name for it can still reach it (no array, memoryview,
/// list or second name), else as soon as nothing can (at once in CPython, when the
/// last reference goes). So ``with rx.recv_view() as m:`` frees the room at the
/// end of the block, and an array made from the message keeps it, and its bytes,
/// for as long as the array lives. release() with live memoryviews raises
/// BufferError, as ``memoryview.release()`` does. In a ``fork``ed child a message
/// received by the parent cannot be read (RuntimeError): its room is the parent's.
#[pyclass(module = "shmbridge", name = "Message", frozen)]
pub(crate) struct Message {
    receiver: Arc<channel::Receiver>,
    raw: RawMessage,
    position: u64,
    ptr: usize,
    len: usize,
    released: AtomicBool,
    exports: AtomicUsize,
    /// Set once the room was given back (before the object died).
    room_returned: AtomicBool,
}

impl Message {
    fn check_live(&self) -> PyResult<()> {
        if !self.receiver.is_owned_here() {
            return Err(PyRuntimeError::new_err(
                "this message was received by another process (this is a fork()ed child): \
                 its room in the ring is that process's; receive in this process instead",
            ));
        }
        if self.released.load(Ordering::Acquire) {
            return Err(PyValueError::new_err("the message was released"));
        }
        Ok(())
    }

    /// Marks the message released; gives its room back now if nothing but the
    /// caller's name can reach the object (see `sole_reference`).
    fn release_at(slf: &Bound<'_, Self>, site: Site) -> PyResult<()> {
        let this = slf.get();
        if this.exports.load(Ordering::Acquire) > 0 {
            return Err(PyBufferError::new_err(
                "memoryviews of this message are still open; release them first",
            ));
        }
        this.released.store(true, Ordering::Release);
        if this.receiver.is_owned_here()
            && only_the_caller_holds(slf, site)
            && !this.room_returned.swap(true, Ordering::AcqRel)
        {
            // SAFETY: this message's key, released once (room_returned); no export is
            // open and nothing but the caller's name reaches this object, which
            // refuses new views and copies from now on (released), so nothing can
            // view the room any more.
            unsafe { this.receiver.release_raw(this.position) };
        }
        Ok(())
    }
}

#[pymethods]
impl Message {
    fn __len__(&self) -> usize {
        self.len
    }

    /// A copy of the message.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.check_live()?;
        PyBytes::new_with(py, self.len, |buf| {
            self.receiver.copy_raw(&self.raw, buf).map_err(channel_error)
        })
    }

    /// Copy bytes of the message, from byte ``offset`` of it, into a writable
    /// bytes-like object (as many as it holds); return the count. A guarded copy:
    /// if another process shrank the segment, OSError, never a crash.
    #[pyo3(signature = (buffer, offset = 0))]
    fn readinto(&self, buffer: &Bound<'_, PyAny>, offset: usize) -> PyResult<usize> {
        self.check_live()?;
        let dst = InputBytes::get(buffer, true)?;
        let count = dst.len.min(self.len.saturating_sub(offset));
        // SAFETY: `dst` holds a writable export of `dst.len >= count` bytes for this
        // call; nothing else in this frame refers to it.
        let dst_slice = unsafe { std::slice::from_raw_parts_mut(dst.ptr.cast_mut(), count) };
        self.receiver
            .copy_raw_at(&self.raw, offset.min(self.len), dst_slice)
            .map_err(channel_error)?;
        Ok(count)
    }

    /// True once release() was called.
    #[getter]
    fn released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Say you are done with the message (BufferError while memoryviews of it are
    /// open). Its room is given back now if only your name for it is left, else
    /// once nothing can reach the object.
    fn release(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::release_at(slf, Site::Call)
    }

    /// Use in a ``with`` block; ``__exit__`` ends it (see the class).
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Release the message (as ``release()``).
    fn __exit__(
        slf: &Bound<'_, Self>,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        Self::release_at(slf, Site::Exit)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let released = if self.released.load(Ordering::Acquire) { ", released" } else { "" };
        format!("<shmbridge.Message len={}{released}>", self.len)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        // SAFETY: view is the pointer Python passed to __getbuffer__.
        unsafe { buffer::begin(view)? };
        let this = slf.get();
        if this.released.load(Ordering::Acquire) && this.receiver.is_owned_here() {
            return Err(PyBufferError::new_err("the message was released"));
        }
        this.check_live()?;
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a received message is read-only"));
        }
        this.exports.fetch_add(1, Ordering::AcqRel);
        let (buf, len) = (this.ptr as *mut u8, this.len);
        // SAFETY: the message's room stays held while this object lives, and the export
        // holds a reference to it; the receiver (held too) keeps the mapping.
        unsafe { buffer::fill(view, flags, buf, len, true, std::ptr::null_mut(), slf.into_any()) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Message {
    /// Nothing can reach the message any more: its room may be reused (in the
    /// process that received it; a `fork`ed child's copy frees nothing).
    fn drop(&mut self) {
        if !*self.room_returned.get_mut() {
            // SAFETY: this message's key, released once (room_returned says whether
            // release_at did already); every view of its room holds this object, so
            // none is left.
            unsafe { self.receiver.release_raw(self.position) };
        }
    }
}

/// Room for one message in the channel's ring, written in place through the
/// (writable) buffer protocol: ``memoryview(loan)``, ``numpy.frombuffer(loan, ...)``.
///
/// ``publish()`` sends it (BufferError while memoryviews of it are open; EOFError
/// if the receiver closed, ValueError if the channel was closed meanwhile: then
/// nothing is sent). ``discard()``, an exception in a ``with`` block, or
/// collection gives it up. Either way the room is not reused for another message
/// while something other than your own name for the Loan can reach it (an array
/// made from it, a second name), so a view kept by mistake can never write into a
/// later message; ``with tx.loan(n) as loan:`` gives the room back at the end of
/// the block. A ``fork``ed child cannot use its parent's loan (RuntimeError).
#[pyclass(module = "shmbridge", name = "Loan", frozen)]
pub(crate) struct Loan {
    channel: Py<Channel>,
    sender: Arc<channel::Sender>,
    position: u64,
    ptr: usize,
    len: usize,
    /// `None` once published or discarded.
    raw: Mutex<Option<RawLoan>>,
    /// The room is pinned until this object is collected.
    pinned: AtomicBool,
    exports: AtomicUsize,
}

impl Loan {
    fn finish(&self, py: Python<'_>, publish: bool) -> PyResult<()> {
        self.check_owned()?;
        if publish && self.exports.load(Ordering::Acquire) > 0 {
            return Err(PyBufferError::new_err(
                "memoryviews of this loan are still open; release them first",
            ));
        }
        let Some(raw) = lock(&self.raw).take() else {
            return Err(PyValueError::new_err("the loan was already published or discarded"));
        };
        self.channel.bind(py).get().loan_thread.store(0, Ordering::Release);
        self.pinned.store(true, Ordering::Release);
        if publish {
            // SAFETY: `raw` came from reserve_raw on this sender and is used once (taken
            // out of the Option above).
            // A refused publish keeps the room pinned too: views of it may live on.
            let published = unsafe { self.sender.publish_raw(raw, true) };
            published.map_err(channel_error)?;
        } else {
            // SAFETY: as above.
            unsafe { self.sender.discard_raw(raw, true) };
        }
        Ok(())
    }

    fn check_owned(&self) -> PyResult<()> {
        if self.sender.is_owned_here() {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(
                "this loan belongs to another process's sender (this is a fork()ed child): \
                 only that process can write, publish or discard it",
            ))
        }
    }

    /// Finishes the loan (if it is not) and gives the room back now if nothing but
    /// the caller's name can reach the object.
    fn finish_at(slf: &Bound<'_, Self>, publish: bool, site: Site) -> PyResult<()> {
        let finished = slf.get().finish(slf.py(), publish);
        Self::return_room_if_unreachable(slf, site);
        finished
    }

    /// Unpins the room of a finished loan that nothing but the caller's name can
    /// reach.
    fn return_room_if_unreachable(slf: &Bound<'_, Self>, site: Site) {
        let this = slf.get();
        if this.sender.is_owned_here()
            && this.exports.load(Ordering::Acquire) == 0
            && this.finished()
            && only_the_caller_holds(slf, site)
            && this.pinned.swap(false, Ordering::AcqRel)
        {
            // SAFETY: pinned once at finish and unpinned once (the swap); no export is
            // open and nothing but the caller's name reaches this finished loan,
            // which makes no new views, so nothing can view the room any more.
            unsafe { this.sender.unpin(this.position) };
        }
    }
}

#[pymethods]
impl Loan {
    fn __len__(&self) -> usize {
        self.len
    }

    /// Send the message written into the loan.
    fn publish(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::finish_at(slf, true, Site::Call)
    }

    /// Give the loan up without sending anything.
    fn discard(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::finish_at(slf, false, Site::Call)
    }

    /// True once published or discarded.
    #[getter]
    fn finished(&self) -> bool {
        lock(&self.raw).is_none()
    }

    /// Use in a ``with`` block; ``__exit__`` ends it (see the class).
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Publish the loan, or discard it if the block raised (unless already finished).
    fn __exit__(
        slf: &Bound<'_, Self>,
        t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if slf.get().finished() {
            // Finished in the block: the room may still be given back now.
            Self::return_room_if_unreachable(slf, Site::Exit);
        } else if !t.is_none() && !slf.get().sender.is_owned_here() {
            // A fork()ed child's block raised: let its exception through untouched
            // (the loan is the parent's to end).
        } else {
            Self::finish_at(slf, t.is_none(), Site::Exit)?;
        }
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = if self.finished() { ", finished" } else { "" };
        format!("<shmbridge.Loan len={}{state}>", self.len)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        // SAFETY: view is the pointer Python passed to __getbuffer__.
        unsafe { buffer::begin(view)? };
        let this = slf.get();
        this.check_owned()?;
        if this.finished() {
            return Err(PyBufferError::new_err("the loan was already published or discarded"));
        }
        this.exports.fetch_add(1, Ordering::AcqRel);
        let (buf, len) = (this.ptr as *mut u8, this.len);
        // SAFETY: the reserved room is the loan's until published, and stays pinned
        // while this object lives (the export holds a reference to it); the sender
        // (held too) keeps the mapping.
        unsafe { buffer::fill(view, flags, buf, len, false, std::ptr::null_mut(), slf.into_any()) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Loan {
    /// Nothing can reach the loan any more: an unfinished one is given up, and a
    /// pinned room may be reused.
    fn drop(&mut self) {
        if let Some(raw) = self.raw.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            // SAFETY: `raw` came from reserve_raw on this sender and is used once; no
            // view of it is left (views hold this object), so nothing needs pinning.
            unsafe { self.sender.discard_raw(raw, false) };
            Python::attach(|py| {
                self.channel.bind(py).get().loan_thread.store(0, Ordering::Release)
            });
        }
        if *self.pinned.get_mut() {
            // SAFETY: this loan's pin, dropped once, here; every view of its room
            // holds this object, so none is left.
            unsafe { self.sender.unpin(self.position) };
        }
    }
}
