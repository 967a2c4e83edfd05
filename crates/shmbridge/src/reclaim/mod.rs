//! Automatic reclaim: a segment whose creator died without persisting it is
//! removed once no process uses it any more, with nothing run by hand (Linux).
//!
//! Every segment created here carries an [ownership record](crate::record). A
//! segment is **reclaimable** when all of these hold:
//!
//! 1. its record is one this build reads, and not [persistent](crate::Lifetime);
//! 2. its creator is provably dead: no process has the recorded pid, or the one
//!    that has it started at another time (the pid was reused), or it is a zombie;
//!    a creator in another pid namespace is never taken for dead;
//! 3. no process maps it or holds a descriptor of it (`/proc/<pid>/maps` and
//!    `/proc/<pid>/fd` of every process this user may inspect: all of them for
//!    root; a process whose mappings the kernel hides, such as another user's or
//!    an undumpable one, is not seen, and if it maps such a segment only the name
//!    goes, never its memory).
//!
//! A removal first renames the segment to a hidden name (so nobody new can open
//! it), checks that the file so taken is the one examined, looks at every
//! process's mappings and descriptors once more, and only then unlinks it (or
//! puts it back). The hidden name says which process hid the segment (pid
//! namespace, pid, start time): reclaimers running at once (two [`gc`], a [`gc`]
//! and the tracker) never take over each other's hidden segments, only those of a
//! reclaimer that died mid-removal. Segments without a record (made by Python's
//! stdlib, by C, by an older shmbridge) are never touched.
//!
//! Three things reclaim, so that no action of the user's is needed:
//!
//! - **the tracker**, a small process (`shmbridge track`, the CLI binary) that the
//!   first process creating a reclaimable segment starts, one per user (found on an
//!   abstract socket, or, when another user squats that name, on a socket file in a
//!   directory private to the user; a listener of another user is never used); it
//!   waits on the creators' pidfds and on `/dev/shm` (inotify: a file let go of by its last
//!   user), so it burns no CPU while nothing happens, reclaims within milliseconds
//!   of the last user leaving, and exits once no process that created through
//!   shmbridge remains;
//! - **the last mapper**: a [`SharedMemory`](crate::SharedMemory) that opened a
//!   segment whose creator is gone reclaims it when it is dropped, if nobody else
//!   uses it (also where no tracker runs);
//! - **[`gc`]** (the CLI's `shmbridge gc`), by hand or from a timer.
//!
//! **Opting out.** `SHMBRIDGE_RECLAIM=off` (or `0`, `false`, `no`) in a process's
//! environment: it starts no tracker and reclaims nothing when it drops segments;
//! [`gc`] still works. To keep one segment beyond its creator, create it
//! [persistent](crate::Lifetime::Persistent). The tracker is found at
//! `SHMBRIDGE_TRACKER` (a path to the `shmbridge` binary), else as a binding said
//! ([`set_tracker_command`]; the Python package runs its own CLI), else beside the
//! running program, else on `PATH` (only one that neither group nor others may
//! write, in a directory they may not write: it runs as this user); if there is
//! none, the last mapper and [`gc`] still reclaim.

#[cfg(target_os = "linux")]
mod client;
#[cfg(target_os = "linux")]
mod tracker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::name::canonical_name;
use crate::record::{CreatorState, OwnershipRecord};
use crate::sys;
use crate::sys::accounting::{ShmFile, Users};

#[cfg(target_os = "linux")]
pub use tracker::run_tracker;

/// The environment variable that turns reclaim off in a process.
pub const RECLAIM_ENV: &str = "SHMBRIDGE_RECLAIM";
/// The environment variable that names the tracker program.
pub const TRACKER_ENV: &str = "SHMBRIDGE_TRACKER";

/// Whether this process reclaims (starts a tracker, reclaims at drop): unless
/// `SHMBRIDGE_RECLAIM` is `off`, `0`, `false` or `no`.
/// Read once per process.
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| match std::env::var(RECLAIM_ENV) {
        Ok(value) => {
            !matches!(value.trim().to_ascii_lowercase().as_str(), "off" | "0" | "false" | "no")
        }
        Err(_) => true,
    })
}

