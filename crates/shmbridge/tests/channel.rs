//! The channel within one process: boundaries, wrap-around, back-pressure,
//! loans, timeouts, closing, roles. Cross-process stress and a killed producer
//! are in tests/cross_process.rs.

use std::time::Duration;

use shmbridge::channel::{Channel, ChannelError};
use shmbridge::{Error, unique_name};

fn channel(capacity: usize) -> Channel {
    Channel::create(&unique_name("tc_chan").unwrap(), capacity).unwrap()
}

/// A message that says which one it is: its index, then bytes derived from it.
fn message(i: u64, len: usize) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..len.saturating_sub(8)).map(|j| (i as usize + j) as u8));
    m.truncate(len.max(8));
    m
}

#[test]
fn boundaries_and_order_survive_many_wraps() {
    let ch = channel(4096);
    let tx = ch.sender().unwrap();
    let rx = Channel::open(ch.name()).unwrap().receiver().unwrap();
    let lens = [0usize, 1, 7, 8, 9, 100, 500, 1000, ch.max_message()];
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..20_000u64 {
                let len = lens[i as usize % lens.len()];
                tx.send(&message(i, len)[..len]).unwrap();
            }
            drop(tx);
        });
        for i in 0..20_000u64 {
            let len = lens[i as usize % lens.len()];
            let got = rx.recv().unwrap();
            assert_eq!(got.to_vec().unwrap(), &message(i, len)[..len], "message {i}");
        }
        assert_eq!(rx.recv().unwrap_err(), ChannelError::Closed);
    });
}

#[test]
fn back_pressure_never_overwrites() {
    let ch = channel(256);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    let mut sent = 0u64;
    while tx.try_send(&sent.to_le_bytes()).is_ok() {
        sent += 1;
    }
    assert_eq!(tx.try_send(b"x").unwrap_err(), ChannelError::Full);
    assert_eq!(
        tx.send_timeout(b"x", Duration::from_millis(20)).unwrap_err(),
        ChannelError::Timeout
    );
    assert_eq!(sent, 16, "256 bytes of 16-byte records");
    for i in 0..sent {
        assert_eq!(rx.try_recv().unwrap().to_vec().unwrap(), &i.to_le_bytes());
    }
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    assert_eq!(rx.recv_timeout(Duration::from_millis(20)).unwrap_err(), ChannelError::Timeout);
}

#[test]
fn loans_write_in_place() {
    let ch = channel(1024);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    {
        let loan = tx.loan(6).unwrap();
        loan.bytes().copy_from_slice(b"in pla").unwrap();
        // dropped without publish: nothing is sent
    }
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    let loan = tx.loan(8).unwrap();
    assert_eq!((loan.len(), loan.is_empty()), (8, false));
    loan.bytes().subslice(..3).unwrap().copy_from_slice(b"in ").unwrap();
    let rest = b"place";
    (0..5).for_each(|i| loan.bytes().set(3 + i, rest[i]).unwrap()); // a byte at a time
    loan.publish().unwrap();
    let msg = rx.recv().unwrap();
    assert_eq!((msg.len(), msg.is_empty()), (8, false));
    assert_eq!(msg.to_vec().unwrap(), b"in place");
    assert_eq!(msg.bytes().iter().collect::<Vec<u8>>(), b"in place", "in place, zero-copy");
    let mut copy = [0u8; 8];
    msg.copy_to(&mut copy).unwrap();
    assert_eq!(&copy, b"in place");
    assert!(matches!(msg.copy_to(&mut [0u8; 7]), Err(ChannelError::TooLarge { .. })));
    drop(msg);

    // The plain slices, for code that can vouch for every writer.
    let mut loan = tx.loan(4).unwrap();
    // SAFETY: this test holds the only handles to its channel; the receiver does
    // not read an unpublished loan, and nothing else writes the ring.
    unsafe { loan.as_mut_slice() }.copy_from_slice(b"raw!");
    loan.publish().unwrap();
    let msg = rx.recv().unwrap();
    // SAFETY: as above; the sender does not reuse a held message's room.
    assert_eq!(unsafe { msg.as_slice() }, b"raw!");
}

#[test]
fn too_large_is_a_clear_error() {
    let ch = channel(1024);
    let tx = ch.sender().unwrap();
    assert_eq!(ch.max_message(), 504);
    let err = tx.send(&[0; 505]).unwrap_err();
    assert_eq!(err, ChannelError::TooLarge { len: 505, max: 504 });
    assert!(err.to_string().contains("create a larger channel"));
    tx.send(&[0; 504]).unwrap();
}

