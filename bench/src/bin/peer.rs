//! The Rust end of the bench's cross-process measurements, driven by
//! `bench/shmbench` (see `./dev bench`). Every object it uses (events, channels)
//! was created by the driver; this program opens them by name.
//!
//! Round trips (NAME_ping / NAME_pong are the two directions):
//! - `event_echo NAME COUNT SPIN`: answers COUNT sets of NAME_ping by setting NAME_pong
//!   (SPIN: the waiter's spin limit in checks, or `default`);
//! - `channel_echo NAME COUNT`: answers COUNT messages on NAME_ping on NAME_pong;
//! - `spin_echo NAME COUNT`: the floor of every spinning round trip, no shmbridge
//!   primitive: answers COUNT bumps of a word in segment NAME by bumping it again,
//!   spinning on it (and sleeping between blocks, so as not to burn a CPU that other
//!   contenders need);
//! - `event_ping NAME GO BLOCKS COUNT WARMUP SPIN`, `channel_ping NAME GO BLOCKS COUNT
//!   WARMUP SIZE` and `spin_ping NAME GO BLOCKS COUNT WARMUP`: the measuring end of a
//!   Rust <-> Rust pair; for each of BLOCKS sets of event GO, WARMUP unmeasured round
//!   trips then COUNT measured ones, printed as one JSON line `{"ns": [...]}`.
//!
//! Throughput (the driver times it; GO and ACK are auto-reset events):
//! - `produce NAME GO BLOCKS COUNT SIZE BATCH`: for each set of GO, sends COUNT
//!   messages of SIZE bytes, BATCH at a time (`send_batch`);
//! - `consume NAME ACK BLOCKS COUNT HOW`: receives BLOCKS x COUNT messages (a batch at a
//!   time), setting ACK after each COUNT; HOW is `wait` (a blocking receive when the
//!   ring is empty, as an application would) or `poll` (drains again at once, sleeping
//!   only after a millisecond without messages: the channel's own cost per message,
//!   with no wake-ups in it);
//! - `frames NAME GO BLOCKS COUNT SIZE`: for each set of GO, sends COUNT frames of
//!   SIZE bytes, each copied into the ring in place (a loan) from a buffer of its own.
//!
//! Idle: `idle_sender NAME QUIT`: holds the sending end of channel NAME, sending
//! nothing, until event QUIT is set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmbridge::SharedMemory;
use shmbridge::channel::{Channel, ChannelError};
use shmbridge::sync::Event;
use shmbridge_bench::{Args, BoxError, PATIENCE, json_list, nanos_since, print_object};

fn main() -> Result<(), BoxError> {
    let args = Args::from_env();
    match args.text(0)? {
        "event_echo" => event_echo(args.text(1)?, args.get(2)?, args.text(3)?),
        "channel_echo" => channel_echo(args.text(1)?, args.get(2)?),
        "event_ping" => {
            let blocks = Blocks::new(&args)?;
            let (ping, pong) =
                (open_event(args.text(1)?, "ping")?, open_event(args.text(1)?, "pong")?);
            set_spin(&pong, args.text(6)?)?;
            blocks.run(|| {
                ping.set()?;
                waited(pong.wait_timeout(PATIENCE), "pong")
            })
        }
        "channel_ping" => {
            let blocks = Blocks::new(&args)?;
            let tx = Channel::open(&format!("{}_ping", args.text(1)?))?.sender()?;
            let rx = Channel::open(&format!("{}_pong", args.text(1)?))?.receiver()?;
            let message = vec![7u8; args.get(6)?];
            blocks.run(|| {
                tx.send(&message)?;
                rx.recv_timeout(PATIENCE)?;
                Ok(())
            })
        }
        "spin_echo" => {
            let segment = SharedMemory::open(args.text(1)?)?;
            let word = shared_word(&segment)?;
            for i in 0..args.get::<u64>(2)? {
                await_value(word, 2 * i + 1);
                word.store(2 * i + 2, Ordering::Release);
            }
            Ok(())
        }
        "spin_ping" => {
            let blocks = Blocks::new(&args)?;
            let segment = SharedMemory::open(args.text(1)?)?;
            let word = shared_word(&segment)?;
            blocks.run(|| {
                let next = word.load(Ordering::Acquire) + 1;
                word.store(next, Ordering::Release);
                await_value(word, next + 1);
                Ok(())
            })
        }
        "produce" => produce(&args),
        "consume" => consume(&args),
        "frames" => frames(&args),
        "idle_sender" => {
            let _tx = Channel::open(args.text(1)?)?.sender()?;
            let quit = Event::open(args.text(2)?)?;
            quit.set_spin_limit(Duration::ZERO);
            while !quit.wait_timeout(PATIENCE)? {}
            Ok(())
        }
        other => Err(format!("unknown mode {other:?}").into()),
    }
}

fn open_event(name: &str, end: &str) -> shmbridge::Result<Event> {
    Event::open(&format!("{name}_{end}"))
}

fn waited(set: shmbridge::Result<bool>, what: &str) -> Result<(), BoxError> {
    if set? { Ok(()) } else { Err(format!("no {what} within {PATIENCE:?}").into()) }
}

/// Applies a spin limit given on the command line in microseconds (`default`
/// leaves the default).
fn set_spin(event: &Event, spin: &str) -> Result<(), BoxError> {
    if spin != "default" {
        event.set_spin_limit(Duration::from_micros(spin.parse()?));
    }
    Ok(())
}

/// The first 8 bytes of `segment`, as a word two processes spin on.
fn shared_word(segment: &SharedMemory) -> Result<&AtomicU64, BoxError> {
    if segment.len() < 8 || segment.as_ptr().align_offset(8) != 0 {
        return Err("the spin segment is too small or misaligned".into());
    }
    // SAFETY: the mapping is at least 8 bytes, 8-aligned (both checked above) and
    // lives as long as `segment`, which the returned borrow cannot outlive; the two
    // processes touch these bytes only atomically.
    Ok(unsafe { &*segment.as_ptr().cast::<AtomicU64>() })
}

