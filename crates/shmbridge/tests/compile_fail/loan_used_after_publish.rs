//! Once published, a loan's room belongs to the receiver: the loan is gone, and
//! nothing borrowed from it survives the publish.

use shmbridge::channel::Channel;

fn main() {
    let channel = Channel::create(&shmbridge::unique_name("cf_loan").unwrap(), 4096).unwrap();
    let tx = channel.sender().unwrap();

    let loan = tx.loan(8).unwrap();
    loan.publish().unwrap();
    loan.bytes().set(0, 1).unwrap();

    let loan = tx.loan(8).unwrap();
    let room = loan.bytes();
    loan.publish().unwrap();
    room.set(0, 1).unwrap();
}
