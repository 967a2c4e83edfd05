//! `shmbridge.Event`, `Semaphore`, `Mutex`, `SeqLock`: the core's primitives with
//! the conventions of Python's `threading` module.
//!
//! Every blocking call releases the GIL and waits with `return_on_signal`: a
//! signal that interrupts the wait (Ctrl-C reaches the main thread) ends the
//! slice at once, and Python's handlers run (KeyboardInterrupt). Slices of at most
//! half a second are the backstop where no signal interrupts a wait (Windows,
//! where Ctrl-C runs its handler on a thread of its own); an idle waiter wakes
//! twice a second at most.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};
use shmbridge::sync;

use crate::errors::to_py;
use crate::segment::SharedMemory;
use crate::threads::thread_key;

type Segment = shmbridge::SharedMemory;

/// The longest a blocking call waits before checking for signals (a signal
/// usually ends the wait sooner: see the module docs).
const SIGNAL_CHECK: Duration = Duration::from_millis(500);

/// The deadline of a `timeout` in seconds (`None`: forever).
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => {
            Err(PyValueError::new_err(format!("timeout must be a non-negative number, not {t}")))
        }
        Some(t) => {
            Ok(Instant::now().checked_add(Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX)))
        }
    }
}

/// Runs `attempt(until)` once with the GIL held and no waiting (the fast path:
/// a set event, a free lock, `timeout=0`), then with the GIL released, in slices,
/// until it succeeds or `deadline` passes; signals are checked between slices.
/// Each attempt is a call of the core, which runs guarded: a page a peer removed
/// (by shrinking the segment) ends the wait with the attempt's error within a
/// slice at most.
pub(crate) fn wait_interruptibly<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    attempt: impl Fn(Instant) -> Option<T> + Sync,
) -> PyResult<Option<T>> {
    // An instant already past: try once without waiting (and without reading the
    // clock, a tenth of a fast send's cost).
    static PAST: OnceLock<Instant> = OnceLock::new();
    if let Some(done) = attempt(*PAST.get_or_init(Instant::now)) {
        return Ok(Some(done));
    }
    if deadline.is_some_and(|d| d <= Instant::now()) {
        return Ok(None);
    }
    loop {
        let slice = Instant::now() + SIGNAL_CHECK;
        let until = deadline.map_or(slice, |d| d.min(slice));
        if let Some(done) = py.detach(|| sync::return_on_signal(|| attempt(until))) {
            return Ok(Some(done));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// A wait's outcome for [`wait_interruptibly`]: `Some` once it is over (done, or
/// failed), `None` to wait on.
fn done_or_error(waited: shmbridge::Result<bool>) -> Option<shmbridge::Result<()>> {
    match waited {
        Ok(true) => Some(Ok(())),
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    }
}

fn segment_of(shm: &Bound<'_, SharedMemory>) -> PyResult<Arc<Segment>> {
    shm.get().segment().map(Arc::clone)
}

/// An event in shared memory: `set` wakes the waiters, as `threading.Event`.
///
/// `Event(shm, offset=0, *, auto_reset=None)` uses 16 bytes of `shm` at `offset`
/// (8-aligned); `Event.create(name, auto_reset=False)` / `Event.open(name)` use a
/// segment of their own. An auto-reset event lets one waiter through per `set`.
///
/// If a peer shrinks the segment under it (Linux, `ftruncate`), every method raises
/// OSError (`errno.EIO`), never SIGBUS; so for Semaphore, Mutex and SeqLock.
#[pyclass(module = "shmbridge", name = "Event", frozen)]
pub(crate) struct Event {
    pub(crate) inner: sync::Event,
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (shm, offset = 0, *, auto_reset = None))]
    fn new(
        shm: &Bound<'_, SharedMemory>,
        offset: usize,
        auto_reset: Option<bool>,
    ) -> PyResult<Self> {
        let inner = sync::Event::in_segment(segment_of(shm)?, offset, auto_reset).map_err(to_py)?;
        Ok(Self { inner })
    }

    /// Creates an event in a new segment of its own.
    #[classmethod]
    #[pyo3(signature = (name, *, auto_reset = false))]
    fn create(_cls: &Bound<'_, PyType>, name: &str, auto_reset: bool) -> PyResult<Self> {
        Ok(Self { inner: sync::Event::create(name, auto_reset).map_err(to_py)? })
    }

    /// Opens an event created with `Event.create`.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        Ok(Self { inner: sync::Event::open(name).map_err(to_py)? })
    }

    /// Sets the event, waking the waiters (one, if auto-reset).
    fn set(&self) -> PyResult<()> {
        self.inner.set().map_err(to_py)
    }

    /// Clears the event.
    fn clear(&self) -> PyResult<()> {
        self.inner.clear().map_err(to_py)
    }

    /// Whether the event is set.
    fn is_set(&self) -> PyResult<bool> {
        self.inner.is_set().map_err(to_py)
    }

    /// Cap how long a waiter spins before sleeping, in seconds (default 20e-6;
    /// 0: sleep at once; at most 1). Spinning answers a busy peer in well under a
    /// microsecond; sleeping costs a wake-up (5 to 50 us) but no CPU. A spin never
    /// outlasts the wait's timeout (``wait(0)`` does not spin); right after this
    /// thread woke a sleeper, one wait may spin up to five limits but no more than
    /// 100e-6 (or the limit, if longer).
    fn set_spin_limit(&self, seconds: f64) -> PyResult<()> {
        if !(0.0..=1.0).contains(&seconds) {
            return Err(PyValueError::new_err(format!(
                "the spin limit is 0 to 1 second, not {seconds}"
            )));
        }
        self.inner.set_spin_limit(Duration::from_secs_f64(seconds));
        Ok(())
    }

    /// True for an auto-reset event.
    #[getter]
    fn auto_reset(&self) -> bool {
        self.inner.is_auto_reset()
    }

    /// Waits until the event is set or `timeout` seconds pass; whether it was set.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline(timeout)?;
        let done = wait_interruptibly(py, deadline, |until| {
            done_or_error(self.inner.wait_deadline(Some(until)))
        })?;
        Ok(done.transpose().map_err(to_py)?.is_some())
    }
}

