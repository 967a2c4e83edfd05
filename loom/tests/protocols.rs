//! loom models of shmbridge's lock-free protocols. loom cannot check atomics that
//! live in a mapped segment, so each model repeats, operation for operation and
//! ordering for ordering, what `crates/shmbridge/src/sync/seqlock.rs` and
//! `crates/shmbridge/src/channel.rs` do, on loom's atomics, and loom explores every
//! interleaving and every weak-memory outcome those orderings allow.
//!
//! Run with `./dev loom` (`RUSTFLAGS="--cfg loom" cargo test -p shmbridge-loom --release`).

#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use loom::thread;

/// seqlock.rs: a writer moves `sequence` even -> odd (CAS, Acquire), fences
/// (Release), stores the record's words (Relaxed), stores odd + 1 (Release). A
/// reader loads `sequence` (Acquire), skips odd, loads the words (Relaxed), fences
/// (Acquire), and keeps the copy only if `sequence` is unchanged.
struct SeqLock {
    sequence: AtomicU32,
    words: [AtomicU64; 2],
}

impl SeqLock {
    fn write(&self, value: u64) {
        let s = loop {
            let s = self.sequence.load(Ordering::Acquire);
            if s.is_multiple_of(2)
                && self
                    .sequence
                    .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break s + 1;
            }
            thread::yield_now();
        };
        fence(Ordering::Release);
        for word in &self.words {
            word.store(value, Ordering::Relaxed);
        }
        self.sequence.store(s + 1, Ordering::Release);
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
        let lock = Arc::new(SeqLock {
            sequence: AtomicU32::new(0),
            words: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let writer = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                lock.write(1);
                lock.write(2);
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
    loom::model(|| {
        let lock = Arc::new(SeqLock {
            sequence: AtomicU32::new(0),
            words: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let other = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.write(7))
        };
        lock.write(9);
        other.join().unwrap();
        let [a, b] = lock.try_read().expect("stable after both writes");
        assert_eq!(a, b);
        assert_eq!(lock.sequence.load(Ordering::Relaxed), 4);
    });
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
