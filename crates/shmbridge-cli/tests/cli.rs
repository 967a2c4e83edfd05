//! The `shmbridge` binary on a mix of segments: ours of every kind, one made the
//! way Python's stdlib and C make them (no record), and a directory planted in
//! `/dev/shm`. Text and `--json` forms, errors and exit statuses.

#![cfg(target_os = "linux")]

mod support;

use serde_json::Value;
use shmbridge::SharedMemory;
use shmbridge::array::SharedArray;
use shmbridge::channel::Channel;
use shmbridge::sync::{Event, Mutex, Semaphore, SeqLock};
use support::{exists, run_cli};

fn json(args: &[&str]) -> Value {
    let out = run_cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}

fn text(args: &[&str]) -> String {
    let out = run_cli(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn name(test: &str) -> String {
    shmbridge::unique_name(&format!("cli_{test}")).unwrap()
}

/// A file in `/dev/shm` as another program makes it: no record.
fn foreign(name: &str, bytes: &[u8]) {
    std::fs::write(format!("/dev/shm/{}", name.trim_start_matches('/')), bytes).unwrap();
}

#[test]
fn ls_shows_ours_and_theirs() {
    let me = std::process::id();
    let raw = SharedMemory::create(&name("ls_raw"), 4096).unwrap();
    let kept = SharedMemory::options().persist(true).create(&name("ls_kept"), 100).unwrap();
    let stdlib = name("ls_stdlib");
    foreign(&stdlib, &[1; 24]);
    let planted = name("ls_dir");
    std::fs::create_dir(format!("/dev/shm/{}", planted.trim_start_matches('/'))).unwrap();

    let listing = json(&["ls", "--json"]);
    let entry = |n: &str| -> Value {
        listing["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed"))
            .clone()
    };
    let ours = entry(raw.name());
    assert_eq!(ours["kind"], "raw");
    assert_eq!(ours["ours"], true);
    assert_eq!(ours["size"], 4096);
    assert_eq!(ours["mode"], "0600");
    assert_eq!(ours["creator"]["pid"], me);
    assert_eq!(ours["creator"]["state"], "alive");
    assert_eq!(ours["record"]["persistent"], false);
    assert!(ours["users"].as_array().unwrap().contains(&Value::from(me)));
    assert_eq!(entry(kept.name())["record"]["persistent"], true);
    let theirs = entry(&stdlib);
    assert_eq!((theirs["kind"].clone(), theirs["ours"].clone()), ("raw".into(), false.into()));
    assert!(theirs["record"].is_null() && theirs["creator"].is_null());
    assert!(entry(&planted)["kind"].is_null(), "a directory is not a segment");

    let table = text(&["ls"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("NAME") && header.contains("CREATOR") && header.contains("USERS"));
    let row = table.lines().find(|l| l.starts_with(raw.name())).unwrap();
    assert!(row.contains("rw-------") && row.contains(&me.to_string()) && row.contains("yes"));
    assert!(table.lines().any(|l| l.starts_with(kept.name()) && l.contains("raw*")));
    assert!(table.lines().any(|l| l.starts_with(&planted) && l.contains("not-a-segment")));
    let ours_only = text(&["ls", "--ours"]);
    assert!(ours_only.contains(raw.name()) && !ours_only.contains(&stdlib));

    std::fs::remove_dir(format!("/dev/shm/{}", planted.trim_start_matches('/'))).unwrap();
    shmbridge::unlink(&stdlib).unwrap();
    let kept_name = kept.name().to_owned();
    kept.close().unwrap();
    shmbridge::unlink(&kept_name).unwrap();
}

#[test]
fn info_parses_every_kind() {
    let array = SharedArray::<f32>::create(&name("info_array"), &[2, 3]).unwrap();
    array.bump_generation().unwrap();
    let a = json(&["info", "--json", array.name()]);
    assert_eq!(a["segment"]["kind"], "array");
    let c = &a["contents"];
    assert_eq!(c["type"], "array");
    assert_eq!(c["dtype"], "<f4");
    assert_eq!(c["shape"], serde_json::json!([2, 3]));
    assert_eq!(c["strides"], serde_json::json!([12, 4]));
    assert_eq!(c["generation"], 1);
    let shown = text(&["info", array.name()]);
    assert!(shown.contains("<f4") && shown.contains("(2, 3)") && shown.contains("generation"));

    let channel = Channel::create(&name("info_channel"), 4096).unwrap();
    let tx = channel.sender().unwrap();
    tx.send(b"one").unwrap();
    tx.send(b"two").unwrap();
    let c = json(&["info", "--json", channel.name()])["contents"].clone();
    assert_eq!(c["type"], "channel");
    assert_eq!(c["capacity"], 4096);
    assert_eq!(c["messages"], 2);
    assert_eq!(c["used"], 32);
    assert_eq!(c["producer"]["pid"], std::process::id());
    assert_eq!(c["producer"]["alive"], true);
    assert_eq!(c["producer"]["closed"], false);
    assert!(c["consumer"]["pid"].is_null());

    let event = Event::create(&name("info_event"), true).unwrap();
    event.set().unwrap();
    let c = json(&["info", "--json", event.segment().name()])["contents"].clone();
    assert_eq!(c["type"], "event");
    assert_eq!((c["set"].clone(), c["auto_reset"].clone()), (true.into(), true.into()));

    let sem_name = name("info_sem");
    let _semaphore = Semaphore::create(&sem_name, 5).unwrap();
    let c = json(&["info", "--json", &sem_name])["contents"].clone();
    assert_eq!((c["type"].clone(), c["count"].clone()), ("semaphore".into(), 5.into()));

    let mutex_name = name("info_mutex");
    let mutex = Mutex::create(&mutex_name).unwrap();
    let guard = mutex.lock().unwrap();
    let c = json(&["info", "--json", &mutex_name])["contents"].clone();
    assert_eq!(c["type"], "mutex");
    assert_eq!(c["locked"], true);
    assert_eq!(c["owner"], std::process::id());
    drop(guard);

    let seq_name = name("info_seq");
    let seqlock = SeqLock::create(&seq_name, 24).unwrap();
    seqlock.write(&[7; 24]).unwrap();
    let c = json(&["info", "--json", &seq_name])["contents"].clone();
    assert_eq!(c["type"], "seqlock");
    assert_eq!(c["record_size"], 24);
    assert_eq!(c["sequence"], 2);
    assert_eq!(c["writing"], false);

    // Raw bytes of another program: raw, and not mistaken for anything else.
    let stdlib = name("info_stdlib");
    foreign(&stdlib, b"hello");
    let f = json(&["info", "--json", &stdlib]);
    assert_eq!(f["contents"]["type"], "raw");
    assert_eq!(f["segment"]["ours"], false);
    assert_eq!(f["sniffed"], false);
    shmbridge::unlink(&stdlib).unwrap();

    // Looking is read-only and changes nothing: the array is as it was.
    assert_eq!(array.generation().unwrap(), 1);
}

#[test]
fn rm_removes_and_reports_errors() {
    let a = SharedMemory::options().persist(true).create(&name("rm_a"), 64).unwrap();
    let b = name("rm_b");
    foreign(&b, b"x");
    let (a_name, _) = (a.name().to_owned(), a.close().unwrap());
    let out = run_cli(&["rm", &a_name, &b]);
    assert!(out.status.success());
    let said = String::from_utf8(out.stdout).unwrap();
    assert!(said.contains(&format!("removed {a_name}")) && said.contains(&format!("removed {b}")));
    assert!(!exists(&a_name) && !exists(&b));

    // A missing name: one line on stderr, exit status 1; the others still go.
    let c = name("rm_c");
    foreign(&c, b"x");
    let out = run_cli(&["rm", "--json", &name("rm_missing"), &c]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed"][0]["name"], c);
    assert!(report["errors"][0]["error"].as_str().unwrap().contains("no shared memory segment"));
    assert!(!exists(&c));
    let out = run_cli(&["rm", "a/b"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("shmbridge: rm: "), "{err}");
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let out = run_cli(&["info", &name("nothing_here")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("shmbridge: ") && err.contains("no shared memory segment"), "{err}");
    assert!(out.stdout.is_empty());
    // A malformed command line is clap's usage error, status 2.
    assert_eq!(run_cli(&["ls", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(run_cli(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run_cli(&["rm"]).status.code(), Some(2));
}

#[test]
fn gc_dry_run_touches_nothing() {
    let kept = SharedMemory::create(&name("gc_live"), 64).unwrap();
    let before = json(&["gc", "--dry-run", "--json"]);
    assert_eq!(before["dry_run"], true);
    assert!(before["foreign"].as_u64().is_some());
    // Its creator (this process) lives: not a candidate, listed as kept.
    let me = before["kept"].as_array().unwrap().iter().find(|k| k["name"] == kept.name()).cloned();
    assert_eq!(me.unwrap()["reason"], "creator alive");
    assert!(exists(kept.name()));
    let said = text(&["gc", "--dry-run"]);
    assert!(said.lines().last().unwrap().starts_with("gc: would remove"), "{said}");
}
