//! Synchronization primitives within one process (threads): semantics, timeouts,
//! exclusion, torn-free seqlock reads, and every error path. Cross-process and
//! owner-death cases are in tests/cross_process.rs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shmbridge::sync::{Event, Mutex, Semaphore, SeqLock};
use shmbridge::{Error, SharedMemory, unique_name};

const LONG: Duration = Duration::from_secs(30);

fn segment(size: usize) -> Arc<SharedMemory> {
    Arc::new(SharedMemory::create_unique("ts_sync", size).unwrap())
}

#[test]
fn manual_reset_event_wakes_every_waiter() {
    let shm = segment(4096);
    let event = Event::in_segment(Arc::clone(&shm), 0, Some(false)).unwrap();
    assert!(!event.is_set().unwrap() && !event.is_auto_reset());
    std::thread::scope(|s| {
        let waiters: Vec<_> =
            (0..3).map(|_| s.spawn(|| event.wait_timeout(LONG).unwrap())).collect();
        event.set().unwrap();
        assert!(waiters.into_iter().all(|w| w.join().unwrap()));
    });
    assert!(event.is_set().unwrap(), "stays set");
    assert!(event.wait_timeout(Duration::ZERO).unwrap());
    event.clear().unwrap();
    assert!(!event.wait_timeout(Duration::from_millis(20)).unwrap());
}

#[test]
fn auto_reset_event_lets_one_waiter_through_per_set() {
    let shm = segment(4096);
    let event = Event::in_segment(Arc::clone(&shm), 8, Some(true)).unwrap();
    event.set().unwrap();
    assert!(event.wait_timeout(LONG).unwrap());
    assert!(!event.is_set().unwrap(), "the wait took the set");
    assert!(!event.wait_timeout(Duration::from_millis(20)).unwrap());
    std::thread::scope(|s| {
        let waiter = s.spawn(|| event.wait_timeout(LONG).unwrap());
        event.set().unwrap();
        assert!(waiter.join().unwrap());
    });
    // Opening it again keeps its mode; asking for the other mode is an error.
    assert!(Event::in_segment(Arc::clone(&shm), 8, None).unwrap().is_auto_reset());
    let err = Event::in_segment(Arc::clone(&shm), 8, Some(false)).unwrap_err();
    assert!(err.to_string().contains("is auto-reset, not manual-reset"), "{err}");
}

#[test]
fn timeouts_return_on_time() {
    let shm = segment(4096);
    let event = Event::in_segment(Arc::clone(&shm), 0, None).unwrap();
    let start = Instant::now();
    assert!(!event.wait_timeout(Duration::from_millis(50)).unwrap());
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(5), "{waited:?}");
    let sem = Semaphore::in_segment(Arc::clone(&shm), 16, 0).unwrap();
    assert!(!sem.acquire_timeout(Duration::from_millis(20)).unwrap());
}

#[test]
fn semaphore_counts() {
    let shm = segment(4096);
    let sem = Semaphore::in_segment(Arc::clone(&shm), 0, 2).unwrap();
    assert_eq!(sem.value().unwrap(), 2);
    let take = || sem.try_acquire().unwrap();
    assert!(take() && take() && !take());
    std::thread::scope(|s| {
        let taker = s.spawn(|| sem.acquire_timeout(LONG).unwrap());
        sem.release(1).unwrap();
        assert!(taker.join().unwrap());
    });
    sem.release(u32::MAX).unwrap();
    let err = sem.release(1).unwrap_err();
    assert!(
        matches!(err, Error::Incompatible { .. }) && err.to_string().contains("overflow"),
        "{err}"
    );
    assert_eq!(sem.value().unwrap(), u32::MAX, "nothing added");
    // Opening an existing semaphore keeps its count.
    assert_eq!(Semaphore::in_segment(Arc::clone(&shm), 0, 5).unwrap().value().unwrap(), u32::MAX);
}