#[test]
fn closing_either_end() {
    let ch = channel(1024);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    tx.send(b"last words").unwrap();
    tx.close();
    assert_eq!(rx.recv().unwrap().to_vec().unwrap(), b"last words", "delivered before the close");
    assert_eq!(rx.recv().unwrap_err(), ChannelError::Closed);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap_err(), ChannelError::Closed);
    drop(tx);

    let tx = ch.sender().unwrap(); // closed ends can be claimed again
    drop(rx);
    assert_eq!(tx.send(b"anyone?").unwrap_err(), ChannelError::Closed);
    let woken = std::thread::scope(|s| {
        let ch2 = channel(1024);
        let tx2 = ch2.sender().unwrap();
        let rx2 = ch2.receiver().unwrap();
        while tx2.try_send(b"fill").is_ok() {}
        let blocked = s.spawn(move || tx2.send(b"blocked"));
        rx2.close();
        blocked.join().unwrap()
    });
    assert_eq!(woken.unwrap_err(), ChannelError::Closed, "a blocked sender is woken by the close");
}

#[test]
fn one_end_of_each_kind() {
    let ch = channel(1024);
    let _tx = ch.sender().unwrap();
    let err = ch.sender().unwrap_err();
    assert!(
        matches!(err, Error::Incompatible { .. })
            && err.to_string().contains("one sender at a time"),
        "{err}"
    );
    let _rx = ch.receiver().unwrap();
    assert!(ch.receiver().is_err());
}

#[test]
fn bad_channels() {
    assert!(matches!(
        Channel::create(&unique_name("tc_small").unwrap(), 8),
        Err(Error::InvalidSize { .. })
    ));
    let raw = shmbridge::SharedMemory::create_unique("tc_raw", 4096).unwrap();
    assert!(matches!(Channel::open(raw.name()), Err(Error::BadHeader { .. })));
    assert!(matches!(
        Channel::open(&unique_name("tc_missing").unwrap()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_corrupted_ring_is_reported_not_read() {
    let ch = channel(1024);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    tx.send(b"fine").unwrap();
    tx.send(b"to be corrupted").unwrap();
    assert_eq!(rx.recv().unwrap().to_vec().unwrap(), b"fine");
    // Something else overwrites the next record's length (the ring starts at 192).
    let mut raw = shmbridge::SharedMemory::open(ch.name()).unwrap();
    raw.write_all_at(&100_000u32.to_ne_bytes(), 192 + 16).unwrap();
    assert_eq!(rx.recv().unwrap_err(), ChannelError::Corrupt { at: 16 });
}

/// Several threads share one sender: every message arrives exactly once, and each
/// thread's messages in the order it sent them (issue: with a `Sync` sender,
/// messages were lost).
#[test]
fn threads_sharing_a_sender_lose_nothing() {
    const THREADS: u64 = 4;
    const EACH: u64 = 50_000;
    let ch = channel(1 << 14);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let tx = &tx;
            s.spawn(move || {
                for i in 0..EACH {
                    tx.send(&[t.to_le_bytes(), i.to_le_bytes()].concat()).unwrap();
                }
            });
        }
        let mut next = [0u64; THREADS as usize];
        for _ in 0..THREADS * EACH {
            let msg = rx.recv_timeout(Duration::from_secs(30)).expect("a message");
            let msg = msg.to_vec().unwrap();
            let t = u64::from_le_bytes(msg[..8].try_into().unwrap()) as usize;
            let i = u64::from_le_bytes(msg[8..].try_into().unwrap());
            assert_eq!(i, next[t], "thread {t}'s message lost, duplicated or reordered");
            next[t] += 1;
        }
        assert_eq!(next, [EACH; THREADS as usize]);
    });
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty, "nothing extra");
}

