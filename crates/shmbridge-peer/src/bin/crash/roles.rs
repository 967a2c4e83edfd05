//! The Rust participants of the crash campaign: this binary run again as
//! `crash role ARGS...`. Each prints what the driver needs on standard output, one
//! line at a time, flushed, and ends with a `summary key=value ...` line if it is
//! a survivor. Every wait has a deadline; a participant that gives up prints why
//! and exits with status 3 (a hang, for the driver).

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use shmbridge::SharedMemory;
use shmbridge::array::{ArraySegment, SharedArray};
use shmbridge::channel::{Channel, ChannelError};
use shmbridge::sync::{Event, Mutex, Semaphore, SeqLock};

/// How long any single wait of a participant may last.
const WAIT: Duration = Duration::from_secs(20);

fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The next line from the driver (`None` at end of input).
fn hear() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

fn give_up(why: impl std::fmt::Display) -> ! {
    say(format_args!("hang {why}"));
    std::process::exit(3);
}

/// Stream message `i`: `i` (8 bytes, little-endian), then `i % 57` bytes.
pub fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..i % 57).map(|j| (i + j) as u8));
    m
}

/// The sequence number of a stream message, if it is well formed.
pub fn sequence(m: &[u8]) -> Option<u64> {
    let i = u64::from_le_bytes(m.get(..8)?.try_into().ok()?);
    (m.len() == 8 + (i % 57) as usize
        && m[8..].iter().enumerate().all(|(j, b)| *b == (i + j as u64) as u8))
    .then_some(i)
}

pub fn run(role: &str, args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match role {
        "producer" => producer(arg(0), arg(1).parse().unwrap_or(u64::MAX)),
        "consumer" => consumer(arg(0), arg(1) == "log"),
        "locker" => locker(arg(0), arg(1) == "create", arg(2).parse().unwrap_or(u64::MAX)),
        "swriter" => seqlock_writer(arg(0)),
        "sreader" => seqlock_reader(arg(0), arg(1).parse().unwrap_or(1000)),
        "awriter" => array_writer(arg(0)),
        "areader" => array_reader(arg(0), arg(1).parse().unwrap_or(1000)),
        "creator" => creator(arg(0), arg(1)),
        "opener" => opener(arg(0), arg(1).parse().unwrap_or(0)),
        "wparent" => worker_parent(arg(0), arg(1)),
        other => panic!("unknown role {other}"),
    }
}

/// Creates the channel, claims the sender, says `ready`, waits for `go`, then
/// sends `total` messages (forever if none given), saying `sent i` after each.
/// If the receiver dies, says `peer-died`, waits for `resume` (a new receiver
/// claimed the end) and sends the same message again. Ends with `summary`.
fn producer(name: &str, total: u64) {
    let channel = Channel::create(name, 16 * 1024).unwrap();
    let tx = channel.sender().unwrap();
    say("ready");
    if hear().as_deref() != Some("go") {
        return;
    }
    let mut i = 0;
    while i < total {
        match tx.send_timeout(&message(i), WAIT) {
            Ok(()) => {
                say(format_args!("sent {i}"));
                i += 1;
            }
            Err(ChannelError::PeerDied { .. }) => {
                say("peer-died");
                if hear().as_deref() != Some("resume") {
                    give_up("no new receiver");
                }
            }
            Err(e) => give_up(format_args!("send {i}: {e}")),
        }
    }
    tx.close();
    say(format_args!("summary sent={i}"));
}

/// Opens the channel, claims the receiver, says `ready`, then receives until the
/// channel ends. With `log`, says `got i` when it holds message `i` and `rel i`
/// once it let it go (the driver kills it somewhere among those). Checks that
/// messages come in order, each once; ends with `summary`.
fn consumer(name: &str, log: bool) {
    let rx = Channel::open(name).unwrap().receiver().unwrap();
    say("ready");
    let (mut got, mut gaps, mut dups, mut first, mut next) = (0u64, 0u64, 0u64, None, None::<u64>);
    let end = loop {
        let message = match rx.recv_timeout(WAIT) {
            Ok(m) => m,
            Err(ChannelError::PeerDied { .. }) => break "died",
            Err(ChannelError::Closed) => break "closed",
            Err(e) => give_up(format_args!("recv: {e}")),
        };
        let bytes = message.bytes().to_vec().unwrap_or_else(|e| give_up(format_args!("read: {e}")));
        let Some(i) = sequence(&bytes) else { give_up("a damaged message") };
        if log {
            say(format_args!("got {i}"));
        }
        drop(message);
        if log {
            say(format_args!("rel {i}"));
        }
        first.get_or_insert(i);
        match next {
            Some(n) if i < n => dups += 1,
            Some(n) if i > n => gaps += i - n,
            _ => {}
        }
        next = Some(next.map_or(i + 1, |n| n.max(i + 1)));
        got += 1;
    };
    let first = first.map_or("-".into(), |f| f.to_string());
    say(format_args!("summary got={got} gaps={gaps} dups={dups} first={first} end={end}"));
}