/// A counting semaphore in shared memory, as `threading.Semaphore`.
///
/// `Semaphore(shm, offset=0, value=0)` (the value applies to fresh memory only);
/// `Semaphore.create(name, value=0)` / `Semaphore.open(name)`. OSError
/// (`errno.EIO`) if a peer shrank the segment under it.
#[pyclass(module = "shmbridge", name = "Semaphore", frozen)]
pub(crate) struct Semaphore {
    pub(crate) inner: sync::Semaphore,
}

#[pymethods]
impl Semaphore {
    #[new]
    #[pyo3(signature = (shm, offset = 0, value = 0))]
    fn new(shm: &Bound<'_, SharedMemory>, offset: usize, value: u32) -> PyResult<Self> {
        Ok(Self {
            inner: sync::Semaphore::in_segment(segment_of(shm)?, offset, value).map_err(to_py)?,
        })
    }

    /// Creates a semaphore with count `value` in a new segment of its own.
    #[classmethod]
    #[pyo3(signature = (name, value = 0))]
    fn create(_cls: &Bound<'_, PyType>, name: &str, value: u32) -> PyResult<Self> {
        Ok(Self { inner: sync::Semaphore::create(name, value).map_err(to_py)? })
    }

    /// Opens a semaphore created with `Semaphore.create`.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        Ok(Self { inner: sync::Semaphore::open(name).map_err(to_py)? })
    }

    /// Takes one from the count; waits while it is 0 (unless `blocking` is
    /// false), at most `timeout` seconds. Whether one was taken.
    #[pyo3(signature = (blocking = true, timeout = None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        if !blocking {
            if timeout.is_some() {
                return Err(PyValueError::new_err(
                    "can't specify a timeout for a non-blocking call",
                ));
            }
            return self.inner.try_acquire().map_err(to_py);
        }
        let deadline = deadline(timeout)?;
        let done = wait_interruptibly(py, deadline, |until| {
            done_or_error(self.inner.acquire_deadline(Some(until)))
        })?;
        Ok(done.transpose().map_err(to_py)?.is_some())
    }

    /// Adds `n` to the count, waking up to `n` waiters.
    #[pyo3(signature = (n = 1))]
    fn release(&self, n: u32) -> PyResult<()> {
        if n == 0 {
            return Err(PyValueError::new_err("n must be one or more"));
        }
        self.inner.release(n).map_err(to_py)
    }

    /// The current count.
    #[getter]
    fn value(&self) -> PyResult<u32> {
        self.inner.value().map_err(to_py)
    }

    /// ``with`` takes it (waiting as ``acquire()`` does) and returns True.
    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    /// Give it back (as ``release()``).
    fn __exit__(
        &self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release(1)?;
        Ok(false)
    }
}

