//! Fuzzes the channel's receiving end against a hostile peer: rings whose records
//! and positions were overwritten with random values. Whatever the segment holds,
//! receiving must never panic or fault, and every message it hands out must lie
//! wholly inside the ring.
//!
//! `cargo run --release -p shmbridge-fuzz --bin fuzz_ring -- [CASES] [SEED]`
//! (default 1 000 000 cases). Each case starts from a valid ring (written by a real
//! sender) or from random bytes, then overwrites record headers, payload bytes and
//! the shared head/tail words, claims a receiver and drains it.

use shmbridge::SharedMemory;
use shmbridge::channel::{Channel, ChannelError};

/// Where the ring and the positions live (docs/FORMAT.md).
const RING: usize = 192;
const HEAD: u64 = 64;
const TAIL: u64 = 128;
const PRODUCER_PID: u64 = 80;
const PRODUCER_CLOSED: u64 = 84;
const CONSUMER_PID: u64 = 32;
const CONSUMER_CLOSED: u64 = 36;

/// xorshift64*: fast, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Case {
    channel: Channel,
    raw: SharedMemory,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cases: u64 = args.next().map_or(1_000_000, |n| n.parse().expect("CASES is a number"));
    let seed: u64 =
        args.next().map_or(0x5eed_1234_abcd_ef01, |n| n.parse().expect("SEED is a number"));
    let mut rng = Rng(seed | 1);
    let pool: Vec<Case> = [64usize, 72, 128, 256, 1000, 4096, 65536]
        .iter()
        .map(|&capacity| {
            let name = shmbridge::unique_name("fuzz_ring").expect("a name");
            let channel = Channel::create(&name, capacity).expect("a channel");
            let raw = SharedMemory::open(&name).expect("the raw segment");
            Case { channel, raw }
        })
        .collect();
    let (mut accepted, mut corrupt) = (0u64, 0u64);
    for case in 0..cases {
        let Case { channel, raw } = &pool[rng.below(pool.len() as u64) as usize];
        match run(channel, raw, &mut rng) {
            Ok((n, c)) => {
                accepted += n;
                corrupt += c;
            }
            Err(why) => {
                eprintln!("fuzz_ring: case {case} (seed {seed}): {why}");
                std::process::exit(1);
            }
        }
    }
    println!(
        "fuzz_ring: {cases} cases passed, 0 failed ({accepted} messages accepted, all inside \
         the ring; {corrupt} rings reported corrupt)"
    );
}

/// One case: make a ring, damage it, drain it. Returns (messages accepted, whether
/// the ring was reported corrupt).
fn run(channel: &Channel, raw: &SharedMemory, rng: &mut Rng) -> Result<(u64, u64), String> {
    let capacity = channel.capacity();
    let mut raw_w = SharedMemory::open(raw.name()).map_err(|e| e.to_string())?;
    // From a clean, valid state (the last case may have left anything).
    for (at, len) in [
        (HEAD, 8),
        (TAIL, 8),
        (PRODUCER_PID, 4),
        (PRODUCER_CLOSED, 4),
        (CONSUMER_PID, 4),
        (CONSUMER_CLOSED, 4),
    ] {
        raw_w.write_all_at(&[0u8; 8][..len], at).unwrap();
    }
    // A valid start: a sender writes some messages (wrapping at random places).
    {
        let tx = channel.sender().map_err(|e| e.to_string())?;
        for _ in 0..rng.below(8) {
            let len = rng.below(channel.max_message() as u64 + 1) as usize;
            let _ = tx.try_send(&vec![0xab; len]);
        }
    }
    let valid_head = raw.read_value::<u64>(HEAD as usize).unwrap();
    if rng.below(4) == 0 {
        let noise: Vec<u8> = (0..capacity).map(|_| rng.next() as u8).collect();
        raw_w.write_all_at(&noise, RING as u64).unwrap();
    }
    for _ in 0..rng.below(4) {
        // A record header's length or flags, or a payload byte.
        let at = rng.below(capacity as u64 / 4) * 4;
        let value: u32 = match rng.below(4) {
            0 => u32::MAX,
            1 => rng.below(capacity as u64 * 2) as u32,
            2 => rng.next() as u32,
            _ => rng.below(4) as u32,
        };
        raw_w.write_all_at(&value.to_ne_bytes(), RING as u64 + at).unwrap();
    }
    let position = |rng: &mut Rng| match rng.below(4) {
        0 => rng.next(),
        1 => valid_head.wrapping_add(rng.below(3 * capacity as u64)).wrapping_sub(capacity as u64),
        2 => valid_head & !7,
        _ => valid_head.saturating_sub(rng.below(capacity as u64 + 1)) & !7,
    };
    let (head, tail) = (position(rng), position(rng));
    if rng.below(2) == 0 {
        raw_w.write_all_at(&head.to_ne_bytes(), HEAD).unwrap();
    }
    if rng.below(2) == 0 {
        raw_w.write_all_at(&tail.to_ne_bytes(), TAIL).unwrap();
    }
    // The producer is "alive" (this process) and closed, so draining ends.
    raw_w.write_all_at(&std::process::id().to_ne_bytes(), PRODUCER_PID).unwrap();
    raw_w.write_all_at(&1u32.to_ne_bytes(), PRODUCER_CLOSED).unwrap();

    let ring = raw.as_ptr() as usize + RING..raw.as_ptr() as usize + RING + capacity;
    let rx = match channel.receiver() {
        Ok(rx) => rx,
        Err(shmbridge::Error::BadHeader { .. }) => return Ok((0, 1)),
        Err(e) => return Err(format!("claim: {e}")),
    };
    // The receiver maps the segment at its own address: translate.
    let base = rx.channel().segment().as_ptr() as usize;
    let (mut accepted, mut corrupt) = (0, 0);
    for _ in 0..(capacity / 8 + 2) {
        match rx.try_recv() {
            Ok(msg) => {
                let start = msg.bytes().as_ptr() as usize - base + raw.as_ptr() as usize;
                if !(ring.start <= start && start + msg.len() <= ring.end) {
                    return Err(format!(
                        "a message of {} bytes at ring offset {} lies outside the {capacity}-byte ring",
                        msg.len(),
                        start as i64 - ring.start as i64
                    ));
                }
                accepted += 1;
            }
            Err(ChannelError::Corrupt { .. }) => {
                corrupt = 1;
                break;
            }
            Err(ChannelError::Closed | ChannelError::Empty) => break,
            Err(e) => return Err(format!("unexpected {e:?}")),
        }
    }
    Ok((accepted, corrupt))
}
