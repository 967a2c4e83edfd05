//! The plain slice of a message, and giving back a room by its key (stream
//! positions are easy to guess: the first message is at 0), need `unsafe`: both
//! can leave a reference to bytes the sender writes next.

use shmbridge::channel::Channel;

fn main() {
    let channel = Channel::create(&shmbridge::unique_name("cf_raw").unwrap(), 4096).unwrap();
    let (tx, rx) = (channel.sender().unwrap(), channel.receiver().unwrap());
    tx.send(b"hello").unwrap();
    let message = rx.recv().unwrap();
    let _ = message.as_slice();
    rx.release_raw(0);
    tx.unpin(0);
    let mut loan = tx.loan(8).unwrap();
    let _ = loan.as_mut_slice();
}
