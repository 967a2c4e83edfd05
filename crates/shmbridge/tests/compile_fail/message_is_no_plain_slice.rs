//! A received message's room can be written by anything that ignores the
//! channel's protocol (another handle to the segment, in this process too), so a
//! message is no `&[u8]` in safe code.

use shmbridge::channel::Channel;

fn main() {
    let channel = Channel::create(&shmbridge::unique_name("cf_message").unwrap(), 4096).unwrap();
    let (tx, rx) = (channel.sender().unwrap(), channel.receiver().unwrap());
    tx.send(b"hello").unwrap();
    let message = rx.recv().unwrap();
    let _: &[u8] = &message;
    let _ = message.len() + message[0] as usize;
}
