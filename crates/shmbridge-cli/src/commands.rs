//! What each command does. Output goes to `out` (written by the caller); a
//! failure is returned as one line.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use shmbridge::inspect::{self, Contents, Details, SegmentInfo};
use shmbridge::reclaim::{self, KeptReason, TrackerExit, TrackerOptions};
use shmbridge::record::CreatorState;
use shmbridge::sync::PrimitiveState;

use crate::args::{Command, Failure};
use crate::{json, show};

type Out = Vec<u8>;

/// Runs one command; returns the exit status.
pub(crate) fn run(command: &Command, as_json: bool, out: &mut Out) -> Result<i32, Failure> {
    match command {
        Command::Ls { ours } => ls(*ours, as_json, out),
        Command::Info { name } => info(name, as_json, out),
        Command::Rm { names } => rm(names, as_json, out),
        Command::Gc { dry_run, verbose } => gc(*dry_run, *verbose, as_json, out),
        Command::Track { foreground, idle_exit } => track(*foreground, *idle_exit, as_json, out),
    }
}

fn emit_json(out: &mut Out, value: &Value) {
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

fn creator_column(info: &SegmentInfo) -> (String, String) {
    match (&info.record, info.creator) {
        (Some(record), Some(state)) => {
            let alive = match state {
                CreatorState::Alive => "yes",
                CreatorState::Dead => "no",
                CreatorState::Unknown => "?",
            };
            (record.creator_pid().to_string(), alive.into())
        }
        _ => ("-".into(), "-".into()),
    }
}

fn kind_column(info: &SegmentInfo) -> String {
    match (info.kind(), &info.record) {
        (None, _) => "not-a-segment".into(),
        (Some(kind), Some(record)) if record.is_persistent() => format!("{kind}*"),
        (Some(kind), _) if info.record_error.is_some() => format!("{kind}?"),
        (Some(kind), _) => kind.name(),
    }
}

fn owner(uid: u32) -> String {
    show::user(uid).unwrap_or_else(|| uid.to_string())
}

fn ls(ours: bool, as_json: bool, out: &mut Out) -> Result<i32, Failure> {
    let mut listing = inspect::list()?;
    if ours {
        listing.segments.retain(SegmentInfo::is_ours);
    }
    if as_json {
        let segments: Vec<Value> = listing.segments.iter().map(json::segment).collect();
        emit_json(out, &json!({ "segments": segments, "uninspected": listing.uninspected }));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = listing
        .segments
        .iter()
        .map(|info| {
            let (creator, alive) = creator_column(info);
            vec![
                show::printable(&info.name).into_owned(),
                kind_column(info),
                show::size(info.size),
                show::mode(info.mode),
                owner(info.uid),
                creator,
                alive,
                show::pids(&info.users),
            ]
        })
        .collect();
    let headers = ["NAME", "KIND", "SIZE", "MODE", "OWNER", "CREATOR", "ALIVE", "USERS"];
    let right = [false, false, true, false, false, true, false, false];
    out.extend_from_slice(show::table(&headers, &rows, &right).as_bytes());
    let mut footer = plural(listing.segments.len(), "segment");
    let recorded = listing.segments.iter().filter(|s| s.is_ours()).count();
    if !ours {
        let _ = write!(footer, ", {recorded} made by shmbridge");
    }
    footer.push_str(" (kind*: persistent)");
    if !listing.uninspected.is_empty() {
        let _ = write!(
            footer,
            "; {} could not be inspected (the kernel hides their mappings from this user)",
            plural(listing.uninspected.len(), "process")
        );
    }
    let _ = writeln!(FmtOut(out), "{footer}");
    Ok(0)
}

/// `1 segment`, `2 segments`, `3 processes`.
fn plural(n: usize, word: &str) -> String {
    match (n, word.ends_with('s')) {
        (1, _) => format!("1 {word}"),
        (_, true) => format!("{n} {word}es"),
        (_, false) => format!("{n} {word}s"),
    }
}

/// `write!` into the byte buffer.
struct FmtOut<'a>(&'a mut Out);

impl std::fmt::Write for FmtOut<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn info(name: &str, as_json: bool, out: &mut Out) -> Result<i32, Failure> {
    let Details { info, contents, sniffed } = inspect::info(name)?;
    if as_json {
        let value = json!({
            "segment": json::segment(&info),
            "contents": json::contents(&contents),
            "sniffed": sniffed,
        });
        emit_json(out, &value);
        return Ok(0);
    }
    let mut text = String::new();
    let mut field = |key: &str, value: String| {
        let _ = writeln!(text, "{key:<12}{value}");
    };
    field("name", show::printable(&info.name).into_owned());
    let kind = match (info.kind(), sniffed, &contents) {
        (None, ..) => "not a segment".to_owned(),
        (Some(_), true, Contents::Array(_)) => "array (no record: made without one)".into(),
        (Some(_), true, Contents::Channel(_)) => "channel (no record: made without one)".into(),
        (Some(kind), ..) if info.is_ours() => kind.name(),
        (Some(kind), ..) => format!("{kind} (no record: not made by shmbridge, or unrecorded)"),
    };
    field("kind", kind);
    field("size", format!("{} bytes ({})", info.size, show::size(info.size)));
    field("mode", format!("{} ({:04o})", show::mode(info.mode), info.mode));
    let group = show::group(info.gid).unwrap_or_else(|| info.gid.to_string());
    field(
        "owner",
        format!("{} (uid {}), group {group} (gid {})", owner(info.uid), info.uid, info.gid),
    );
    field("modified", show::date(info.modified));
    if let Some(record) = &info.record {
        field(
            "record",
            format!(
                "version {}, created {}, {}",
                shmbridge::record::VERSION,
                show::date(record.created()),
                if record.is_persistent() { "persistent" } else { "reclaimable" }
            ),
        );
        let state = info.creator.map_or("?", json::creator_state);
        field(
            "creator",
            format!(
                "pid {} ({state}), started at tick {}, pid namespace {}",
                record.creator_pid(),
                record.creator_start(),
                record.pid_namespace()
            ),
        );
    } else if let Some(why) = &info.record_error {
        field("record", format!("unreadable: {why}"));
    }
    field("users", show::pids(&info.users));
    text.push_str(&contents_text(&contents));
    out.extend_from_slice(text.as_bytes());
    Ok(0)
}

fn contents_text(contents: &Contents) -> String {
    let mut text = String::new();
    let mut field = |key: &str, value: String| {
        let _ = writeln!(text, "{key:<12}{value}");
    };
    let pid = |p: Option<u32>, alive: Option<bool>| match (p, alive) {
        (None, _) => "none".to_owned(),
        (Some(p), Some(false)) => format!("{p} (dead)"),
        (Some(p), _) => format!("{p} (alive)"),
    };
    match contents {
        Contents::Array(array) => {
            let layout = &array.layout;
            let list = |v: &[usize]| {
                let items: Vec<String> = v.iter().map(usize::to_string).collect();
                format!("({})", items.join(", "))
            };
            field("dtype", layout.dtype().typestr().into());
            field("shape", list(layout.shape()));
            field("strides", list(layout.strides()));
            field("order", show::order(layout.order()).into());
            field(
                "data",
                format!("{} bytes at offset {}", layout.data_size(), layout.data_offset()),
            );
            field("generation", array.generation.to_string());
        }
        Contents::Channel(channel) => {
            field("capacity", format!("{} bytes", channel.capacity));
            let messages =
                channel.messages.map_or("? (the ring is damaged)".into(), |m| m.to_string());
            field(
                "fill",
                format!(
                    "{} bytes ({:.1}%), {messages} messages (unread or held)",
                    channel.used(),
                    100.0 * channel.used() as f64 / channel.capacity as f64
                ),
            );
            field("positions", format!("head {}, tail {}", channel.head, channel.tail));
            for (key, end) in [("producer", &channel.producer), ("consumer", &channel.consumer)] {
                let closed = if end.closed { ", closed" } else { "" };
                field(key, format!("{}{closed}", pid(end.pid, end.alive)));
            }
        }
        Contents::Primitive(state) => match state {
            PrimitiveState::Event { set, auto_reset, sleepers } => {
                let reset = if *auto_reset { "auto-reset" } else { "manual-reset" };
                field("event", format!("{}, {reset}", if *set { "set" } else { "clear" }));
                field("sleepers", sleepers.to_string());
            }
            PrimitiveState::Semaphore { count, sleepers } => {
                field("count", count.to_string());
                field("sleepers", sleepers.to_string());
            }
            PrimitiveState::Mutex { owner, owner_alive, sleepers } => {
                field(
                    "mutex",
                    if owner.is_some() {
                        format!("locked by {}", pid(*owner, *owner_alive))
                    } else {
                        "unlocked".into()
                    },
                );
                field("sleepers", sleepers.to_string());
            }
            PrimitiveState::SeqLock { sequence, writer, writer_alive, record_size } => {
                let writing = if sequence % 2 == 1 { " (a write is under way)" } else { "" };
                field("sequence", format!("{sequence}{writing}"));
                field("writer", pid(*writer, *writer_alive));
                field("record", format!("{record_size} bytes"));
            }
            other => field("state", other.kind_name().into()),
        },
        Contents::Unreadable(reason) => field("contents", format!("unreadable: {reason}")),
        _ => field("contents", "raw bytes".into()),
    }
    text
}

fn rm(names: &[String], as_json: bool, out: &mut Out) -> Result<i32, Failure> {
    let (mut removed, mut errors, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for name in names {
        // Who still maps it: they keep the memory, but should be told about.
        let users = inspect::segment(name).map(|s| s.users).unwrap_or_default();
        match shmbridge::unlink(name) {
            Ok(()) => {
                let canonical = shmbridge::canonical_name(name).unwrap_or_else(|_| name.clone());
                if !users.is_empty() {
                    notes.push(format!(
                        "{canonical}: still mapped by {} (they keep the memory until they unmap it)",
                        show::pids(&users)
                    ));
                }
                removed.push(json!({ "name": canonical, "users": users }));
            }
            Err(e) => errors.push((name.clone(), e.to_string())),
        }
    }
    let status = i32::from(!errors.is_empty());
    if as_json {
        let errors: Vec<Value> =
            errors.iter().map(|(n, e)| json!({ "name": n, "error": e })).collect();
        emit_json(out, &json!({ "removed": removed, "errors": errors }));
        return Ok(status);
    }
    let mut text = String::new();
    for item in &removed {
        let name = item["name"].as_str().unwrap_or_default();
        let _ = writeln!(text, "removed {}", show::printable(name));
    }
    for note in notes {
        let _ = writeln!(text, "note: {}", show::printable_message(&note));
    }
    out.extend_from_slice(text.as_bytes());
    for (_, error) in &errors {
        eprintln!("shmbridge: rm: {}", show::printable_message(&error.to_string()));
    }
    Ok(status)
}

fn gc(dry_run: bool, verbose: bool, as_json: bool, out: &mut Out) -> Result<i32, Failure> {
    let report = reclaim::gc(dry_run)?;
    if as_json {
        let removed: Vec<Value> = report
            .removed
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "size": r.size, "kind": r.record.kind().name(),
                    "creator_pid": r.record.creator_pid(),
                })
            })
            .collect();
        let kept: Vec<Value> = report
            .kept
            .iter()
            .map(|k| json!({ "name": k.name, "reason": k.reason.to_string() }))
            .collect();
        emit_json(
            out,
            &json!({
                "dry_run": dry_run, "removed": removed, "kept": kept, "foreign": report.foreign,
                "gone": report.gone,
            }),
        );
        return Ok(0);
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut text = String::new();
    let mut bytes = 0;
    for r in &report.removed {
        bytes += r.size;
        let _ = writeln!(
            text,
            "{verb} {} ({}, {}, creator {} dead)",
            show::printable(&r.name),
            r.record.kind(),
            show::size(r.size),
            r.record.creator_pid()
        );
    }
    for k in &report.kept {
        // Without -v, only what is waiting on something: a dead creator's segments.
        let waiting = matches!(k.reason, KeptReason::InUse(_) | KeptReason::Failed(_));
        if verbose || waiting {
            let _ = writeln!(text, "kept {}: {}", show::printable(&k.name), k.reason);
        }
    }
    let _ = writeln!(
        text,
        "gc: {verb} {} ({}); kept {} of shmbridge's; {} not made by shmbridge, untouched",
        plural(report.removed.len(), "segment"),
        show::size(bytes),
        report.kept.len(),
        report.foreign
    );
    out.extend_from_slice(text.as_bytes());
    Ok(0)
}

fn track(foreground: bool, idle_exit: f64, as_json: bool, out: &mut Out) -> Result<i32, Failure> {
    if !(idle_exit.is_finite() && idle_exit >= 0.0) {
        return Err(Failure(format!(
            "--idle-exit {idle_exit}: give a number of seconds, 0 or more"
        )));
    }
    let options = TrackerOptions {
        idle_exit: Duration::from_secs_f64(idle_exit),
        detach: !foreground,
        announce: !foreground,
        log: foreground,
        ..TrackerOptions::default()
    };
    let exit = reclaim::run_tracker(&options)?;
    if foreground {
        let summary = match exit {
            TrackerExit::AlreadyRunning => json!({ "exit": "already-running" }),
            TrackerExit::Idle { reclaimed, scans } => {
                json!({ "exit": "idle", "reclaimed": reclaimed, "scans": scans })
            }
            _ => json!({ "exit": "other" }),
        };
        if as_json {
            emit_json(out, &summary);
        } else {
            let _ = writeln!(FmtOut(out), "shmbridge track: {summary}");
        }
    }
    Ok(0)
}
