//! Readiness for event loops that watch file descriptors (asyncio, mio): fired
//! registrations leave their token in a queue and make one descriptor readable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::reactor::{Readiness, Registration};
use crate::error::{Error, Result};
use crate::sys;

/// A queue of tokens of fired [`Registration`]s and a file descriptor that is
/// readable while the queue has news: register readinesses with a token each,
/// watch [`as_fd`](Self::as_fd) in the event loop, and [`drain`](Self::drain)
/// when it is readable.
///
/// # Example
///
/// ```
/// use shmbridge::sync::{Event, ReadyQueue};
///
/// let event = Event::create(&shmbridge::unique_name("doc_queue")?, false)?;
/// let queue = ReadyQueue::new()?;
/// let readiness = event.readiness().expect("not set yet");
/// let _registration = queue.register(readiness, 7);
/// event.set()?;
/// // An event loop would see queue.as_fd() readable now.
/// let mut fired = Vec::new();
/// while fired.is_empty() {
///     fired = queue.drain();
/// }
/// assert_eq!(fired, [7]);
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct ReadyQueue {
    fd: sys::WakeFd,
    fired: Mutex<Vec<u64>>,
    /// The descriptor was made readable and not drained since.
    signalled: AtomicBool,
}

impl ReadyQueue {
    /// A new, empty queue.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the system refuses a descriptor.
    pub fn new() -> Result<Arc<Self>> {
        let fd = sys::WakeFd::new().map_err(|e| Error::from_os("(ready queue)", "eventfd", e))?;
        Ok(Arc::new(Self { fd, fired: Mutex::new(Vec::new()), signalled: AtomicBool::new(false) }))
    }

    /// The descriptor an event loop watches: readable while tokens wait.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Registers `readiness`; when it fires, `token` joins the queue.
    pub fn register(self: &Arc<Self>, readiness: Readiness, token: u64) -> Registration {
        let queue = Arc::clone(self);
        readiness.register(move || {
            queue.fired.lock().unwrap_or_else(|p| p.into_inner()).push(token);
            if !queue.signalled.swap(true, Ordering::AcqRel) {
                queue.fd.notify();
            }
        })
    }

    /// The tokens fired since the last drain (in order), making the descriptor
    /// unreadable again until the next.
    pub fn drain(&self) -> Vec<u64> {
        // Cleared before the queue is taken: a token pushed after this read makes
        // the descriptor readable again, so it is never missed.
        self.signalled.store(false, Ordering::Release);
        self.fd.clear();
        std::mem::take(&mut *self.fired.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
