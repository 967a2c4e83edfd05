//! A Rust process that Python tests drive, one command per line on stdin and one
//! reply per line on stdout (`ok ...` or `err <Variant> <message>`), so that every
//! cross-language test runs against a real second process and waits on its replies
//! instead of sleeping.
//!
//! Commands (one current segment at a time; numbers in decimal, bytes in hex):
//!
//! ```text
//! create NAME SIZE [persist]     -> ok NAME LEN
//! open NAME [MIN_SIZE] [ro]      -> ok NAME LEN
//! write_at OFFSET HEX            -> ok N            (all or nothing)
//! read_at OFFSET LEN             -> ok HEX
//! write TYPE OFFSET V1,V2,...    -> ok N            (TYPE: u8 i16 u16 i32 u32 i64 u64 f32 f64)
//! read TYPE OFFSET COUNT         -> ok V1,V2,...
//! iota_f64 OFFSET COUNT          -> ok              (v[i] = i)
//! check_f64 OFFSET COUNT SCALE   -> ok | err Mismatch ...  (v[i] == i * SCALE)
//! unlink | close | quit          -> ok
//! ```
//!
//! and, for synchronization:
//!
//! ```text
//! pong NAME ROUNDS               -> ok     (answers ROUNDS sets of event NAME_ping by setting NAME_pong)
//! hold NAME                      -> ok     (takes mutex NAME and keeps it until the process dies)
//! take NAME                      -> ok     (takes one from semaphore NAME, waiting up to 30 s)
//! cproduce NAME COUNT            -> ok SUM (sends COUNT stream messages on channel NAME, then closes)
//! cproduce_forever NAME          -> (sends stream messages until killed; no reply)
//! cconsume NAME COUNT            -> ok SUM (receives COUNT stream messages, checking each)
//! ```
//!
//! Stream message `i` is `i` (8 bytes, little-endian) and then `i % 57` bytes of
//! `(i + j) % 256`; SUM is the wrapping sum of all bytes received.
//!
//! and, for shared arrays (one current array, apart from the segment):
//!
//! ```text
//! acreate TYPESTR NAME SHAPE ORDER SCALE   -> ok       (SHAPE "2,3" or "-" for 0-d; filled)
//! aopen NAME                     -> ok TYPESTR SHAPE STRIDES ORDER GENERATION
//! afill SCALE | acheck SCALE     -> ok | err Mismatch ...   (element i = i * SCALE)
//! ahex                           -> ok HEX          (the data region)
//! abump                          -> ok GENERATION
//! aclose                         -> ok
//! ```

mod arrays;

use std::fmt::Display;
use std::io::{self, BufRead, Write};
use std::str::FromStr;

use shmbridge::SharedMemory;
use shmbridge::bytemuck::Pod;
use shmbridge::channel::Channel;
use shmbridge::sync::{Event, Mutex, OwnerDied, Semaphore};

pub(crate) type Reply = Result<String, (String, String)>;

fn main() {
    let mut current: Option<SharedMemory> = None;
    let mut array = None;
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.expect("stdin is readable");
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"quit") {
            let _ = writeln!(stdout, "ok");
            break;
        }
        let is_array_command = matches!(
            words.first(),
            Some(&("acreate" | "aopen" | "afill" | "acheck" | "ahex" | "abump" | "aclose"))
        );
        let result = if is_array_command {
            arrays::run(&mut array, &words)
        } else {
            run(&mut current, &words)
        };
        let reply = match result {
            Ok(text) if text.is_empty() => "ok".to_owned(),
            Ok(text) => format!("ok {text}"),
            Err((variant, message)) => format!("err {variant} {}", message.replace('\n', " ")),
        };
        writeln!(stdout, "{reply}").and_then(|()| stdout.flush()).expect("stdout is writable");
    }
}

