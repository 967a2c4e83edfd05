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
    let mut rx = Channel::open(ch.name()).unwrap().receiver().unwrap();
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
            assert_eq!(&*got, &message(i, len)[..len], "message {i}");
        }
        assert_eq!(rx.recv().unwrap_err(), ChannelError::Closed);
    });
}

#[test]
fn back_pressure_never_overwrites() {
    let ch = channel(256);
    let tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
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
        assert_eq!(&*rx.try_recv().unwrap(), &i.to_le_bytes());
    }
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    assert_eq!(rx.recv_timeout(Duration::from_millis(20)).unwrap_err(), ChannelError::Timeout);
}

#[test]
fn loans_write_in_place() {
    let ch = channel(1024);
    let tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    {
        let mut loan = tx.loan(6).unwrap();
        loan.copy_from_slice(b"in pla");
        // dropped without publish: nothing is sent
    }
    assert_eq!(rx.try_recv().unwrap_err(), ChannelError::Empty);
    let mut loan = tx.loan(8).unwrap();
    loan.copy_from_slice(b"in place");
    loan.publish();
    let msg = rx.recv().unwrap();
    assert_eq!(&*msg, b"in place");
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
    let mut rx = ch.receiver().unwrap();
    tx.send(b"last words").unwrap();
    tx.close();
    assert_eq!(&*rx.recv().unwrap(), b"last words", "delivered before the close");
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
    let mut rx = ch.receiver().unwrap();
    tx.send(b"fine").unwrap();
    tx.send(b"to be corrupted").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"fine");
    // Something else overwrites the next record's length (the ring starts at 192).
    let mut raw = shmbridge::SharedMemory::open(ch.name()).unwrap();
    raw.write_all_at(&100_000u32.to_ne_bytes(), 192 + 16).unwrap();
    assert_eq!(rx.recv().unwrap_err(), ChannelError::Corrupt { at: 16 });
}
