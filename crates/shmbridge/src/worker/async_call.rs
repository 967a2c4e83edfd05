//! Worker calls for async code: [`Worker::call_async`].
//!
//! The caller's future waits on a slot that the answer is put into; no thread per
//! call. Answers for async calls are read by one reader thread per worker, started
//! by the first async call (blocking callers keep reading for themselves, and
//! route async answers to their slots when they do). The reader also ends calls
//! whose time ran out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    LIVENESS_CHECK, Route, Shared, Worker, deadline_after, finish_call, lock, parse_answer,
};
use crate::error::Result;

/// Where an async call's answer goes.
pub(super) struct Slot {
    answer: Mutex<Option<Result<Value>>>,
    /// Set once the answer (or the call's end) is in.
    done: AtomicBool,
    waker: Mutex<Option<Waker>>,
    deadline: Instant,
}

impl Slot {
    /// Puts the answer in (the first one counts) and wakes the future.
    pub(super) fn fill(&self, answer: Result<Value>) {
        {
            let mut slot = lock(&self.answer);
            if self.done.load(Ordering::Acquire) {
                return;
            }
            *slot = Some(answer);
            self.done.store(true, Ordering::Release);
        }
        if let Some(waker) = lock(&self.waker).take() {
            waker.wake();
        }
    }
}

/// Waits for a slot's answer; `None` when the time ran out first.
struct Answer {
    slot: Arc<Slot>,
    timed_out: Arc<AtomicBool>,
}

impl Future for Answer {
    type Output = Option<Result<Value>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        *lock(&self.slot.waker) = Some(cx.waker().clone());
        if self.slot.done.load(Ordering::Acquire) {
            if self.timed_out.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            return Poll::Ready(lock(&self.slot.answer).take());
        }
        Poll::Pending
    }
}

/// Forgets the call when its future goes, answered or not (a late answer is
/// then discarded, as for a blocking call that timed out).
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.shared.calls).pending.remove(&self.id);
    }
}

impl Worker {
    /// As [`call`](Self::call), for async code: a future for any runtime, with no
    /// thread per call (one reader thread per worker serves every async call).
    ///
    /// The request is written when the future is first polled (waiting for room,
    /// up to `timeout`, only if the worker stopped reading its requests). Dropping
    /// the future forgets the call: a late answer is discarded; the worker may
    /// still run the function, as after a time-out.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_async<T: DeserializeOwned>(
        &self,
        function: &str,
        args: impl Serialize,
        timeout: Duration,
    ) -> Result<T> {
        let deadline = deadline_after(timeout);
        let slot = Arc::new(Slot {
            answer: Mutex::new(None),
            done: AtomicBool::new(false),
            waker: Mutex::new(None),
            deadline,
        });
        self.start_async_reader();
        let id =
            self.start_call(function, args, timeout, deadline, Route::Async(Arc::clone(&slot)))?;
        let _forget = Forget { shared: &self.shared, id };
        self.shared.async_waiting.notify_all();
        let timed_out = Arc::new(AtomicBool::new(false));
        lock(&self.shared.expiring).push((Arc::clone(&slot), Arc::clone(&timed_out)));
        let answer = Answer { slot, timed_out }.await;
        finish_call(function, timeout, answer)
    }

    fn start_async_reader(&self) {
        let mut reader = lock(&self.async_reader);
        if reader.is_none() {
            let shared = Arc::clone(&self.shared);
            let thread = std::thread::Builder::new()
                .name(format!("shmbridge-worker-{}-async", self.pid))
                .spawn(move || read_for_async_calls(&shared));
            *reader = thread.ok();
        }
    }
}

/// The async reader: while async calls wait, read answers and route them; end
/// the calls whose time ran out. Leaves when the worker ends or shuts down.
fn read_for_async_calls(shared: &Shared) {
    loop {
        {
            let mut calls = lock(&shared.calls);
            loop {
                if calls.stopping || calls.ended {
                    return;
                }
                if calls.pending.values().any(|r| matches!(r, Route::Async(_))) {
                    break;
                }
                calls = shared.async_waiting.wait(calls).unwrap_or_else(|p| p.into_inner());
            }
        }
        expire(shared);
        let now = Instant::now();
        match shared.replies.try_lock() {
            Ok(mut replies) => {
                if let Some(Ok(line)) = shared.read_line(&mut replies, now + LIVENESS_CHECK)
                    && let Some((id, answer)) = parse_answer(&line)
                    && let Some(route) = lock(&shared.calls).pending.get(&id)
                {
                    route.deliver(answer);
                }
            }
            // A blocking caller reads, and routes our answers; look again soon.
            Err(TryLockError::WouldBlock) => {
                let calls = lock(&shared.calls);
                let _ = shared.async_waiting.wait_timeout(calls, LIVENESS_CHECK);
            }
            Err(TryLockError::Poisoned(poisoned)) => drop(poisoned.into_inner()),
        }
    }
}

/// Ends the async calls whose deadline passed.
fn expire(shared: &Shared) {
    let now = Instant::now();
    let mut expiring = lock(&shared.expiring);
    expiring.retain(|(slot, timed_out)| {
        if slot.done.load(Ordering::Acquire) || Arc::strong_count(slot) == 1 {
            return false; // answered, or its future is gone
        }
        if slot.deadline <= now {
            timed_out.store(true, Ordering::Release);
            slot.fill(Ok(Value::Null));
            return false;
        }
        true
    });
}
