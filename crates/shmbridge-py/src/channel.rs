//! `shmbridge.Channel`: the core's channel for Python, with `queue`-like
//! conventions, and `Message`, a zero-copy view of a received message.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use pyo3::exceptions::{
    PyBrokenPipeError, PyBufferError, PyEOFError, PyOSError, PyStopIteration, PyTimeoutError,
    PyValueError,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use shmbridge::channel::{self, ChannelError};

use crate::buffer;
use crate::errors::to_py;
use crate::input::{InputBytes, SendPtr};
use crate::sync::{deadline, wait_interruptibly};

fn channel_error(e: ChannelError) -> PyErr {
    let msg = e.to_string();
    match e {
        ChannelError::Full | ChannelError::Empty | ChannelError::Timeout => {
            PyTimeoutError::new_err(msg)
        }
        ChannelError::Closed => PyEOFError::new_err(msg),
        ChannelError::PeerDied { .. } => PyBrokenPipeError::new_err(msg),
        ChannelError::TooLarge { .. } => PyValueError::new_err(msg),
        ChannelError::Corrupt { .. } => PyOSError::new_err(msg),
    }
}

/// Runs `attempt` once with the GIL held and no waiting (the fast path), then, if
/// it timed out and time is left, in GIL-free, signal-checked slices until `deadline`.
fn attempt_until<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    attempt: impl Fn(Instant) -> Result<T, ChannelError> + Sync,
) -> PyResult<T> {
    match attempt(Instant::now()) {
        Err(ChannelError::Timeout) if deadline.is_none_or(|d| d > Instant::now()) => {}
        other => return other.map_err(channel_error),
    }
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
/// in one segment. `Channel.create(name, capacity)` / `Channel.open(name)`; the
/// first `send` makes this object the sender, the first `recv` the receiver.
///
/// `recv(timeout=None)` raises TimeoutError on time-out (like a queue), EOFError
/// once the sender closed and everything was received, BrokenPipeError if the
/// sender's process died. Iterating yields messages until the sender closes.
#[pyclass(module = "shmbridge", name = "Channel", frozen)]
pub(crate) struct Channel {
    channel: channel::Channel,
    sender: Mutex<Option<Arc<channel::Sender>>>,
    receiver: Mutex<Option<channel::Receiver>>,
    /// A `Message` is out: the next receive must wait for its release.
    message_out: AtomicBool,
    /// A `Loan` is out: the next send must wait for its publish or discard.
    loan_out: AtomicBool,
}

impl Channel {
    fn wrap(channel: channel::Channel) -> Self {
        Self {
            channel,
            sender: Mutex::new(None),
            receiver: Mutex::new(None),
            message_out: AtomicBool::new(false),
            loan_out: AtomicBool::new(false),
        }
    }

    fn sender(&self) -> PyResult<Arc<channel::Sender>> {
        let mut sender = lock(&self.sender);
        if sender.is_none() {
            *sender = Some(Arc::new(self.channel.sender().map_err(to_py)?));
        }
        Ok(Arc::clone(sender.as_ref().expect("set above")))
    }

    /// Takes the next message as (pointer, length), held until `release`.
    fn take(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(SendPtr<*const u8>, usize)> {
        if self.message_out.load(Ordering::Acquire) {
            return Err(PyBufferError::new_err(
                "a Message from this channel is still held: release it (or let it go) first",
            ));
        }
        let deadline = deadline(timeout)?;
        let mut guard = self.receiver_slot(py);
        if guard.is_none() {
            *guard = Some(self.channel.receiver().map_err(to_py)?);
        }
        let receiver = SendPtr(guard.as_mut().expect("set above") as *mut channel::Receiver);
        attempt_until(py, deadline, |until| {
            let receiver = &receiver; // the whole wrapper, not its field (closures capture fields)
            // SAFETY: the receiver lives in the locked Option, whose guard this frame
            // holds across the wait, and attempts run one at a time.
            let taken = unsafe { &mut *receiver.0 }.recv_raw(Some(until));
            taken.map(|(ptr, len)| (SendPtr(ptr), len))
        })
    }

    /// The receiver's slot, locked without holding the GIL while the lock is busy:
    /// its holder may be waiting for a message with the GIL released, and needs the
    /// GIL back when its wait slice ends.
    fn receiver_slot(&self, py: Python<'_>) -> MutexGuard<'_, Option<channel::Receiver>> {
        loop {
            match self.receiver.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => py.detach(|| drop(lock(&self.receiver))),
            }
        }
    }

    fn check_no_loan(&self) -> PyResult<()> {
        if self.loan_out.load(Ordering::Acquire) {
            return Err(PyBufferError::new_err(
                "a Loan from this channel is still open: publish or discard it first",
            ));
        }
        Ok(())
    }

    fn release(&self, py: Python<'_>) {
        if let Some(receiver) = self.receiver_slot(py).as_mut() {
            receiver.release_raw();
        }
        self.message_out.store(false, Ordering::Release);
    }
}

#[pymethods]
impl Channel {
    /// Creates a channel whose ring holds `capacity` bytes (messages up to half).
    #[classmethod]
    fn create(_cls: &Bound<'_, PyType>, name: &str, capacity: usize) -> PyResult<Self> {
        Ok(Self::wrap(channel::Channel::create(name, capacity).map_err(to_py)?))
    }

    /// Opens a channel by name.
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

    /// Sends a copy of a bytes-like object; waits while the ring is full, at most
    /// `timeout` seconds (TimeoutError). EOFError if the receiver closed.
    #[pyo3(signature = (data, timeout = None))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        self.check_no_loan()?;
        let sender = self.sender()?;
        let data = InputBytes::get(data, false)?;
        let bytes = SendPtr((data.ptr, data.len));
        let send = |until: Option<Instant>| {
            let bytes = &bytes; // the whole wrapper, not its field (closures capture fields)
            let (ptr, len) = bytes.0;
            // SAFETY: ptr/len come from a buffer export (or bytes object) that `data`
            // holds for this whole call.
            let slice = unsafe { std::slice::from_raw_parts(ptr, len) };
            sender.send_deadline(slice, until)
        };
        attempt_until(py, deadline(timeout)?, |until| send(Some(until)))
    }

    /// Reserves room for a message of `size` bytes, to be written in place: a
    /// `Loan` (writable buffer protocol) that `publish()` sends; a `with` block
    /// publishes on success and discards on an exception. Waits while the ring is
    /// full, at most `timeout` seconds.
    #[pyo3(signature = (size, timeout = None))]
    fn loan(slf: &Bound<'_, Self>, size: usize, timeout: Option<f64>) -> PyResult<Loan> {
        let this = slf.get();
        this.check_no_loan()?;
        let sender = this.sender()?;
        let deadline = deadline(timeout)?;
        let raw = attempt_until(slf.py(), deadline, |until| sender.reserve_raw(size, Some(until)))?;
        this.loan_out.store(true, Ordering::Release);
        Ok(Loan {
            channel: slf.clone().unbind(),
            sender,
            ptr: raw.as_mut_ptr() as usize,
            len: raw.len(),
            raw: Mutex::new(Some(raw)),
            exports: AtomicUsize::new(0),
        })
    }

    /// Receives a copy of the next message as bytes (see the class docstring).
    #[pyo3(signature = (timeout = None))]
    fn recv<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let (ptr, len) = self.take(py, timeout)?;
        // SAFETY: the slot [ptr, ptr + len) is published and not released until the
        // release() below; the channel keeps the mapping alive.
        let bytes = PyBytes::new(py, unsafe { std::slice::from_raw_parts(ptr.0, len) });
        self.release(py);
        Ok(bytes)
    }

    /// Receives up to `max_messages` messages as a list of bytes: waits (at most
    /// `timeout` seconds) for the first, then takes what is already there.
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
        let mut guard = self.receiver_slot(py);
        let receiver = guard.as_mut().expect("the first recv claimed the receiver");
        while batch.len() < max_messages {
            match receiver.try_recv() {
                Ok(msg) => batch.push(PyBytes::new(py, &msg)),
                Err(_) => break, // the rest, and any end-of-channel, wait for the next call
            }
        }
        Ok(batch)
    }

    /// Receives the next message as a zero-copy `Message` (buffer protocol); its
    /// slot in the ring is freed when the Message is released or collected.
    #[pyo3(signature = (timeout = None))]
    fn recv_view(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Message> {
        let (ptr, len) = slf.get().take(slf.py(), timeout)?;
        slf.get().message_out.store(true, Ordering::Release);
        Ok(Message {
            channel: slf.clone().unbind(),
            ptr: ptr.0 as usize,
            len,
            exports: AtomicUsize::new(0),
            released: AtomicBool::new(false),
        })
    }

    /// Closes this object's ends: the other side gets EOFError (after the rest of
    /// the messages, for a receiver).
    fn close(&self, py: Python<'_>) {
        if let Some(sender) = lock(&self.sender).take() {
            sender.close();
        }
        if let Some(receiver) = self.receiver_slot(py).take() {
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

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        self.close(py);
        false
    }
}

/// A received message, viewed in place in the channel's ring (read-only buffer
/// protocol: `memoryview(msg)`, `numpy.frombuffer(msg, ...)`). Its slot is freed
/// at `release()`, at the end of a `with` block, or when collected; `release()`
/// with live views raises BufferError.
#[pyclass(module = "shmbridge", name = "Message", frozen)]
pub(crate) struct Message {
    channel: Py<Channel>,
    ptr: usize,
    len: usize,
    exports: AtomicUsize,
    released: AtomicBool,
}

impl Message {
    fn free(&self, py: Python<'_>) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.channel.bind(py).get().release(py);
        }
    }
}

