//! What safe code borrows from a message (its bytes in place) cannot outlive the
//! message, whose drop gives its room back to the sender.

use shmbridge::channel::Channel;

fn main() {
    let channel = Channel::create(&shmbridge::unique_name("cf_release").unwrap(), 4096).unwrap();
    let (tx, rx) = (channel.sender().unwrap(), channel.receiver().unwrap());
    tx.send(b"hello").unwrap();
    let message = rx.recv().unwrap();
    let bytes = message.bytes();
    drop(message);
    let _ = bytes.get(0);
}
