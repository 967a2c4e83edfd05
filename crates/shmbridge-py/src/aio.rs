//! The native half of `shmbridge.aio`: readiness for one asyncio event loop.
//!
//! `watch(obj, op)` registers interest in the next change of the word behind an
//! operation (an event's state, a channel's head...), with the core's shared
//! waiter threads; a fired registration leaves its token in a queue and makes one
//! file descriptor readable, which the loop watches (`loop.add_reader`). The
//! operation itself is then tried again by the coroutine, on the loop's thread:
//! nothing is ever taken in the background, so cancelling an await loses nothing.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use shmbridge::sync::{Readiness, ReadyQueue, Registration};

use crate::channel::Channel;
use crate::errors::to_py;
use crate::sync::{Event, Mutex as PyMutex, Semaphore};

/// Readiness of shmbridge objects for one event loop (used by ``shmbridge.aio``).
#[pyclass(module = "shmbridge._native", name = "_AsyncWaiter", frozen)]
pub(crate) struct AsyncWaiter {
    queue: Arc<ReadyQueue>,
    registrations: Mutex<HashMap<u64, Registration>>,
    next: AtomicU64,
}

/// What to wait for before `op` on `obj` can go ahead (`None`: try it now).
fn readiness_of(obj: &Bound<'_, PyAny>, op: &str, size: usize) -> PyResult<Option<Readiness>> {
    let unknown = || PyValueError::new_err(format!("no awaitable operation {op:?} on {obj}"));
    if let Ok(event) = obj.cast::<Event>() {
        return if op == "wait" { Ok(event.get().inner.readiness()) } else { Err(unknown()) };
    }
    if let Ok(semaphore) = obj.cast::<Semaphore>() {
        return if op == "acquire" {
            Ok(semaphore.get().inner.readiness())
        } else {
            Err(unknown())
        };
    }
    if let Ok(mutex) = obj.cast::<PyMutex>() {
        return if op == "acquire" { Ok(mutex.get().inner.readiness()) } else { Err(unknown()) };
    }
    if let Ok(channel) = obj.cast::<Channel>() {
        let channel = channel.get();
        return match op {
            "recv" => Ok(channel.receiver()?.recv_readiness()),
            "send" => Ok(channel.sender()?.send_readiness(size)),
            _ => Err(unknown()),
        };
    }
    Err(PyTypeError::new_err(format!("{obj} has no awaitable operations")))
}

#[pymethods]
impl AsyncWaiter {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            queue: ReadyQueue::new().map_err(to_py)?,
            registrations: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// The descriptor the event loop watches for readability.
    fn fileno(&self) -> i32 {
        self.queue.as_fd().as_raw_fd()
    }

    /// Registers interest in the next change that may let `op` on `obj` go ahead;
    /// returns a token, or None if the operation should be tried now.
    #[pyo3(signature = (obj, op, size = 0))]
    fn watch(&self, obj: &Bound<'_, PyAny>, op: &str, size: usize) -> PyResult<Option<u64>> {
        let Some(readiness) = readiness_of(obj, op, size)? else { return Ok(None) };
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let registration = self.queue.register(readiness, token);
        self.registrations.lock().unwrap_or_else(|p| p.into_inner()).insert(token, registration);
        Ok(Some(token))
    }

    /// Forgets a token. With `cancelled` (the await was given up), a wake-up it had
    /// received is passed on to the next waiter, so none is lost.
    #[pyo3(signature = (token, cancelled = false))]
    fn unwatch(&self, token: u64, cancelled: bool) {
        let registration =
            self.registrations.lock().unwrap_or_else(|p| p.into_inner()).remove(&token);
        if let Some(registration) = registration
            && cancelled
            && registration.fired()
        {
            registration.pass_on();
        }
    }

    /// The tokens fired since the last call.
    fn drain(&self) -> Vec<u64> {
        self.queue.drain()
    }
}