#[test]
fn mutex_excludes_threads() {
    let shm = segment(4096);
    let mutex = Mutex::in_segment(Arc::clone(&shm), 0).unwrap();
    let counter = shm.atomic_counter_for_tests(64);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5000 {
                    let _guard = mutex.lock().unwrap().unwrap();
                    // A non-atomic read-modify-write: only correct under the lock.
                    let v = counter.load(Ordering::Relaxed);
                    counter.store(v + 1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(counter.load(Ordering::Relaxed), 20_000);
    assert!(!mutex.is_locked().unwrap());
    let guard = mutex.try_lock().unwrap().unwrap().unwrap();
    assert!(mutex.is_locked().unwrap());
    std::thread::scope(|s| {
        assert!(
            s.spawn(|| mutex.lock_timeout(Duration::from_millis(20)).unwrap().is_none())
                .join()
                .unwrap()
        );
    });
    drop(guard);
    assert!(mutex.lock_timeout(Duration::ZERO).unwrap().is_some());
}

#[test]
fn seqlock_readers_never_see_torn_records() {
    let shm = segment(8192);
    let lock = SeqLock::in_segment(Arc::clone(&shm), 0, Some(1000)).unwrap();
    assert_eq!(lock.record_size(), 1000);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=20_000u32 {
                lock.write(&[(i % 251) as u8; 1000]).unwrap();
            }
            stop.store(true, Ordering::Release);
        });
        for _ in 0..2 {
            s.spawn(|| {
                let mut buf = [0u8; 1000];
                let mut reads = 0;
                while !stop.load(Ordering::Acquire) || reads == 0 {
                    let seq = lock.read(&mut buf).unwrap();
                    assert!(seq.is_multiple_of(2));
                    assert!(buf.iter().all(|&b| b == buf[0]), "torn snapshot at sequence {seq}");
                    reads += 1;
                }
            });
        }
    });
    assert_eq!(lock.sequence().unwrap(), 40_000);
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, PartialEq, Debug)]
    #[repr(C)]
    struct Pose {
        x: f64,
        y: f64,
    }
    let poses = SeqLock::in_segment(Arc::clone(&shm), 2048, Some(16)).unwrap();
    poses.write_value(&Pose { x: 1.0, y: -2.0 }).unwrap();
    assert_eq!(poses.read_value::<Pose>().unwrap(), Pose { x: 1.0, y: -2.0 });
    assert!(matches!(poses.write(&[0; 15]), Err(Error::OutOfBounds { .. })));
    assert!(matches!(poses.read_value::<u64>(), Err(Error::OutOfBounds { .. })));
}