/// Takes the mutex at offset 0 of a 4 KiB segment (`create`s it or opens it) and,
/// holding it, moves two counters at offsets 64 and 72 one after the other, so a
/// holder killed between the two leaves them unequal. A locker that finds them
/// unequal without being told the owner died counts a violation. Says `ready`,
/// waits for `go`; ends with `summary` after `iterations` (never, if absent).
fn locker(name: &str, create: bool, iterations: u64) {
    let shm = std::sync::Arc::new(if create {
        SharedMemory::create(name, 4096).unwrap()
    } else {
        SharedMemory::open(name).unwrap()
    });
    let mutex = Mutex::in_segment(std::sync::Arc::clone(&shm), 0).unwrap();
    let (a, b) = (shm.atomic_counter_for_tests(64), shm.atomic_counter_for_tests(72));
    say("ready");
    if hear().as_deref() != Some("go") {
        return;
    }
    let (mut ops, mut takeovers, mut torn) = (0u64, 0u64, 0u64);
    use std::sync::atomic::Ordering::Relaxed;
    while ops < iterations {
        let guard = match mutex.lock_timeout(WAIT) {
            Ok(Some(Ok(guard))) => {
                if a.load(Relaxed) != b.load(Relaxed) {
                    torn += 1;
                }
                guard
            }
            Ok(Some(Err(died))) => {
                takeovers += 1;
                b.store(a.load(Relaxed), Relaxed); // repair
                died.into_guard()
            }
            Ok(None) => give_up("the lock"),
            Err(e) => give_up(format_args!("lock: {e}")),
        };
        a.fetch_add(1, Relaxed);
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        b.fetch_add(1, Relaxed);
        drop(guard);
        ops += 1;
    }
    say(format_args!("summary ops={ops} takeovers={takeovers} torn={torn}"));
}

const WORDS: usize = 8;

fn record(k: u64) -> Vec<u8> {
    (0..WORDS).flat_map(|_| k.to_le_bytes()).collect()
}

/// Creates the seqlock (a record of eight equal words), says `ready`, waits for
/// `go`, then writes `k, k, ..., k` for k = 1, 2, ... until killed.
fn seqlock_writer(name: &str) {
    let lock = SeqLock::create(name, WORDS * 8).unwrap();
    say("ready");
    if hear().as_deref() != Some("go") {
        return;
    }
    for k in 1.. {
        lock.write(&record(k)).unwrap();
    }
}

/// Reads the seqlock `reads` times: every snapshot must hold eight equal words,
/// never going backwards. A writer found dead mid-write is taken over (a write of
/// the next value, which must then read back). Ends with `summary`.
fn seqlock_reader(name: &str, reads: u64) {
    let lock = SeqLock::open(name).unwrap();
    say("ready");
    let (mut torn, mut backwards, mut takeovers, mut last) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0u8; WORDS * 8];
    for _ in 0..reads {
        match lock.read_deadline(&mut buf, Some(Instant::now() + WAIT)) {
            Ok(_) => {}
            Err(shmbridge::Error::PeerDied { .. }) => {
                takeovers += 1;
                let next = last + 1_000_000;
                if lock.write_deadline(&record(next), Some(Instant::now() + WAIT)).is_err() {
                    give_up("the takeover write");
                }
                last = next;
                continue;
            }
            Err(e) => give_up(format_args!("read: {e}")),
        }
        let words: Vec<u64> =
            buf.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
        if words.iter().any(|w| *w != words[0]) {
            torn += 1;
        } else if words[0] < last {
            backwards += 1;
        } else {
            last = words[0];
        }
    }
    say(format_args!(
        "summary reads={reads} torn={torn} backwards={backwards} takeovers={takeovers}"
    ));
}

/// Creates an array of 4096 f64, says `ready`, waits for `go`, then fills it with
/// k and bumps the generation, for k = 1, 2, ... until killed.
fn array_writer(name: &str) {
    let array = SharedArray::<f64>::create(name, &[4096]).unwrap();
    say("ready");
    if hear().as_deref() != Some("go") {
        return;
    }
    for k in 1.. {
        array.elements().fill(k as f64).unwrap();
        array.bump_generation().unwrap();
    }
}