/// The tracker command a binding registered: a program and the arguments that come
/// before `track`.
type TrackerCommand = (PathBuf, Vec<OsString>);

static TRACKER_COMMAND: Mutex<Option<TrackerCommand>> = Mutex::new(None);

/// Tells how to start the tracker, for processes that cannot find the `shmbridge`
/// binary on `PATH`: the tracker is started as `program ARGS... track`. The Python
/// package registers `python -m shmbridge._cli`. `SHMBRIDGE_TRACKER` still takes
/// precedence.
///
/// # Example
///
/// ```
/// shmbridge::reclaim::set_tracker_command("/opt/tools/shmbridge", Vec::<String>::new());
/// # #[cfg(target_os = "linux")]
/// # if std::env::var_os("SHMBRIDGE_TRACKER").is_none() {
/// let (program, args) = shmbridge::reclaim::tracker_command().unwrap();
/// assert_eq!(program, std::path::Path::new("/opt/tools/shmbridge"));
/// assert!(args.is_empty());
/// # }
/// ```
pub fn set_tracker_command<A: Into<OsString>>(
    program: impl Into<PathBuf>,
    args: impl IntoIterator<Item = A>,
) {
    let command = (program.into(), args.into_iter().map(Into::into).collect());
    *TRACKER_COMMAND.lock().unwrap_or_else(|p| p.into_inner()) = Some(command);
}

/// How the tracker is started here (the program, and the arguments before
/// `track`), where the [module docs](self) say it is looked for; `None` if
/// nowhere.
pub fn tracker_command() -> Option<(PathBuf, Vec<OsString>)> {
    if let Some(path) = std::env::var_os(TRACKER_ENV).filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(path), Vec::new()));
    }
    if let Some(command) = TRACKER_COMMAND.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        return Some(command);
    }
    // Only a program nobody else could have put there (see
    // `sys::accounting::trusted_program`): it runs as this user.
    let trusted = |p: &PathBuf| p.is_file() && sys::accounting::trusted_program(p);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("shmbridge")))
        .filter(trusted);
    let program = beside.or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|dir| dir.join("shmbridge")).find(trusted)
    })?;
    Some((program, Vec::new()))
}

/// How [`run_tracker`] behaves.
#[derive(Debug, Clone)]
pub struct TrackerOptions {
    /// Exit once no creating process has been connected and no candidate left for
    /// this long (default 2 s).
    pub idle_exit: Duration,
    /// Look again at candidates still in use this often, in case an event was
    /// missed (default 2 s); a close event makes it look at once.
    pub rescan: Duration,
    /// Leave the terminal's session and close inherited descriptors first, as a
    /// daemon (what processes that start the tracker ask for; default `false`).
    pub detach: bool,
    /// Write `ready` (listening) or `running` (another tracker runs) on standard
    /// output, then point standard output at `/dev/null` (default `false`; the
    /// process that starts a tracker waits for that word).
    pub announce: bool,
    /// Describe each reclaim on standard error (default `false`).
    pub log: bool,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            idle_exit: Duration::from_secs(2),
            rescan: Duration::from_secs(2),
            detach: false,
            announce: false,
            log: false,
        }
    }
}

/// Why [`run_tracker`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerExit {
    /// Another tracker of this user runs; this one did nothing.
    AlreadyRunning,
    /// Nothing left to do: no creating process connected, no candidate.
    Idle {
        /// Segments it reclaimed.
        reclaimed: u64,
        /// Looks at every process's mappings it took.
        scans: u64,
    },
}

/// Runs the tracker (Linux only; elsewhere nothing is recorded or reclaimed).
///
/// # Errors
///
/// [`Error::Os`] of kind `Unsupported`, always.
#[cfg(not(target_os = "linux"))]
pub fn run_tracker(_options: &TrackerOptions) -> Result<TrackerExit> {
    let unsupported = std::io::Error::new(std::io::ErrorKind::Unsupported, "Linux only");
    Err(Error::from_os("(tracker)", "start", unsupported))
}

