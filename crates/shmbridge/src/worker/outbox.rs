//! The requests' way to the worker: one writer at a time, each within its own
//! deadline, whatever the worker and the other callers do.
//!
//! A caller waits for the way (the pipe or the request channel) only until its
//! deadline, and writes only until then: a worker that reads nothing (busy in a
//! long call) fills the pipe or ring, and the callers behind it time out on time
//! instead of queueing behind a blocked write.
//!
//! A request is never withdrawn half-written: that would leave half a line in the
//! pipe, and the worker would read it glued to the next request, corrupting the
//! stream for every later call. On the pipe, the bytes that did not fit by the
//! deadline are kept and go first, before the next request (the worker then runs
//! the call, and its answer is discarded as for any call that timed out). Finishing
//! them in a thread of their own would need a thread per worker, or per stalled
//! request, for a case that only matters once the next request comes; and declaring
//! the pipe broken would kill a worker for being slow. On the shared-memory
//! transport a request is published whole or not at all, so nothing is kept; one
//! too long for the channel goes down the pipe (after a [`SPILLED`] message that
//! tells the server to read it there), with the pipe's rules.

use std::io::{ErrorKind, Write};
use std::process::ChildStdin;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::{LIVENESS_CHECK, SPILLED, lock};
use crate::channel::{ChannelError, Sender};
use crate::sys;

/// Where requests go, handed from caller to caller.
pub(super) struct Outbox {
    state: Mutex<State>,
    /// Signalled when the way is put back.
    returned: Condvar,
}

struct State {
    /// `None` while a caller writes.
    way: Option<Way>,
    /// Callers waiting for the way.
    waiting: usize,
}

enum Way {
    Pipe(Pipe),
    /// The stdin pipe is kept open (closing it is one way to say goodbye), and
    /// carries the requests too long for the channel.
    Channel {
        pipe: Pipe,
        sender: Sender,
    },
    /// Shut by `close`, or after the worker was found gone.
    Closed,
}

struct Pipe {
    stdin: ChildStdin,
    /// Whether writes return early when the pipe is full (everywhere but Windows);
    /// otherwise they wait for room and no deadline holds while writing.
    nonblocking: bool,
    /// The rest of a request whose caller's deadline passed mid-write.
    unfinished: Vec<u8>,
}

/// Why a request was not sent.
pub(super) enum Unsent {
    /// The deadline passed before the request was written whole. Its bytes are
    /// either not in the stream at all, or in it and to be finished by the next
    /// writer (see the module docs).
    Timeout,
    /// The worker is gone, or will read no more: whoever reads its answers finds
    /// out how it ended.
    Gone,
}

impl Outbox {
    /// Requests go down the child's stdin.
    pub(super) fn pipe(stdin: ChildStdin) -> Self {
        let nonblocking = sys::set_nonblocking(&stdin).unwrap_or(false);
        let pipe = Pipe { stdin, nonblocking, unfinished: Vec::new() };
        Self {
            state: Mutex::new(State { way: Some(Way::Pipe(pipe)), waiting: 0 }),
            returned: Condvar::new(),
        }
    }

    /// From now on requests go through `sender` (after the handshake, on the
    /// shared-memory transport).
    pub(super) fn use_channel(&self, sender: Sender) {
        let mut state = lock(&self.state);
        if let Some(Way::Pipe(pipe)) = state.way.take() {
            state.way = Some(Way::Channel { pipe, sender });
        } else {
            state.way = Some(Way::Closed);
        }
    }

    /// Sends `request`, one JSON line ending in `\n` (a channel message goes
    /// without it), by `deadline`; `worker_gone` tells whether the worker's process
    /// has ended, asked while waiting for room.
    pub(super) fn send(
        &self,
        request: &[u8],
        deadline: Instant,
        worker_gone: &dyn Fn() -> bool,
    ) -> Result<(), Unsent> {
        let mut way = self.take(deadline).ok_or(Unsent::Timeout)?;
        let sent = if Instant::now() >= deadline {
            Err(Unsent::Timeout) // the way came back too late for this caller
        } else {
            match &mut way {
                Way::Pipe(pipe) => pipe.send(request, deadline, worker_gone),
                Way::Channel { pipe, sender } => {
                    let message = request.strip_suffix(b"\n").unwrap_or(request);
                    // A spilled request cut short blocks the server until it is whole.
                    pipe.finish(deadline, worker_gone).and_then(|()| {
                        if message.len() <= sender.max_message() {
                            send_message(sender, message, deadline, worker_gone)
                        } else {
                            send_message(sender, SPILLED, deadline, worker_gone)?;
                            pipe.send(request, deadline, worker_gone)
                        }
                    })
                }
                Way::Closed => Err(Unsent::Gone),
            }
        };
        if matches!(sent, Err(Unsent::Gone)) {
            // Nothing will read any more: the callers behind learn it at once.
            way = Way::Closed;
        }
        self.put_back(way);
        sent
    }