/// Opens the array (its header must be valid), reads the generation `reads`
/// times (never going backwards) and the data. Ends with `summary`.
fn array_reader(name: &str, reads: u64) {
    let array = ArraySegment::open(&SharedMemory::options(), name).unwrap();
    say("ready");
    let (mut last, mut backwards, mut sum) = (0u64, 0u64, 0f64);
    for _ in 0..reads {
        let generation = array.generation().unwrap_or_else(|e| give_up(format_args!("{e}")));
        if generation < last {
            backwards += 1;
        }
        last = generation;
        let data = array.data_bytes();
        let mut last_value = [0u8; 8];
        let tail = data.subslice(data.len() - 8..).expect("the array holds 8 bytes or more");
        tail.copy_to_slice(&mut last_value).unwrap_or_else(|e| give_up(format_args!("{e}")));
        sum += f64::from_le_bytes(last_value);
    }
    std::hint::black_box(sum);
    say(format_args!("summary reads={reads} backwards={backwards} generation={last}"));
}

/// Creates a segment of `kind` (holding a channel's sender, a mutex's lock), says
/// `ready`, and holds it until killed or released.
fn creator(kind: &str, name: &str) {
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    match kind {
        "raw" => keep.push(Box::new(SharedMemory::create(name, 64 * 1024).unwrap())),
        "array" => keep.push(Box::new(SharedArray::<u32>::create(name, &[64, 64]).unwrap())),
        "channel" => {
            let channel = Channel::create(name, 8192).unwrap();
            let tx = channel.sender().unwrap();
            tx.send(b"hello").unwrap();
            keep.push(Box::new(tx));
        }
        "event" => keep.push(Box::new(Event::create(name, false).unwrap())),
        "semaphore" => keep.push(Box::new(Semaphore::create(name, 1).unwrap())),
        "mutex" => {
            let mutex: &'static Mutex = Box::leak(Box::new(Mutex::create(name).unwrap()));
            std::mem::forget(mutex.lock().unwrap().unwrap_or_else(|d| d.into_guard()));
        }
        "seqlock" => keep.push(Box::new(SeqLock::create(name, 32).unwrap())),
        other => panic!("unknown kind {other}"),
    }
    say("ready");
    while hear().is_some() {}
}

/// Opens `name` and maps it for `hold_ms`; says `absent` if it does not exist (its
/// creator died before making it), `mapped` otherwise; ends with `summary`.
fn opener(name: &str, hold_ms: u64) {
    match SharedMemory::open(name) {
        Ok(shm) => {
            say("mapped");
            // Holding the mapping for a while is the point, not waiting for anyone.
            std::thread::sleep(Duration::from_millis(hold_ms));
            drop(shm);
            say("summary mapped=1");
        }
        Err(shmbridge::Error::NotFound { .. }) => say("summary mapped=0"),
        Err(e) => give_up(format_args!("open: {e}")),
    }
}

/// Starts the Python worker `script` with `python` over shared-memory channels,
/// says `worker PID` and `ready`, waits for `go`, then calls `work` until the
/// worker is gone. Ends with `summary calls=N end=exited` (the worker died, as it
/// should have been told), or `end=...` for anything else.
fn worker_parent(python: &str, script: &str) {
    use shmbridge::worker::{Transport, Worker};
    let worker = Worker::script(script)
        .python(python)
        .transport(Transport::SharedMemory { capacity: 64 * 1024 })
        .forward_stderr(false)
        .spawn()
        .unwrap();
    say(format_args!("worker {}", worker.pid()));
    say("ready");
    if hear().as_deref() != Some("go") {
        return;
    }
    let mut calls = 0u64;
    let end = loop {
        let n = calls;
        match worker.call::<u64>("work", serde_json_args(n), WAIT) {
            Ok(v) if v == n + 1 => calls += 1,
            Ok(v) => break format!("wrong-answer-{v}"),
            Err(shmbridge::Error::WorkerExited { .. }) => break "exited".into(),
            Err(e) => break format!("error:{}", e.to_string().replace(' ', "_")),
        }
    };
    say(format_args!("summary calls={calls} end={end}"));
}

fn serde_json_args(n: u64) -> std::collections::HashMap<&'static str, u64> {
    std::collections::HashMap::from([("n", n)])
}