/// `send_batch` publishes many messages at once, in order.
#[test]
fn batches_arrive_whole_and_in_order() {
    let ch = channel(4096);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    let messages: Vec<Vec<u8>> = (0..1000u64).map(|i| message(i, (i % 40) as usize)).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut sent = 0;
            while sent < messages.len() {
                sent += tx.send_batch(messages[sent..].iter().map(Vec::as_slice), None).unwrap();
            }
        });
        for (i, expected) in messages.iter().enumerate() {
            assert_eq!(rx.recv().unwrap().to_vec().unwrap(), *expected, "message {i}");
        }
    });
    let too_large = vec![0u8; ch.max_message() + 1];
    assert!(matches!(
        tx.send_batch([too_large.as_slice()], None),
        Err(ChannelError::TooLarge { .. })
    ));
}

/// Closing an end wakes every thread of the process waiting in it, promptly, with
/// `ClosedHere` (issue: `close()` hung while another thread was in `recv()`).
#[test]
fn close_wakes_every_waiting_thread() {
    let ch = channel(256);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    while tx.try_send(&[1; 40]).is_ok() {}
    let empty = channel(256);
    let rx_empty_end = empty.receiver().unwrap();
    let _keep = empty.sender().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..3 {
            let (done, tx) = (done_tx.clone(), &tx);
            s.spawn(move || done.send(("send", tx.send(&[2; 40]).unwrap_err())).unwrap());
        }
        for _ in 0..3 {
            let (done, rx) = (done_tx.clone(), &rx_empty_end);
            s.spawn(move || done.send(("recv", rx.recv().unwrap_err())).unwrap());
        }
        // Everyone is (about to be) asleep; close both ends from here.
        tx.close();
        rx_empty_end.close();
        for _ in 0..6 {
            let (what, err) = done_rx.recv_timeout(Duration::from_secs(10)).expect("woken");
            assert_eq!(err, ChannelError::ClosedHere, "{what}");
        }
    });
    assert_eq!(tx.send(b"x").unwrap_err(), ChannelError::ClosedHere);
    drop(rx);
}

/// A loan published after its sender was closed (by another thread) sends nothing
/// and says so (issue: it was lost silently).
#[test]
fn publish_after_close_is_refused() {
    let ch = channel(1024);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    std::thread::scope(|s| {
        let loan = tx.loan(4).unwrap();
        loan.bytes().copy_from_slice(b"late").unwrap();
        // close() does not wait for the loan: it runs on another thread meanwhile.
        s.spawn(|| tx.close()).join().unwrap();
        assert_eq!(loan.publish().unwrap_err(), ChannelError::ClosedHere);
    });
    assert_eq!(rx.recv().unwrap_err(), ChannelError::Closed, "nothing was delivered");
}

/// Messages may be held several at a time and released in any order; the ring's
/// room behind the oldest held one is not reused until it goes, and a new receiver
/// cannot be claimed while a closed one still holds messages (issue: reopening
/// delivered a held message twice and changed its bytes).
#[test]
fn held_messages_keep_their_bytes_and_are_never_redelivered() {
    let ch = channel(512);
    let tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    for i in 0..3u64 {
        tx.send(&message(i, 40)).unwrap();
    }
    let first = rx.recv().unwrap();
    let second = rx.recv().unwrap();
    let third = rx.recv().unwrap();
    drop(second); // out of order
    let mut sent = 0u64;
    while tx.try_send(&message(100 + sent, 40)).is_ok() {
        sent += 1;
    }
    assert!(sent >= 3, "the room after the held messages is usable ({sent})");
    assert_eq!(first.to_vec().unwrap(), message(0, 40));
    assert_eq!(third.to_vec().unwrap(), message(2, 40));
    rx.close();
    let err = ch.receiver().unwrap_err();
    assert!(err.to_string().contains("still holds"), "{err}");
    drop(first);
    drop(third);
    drop(rx);
    let rx = ch.receiver().expect("free once nothing is held");
    // The new receiver starts after what was delivered: no message comes twice.
    assert_eq!(rx.recv().unwrap().to_vec().unwrap(), message(100, 40));
}

/// Eight threads wait on one receiver, each with its own deadline: each returns by
/// its deadline (plus a margin for a loaded machine), whatever the others do.
#[test]
fn every_waiter_keeps_its_own_deadline() {
    let ch = channel(1024);
    let _tx = ch.sender().unwrap();
    let rx = ch.receiver().unwrap();
    std::thread::scope(|s| {
        for i in 0..8u64 {
            let rx = &rx;
            s.spawn(move || {
                let timeout = Duration::from_millis(50 + 40 * i);
                let start = std::time::Instant::now();
                assert_eq!(rx.recv_timeout(timeout).unwrap_err(), ChannelError::Timeout);
                let late = start.elapsed().saturating_sub(timeout);
                assert!(late < Duration::from_secs(2), "waiter {i} returned {late:?} late");
            });
        }
    });
}

