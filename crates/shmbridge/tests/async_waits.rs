//! Async waits: cancel-safety (a future dropped at a time-out consumes nothing),
//! no thread per pending future, under tokio's multi-threaded runtime and under a
//! plain `futures` executor.

use std::sync::Arc;
use std::time::Duration;

use shmbridge::channel::{Channel, ChannelError};
use shmbridge::sync::{Event, Mutex, Semaphore};
use shmbridge::unique_name;

/// Threads of this process, from /proc (Linux).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0)
}

/// The tests that count threads run one at a time (the harness runs tests on
/// threads of its own, and each tokio test has a runtime).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// 10,000 receive time-outs interleaved with 10,000 sends: every message arrives
/// exactly once and in order, and the thread count stays flat.
#[test]
fn timed_out_receives_lose_nothing() {
    let _alone = alone();
    tokio_runtime().block_on(timed_out_receives_lose_nothing_async());
}

/// A multi-threaded tokio runtime with two workers.
fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn timed_out_receives_lose_nothing_async() {
    let ch = Channel::create(&unique_name("ta_cancel").unwrap(), 1 << 16).unwrap();
    let tx = ch.sender().unwrap();
    let rx = Channel::open(ch.name()).unwrap().receiver().unwrap();
    let before = threads();
    let mut next = 0u64;
    for i in 0..10_000u64 {
        // A receive that times out (nothing sent yet): dropped, it takes nothing.
        let early = tokio::time::timeout(Duration::from_micros(50), rx.recv_async()).await;
        if let Ok(msg) = early {
            // Sends from the last round may arrive here: still in order.
            let msg = msg.unwrap();
            assert_eq!(u64::from_le_bytes(msg.to_vec().unwrap()[..8].try_into().unwrap()), next);
            next += 1;
        }
        tx.send(&i.to_le_bytes()).unwrap();
        if i % 2 == 0 {
            let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv_async())
                .await
                .expect("a message")
                .unwrap();
            assert_eq!(
                u64::from_le_bytes(msg.to_vec().unwrap()[..8].try_into().unwrap()),
                next,
                "lost or reordered"
            );
            next += 1;
        }
    }
    while next < 10_000 {
        let msg = rx.recv_async().await.unwrap();
        assert_eq!(u64::from_le_bytes(msg.to_vec().unwrap()[..8].try_into().unwrap()), next);
        next += 1;
    }
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty, "nothing twice");
    assert!(threads() <= before + 2, "threads grew from {before} to {}", threads());
}

/// 10,000 concurrent awaits over 1,000 events all complete, on a couple of waiter
/// threads.
#[test]
fn ten_thousand_awaits_on_a_thousand_events() {
    let _alone = alone();
    tokio_runtime().block_on(ten_thousand_awaits_on_a_thousand_events_async());
}

async fn ten_thousand_awaits_on_a_thousand_events_async() {
    let shm = Arc::new(shmbridge::SharedMemory::create_unique("ta_many", 1000 * 16).unwrap());
    let events: Arc<Vec<Event>> = Arc::new(
        (0..1000)
            .map(|i| Event::in_segment(Arc::clone(&shm), 16 * i, Some(false)).unwrap())
            .collect(),
    );
    let before = threads();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        let events = Arc::clone(&events);
        tasks.spawn(async move { events[i % 1000].wait_async().await.unwrap() });
    }
    tokio::task::yield_now().await;
    let during = threads();
    for e in events.iter() {
        e.set().unwrap();
    }
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        let mut n = 0;
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
            n += 1;
        }
        n
    })
    .await
    .expect("every await completes");
    assert_eq!(done, 10_000);
    assert!(during <= before + 16, "{before} threads before, {during} with 10,000 awaits pending");
}

/// The futures run on a plain executor too, and cancelled waits hand their
/// wake-ups on: an auto-reset set, a permit, the lock.
#[test]
fn plain_executor_and_passed_on_wake_ups() {
    use futures::executor::block_on;
    use futures::future::{FutureExt, select};

    let ev = Event::create(&unique_name("ta_ev").unwrap(), true).unwrap();
    let sem = Semaphore::create(&unique_name("ta_sem").unwrap(), 0).unwrap();
    let mutex = Mutex::create(&unique_name("ta_mx").unwrap()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            ev.set().unwrap();
            sem.release(1).unwrap();
        });
        block_on(ev.wait_async()).unwrap();
        block_on(sem.acquire_async()).unwrap();
    });
    assert!(!ev.is_set().unwrap(), "auto-reset: taken");
    assert_eq!(sem.value().unwrap(), 0);
    // A lock held elsewhere; an async waiter that gives up takes nothing.
    let guard = mutex.lock().unwrap().unwrap_or_else(|d| d.into_guard());
    let never = Box::pin(mutex.lock_async());
    let quick = Box::pin(futures::future::ready(()));
    assert!(matches!(block_on(select(never, quick)), futures::future::Either::Right(_)));
    drop(guard);
    let taken = block_on(mutex.lock_async().map(|r| r.unwrap().is_ok()));
    assert!(taken, "the lock comes to an async waiter");
}

/// A send that waits for room completes when the receiver makes room; one that
/// is cancelled sends nothing, never half a message.
#[test]
fn async_send_waits_for_room_and_cancels_cleanly() {
    use futures::executor::block_on;
    let ch = Channel::create(&unique_name("ta_send").unwrap(), 256).unwrap();
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    while tx.try_send(&[1; 40]).is_ok() {}
    {
        let cancelled = tx.send_async(&[9; 40]);
        drop(cancelled); // never polled to completion: nothing sent
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let m = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(m.to_vec().unwrap(), [1; 40]);
        });
        block_on(tx.send_async(&[2; 40])).unwrap();
    });
    let mut got = Vec::new();
    while let Ok(m) = rx.try_recv() {
        got.push(m.bytes().get(0).unwrap());
    }
    assert_eq!(got.last(), Some(&2));
    assert!(!got.contains(&9), "the cancelled send sent nothing");
}