/// Called before a reclaimable segment is created: makes sure a tracker runs for
/// this user (the first time in a process, then at most once a second).
pub(crate) fn on_create() {
    #[cfg(target_os = "linux")]
    if enabled() {
        client::ensure_tracker();
    }
}

/// Whether the tracker this process started or joined is still there (`false`
/// if none: reclaim off, no tracker program, or not on Linux). For tests and
/// diagnostics.
pub fn tracker_connected() -> bool {
    #[cfg(target_os = "linux")]
    return client::connected();
    #[cfg(not(target_os = "linux"))]
    false
}

/// Waits until no segment is named `name`, or `timeout` passes; whether it is
/// gone. Sleeps on `/dev/shm` (inotify), so it answers as soon as the name goes.
///
/// # Errors
///
/// [`Error::InvalidName`] for a malformed name; [`Error::Os`] if `/dev/shm`
/// cannot be watched, or on other platforms than Linux.
///
/// # Example
///
/// ```
/// # #[cfg(target_os = "linux")] {
/// use std::time::Duration;
/// let shm = shmbridge::SharedMemory::create_unique("doc_gone", 64)?;
/// let name = shm.name().to_owned();
/// drop(shm); // the creator unlinks at drop
/// assert!(shmbridge::reclaim::wait_gone(&name, Duration::from_secs(5))?);
/// # }
/// # Ok::<(), shmbridge::Error>(())
/// ```
pub fn wait_gone(name: &str, timeout: Duration) -> Result<bool> {
    let name = canonical_name(name)?;
    sys::accounting::wait_gone(&name, timeout).map_err(|e| Error::from_os(&name, "inotify", e))
}

/// A segment that [`gc`] removed (or, dry, would remove).
#[derive(Debug, Clone)]
pub struct Reclaimed {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its record (kind, creator).
    pub record: OwnershipRecord,
}

/// Why [`gc`] kept a segment that carries a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeptReason {
    /// Its creator asked for it to be kept.
    Persistent,
    /// Its record holds flags this build does not know: never acted on.
    UnknownFlags(u8),
    /// Its record is of another version, or damaged.
    UnreadableRecord(String),
    /// Its creator runs.
    CreatorAlive,
    /// Whether its creator runs cannot be told (another pid namespace).
    CreatorUnknown,
    /// These processes map it or hold a descriptor of it.
    InUse(Vec<u32>),
    /// Its mode lets others than its owner write it, so they could have written
    /// its record too: a record is trusted only where nobody else could forge it
    /// (else a user allowed to write someone's file could have it removed).
    WritableByOthers,
    /// The removal failed (permission, or the name changed meanwhile).
    Failed(String),
}

impl std::fmt::Display for KeptReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pids = |pids: &[u32]| pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        match self {
            KeptReason::Persistent => f.write_str("persistent"),
            KeptReason::UnknownFlags(flags) => write!(f, "record flags {flags:#04x} unknown"),
            KeptReason::UnreadableRecord(why) => write!(f, "unreadable record: {why}"),
            KeptReason::CreatorAlive => f.write_str("creator alive"),
            KeptReason::CreatorUnknown => f.write_str("creator in another pid namespace"),
            KeptReason::InUse(p) => write!(f, "in use by {}", pids(p)),
            KeptReason::WritableByOthers => {
                f.write_str("writable by others than its owner (its record could be forged)")
            }
            KeptReason::Failed(why) => write!(f, "removal failed: {why}"),
        }
    }
}

/// A segment with a record that [`gc`] kept, and why.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its name.
    pub name: String,
    /// Why it stays.
    pub reason: KeptReason,
}

/// What [`gc`] did.
#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Removed (or, dry, would be removed).
    pub removed: Vec<Reclaimed>,
    /// Segments with a record that stay, with the reason.
    pub kept: Vec<Kept>,
    /// Segments without a record (not made by shmbridge, or unrecorded): never
    /// touched.
    pub foreign: usize,
    /// Segments that went away while this gc was removing them, by another hand
    /// (somebody unlinked them meanwhile): gone, but not removed by this gc.
    pub gone: Vec<String>,
}