/// Whatever is written over the record headers and positions, receiving never
/// reads outside the ring (issue: SIGSEGV with 16 and 256 MiB rings, foreign bytes
/// with smaller ones). The ring is nearly full and wrapped, and the oldest record
/// (near the ring's end) claims to be as long as a message may be, so it would run
/// past the ring. `fuzz/src/fuzz_ring.rs` tries a million damaged rings.
#[test]
fn corrupted_rings_of_every_size_are_reported_not_read() {
    for capacity in [1024usize, 1 << 16, 16 << 20, 256 << 20] {
        let m = capacity / 16 - 16;
        let ch = channel(capacity);
        let tx = ch.sender().unwrap();
        let rx = ch.receiver().unwrap();
        for i in 0..15u8 {
            tx.send(&vec![i; m]).unwrap();
        }
        for i in 0..14u8 {
            assert_eq!(rx.recv().unwrap().bytes().get(0), Some(i));
        }
        for i in 0..13u8 {
            tx.send(&vec![100 + i; m]).unwrap();
        }
        let mut raw = shmbridge::SharedMemory::open(ch.name()).unwrap();
        let place = 14 * (8 + m) as u64;
        for bad in [capacity / 2 - 8, capacity - place as usize, u32::MAX as usize - 1] {
            raw.write_all_at(&(bad as u32).to_ne_bytes(), 192 + place).unwrap();
            let err = rx.recv().unwrap_err();
            assert!(matches!(err, ChannelError::Corrupt { .. }), "{capacity}, {bad}: {err:?}");
        }
        raw.write_all_at(&u64::MAX.to_ne_bytes(), 64).unwrap();
        assert!(matches!(rx.recv().unwrap_err(), ChannelError::Corrupt { .. }));
        // And a consumer writing nonsense into `tail` cannot make the sender overwrite:
        // with the ring full, the sender must look at `tail` for room (it keeps the
        // last one it saw until then), and refuses what it finds.
        while tx.try_send(b"x").is_ok() {}
        let mut tail = [0u8; 8];
        raw.read_exact_at(&mut tail, 128).unwrap();
        raw.write_all_at(&(u64::MAX - 7).to_ne_bytes(), 128).unwrap();
        assert!(matches!(tx.send(b"x").unwrap_err(), ChannelError::Corrupt { .. }));
        // The bad value is not kept: with the word right again, the sender goes on.
        raw.write_all_at(&tail, 128).unwrap();
        assert_eq!(tx.try_send(b"x").unwrap_err(), ChannelError::Full);
    }
}

/// A receive racing with close() in another thread: either it gets the message and
/// the end stays claimed while the message is held, or it gets ClosedHere and the
/// message waits for the next receiver. Never both: a receive that passed its
/// check before close() used to take a message from an end close() had already
/// let go, and the next receiver got the same message again.
#[test]
fn a_receive_racing_close_never_delivers_twice() {
    for round in 0..2_000 {
        let tx_side = channel(4096);
        let tx = tx_side.sender().unwrap();
        tx.send(b"only").unwrap();
        let rx = Channel::open(tx_side.name()).unwrap().receiver().unwrap();
        let gate = std::sync::Barrier::new(2);
        let held = std::thread::scope(|s| {
            let taker = s.spawn(|| {
                gate.wait();
                rx.recv_raw(None).ok()
            });
            gate.wait();
            rx.close();
            taker.join().unwrap()
        });
        let next = Channel::open(tx_side.name()).unwrap().receiver();
        match (&held, next) {
            (Some(_), Ok(next)) => {
                let again = next.try_recv().map(|m| m.to_vec().unwrap());
                panic!("round {round}: a second receiver while a message is held: {again:?}");
            }
            (Some(_), Err(_)) => {}
            (None, Ok(next)) => {
                assert_eq!(next.try_recv().unwrap().to_vec().unwrap(), b"only", "round {round}");
            }
            (None, Err(e)) => panic!("round {round}: nothing held, yet {e}"),
        }
        if let Some(raw) = held {
            // SAFETY: the message's own key, released once; nothing views its room.
            unsafe { rx.release_raw(raw.position()) };
        }
    }
}