/// A lock in shared memory that detects an owner that died holding it.
///
/// As `threading.Lock`: `acquire(blocking=True, timeout=None) -> bool`, `release()`,
/// `locked()`, and `with mutex:`. If the previous owner's process died holding
/// it, `acquire` takes it over and `owner_died` is true until the next acquire:
/// check it to repair data the dead owner may have left half-changed. OSError
/// (`errno.EIO`) if a peer shrank the segment under it.
#[pyclass(module = "shmbridge", name = "Mutex", frozen)]
pub(crate) struct Mutex {
    pub(crate) inner: sync::Mutex,
    /// The process in which this object holds the lock (its guard forgotten until
    /// release), or 0. A pid rather than a flag: a child made by `fork` inherits
    /// the object, but not the lock.
    held_in: AtomicU32,
    /// The thread that took it (any thread may release it, as `threading.Lock`
    /// allows; the one that holds it may not acquire it again).
    holder: AtomicU64,
    owner_died: AtomicBool,
}

/// Keeps a taken lock past its guard (`release` unlocks it); whether it was taken
/// over from a dead owner.
fn keep(taken: sync::LockResult<'_>) -> bool {
    let died = taken.is_err();
    std::mem::forget(taken.unwrap_or_else(sync::OwnerDied::into_guard));
    died
}

impl Mutex {
    fn wrap(inner: sync::Mutex) -> Self {
        Self {
            inner,
            held_in: AtomicU32::new(0),
            holder: AtomicU64::new(0),
            owner_died: AtomicBool::new(false),
        }
    }

    /// Whether the calling thread holds the lock through this object.
    fn held_by_caller(&self) -> bool {
        self.held_in.load(Ordering::Acquire) == shmbridge::current_pid()
            && self.holder.load(Ordering::Acquire) == thread_key()
    }
}

#[pymethods]
impl Mutex {
    #[new]
    #[pyo3(signature = (shm, offset = 0))]
    fn new(shm: &Bound<'_, SharedMemory>, offset: usize) -> PyResult<Self> {
        Ok(Self::wrap(sync::Mutex::in_segment(segment_of(shm)?, offset).map_err(to_py)?))
    }

    /// Creates an unlocked mutex in a new segment of its own.
    #[classmethod]
    fn create(_cls: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        Ok(Self::wrap(sync::Mutex::create(name).map_err(to_py)?))
    }

    /// Opens a mutex created with `Mutex.create`.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        Ok(Self::wrap(sync::Mutex::open(name).map_err(to_py)?))
    }

    /// Takes the lock; waits (unless `blocking` is false) at most `timeout`
    /// seconds. Whether it was taken.
    #[pyo3(signature = (blocking = true, timeout = None))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        if self.held_by_caller() {
            return Err(PyRuntimeError::new_err(
                "this thread already holds the lock; acquiring it again would deadlock",
            ));
        }
        let taken = if blocking {
            let deadline = deadline(timeout)?;
            wait_interruptibly(py, deadline, |until| {
                self.inner.lock_deadline(Some(until)).map(|taken| taken.map(keep)).transpose()
            })?
            .transpose()
            .map_err(to_py)?
        } else {
            if timeout.is_some() {
                return Err(PyValueError::new_err(
                    "can't specify a timeout for a non-blocking call",
                ));
            }
            self.inner.try_lock().map_err(to_py)?.map(keep)
        };
        match taken {
            Some(died) => {
                self.owner_died.store(died, Ordering::Release);
                self.holder.store(thread_key(), Ordering::Release);
                self.held_in.store(shmbridge::current_pid(), Ordering::Release);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Releases the lock (RuntimeError if this object does not hold it).
    fn release(&self) -> PyResult<()> {
        let me = shmbridge::current_pid();
        let held_in = self.held_in.load(Ordering::Acquire);
        if held_in != me {
            let why = if held_in == 0 {
                "release unlocked lock".to_owned()
            } else {
                format!(
                    "release unlocked lock: this Mutex object holds the lock in process \
                     {held_in}, not in this one (it was inherited across fork)"
                )
            };
            return Err(PyRuntimeError::new_err(why));
        }
        if self.held_in.compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(PyRuntimeError::new_err("release unlocked lock"));
        }
        // SAFETY: this object took the lock in this process and forgot the guard in
        // `acquire`; the exchange above makes this the only release.
        unsafe { self.inner.force_unlock() }.map_err(to_py)?;
        Ok(())
    }

    /// Whether some process holds the lock.
    fn locked(&self) -> PyResult<bool> {
        self.inner.is_locked().map_err(to_py)
    }

    /// True if the last acquire took the lock over from a process that died.
    #[getter]
    fn owner_died(&self) -> bool {
        self.owner_died.load(Ordering::Acquire)
    }

    /// ``with`` takes it (waiting as ``acquire()`` does) and returns True.
    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    /// Give it back (as ``release()``).
    fn __exit__(
        &self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }
}

