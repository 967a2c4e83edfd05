//! The creating side of the tracker: makes sure this user's tracker runs, and
//! stays connected to it for the life of the process, since the tracker exits
//! once no process that may create segments is connected.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sys::accounting;
use crate::sys::tracker_socket::{self, Reached, TrackerAddress};

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

/// The tracker's abstract socket name: one tracker per user (and network
/// namespace) and protocol version. Anybody may bind it first: see
/// `sys::tracker_socket` for why a listener is checked, and where the tracker
/// listens when a stranger holds this name.
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

/// What looking for this user's tracker found.
enum Found {
    Tracker(OwnedFd),
    /// No tracker; `squatter` is the process of another user that holds the
    /// abstract address, if one does.
    Nothing {
        squatter: Option<(i32, u32)>,
    },
}

/// Looks for this user's tracker where it may listen (see
/// `sys::tracker_socket`): the abstract address, then the socket file in this
/// user's private directory (where a tracker listens when a stranger squats the
/// abstract name). A listener of another user is never used.
fn find_tracker() -> Found {
    let mut squatter = None;
    match tracker_socket::connect(&TrackerAddress::Abstract(socket_name())) {
        Ok(Reached::Ours(connection)) => return Found::Tracker(connection),
        Ok(Reached::Stranger { pid, uid }) => squatter = Some((pid, uid)),
        Ok(Reached::Nobody) | Err(_) => {}
    }
    if let Ok(Some(dir)) = tracker_socket::private_dir(false)
        && let Ok(Reached::Ours(connection)) =
            tracker_socket::connect(&TrackerAddress::in_dir(&dir))
    {
        return Found::Tracker(connection);
    }
    Found::Nothing { squatter }
}

/// Says once per process that a stranger keeps this user from its tracker: the
/// user would otherwise never learn why killed creators' segments wait for a
/// last mapper or `gc`.
fn warn_squatted(squatter: Option<(i32, u32)>) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let Some((pid, uid)) = squatter else { return };
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "shmbridge: the reclaim tracker cannot run: {} holds its address, and no private \
             directory for it could be made in /dev/shm; segments of creators that die are \
             removed by the last process that maps them, or by `shmbridge gc`",
            tracker_socket::holder(pid, uid)
        );
    }
}

fn connect_or_start() -> (Option<OwnedFd>, Option<Child>) {
    let squatter = match find_tracker() {
        Found::Tracker(connection) => return (Some(connection), None),
        Found::Nothing { squatter } => squatter,
    };
    let connect = || match find_tracker() {
        Found::Tracker(connection) => Some(connection),
        Found::Nothing { squatter } => {
            warn_squatted(squatter);
            None
        }
    };
    let Some((program, args)) = super::tracker_command() else {
        warn_squatted(squatter);
        return (None, None);
    };
    let spawned = Command::new(&program)
        .args(&args)
        .arg("track")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        warn_squatted(squatter);
        return (None, None);
    };
    let word = child.stdout.take().map(|out| first_line(out, START_TIMEOUT)).unwrap_or_default();
    match word.trim() {
        "ready" => {}
        "running" => {
            // Another process started one first; this one exits at once.
            let _ = child.wait();
            return (connect(), None);
        }
        _ => {
            // Not a tracker, too slow, or it could listen nowhere: never leave it
            // behind.
            let _ = child.kill();
            let _ = child.wait();
            warn_squatted(squatter);
            return (None, None);
        }
    }
    (connect(), Some(child))
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