#[pymethods]
impl Message {
    fn __len__(&self) -> usize {
        self.len
    }

    /// A copy of the message.
    fn tobytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        if self.released.load(Ordering::Acquire) {
            return Err(PyValueError::new_err("the message was released"));
        }
        // SAFETY: not released, so the slot is still ours; the channel keeps the mapping.
        Ok(PyBytes::new(py, unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }))
    }

    /// Frees the message's slot in the ring (BufferError while views exist).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.exports.load(Ordering::Acquire) > 0 {
            return Err(PyBufferError::new_err(
                "views of this message are still alive; release them first",
            ));
        }
        self.free(py);
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        // SAFETY: view is the pointer Python passed to __getbuffer__.
        unsafe { buffer::begin(view)? };
        let this = slf.get();
        if this.released.load(Ordering::Acquire) {
            return Err(PyBufferError::new_err("the message was released"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a received message is read-only"));
        }
        this.exports.fetch_add(1, Ordering::AcqRel);
        let (buf, len) = (this.ptr as *mut u8, this.len);
        // SAFETY: the slot stays the message's until it is freed, which cannot happen
        // while exports > 0 (release refuses; collection waits for the exports, which
        // hold a reference to this object).
        unsafe { buffer::fill(view, flags, buf, len, true, std::ptr::null_mut(), slf.into_any()) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        Python::attach(|py| self.free(py));
    }
}

/// Room for one message in the channel's ring, written in place through the
/// (writable) buffer protocol: `memoryview(loan)`, `numpy.frombuffer(loan, ...)`.
/// `publish()` sends it; `discard()`, an exception in a `with` block, or collection
/// drops it. Publishing with live views raises BufferError.
#[pyclass(module = "shmbridge", name = "Loan", frozen)]
pub(crate) struct Loan {
    channel: Py<Channel>,
    sender: Arc<channel::Sender>,
    ptr: usize,
    len: usize,
    /// `None` once published or discarded.
    raw: Mutex<Option<channel::RawLoan>>,
    exports: AtomicUsize,
}

impl Loan {
    fn finish(&self, py: Python<'_>, publish: bool) -> PyResult<()> {
        if publish && self.exports.load(Ordering::Acquire) > 0 {
            return Err(PyBufferError::new_err(
                "views of this loan are still alive; release them first",
            ));
        }
        let Some(raw) = lock(&self.raw).take() else {
            return Err(PyValueError::new_err("the loan was already published or discarded"));
        };
        if publish {
            // SAFETY: `raw` came from reserve_raw on this sender, and the channel's
            // loan_out flag kept every other send and loan off it since.
            unsafe { self.sender.publish_raw(raw) };
        }
        self.channel.bind(py).get().loan_out.store(false, Ordering::Release);
        Ok(())
    }
}

#[pymethods]
impl Loan {
    fn __len__(&self) -> usize {
        self.len
    }

    /// Sends the message written into the loan.
    fn publish(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py, true)
    }

    /// Drops the loan without sending anything.
    fn discard(&self, py: Python<'_>) -> PyResult<()> {
        self.finish(py, false)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        if lock(&self.raw).is_some() {
            self.finish(py, t.is_none())?;
        }
        Ok(false)
    }

    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        // SAFETY: view is the pointer Python passed to __getbuffer__.
        unsafe { buffer::begin(view)? };
        let this = slf.get();
        if lock(&this.raw).is_none() {
            return Err(PyBufferError::new_err("the loan was already published or discarded"));
        }
        this.exports.fetch_add(1, Ordering::AcqRel);
        let (buf, len) = (this.ptr as *mut u8, this.len);
        // SAFETY: the reserved range is the loan's until published, which cannot happen
        // while exports > 0; the channel (held by this object) keeps the mapping alive.
        unsafe { buffer::fill(view, flags, buf, len, false, std::ptr::null_mut(), slf.into_any()) };
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {
        self.exports.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Loan {
    /// A loan collected unpublished is discarded.
    fn drop(&mut self) {
        if self.raw.get_mut().map(|r| r.is_some()).unwrap_or(false) {
            Python::attach(|py| {
                let _ = self.finish(py, false);
            });
        }
    }
}