impl Drop for Mutex {
    /// A Mutex object collected while holding the lock releases it.
    fn drop(&mut self) {
        if *self.held_in.get_mut() == shmbridge::current_pid() {
            // SAFETY: this object took the lock in this process and forgot the guard.
            // An error (the lock's page vanished) leaves nothing to release.
            let _ = unsafe { self.inner.force_unlock() };
        }
    }
}

/// A record of fixed size that readers copy without ever seeing a torn write.
///
/// `SeqLock(shm, offset=0, size=None)` (size required for fresh memory),
/// `SeqLock.create(name, size)` / `SeqLock.open(name)`; `write(data)`, `read()`.
/// OSError (`errno.EIO`) if a peer shrank the segment under the record.
#[pyclass(module = "shmbridge", name = "SeqLock", frozen)]
pub(crate) struct SeqLock {
    inner: sync::SeqLock,
}

#[pymethods]
impl SeqLock {
    #[new]
    #[pyo3(signature = (shm, offset = 0, size = None))]
    fn new(shm: &Bound<'_, SharedMemory>, offset: usize, size: Option<usize>) -> PyResult<Self> {
        Ok(Self {
            inner: sync::SeqLock::in_segment(segment_of(shm)?, offset, size).map_err(to_py)?,
        })
    }

    /// Creates a seqlock of a `size`-byte record in a new segment of its own.
    #[classmethod]
    fn create(_cls: &Bound<'_, PyType>, name: &str, size: usize) -> PyResult<Self> {
        Ok(Self { inner: sync::SeqLock::create(name, size).map_err(to_py)? })
    }

    /// Opens a seqlock created with `SeqLock.create`.
    #[classmethod]
    fn open(_cls: &Bound<'_, PyType>, name: &str) -> PyResult<Self> {
        Ok(Self { inner: sync::SeqLock::open(name).map_err(to_py)? })
    }

    /// The record's size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.inner.record_size()
    }

    /// The sequence number: even when stable, +2 per write.
    #[getter]
    fn sequence(&self) -> PyResult<u32> {
        self.inner.sequence().map_err(to_py)
    }

    /// Replace the record with a bytes-like object of exactly ``size`` bytes;
    /// return the new sequence number. Waits (without the GIL, interruptibly)
    /// while another writer is mid-write, at most ``timeout`` seconds
    /// (TimeoutError).
    #[pyo3(signature = (data, timeout = None))]
    fn write(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<u32> {
        let buffer = pyo3::buffer::PyBuffer::<u8>::get(data)?;
        let bytes = buffer.to_vec(py)?;
        let deadline = deadline(timeout)?;
        // The fast path, with the GIL: no other write under way.
        match self.inner.write_deadline(&bytes, Some(Instant::now())) {
            Err(shmbridge::Error::Busy { .. }) if deadline.is_none_or(|d| d > Instant::now()) => {}
            other => return other.map_err(to_py),
        }
        let written = wait_interruptibly(py, deadline, |until| {
            match self.inner.write_deadline(&bytes, Some(until)) {
                Err(shmbridge::Error::Busy { .. }) => None,
                other => Some(other),
            }
        })?;
        written
            .unwrap_or_else(|| self.inner.write_deadline(&bytes, Some(Instant::now())))
            .map_err(to_py)
    }

    /// A consistent copy of the record. Waits (without the GIL, interruptibly)
    /// while a writer is mid-write, at most ``timeout`` seconds (TimeoutError);
    /// BrokenPipeError if that writer's process died.
    #[pyo3(signature = (timeout = None))]
    fn read<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyBytes>> {
        let size = self.inner.record_size();
        let deadline = deadline(timeout)?;
        let mut buf = vec![0u8; size];
        match self.inner.read_deadline(&mut buf, Some(Instant::now())) {
            Err(shmbridge::Error::Busy { .. }) if deadline.is_none_or(|d| d > Instant::now()) => {}
            other => return other.map(|_| PyBytes::new(py, &buf)).map_err(to_py),
        }
        let read = {
            let buf = std::sync::Mutex::new(&mut buf);
            let read = wait_interruptibly(py, deadline, |until| {
                let mut buf = buf.lock().unwrap_or_else(|p| p.into_inner());
                match self.inner.read_deadline(&mut buf, Some(until)) {
                    Err(shmbridge::Error::Busy { .. }) => None,
                    other => Some(other),
                }
            })?;
            read.unwrap_or_else(|| {
                let mut buf = buf.lock().unwrap_or_else(|p| p.into_inner());
                self.inner.read_deadline(&mut buf, Some(Instant::now()))
            })
        };
        read.map(|_| PyBytes::new(py, &buf)).map_err(to_py)
    }
}