/// Spins until `word` holds `value`; after a millisecond without it (the other
/// end is between blocks), checks every 50 us instead, sleeping in between.
fn await_value(word: &AtomicU64, value: u64) {
    let start = Instant::now();
    let mut checks = 0u32;
    while word.load(Ordering::Acquire) != value {
        checks = checks.wrapping_add(1);
        if checks.is_multiple_of(1024) && start.elapsed() > Duration::from_millis(1) {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            std::hint::spin_loop();
        }
    }
}

fn event_echo(name: &str, count: u64, spin: &str) -> Result<(), BoxError> {
    let (ping, pong) = (open_event(name, "ping")?, open_event(name, "pong")?);
    set_spin(&ping, spin)?;
    for _ in 0..count {
        waited(ping.wait_timeout(PATIENCE), "ping")?;
        pong.set()?;
    }
    Ok(())
}

fn channel_echo(name: &str, count: u64) -> Result<(), BoxError> {
    let rx = Channel::open(&format!("{name}_ping"))?.receiver()?;
    let tx = Channel::open(&format!("{name}_pong"))?.sender()?;
    for _ in 0..count {
        let message = rx.recv_timeout(PATIENCE)?;
        let mut small = [0u8; 256];
        if message.len() <= small.len() {
            let copy = &mut small[..message.len()];
            message.copy_to(copy)?; // a guarded copy: the ring is shared memory
            tx.send(copy)?;
        } else {
            tx.send(&message.to_vec()?)?;
        }
    }
    Ok(())
}

/// The block structure of a measuring end: wait for GO, warm up, measure, print.
struct Blocks {
    go: Event,
    blocks: usize,
    count: usize,
    warmup: usize,
}

impl Blocks {
    /// From `MODE NAME GO BLOCKS COUNT WARMUP ...`.
    fn new(args: &Args) -> Result<Self, BoxError> {
        let go = Event::open(args.text(2)?)?;
        go.set_spin_limit(Duration::ZERO); // between blocks, sleep: other contenders are running
        Ok(Self { go, blocks: args.get(3)?, count: args.get(4)?, warmup: args.get(5)? })
    }

    fn run(&self, mut round_trip: impl FnMut() -> Result<(), BoxError>) -> Result<(), BoxError> {
        let mut times = Vec::with_capacity(self.count);
        for _ in 0..self.blocks {
            waited(self.go.wait_timeout(PATIENCE), "go")?;
            for _ in 0..self.warmup {
                round_trip()?;
            }
            times.clear();
            for _ in 0..self.count {
                let start = Instant::now();
                round_trip()?;
                times.push(nanos_since(start));
            }
            print_object(&[json_list("ns", &times)]);
        }
        Ok(())
    }
}

fn produce(args: &Args) -> Result<(), BoxError> {
    let tx = Channel::open(args.text(1)?)?.sender()?;
    let go = Event::open(args.text(2)?)?;
    go.set_spin_limit(Duration::ZERO);
    let (blocks, count, size, batch): (u64, usize, usize, usize) =
        (args.get(3)?, args.get(4)?, args.get(5)?, args.get(6)?);
    let message = vec![7u8; size];
    for _ in 0..blocks {
        waited(go.wait_timeout(PATIENCE), "go")?;
        let mut left = count;
        while left > 0 {
            let n = left.min(batch);
            let deadline = Instant::now().checked_add(PATIENCE);
            left -= tx.send_batch(std::iter::repeat_n(&message[..], n), deadline)?;
        }
    }
    Ok(())
}

fn consume(args: &Args) -> Result<(), BoxError> {
    let rx = Channel::open(args.text(1)?)?.receiver()?;
    let ack = Event::open(args.text(2)?)?;
    let (blocks, count): (u64, usize) = (args.get(3)?, args.get(4)?);
    let poll = match args.text(5)? {
        "poll" => true,
        "wait" => false,
        other => return Err(format!("HOW is wait or poll, not {other:?}").into()),
    };
    for _ in 0..blocks {
        let mut left = count;
        let mut idle_since: Option<Instant> = None;
        while left > 0 {
            match rx.drain_with(left, |message| message.len()) {
                Ok((taken, _)) => {
                    left -= taken;
                    idle_since = None;
                }
                Err(ChannelError::Empty) if poll => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(1) {
                        std::thread::sleep(Duration::from_micros(50)); // between blocks
                    } else {
                        std::hint::spin_loop();
                    }
                }
                Err(ChannelError::Empty) => {
                    drop(rx.recv_timeout(PATIENCE)?); // wait for the next (and release it)
                    left -= 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        ack.set()?;
    }
    Ok(())
}

fn frames(args: &Args) -> Result<(), BoxError> {
    let tx = Channel::open(args.text(1)?)?.sender()?;
    let go = Event::open(args.text(2)?)?;
    go.set_spin_limit(Duration::ZERO);
    let (blocks, count, size): (u64, u64, usize) = (args.get(3)?, args.get(4)?, args.get(5)?);
    let mut frame = vec![7u8; size];
    for _ in 0..blocks {
        waited(go.wait_timeout(PATIENCE), "go")?;
        for i in 0..count {
            frame[..8].copy_from_slice(&i.to_le_bytes());
            let loan = tx.loan_deadline(size, Instant::now().checked_add(PATIENCE))?;
            loan.bytes().copy_from_slice(&frame)?; // the one copy: into the ring, in place
            loan.publish()?;
        }
    }
    Ok(())
}