    /// Closes the way (the pipe, or the request channel), which ends the server's
    /// `serve()`. A request left unfinished is dropped with it: the server reads
    /// half a line, answers that it is a bad request, and stops at the end.
    pub(super) fn close(&self) {
        lock(&self.state).way = Some(Way::Closed);
    }

    /// The way, once no other caller has it, or `None` at `deadline`.
    fn take(&self, deadline: Instant) -> Option<Way> {
        let mut state = lock(&self.state);
        loop {
            if let Some(way) = state.way.take() {
                return Some(way);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state.waiting += 1;
            state = match self.returned.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.waiting -= 1;
        }
    }

    fn put_back(&self, way: Way) {
        let mut state = lock(&self.state);
        if state.way.is_none() {
            state.way = Some(way);
        } // else: closed meanwhile, and closed it stays
        if state.waiting > 0 {
            // One waiter takes it; a waiter whose time ran out puts it back again.
            self.returned.notify_one();
        }
    }
}

impl Pipe {
    fn send(
        &mut self,
        request: &[u8],
        deadline: Instant,
        worker_gone: &dyn Fn() -> bool,
    ) -> Result<(), Unsent> {
        if !self.nonblocking {
            // Writes wait for room here: the deadline holds from the answer on.
            return self.stdin.write_all(request).map_err(|_| Unsent::Gone);
        }
        self.finish(deadline, worker_gone)?;
        let written = write_until(&mut self.stdin, request, deadline, worker_gone)?;
        if written < request.len() {
            if written > 0 {
                self.unfinished.extend_from_slice(&request[written..]);
            }
            return Err(Unsent::Timeout);
        }
        Ok(())
    }
}

impl Pipe {
    /// Writes the rest of another caller's request cut short, by `deadline`: lines
    /// must stay whole. [`Unsent::Timeout`] if some is left (nothing of the caller's
    /// own request was written then).
    fn finish(&mut self, deadline: Instant, worker_gone: &dyn Fn() -> bool) -> Result<(), Unsent> {
        if !self.unfinished.is_empty() {
            let written = write_until(&mut self.stdin, &self.unfinished, deadline, worker_gone)?;
            self.unfinished.drain(..written);
            if !self.unfinished.is_empty() {
                return Err(Unsent::Timeout);
            }
        }
        Ok(())
    }
}

/// Writes as much of `bytes` as the pipe takes by `deadline`, and says how much.
fn write_until(
    stdin: &mut ChildStdin,
    bytes: &[u8],
    deadline: Instant,
    worker_gone: &dyn Fn() -> bool,
) -> Result<usize, Unsent> {
    let mut written = 0;
    while written < bytes.len() {
        match stdin.write(&bytes[written..]) {
            Ok(0) => return Err(Unsent::Gone),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let room = sys::wait_writable(stdin, (deadline - now).min(LIVENESS_CHECK));
                // A full pipe whose reader died tells nothing if a child of the
                // worker holds its end open: ask about the process itself.
                if !room.unwrap_or(true) && worker_gone() {
                    return Err(Unsent::Gone);
                }
            }
            Err(_) => return Err(Unsent::Gone), // EPIPE: the worker's end is closed
        }
    }
    Ok(written)
}

/// Publishes `message` whole by `deadline`, or nothing.
fn send_message(
    sender: &Sender,
    message: &[u8],
    deadline: Instant,
    worker_gone: &dyn Fn() -> bool,
) -> Result<(), Unsent> {
    loop {
        // In slices: a worker that died before it opened its end of the channel
        // cannot be seen in the channel, only as a process.
        let slice = deadline.min(Instant::now() + LIVENESS_CHECK);
        match sender.send_deadline(message, Some(slice)) {
            Ok(()) => return Ok(()),
            Err(ChannelError::Timeout) if Instant::now() >= deadline => {
                return Err(Unsent::Timeout);
            }
            Err(ChannelError::Timeout) if worker_gone() => return Err(Unsent::Gone),
            Err(ChannelError::Timeout) => {}
            Err(_) => return Err(Unsent::Gone),
        }
    }
}
