//! loom models of shmbridge's lock-free protocols. loom cannot check atomics that
//! live in a mapped segment, so each model repeats, operation for operation and
//! ordering for ordering, what `crates/shmbridge/src/sync/seqlock.rs` and
//! `crates/shmbridge/src/channel/` do, on loom's atomics, and loom explores every
//! interleaving and every weak-memory outcome those orderings allow.
//!
//! Run with `./dev loom` (`RUSTFLAGS="--cfg loom" cargo test -p shmbridge-loom --release`).

#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use loom::thread;

/// seqlock.rs: a writer takes `writer` (CAS from 0, or from a dead writer's pid,
/// AcqRel), moves `sequence` to odd (Relaxed store; odd already if a dead writer
/// left it so), fences (Release), stores the record's words (Relaxed), stores the
/// next even value (Release), then frees `writer` (Release). A reader loads
/// `sequence` (Acquire), skips odd, loads the words (Relaxed), fences (Acquire),
/// and keeps the copy only if `sequence` is unchanged.
struct SeqLock {
    sequence: AtomicU32,
    writer: AtomicU32,
    words: [AtomicU64; 2],
}

/// The pid of a writer that died, as the liveness check would report it.
const DEAD: u32 = 99;

impl SeqLock {
    fn new(writer: u32) -> Self {
        Self {
            sequence: AtomicU32::new(0),
            writer: AtomicU32::new(writer),
            words: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn write(&self, me: u32, value: u64) {
        loop {
            let w = self.writer.load(Ordering::Acquire);
            let free = w == 0 || w == DEAD;
            if free
                && self.writer.compare_exchange(w, me, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                break;
            }
            thread::yield_now();
        }
        let s = self.sequence.load(Ordering::Relaxed);
        let start = if s.is_multiple_of(2) { s + 1 } else { s };
        self.sequence.store(start, Ordering::Relaxed);
        fence(Ordering::Release);
        for word in &self.words {
            word.store(value, Ordering::Relaxed);
        }
        self.sequence.store(start + 1, Ordering::Release);
        self.writer.store(0, Ordering::Release);
    }

    fn try_read(&self) -> Option<[u64; 2]> {
        let before = self.sequence.load(Ordering::Acquire);
        if !before.is_multiple_of(2) {
            return None;
        }
        let copy = [self.words[0].load(Ordering::Relaxed), self.words[1].load(Ordering::Relaxed)];
        fence(Ordering::Acquire);
        (self.sequence.load(Ordering::Relaxed) == before).then_some(copy)
    }
}

#[test]
fn seqlock_reader_never_returns_a_torn_record() {
    loom::model(|| {
        let lock = Arc::new(SeqLock::new(0));
        let writer = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                lock.write(1, 1);
                lock.write(1, 2);
            })
        };
        for _ in 0..2 {
            if let Some([a, b]) = lock.try_read() {
                assert_eq!(a, b, "a torn snapshot");
            }
        }
        writer.join().unwrap();
        assert_eq!(lock.try_read(), Some([2, 2]));
    });
}

#[test]
fn seqlock_writers_exclude_each_other() {
    // Starting from a record whose last writer died (its pid still in `writer`):
    // only one of two writers may take it over, so no step of the sequence is lost
    // and the record is one write's, whole.
    for last_writer in [0, DEAD] {
        loom::model(move || {
            let lock = Arc::new(SeqLock::new(last_writer));
            let other = {
                let lock = Arc::clone(&lock);
                thread::spawn(move || lock.write(2, 7))
            };
            lock.write(1, 9);
            other.join().unwrap();
            let [a, b] = lock.try_read().expect("stable after both writes");
            assert_eq!(a, b);
            assert_eq!(lock.sequence.load(Ordering::Relaxed), 4);
        });
    }
}

/// channel.rs, reduced to fixed-size records in a ring of SLOTS: the producer
/// reads `tail` (Acquire) to see room, writes the slot, stores `head` (Release);
/// the consumer reads `head` (Acquire), reads the slot, advances `tail` (Release).
const SLOTS: u64 = 2;

struct Ring {
    head: AtomicU64,
    tail: AtomicU64,
    slots: [AtomicU64; SLOTS as usize],
}

impl Ring {
    fn try_send(&self, value: u64) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head - tail == SLOTS {
            return false; // full: wait, never overwrite
        }
        self.slots[(head % SLOTS) as usize].store(value, Ordering::Relaxed);
        self.head.store(head + 1, Ordering::Release);
        true
    }

    fn try_recv(&self) -> Option<u64> {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let value = self.slots[(tail % SLOTS) as usize].load(Ordering::Relaxed);
        self.tail.store(tail + 1, Ordering::Release);
        Some(value)
    }
}

#[test]
fn ring_delivers_every_message_once_in_order() {
    loom::model(|| {
        let ring = Arc::new(Ring {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            slots: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        const MESSAGES: u64 = 3; // more than the ring holds: wraps and back-pressure
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for value in 1..=MESSAGES {
                    while !ring.try_send(value) {
                        thread::yield_now();
                    }
                }
            })
        };
        let mut expected = 1;
        while expected <= MESSAGES {
            match ring.try_recv() {
                Some(value) => {
                    assert_eq!(value, expected, "lost, duplicated or reordered");
                    expected += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(ring.try_recv(), None);
    });
}
