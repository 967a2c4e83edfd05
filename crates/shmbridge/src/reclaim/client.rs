//! The creating side of the tracker: makes sure this user's tracker runs, and
//! stays connected to it for the life of the process, since the tracker exits
//! once no process that may create segments is connected.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys::accounting;

/// This process's connection to the tracker.
struct Link {
    /// The process that made the link (a child made by `fork` makes its own).
    pid: u32,
    connection: Option<OwnedFd>,
    /// When the connection was last found alive, or the last attempt made.
    checked: Instant,
    /// The tracker this process started, to be reaped if it ever exits first.
    child: Option<Child>,
}

static LINK: Mutex<Option<Link>> = Mutex::new(None);

/// How often a creating process looks again at its connection (a `poll`).
const RECHECK: Duration = Duration::from_secs(1);
/// How long a started tracker may take to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// The tracker's socket name: one tracker per user (and network namespace) and
/// protocol version.
pub(super) fn socket_name() -> String {
    format!("shmbridge-tracker-1-{}", accounting::effective_uid())
}

/// Connects to this user's tracker, starting it if none runs; then checks the
/// connection at most once a [`RECHECK`]. Failures leave reclaim to the last mapper
/// and `gc`; they never fail a create.
pub(super) fn ensure_tracker() {
    let pid = crate::owner::current_pid();
    // Another thread is at it (it starts or checks the tracker for this process);
    // or, in a child made by fork, a thread of the parent held the lock at the fork
    // and never will let it go here: either way, go on creating.
    let mut link = match LINK.try_lock() {
        Ok(link) => link,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    let now = Instant::now();
    if let Some(current) = link.as_mut().filter(|l| l.pid == pid) {
        if now.duration_since(current.checked) < RECHECK {
            return;
        }
        current.checked = now;
        if current.connection.as_ref().is_some_and(|c| !accounting::hung_up(c)) {
            return;
        }
    }
    // A tracker this process started that has exited is reaped here (a zombie
    // otherwise); one inherited across fork is not this process's to reap.
    let old_child = link.take().filter(|l| l.pid == pid).and_then(|l| l.child);
    let old_child = old_child.and_then(|mut c| match c.try_wait() {
        Ok(None) => Some(c),
        _ => None,
    });
    let (connection, started) = connect_or_start();
    *link = Some(Link { pid, connection, checked: Instant::now(), child: started.or(old_child) });
}

/// Whether this process holds a live connection to a tracker.
pub(super) fn connected() -> bool {
    let link = LINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    link.as_ref()
        .filter(|l| l.pid == crate::owner::current_pid())
        .and_then(|l| l.connection.as_ref())
        .is_some_and(|c| !accounting::hung_up(c))
}

fn connect_or_start() -> (Option<OwnedFd>, Option<Child>) {
    let name = socket_name();
    match accounting::connect(&name) {
        Ok(Some(connection)) => return (Some(connection), None),
        Ok(None) => {}
        Err(_) => return (None, None), // held by another user, or sockets refused
    }
    let Some((program, args)) = super::tracker_command() else { return (None, None) };
    let spawned = Command::new(&program)
        .args(&args)
        .arg("track")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else { return (None, None) };
    let word = child.stdout.take().map(|out| first_line(out, START_TIMEOUT)).unwrap_or_default();
    match word.trim() {
        "ready" => {}
        "running" => {
            // Another process started one first; this one exits at once.
            let _ = child.wait();
            return (accounting::connect(&name).ok().flatten(), None);
        }
        _ => {
            // Not a tracker, or too slow: never leave it behind.
            let _ = child.kill();
            let _ = child.wait();
            return (None, None);
        }
    }
    (accounting::connect(&name).ok().flatten(), Some(child))
}

/// The first line `out` gives within `timeout` (empty if none).
fn first_line(mut out: impl Read + AsFd, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") && line.len() < 64 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match accounting::wait_readable_any(&[out.as_fd()], Some(deadline - now)) {
            Ok(ready) if ready.first() == Some(&true) => {}
            Ok(_) => continue,
            Err(_) => break,
        }
        match out.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}