/// Removes every reclaimable segment (see the [module docs](self)) in
/// `/dev/shm`, whoever created it (another user's only with the privilege to
/// remove it); with `dry_run`, removes nothing and reports what it would remove.
///
/// # Errors
///
/// [`Error::Os`] if `/dev/shm` or `/proc` cannot be read (and on other platforms
/// than Linux, where nothing is recorded).
pub fn gc(dry_run: bool) -> Result<GcReport> {
    let files =
        sys::accounting::list(true, None).map_err(|e| Error::from_os("/dev/shm", "list", e))?;
    let mut report = GcReport::default();
    let mut candidates = Vec::new();
    for file in files.into_iter().filter(|f| f.regular) {
        if hidden_by_live_reclaimer(&file.name) {
            // Another reclaimer (a gc, a tracker, a last mapper) is removing it right
            // now: that one reports it. Taking it over would make that removal fail
            // and could put a segment still in use back under that reclaimer's
            // hidden name instead of its own.
            continue;
        }
        match judge_record(&file) {
            Judged::Foreign => report.foreign += 1,
            Judged::Keep(reason) => report.kept.push(Kept { name: file.name, reason }),
            Judged::Candidate(record) => candidates.push((file, record)),
        }
    }
    let batch = reclaim_batch(candidates, dry_run)?;
    report.removed = batch.removed;
    report.kept.extend(batch.kept);
    report.gone = batch.gone;
    report.kept.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}

/// What a file's record alone says.
enum Judged {
    Foreign,
    Keep(KeptReason),
    Candidate(OwnershipRecord),
}

fn judge_record(file: &ShmFile) -> Judged {
    let Some(bytes) = &file.record else { return Judged::Foreign };
    let record = match OwnershipRecord::parse(bytes) {
        Ok(record) => record,
        Err(why) => return Judged::Keep(KeptReason::UnreadableRecord(why)),
    };
    if record.is_persistent() {
        return Judged::Keep(KeptReason::Persistent);
    }
    if !record.is_reclaimable() {
        return Judged::Keep(KeptReason::UnknownFlags(record.flags()));
    }
    match record.creator_state() {
        CreatorState::Dead => Judged::Candidate(record),
        CreatorState::Alive => Judged::Keep(KeptReason::CreatorAlive),
        CreatorState::Unknown => Judged::Keep(KeptReason::CreatorUnknown),
    }
}

/// Whether `name` is a hidden name (see the [module docs](self)) of a reclaimer
/// that may still run: those are its own, in the middle of a removal, and are
/// never touched. Only the hidden names of a reclaimer that provably died (by the
/// rules for creators: no such pid, a zombie, or another start time) are looked at
/// like any segment, so that what a crashed reclaimer left behind still goes.
fn hidden_by_live_reclaimer(name: &str) -> bool {
    if !name.trim_start_matches('/').starts_with(sys::accounting::HIDDEN_PREFIX) {
        return false;
    }
    // A hidden name in neither known form is not ours to judge.
    let Some(hider) = sys::accounting::hider_of(name) else { return true };
    if let Some(namespace) = hider.namespace {
        let here = sys::accounting::pid_namespace().unwrap_or(0);
        if namespace == 0 || here == 0 || namespace != here {
            return true; // its pid means another process here
        }
    }
    match sys::accounting::process_stat(hider.pid) {
        Ok(None) => false,
        Ok(Some(stat)) if stat.exited => false,
        Ok(Some(stat)) => hider.start.is_none_or(|hidden_at| hidden_at == stat.start),
        Err(_) => true,
    }
}

/// The processes that use `file`, if any.
///
/// Processes whose mappings the kernel does not show us (another user's, when not
/// root; an undumpable one, such as a container's init or `ssh-agent`) are not
/// counted: counting them as users would stop every reclaim on most machines. If
/// one of them maps a dead creator's segment, reclaim may remove its name; its
/// mapping, and the memory, stay valid.
fn users_of(file: &ShmFile, users: &Users) -> Option<KeptReason> {
    let pids = users.by_file.get(&file.id).filter(|p| !p.is_empty())?;
    Some(KeptReason::InUse(pids.clone()))
}