#[test]
fn named_forms() {
    let name = unique_name("ts_named").unwrap();
    let event = Event::create(&name, true).unwrap();
    let other = Event::open(&name).unwrap();
    assert!(other.is_auto_reset());
    other.set().unwrap();
    assert!(event.wait_timeout(LONG).unwrap());
    let sem_name = unique_name("ts_named").unwrap();
    let _sem = Semaphore::create(&sem_name, 3).unwrap();
    assert_eq!(Semaphore::open(&sem_name).unwrap().value().unwrap(), 3);
    let m_name = unique_name("ts_named").unwrap();
    let _m = Mutex::create(&m_name).unwrap();
    assert!(Mutex::open(&m_name).unwrap().try_lock().unwrap().is_some());
    let s_name = unique_name("ts_named").unwrap();
    let _s = SeqLock::create(&s_name, 24).unwrap();
    assert_eq!(SeqLock::open(&s_name).unwrap().record_size(), 24);
    assert!(matches!(
        Event::open(&unique_name("ts_missing").unwrap()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn bad_places_and_kinds() {
    let shm = segment(64);
    assert!(matches!(Event::in_segment(Arc::clone(&shm), 4, None), Err(Error::Misaligned { .. })));
    assert!(matches!(
        Event::in_segment(Arc::clone(&shm), 56, None),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        Mutex::in_segment(Arc::clone(&shm), usize::MAX - 7),
        Err(Error::OutOfBounds { .. })
    ));
    let _event = Event::in_segment(Arc::clone(&shm), 0, None).unwrap();
    let err = Semaphore::in_segment(Arc::clone(&shm), 0, 0).unwrap_err();
    assert!(err.to_string().contains("holds an Event, not a Semaphore"), "{err}");
    assert!(matches!(Mutex::in_segment(Arc::clone(&shm), 0), Err(Error::Incompatible { .. })));
    assert!(
        matches!(SeqLock::in_segment(Arc::clone(&shm), 16, None), Err(Error::Incompatible { .. })),
        "fresh seqlock needs a size"
    );
    assert!(matches!(
        SeqLock::in_segment(Arc::clone(&shm), 32, Some(100)),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        SeqLock::in_segment(Arc::clone(&shm), 32, Some(0)),
        Err(Error::InvalidSize { .. })
    ));
    let ro = Arc::new(SharedMemory::options().read_only(true).open(shm.name()).unwrap());
    assert!(matches!(Event::in_segment(ro, 0, None), Err(Error::ReadOnly { .. })));
}

/// A pid that no process has: a child that has exited and been reaped.
#[cfg(unix)]
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[cfg(unix)]
#[test]
fn a_writer_that_died_mid_write_is_reported_then_replaced() {
    let shm = segment(4096);
    let lock = SeqLock::in_segment(Arc::clone(&shm), 0, Some(8)).unwrap();
    lock.write_value(&7u64).unwrap();
    // What a writer killed mid-write leaves: an odd sequence and its pid.
    let mut raw = SharedMemory::open(shm.name()).unwrap();
    raw.write_all_at(&3u32.to_ne_bytes(), 0).unwrap();
    raw.write_all_at(&dead_pid().to_ne_bytes(), 4).unwrap();
    let err = lock.read_value::<u64>().unwrap_err();
    assert!(
        matches!(err, Error::PeerDied { .. }) && err.to_string().contains("while writing"),
        "{err}"
    );
    lock.write_value(&9u64).unwrap(); // the next writer takes over
    assert_eq!(lock.read_value::<u64>().unwrap(), 9);
    assert!(lock.sequence().unwrap().is_multiple_of(2));
}

/// Issue: a writer stored its pid only after making the sequence odd, so a second
/// writer arriving in between saw the previous writer's pid (dead, here) and "took
/// over" a live write: two writes at once, one sequence step lost, a torn record
/// accepted. Every round starts from a record whose last writer died.
#[cfg(unix)]
#[test]
fn a_dead_previous_writer_never_lets_two_writes_overlap() {
    let shm = segment(4096);
    let lock = SeqLock::in_segment(Arc::clone(&shm), 0, Some(512)).unwrap();
    let mut raw = SharedMemory::open(shm.name()).unwrap();
    let dead = dead_pid();
    for round in 0..2_000u32 {
        raw.write_all_at(&dead.to_ne_bytes(), 4).unwrap();
        let before = lock.sequence().unwrap();
        let gate = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for byte in [0xAAu8, 0x55] {
                let (lock, gate) = (&lock, &gate);
                s.spawn(move || {
                    gate.wait();
                    lock.write(&[byte; 512]).unwrap();
                });
            }
        });
        assert_eq!(
            lock.sequence().unwrap(),
            before.wrapping_add(4),
            "round {round}: writes overlapped"
        );
        let mut record = [0u8; 512];
        lock.read(&mut record).unwrap();
        assert!(record.iter().all(|&b| b == record[0]), "round {round}: torn record");
    }
}

/// A sequence left odd by a writer that is alive but stopped (or a corrupted word)
/// makes timed reads and writes give up with `Busy`, on time, and changes nothing.
#[test]
fn seqlock_stuck_mid_write_gives_up_on_time() {
    let name = shmbridge::unique_name("ts_seq_stuck").unwrap();
    let lock = shmbridge::sync::SeqLock::create(&name, 8).unwrap();
    lock.write(b"12345678").unwrap();
    let mut raw = SharedMemory::open(&name).unwrap();
    raw.write_all_at(&3u32.to_ne_bytes(), 0).unwrap(); // odd: mid-write
    raw.write_all_at(&std::process::id().to_ne_bytes(), 4).unwrap(); // by a live writer
    let mut buf = [0u8; 8];
    for attempt in 0..2 {
        let start = std::time::Instant::now();
        let err = if attempt == 0 {
            lock.read_timeout(&mut buf, Duration::from_millis(100)).unwrap_err()
        } else {
            let deadline = std::time::Instant::now() + Duration::from_millis(100);
            lock.write_deadline(b"abcdefgh", Some(deadline)).unwrap_err()
        };
        assert!(matches!(err, Error::Busy { .. }), "{err:?}");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
    raw.write_all_at(&4u32.to_ne_bytes(), 0).unwrap();
    lock.read(&mut buf).unwrap();
    assert_eq!(&buf, b"12345678", "the timed-out write changed nothing");
}

/// Eight threads wait on one primitive that never becomes available, each with
/// its own deadline: every one returns by its deadline (plus a margin for a loaded
/// machine), whatever the others do.
#[test]
fn every_waiter_keeps_its_own_deadline() {
    fn race(what: &str, wait: &(dyn Fn(Duration) -> bool + Sync)) {
        std::thread::scope(|s| {
            for i in 0..8u64 {
                s.spawn(move || {
                    let timeout = Duration::from_millis(30 + 30 * i);
                    let start = Instant::now();
                    assert!(!wait(timeout), "{what}: waiter {i} got what never comes");
                    let late = start.elapsed().saturating_sub(timeout);
                    assert!(late < Duration::from_secs(2), "{what}: waiter {i} was {late:?} late");
                });
            }
        });
    }
    let event = Event::create(&unique_name("ts_race_ev").unwrap(), false).unwrap();
    race("event", &|t| event.wait_timeout(t).unwrap());
    let sem = Semaphore::create(&unique_name("ts_race_sem").unwrap(), 0).unwrap();
    race("semaphore", &|t| sem.acquire_timeout(t).unwrap());
    let mutex = Mutex::create(&unique_name("ts_race_mx").unwrap()).unwrap();
    let guard = mutex.lock().unwrap().unwrap_or_else(|d| d.into_guard());
    race("mutex", &|t| mutex.lock_timeout(t).unwrap().is_some());
    drop(guard);
    let seq = SeqLock::create(&unique_name("ts_race_seq").unwrap(), 8).unwrap();
    let mut raw = SharedMemory::open(seq_name(&seq)).unwrap();
    raw.write_all_at(&1u32.to_ne_bytes(), 0).unwrap(); // mid-write...
    raw.write_all_at(&std::process::id().to_ne_bytes(), 4).unwrap(); // ...by a live writer
    race("seqlock", &|t| seq.read_timeout(&mut [0u8; 8], t).is_ok());
}

fn seq_name(lock: &SeqLock) -> &str {
    lock.segment().name()
}