pub(crate) fn core_err(e: shmbridge::Error) -> (String, String) {
    let dbg = format!("{e:?}");
    let variant = dbg.split([' ', '{', '(']).next().unwrap_or("Error").to_owned();
    (variant, e.to_string())
}

/// An io::Error from the core carries the core's error inside; report its variant.
fn io_err(e: io::Error) -> (String, String) {
    let text = e.to_string();
    match e.into_inner().map(|inner| inner.downcast::<shmbridge::Error>()) {
        Some(Ok(core)) => core_err(*core),
        _ => ("Io".to_owned(), text),
    }
}

pub(crate) fn bad(msg: impl Display) -> (String, String) {
    ("Usage".to_owned(), msg.to_string())
}

pub(crate) fn arg<T: FromStr>(words: &[&str], i: usize) -> Result<T, (String, String)> {
    let word = words.get(i).ok_or_else(|| bad(format!("missing argument {i}")))?;
    word.parse().map_err(|_| bad(format!("cannot parse {word:?}")))
}

fn run(current: &mut Option<SharedMemory>, words: &[&str]) -> Reply {
    let cmd = *words.first().ok_or_else(|| bad("empty command"))?;
    if let "create" | "open" = cmd {
        let name: String = arg(words, 1)?;
        let shm = if cmd == "create" {
            let persist = words.get(3) == Some(&"persist");
            SharedMemory::options().persist(persist).create(&name, arg(words, 2)?)
        } else {
            let min_size = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(0);
            let read_only = words.contains(&"ro");
            SharedMemory::options().min_size(min_size).read_only(read_only).open(&name)
        }
        .map_err(core_err)?;
        let reply = format!("{} {}", shm.name(), shm.len());
        *current = Some(shm);
        return Ok(reply);
    }
    if cmd == "pong" {
        let name: String = arg(words, 1)?;
        let rounds: usize = arg(words, 2)?;
        let ping = Event::open(&format!("{name}_ping")).map_err(core_err)?;
        let pong = Event::open(&format!("{name}_pong")).map_err(core_err)?;
        for round in 0..rounds {
            if !ping.wait_timeout(std::time::Duration::from_secs(30)).map_err(core_err)? {
                return Err(("Timeout".into(), format!("no ping in round {round}")));
            }
            pong.set().map_err(core_err)?;
        }
        return Ok(String::new());
    }
    if cmd == "take" {
        let semaphore = Semaphore::open(&arg::<String>(words, 1)?).map_err(core_err)?;
        if !semaphore.acquire_timeout(std::time::Duration::from_secs(30)).map_err(core_err)? {
            return Err(("Timeout".into(), "no permit within 30 s".into()));
        }
        return Ok(String::new());
    }
    if cmd == "hold" {
        let mutex = Mutex::open(&arg::<String>(words, 1)?).map_err(core_err)?;
        std::mem::forget(mutex.lock().map_err(core_err)?.unwrap_or_else(OwnerDied::into_guard));
        std::mem::forget(mutex); // held until this process dies
        return Ok(String::new());
    }
    if let "cproduce" | "cproduce_forever" = cmd {
        let channel = Channel::open(&arg::<String>(words, 1)?).map_err(core_err)?;
        let tx = channel.sender().map_err(core_err)?;
        let count = if cmd == "cproduce" { arg(words, 2)? } else { u64::MAX };
        let mut sum = 0u64;
        for i in 0..count {
            let msg = stream_message(i);
            sum = msg.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
            tx.send(&msg).map_err(|e| ("Channel".to_owned(), e.to_string()))?;
        }
        return Ok(sum.to_string());
    }
    if cmd == "cconsume" {
        let channel = Channel::open(&arg::<String>(words, 1)?).map_err(core_err)?;
        let rx = channel.receiver().map_err(core_err)?;
        let count: u64 = arg(words, 2)?;
        let mut sum = 0u64;
        for i in 0..count {
            let msg = rx
                .recv()
                .and_then(|msg| msg.to_vec())
                .map_err(|e| ("Channel".to_owned(), format!("message {i}: {e}")))?;
            if msg != stream_message(i) {
                return Err((
                    "Mismatch".into(),
                    format!("message {i} is wrong: lost, duplicated or reordered"),
                ));
            }
            sum = msg.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
        }
        return Ok(sum.to_string());
    }
    if cmd == "close" {
        return match current.take() {
            Some(shm) => shm.close().map(|()| String::new()).map_err(core_err),
            None => Err(bad("no segment")),
        };
    }
    let shm = current.as_mut().ok_or_else(|| bad("no segment: create or open one first"))?;
    match cmd {
        "write_at" => {
            let data = unhex(words.get(2).copied().unwrap_or(""))?;
            shm.write_all_at(&data, arg(words, 1)?).map_err(io_err)?;
            Ok(data.len().to_string())
        }
        "read_at" => {
            let mut buf = vec![0; arg(words, 2)?];
            let n = shm.read_at(&mut buf, arg(words, 1)?).map_err(io_err)?;
            Ok(buf[..n].iter().map(|b| format!("{b:02x}")).collect())
        }
        "write" | "read" => {
            let ty: String = arg(words, 1)?;
            macro_rules! typed {
                ($($name:literal => $t:ty),*) => {
                    match ty.as_str() {
                        $($name => typed_op::<$t>(shm, cmd, words),)*
                        other => Err(bad(format!("unknown type {other}"))),
                    }
                };
            }
            typed!("u8" => u8, "i16" => i16, "u16" => u16, "i32" => i32, "u32" => u32,
                   "i64" => i64, "u64" => u64, "f32" => f32, "f64" => f64)
        }
        "iota_f64" => {
            let v = shm.slice::<f64>(arg(words, 1)?, arg(words, 2)?).map_err(core_err)?;
            let values: Vec<f64> = (0..v.len()).map(|i| i as f64).collect();
            v.copy_from_slice(&values).map_err(core_err)?;
            Ok(String::new())
        }
        "check_f64" => {
            let scale: f64 = arg(words, 3)?;
            let v = shm.slice::<f64>(arg(words, 1)?, arg(words, 2)?).map_err(core_err)?;
            let values = v.to_vec().map_err(core_err)?;
            match values.iter().enumerate().find(|&(i, &x)| x != i as f64 * scale) {
                None => Ok(String::new()),
                Some((i, x)) => {
                    Err(("Mismatch".into(), format!("v[{i}] = {x}, not {}", i as f64 * scale)))
                }
            }
        }
        "unlink" => shm.unlink().map(|()| String::new()).map_err(core_err),
        other => Err(bad(format!("unknown command {other}"))),
    }
}

fn typed_op<T: Pod + FromStr + Display>(
    shm: &mut SharedMemory,
    cmd: &str,
    words: &[&str],
) -> Reply {
    let offset: usize = arg(words, 2)?;
    if cmd == "write" {
        let values = words
            .get(3)
            .unwrap_or(&"")
            .split(',')
            .map(|v| v.parse::<T>().map_err(|_| bad(format!("cannot parse {v:?}"))))
            .collect::<Result<Vec<T>, _>>()?;
        let slice = shm.slice::<T>(offset, values.len()).map_err(core_err)?;
        slice.copy_from_slice(&values).map_err(core_err)?;
        Ok(values.len().to_string())
    } else {
        let values = shm.slice::<T>(offset, arg(words, 3)?).map_err(core_err)?.to_vec();
        Ok(values.map_err(core_err)?.iter().map(T::to_string).collect::<Vec<_>>().join(","))
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, (String, String)> {
    if !s.len().is_multiple_of(2) {
        return Err(bad("odd number of hex digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| bad(format!("bad hex {s:?}"))))
        .collect()
}

/// Stream message `i` (see the module docs).
fn stream_message(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..i % 57).map(|j| ((i + j) % 256) as u8));
    m
}