/// What [`reclaim_batch`] did.
#[derive(Default)]
struct Batch {
    removed: Vec<Reclaimed>,
    kept: Vec<Kept>,
    /// Names of segments that vanished between the hiding and the unlink.
    gone: Vec<String>,
}

/// Removes those of `candidates` (files whose creator is dead) that nobody uses,
/// by hiding them, looking again, then unlinking; returns what was removed, what
/// was kept and what went away meanwhile.
fn reclaim_batch(candidates: Vec<(ShmFile, OwnershipRecord)>, dry_run: bool) -> Result<Batch> {
    let mut batch = Batch::default();
    let Batch { removed, kept, gone } = &mut batch;
    if candidates.is_empty() {
        return Ok(batch);
    }
    let scan = || sys::accounting::scan_users().map_err(|e| Error::from_os("/proc", "scan", e));
    let users = scan()?;
    let mut hidden = Vec::new();
    for (file, record) in candidates {
        if file.mode & 0o022 != 0 {
            kept.push(Kept { name: file.name, reason: KeptReason::WritableByOthers });
            continue;
        }
        if let Some(reason) = users_of(&file, &users) {
            kept.push(Kept { name: file.name, reason });
            continue;
        }
        if dry_run {
            removed.push(Reclaimed { name: file.name, size: file.size, record });
            continue;
        }
        match sys::accounting::hide(&file.name, file.id, &record.encode()) {
            Ok(Some(hidden_name)) => hidden.push((file, record, hidden_name)),
            Ok(None) => {} // gone, or another segment took the name: nothing of this one left
            Err(e) => {
                kept.push(Kept { name: file.name, reason: KeptReason::Failed(e.to_string()) })
            }
        }
    }
    if hidden.is_empty() {
        return Ok(batch);
    }
    // Nobody can open these by name now; whoever opened one before it was hidden
    // shows up in this second look.
    let users = match scan() {
        Ok(users) => users,
        Err(e) => {
            for (file, _, hidden_name) in hidden {
                let _ = sys::accounting::restore(&hidden_name, &file.name);
                kept.push(Kept { name: file.name, reason: KeptReason::Failed(e.to_string()) });
            }
            return Ok(batch);
        }
    };
    for (file, record, hidden_name) in hidden {
        if let Some(reason) = users_of(&file, &users) {
            // Put back; if a new segment took the name meanwhile, the hidden one
            // stays under its hidden name (a later gc looks at it again).
            let _ = sys::accounting::restore(&hidden_name, &file.name);
            kept.push(Kept { name: file.name, reason });
            continue;
        }
        match sys::accounting::remove(&hidden_name) {
            Ok(()) => removed.push(Reclaimed { name: file.name, size: file.size, record }),
            // Somebody unlinked it under its hidden name (nothing of shmbridge does:
            // no reclaimer takes over a live one's hidden names): gone, not kept.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(file.name),
            Err(e) => {
                kept.push(Kept { name: file.name, reason: KeptReason::Failed(e.to_string()) })
            }
        }
    }
    Ok(batch)
}

/// The last-mapper path: the segment `name` carries `record` (read when it was
/// opened here), whose creator is gone; remove it if that is proven and nobody
/// uses it. Errors are ignored: a tracker or [`gc`] tries again.
pub(crate) fn reclaim_if_unused(name: &str, record: &OwnershipRecord) {
    let Ok(file) = sys::accounting::stat_name(name) else { return };
    let same = file.regular && record.is_stored_in(file.record.as_deref());
    if !same || record.creator_state() != CreatorState::Dead {
        return;
    }
    let _ = reclaim_batch(vec![(file, record.clone())], false);
}

/// The files of `/dev/shm` whose record makes them candidates for this user's
/// tracker: owned by `uid`, reclaimable records. For the tracker.
#[cfg(target_os = "linux")]
fn recorded_of(uid: u32, file: &ShmFile) -> Option<OwnershipRecord> {
    if !file.regular || file.uid != uid || hidden_by_live_reclaimer(&file.name) {
        return None;
    }
    let record = OwnershipRecord::parse(file.record.as_deref()?).ok()?;
    record.is_reclaimable().then_some(record)
}
