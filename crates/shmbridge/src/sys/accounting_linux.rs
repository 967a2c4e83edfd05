//! Accounting for named segments, Linux: the ownership record (an extended
//! attribute of the segment's tmpfs file), the list of segments in `/dev/shm`,
//! which processes use a segment (`/proc`), removing exactly one file, and what the
//! reclaim tracker waits on (inotify on `/dev/shm`, an abstract socket, pidfds).
//!
//! Policy lives above, in `record` and `reclaim`; this file only asks the kernel.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::Handle;

/// Records can be kept here (tmpfs has `user.*` extended attributes since Linux
/// 6.6; an older kernel refuses them, and segments are then unrecorded).
pub(crate) const SUPPORTED: bool = true;

/// The directory that holds the named segments.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The extended attribute that holds a segment's ownership record.
pub(crate) const RECORD_ATTRIBUTE: &str = "user.shmbridge";

/// The largest record read back (version 1 is 40 bytes; later versions may add).
const RECORD_MAX: usize = 256;

/// Names a reclaim gives a segment for the moment between checking it and
/// removing it (see [`hide`]); listings skip them unless asked.
pub(crate) const HIDDEN_PREFIX: &str = ".shmbridge-reclaim-";

/// Who took a segment out of sight under a hidden name (see [`hide`]), as the name
/// says: `/.shmbridge-reclaim-<pid namespace>-<pid>-<start>-<n>`, or, from builds
/// before the namespace and start time were written, `/.shmbridge-reclaim-<pid>-<n>`
/// (then `namespace` and `start` are `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hider {
    pub(crate) namespace: Option<u64>,
    pub(crate) pid: u32,
    pub(crate) start: Option<u64>,
}

/// A number nobody can guess in advance (std's randomly seeded hasher, fed the
/// time and a counter): the last part of a hidden name.
fn unpredictable() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    hasher.write_u128(now.map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

/// A hidden name for one removal by this process (`serial` unpredictable). It names the process
/// (pid namespace, pid, start time) so that another reclaimer can tell whether the
/// process that hid a segment still runs: a live one's hidden names are its own,
/// in the middle of a removal, and are never taken over.
fn hidden_name(serial: u64) -> String {
    // The identity is read from /proc once per process (a child made by fork has
    // another pid, and reads its own); try_lock, since in such a child a parent's
    // thread may have held the lock at the fork.
    static IDENTITY: std::sync::Mutex<Option<(u32, String)>> = std::sync::Mutex::new(None);
    let pid = super::current_pid();
    let mut cached = IDENTITY.try_lock().ok();
    let known = cached.as_deref().and_then(|c| c.as_ref()).filter(|(p, _)| *p == pid);
    let identity = match known {
        Some((_, identity)) => identity.clone(),
        None => {
            let start = process_stat(pid).ok().flatten().map_or(0, |stat| stat.start);
            let identity = format!("{}-{pid}-{start}", pid_namespace().unwrap_or(0));
            if let Some(cached) = cached.as_deref_mut() {
                *cached = Some((pid, identity.clone()));
            }
            identity
        }
    };
    format!("/{HIDDEN_PREFIX}{identity}-{serial}")
}

/// Who hid the segment `name` (canonical), if it is a hidden name; `None` for any
/// other name, and for a hidden name in neither form.
pub(crate) fn hider_of(name: &str) -> Option<Hider> {
    let rest = name.trim_start_matches('/').strip_prefix(HIDDEN_PREFIX)?;
    let numbers: Vec<u64> =
        rest.split('-').map(|n| n.parse().ok()).collect::<Option<Vec<u64>>>()?;
    match numbers[..] {
        [namespace, pid, start, _serial] => Some(Hider {
            namespace: Some(namespace),
            pid: u32::try_from(pid).ok()?,
            start: Some(start),
        }),
        [pid, _serial] => {
            Some(Hider { namespace: None, pid: u32::try_from(pid).ok()?, start: None })
        }
        _ => None,
    }
}

/// The path of a segment's file, from its canonical name.
pub(crate) fn path_of(name: &str) -> String {
    format!("{SHM_DIR}/{}", name.trim_start_matches('/'))
}

pub(crate) use super::{FileId, ShmFile};

/// Writes the record on a segment just created; `false` if the file system refuses
/// (a kernel before 6.6, or no room for attributes): the segment is then
/// unrecorded, which nothing ever reclaims.
pub(crate) fn write_record(handle: &Handle, record: &[u8]) -> bool {
    fs::fsetxattr(handle.as_fd(), RECORD_ATTRIBUTE, record, XattrFlags::empty()).is_ok()
}

/// The record of an open segment, if it has one.
pub(crate) fn read_record(handle: &Handle) -> Option<Vec<u8>> {
    let mut buf = [0u8; RECORD_MAX];
    let n = fs::fgetxattr(handle.as_fd(), RECORD_ATTRIBUTE, &mut buf[..]).ok()?;
    Some(buf[..n].to_vec())
}

/// The record of the file at `path` (never following a link), if it has one.
fn record_at(path: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; RECORD_MAX];
    let n = fs::lgetxattr(path, RECORD_ATTRIBUTE, &mut buf[..]).ok()?;
    Some(buf[..n].to_vec())
}

/// Replaces the record of the segment `name` with `new`, if the segment still
/// carries `expected` (so a later segment under the same name is never touched).
/// `Ok(false)`: the name is gone or holds another segment.
pub(crate) fn update_record(name: &str, expected: &[u8], new: &[u8]) -> io::Result<bool> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match fs::open(path_of(name), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::LOOP) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
        return Ok(false);
    }
    let mut buf = [0u8; RECORD_MAX];
    match fs::fgetxattr(&fd, RECORD_ATTRIBUTE, &mut buf[..]) {
        Ok(n) if &buf[..n] == expected => {}
        _ => return Ok(false),
    }
    fs::fsetxattr(&fd, RECORD_ATTRIBUTE, new, XattrFlags::REPLACE)?;
    Ok(true)
}

/// What `/dev/shm` says about `name`; the record is read only if the file changed
/// at `since` (seconds since the epoch) or later.
fn shm_file(name: String, path: &str, stat: &fs::Stat, since: Option<i64>) -> ShmFile {
    let regular = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile;
    let wanted = regular && since.is_none_or(|s| stat.st_ctime >= s);
    ShmFile {
        name,
        id: FileId { dev: stat.st_dev, ino: stat.st_ino },
        size: stat.st_size.max(0) as u64,
        mode: stat.st_mode & 0o7777,
        uid: stat.st_uid,
        gid: stat.st_gid,
        regular,
        modified: stat.st_mtime,
        record: if wanted { record_at(path) } else { None },
    }
}

/// Every entry of `/dev/shm` (names that a reclaim hides for a moment included
/// only if `hidden`), with the records of those changed at `since` (seconds since
/// the epoch) or later: a creator's segments are never older than the creator.
pub(crate) fn list(hidden: bool, since: Option<i64>) -> io::Result<Vec<ShmFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        let Some(bare) = entry.file_name().to_str().map(str::to_owned) else {
            continue; // not a name any shmbridge API can hold
        };
        if !hidden && bare.starts_with(HIDDEN_PREFIX) {
            continue;
        }
        if bare.starts_with(super::tracker_socket::DIR_PREFIX) {
            continue; // the tracker's private directories: not segments
        }
        let path = format!("{SHM_DIR}/{bare}");
        match fs::statat(fs::CWD, path.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => out.push(shm_file(format!("/{bare}"), &path, &stat, since)),
            Err(Errno::NOENT) => {} // removed meanwhile
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One entry of `/dev/shm`, by canonical name, never following a link.
pub(crate) fn stat_name(name: &str) -> io::Result<ShmFile> {
    let path = path_of(name);
    let stat = fs::statat(fs::CWD, path.as_str(), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(shm_file(name.to_owned(), &path, &stat, None))
}

/// Who uses the files of `/dev/shm` now.
#[derive(Debug, Default)]
pub(crate) struct Users {
    /// Each file in use, with the processes that map it or hold a descriptor of it.
    pub(crate) by_file: HashMap<FileId, Vec<u32>>,
    /// Processes whose mappings and descriptors could not be read (another user's,
    /// without privilege; or a process that made itself undumpable), with their uid.
    pub(crate) uninspected: Vec<(u32, u32)>,
}

/// Reads every process's mappings (`/proc/<pid>/maps`) and open descriptors
/// (`/proc/<pid>/fd`) for files of `/dev/shm`.
///
/// A process that exits meanwhile is skipped. Processes of another pid namespace
/// that is not below this one are not visible here at all.
pub(crate) fn scan_users() -> io::Result<Users> {
    let shm = fs::stat(SHM_DIR)?;
    let dev = shm.st_dev;
    // /proc/<pid>/maps prints the device as "%02x:%02x" (major, minor).
    let dev_text = format!("{:02x}:{:02x}", fs::major(dev), fs::minor(dev));
    let mut users = Users::default();
    let mut maps = Vec::with_capacity(64 * 1024);
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let mut found: Vec<FileId> = Vec::new();
        match read_into(&format!("/proc/{pid}/maps"), &mut maps) {
            Ok(()) => {
                for line in maps.split(|&b| b == b'\n') {
                    // "start-end perms offset dev inode path"
                    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
                    let (Some(_), Some(_), Some(_), Some(device), Some(inode)) =
                        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
                    else {
                        continue;
                    };
                    if device != dev_text.as_bytes() {
                        continue;
                    }
                    let ino = std::str::from_utf8(inode).ok().and_then(|s| s.parse().ok());
                    if let Some(ino) = ino {
                        found.push(FileId { dev, ino });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let uid = entry.metadata().map(|m| m.uid()).unwrap_or(u32::MAX);
                users.uninspected.push((pid, uid));
                continue;
            }
            Err(_) => continue, // exited meanwhile (or a kernel thread's empty maps)
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            for fd in fds.flatten() {
                let path = fd.path();
                let Ok(target) = std::fs::read_link(&path) else { continue };
                if !target.as_os_str().as_encoded_bytes().starts_with(b"/dev/shm/") {
                    continue;
                }
                if let Some(stat) = fs::stat(&path).ok().filter(|s| s.st_dev == dev) {
                    found.push(FileId { dev, ino: stat.st_ino });
                }
            }
        }
        found.sort_by_key(|id| id.ino);
        found.dedup();
        for id in found {
            users.by_file.entry(id).or_default().push(pid);
        }
    }
    Ok(users)
}

fn read_into(path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)?.read_to_end(buf)?;
    Ok(())
}

/// Takes the segment `name` out of sight for a removal: renames it to a hidden
/// name of this process (never replacing anything), then checks that the file so
/// taken is `id` and still carries `record`. `Ok(Some(hidden))` if so; `Ok(None)`
/// if the name is gone or held another file (which is then put back).
///
/// From then on nobody can open the segment by its name, so a caller that finds
/// no user after this can remove it knowing no new user can appear.
pub(crate) fn hide(name: &str, id: FileId, record: &[u8]) -> io::Result<Option<String>> {
    let from = path_of(name);
    // The last part of the hidden name is random: anyone may create files in
    // /dev/shm, and names planted in advance would make every rename fail (and so
    // stop every reclaim). A taken name is simply drawn again.
    let mut attempts = 0;
    let (hidden, to) = loop {
        let hidden = hidden_name(unpredictable());
        let to = path_of(&hidden);
        match fs::renameat_with(
            fs::CWD,
            from.as_str(),
            fs::CWD,
            to.as_str(),
            fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => break (hidden, to),
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::EXIST) if attempts < 8 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let same = fs::statat(fs::CWD, to.as_str(), AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|s| FileId { dev: s.st_dev, ino: s.st_ino } == id)
        && record_at(&to).is_some_and(|r| r.starts_with(record));
    if same {
        return Ok(Some(hidden));
    }
    restore(&hidden, name)?;
    Ok(None)
}

/// Puts a segment taken out of sight by [`hide`] back under its name. Fails with
/// `AlreadyExists` if a new segment took the name meanwhile (the hidden one then
/// stays hidden).
pub(crate) fn restore(hidden: &str, name: &str) -> io::Result<()> {
    let (from, to) = (path_of(hidden), path_of(name));
    fs::renameat_with(fs::CWD, from.as_str(), fs::CWD, to.as_str(), fs::RenameFlags::NOREPLACE)?;
    Ok(())
}

/// Removes a name (a hidden one, after [`hide`]).
pub(crate) fn remove(name: &str) -> io::Result<()> {
    Ok(fs::unlinkat(fs::CWD, path_of(name).as_str(), AtFlags::empty())?)
}

/// A process's state and start time, from `/proc/<pid>/stat`; `None` if no such
/// process exists.
pub(crate) fn process_stat(pid: u32) -> io::Result<Option<super::ProcessStat>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // No such process, if /proc is there at all.
            return if std::path::Path::new("/proc/self/stat").exists() {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Err(e) => return Err(e),
    };
    // "pid (comm) S ppid ...": fields after the last ')' (comm may hold parentheses);
    // the state is field 3 and the start time field 22 of the whole line.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("unreadable /proc stat"))?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().and_then(|s| s.chars().next());
    let start = fields.nth(18).and_then(|s| s.parse::<u64>().ok());
    let (Some(state), Some(start)) = (state, start) else {
        return Err(io::Error::other("unreadable /proc stat"));
    };
    let exited = matches!(state, 'Z' | 'X') && live_threads(pid)? <= 1;
    Ok(Some(super::ProcessStat { exited, start }))
}

/// How many threads process `pid` counts (`Threads:` of `/proc/<pid>/status`):
/// a zombie first thread stays counted until the whole group is gone, so more
/// than one means some thread still runs.
fn live_threads(pid: u32) -> io::Result<u64> {
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("unreadable /proc status"))
}

/// When a process that started `ticks` clock ticks after boot started, in seconds
/// since the epoch (`btime` of `/proc/stat`).
pub(crate) fn started_at(ticks: u64) -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: i64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Some(boot + (ticks / per_second) as i64)
}

/// The inode of this process's pid namespace (`/proc/self/ns/pid`), which tells
/// whether a recorded pid means the same process here.
///
/// `None` also when `/proc` belongs to another pid namespace than this process's
/// (`unshare --pid` without a new `/proc`): its pids are not the ones this process
/// records and sees, so no creator may be judged through it.
pub(crate) fn pid_namespace() -> Option<u64> {
    let proc_self = std::fs::read_link("/proc/self").ok()?;
    if proc_self.to_str()?.parse::<u32>().ok()?
        != rustix::process::getpid().as_raw_nonzero().get() as u32
    {
        return None;
    }
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// What a [`ShmWatch`] saw happen to a name in `/dev/shm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShmEvent {
    /// Some process let go of a file: the last mapping or descriptor of one open
    /// of it went away.
    Released(String),
    /// A name went away (removed, or renamed).
    Gone(String),
    /// Events were lost: look at everything again.
    Overflow,
}

/// Watches `/dev/shm` (inotify) for files being let go of, which is when a segment
/// may have lost its last user, and for names going away.
pub(crate) struct ShmWatch {
    fd: OwnedFd,
    buf: Vec<MaybeUninit<u8>>,
}

impl ShmWatch {
    pub(crate) fn new() -> io::Result<Self> {
        use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        let flags = WatchFlags::CLOSE_WRITE
            | WatchFlags::CLOSE_NOWRITE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::ONLYDIR;
        inotify::add_watch(&fd, SHM_DIR, flags)?;
        Ok(Self { fd, buf: vec![MaybeUninit::uninit(); 64 * 1024] })
    }

    /// Becomes readable when events wait.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Appends the events that wait (none if none); never blocks.
    pub(crate) fn read(&mut self, out: &mut Vec<ShmEvent>) -> io::Result<()> {
        use rustix::fs::inotify::{ReadFlags, Reader};
        let mut reader = Reader::new(&self.fd, &mut self.buf);
        loop {
            let event = match reader.next() {
                Ok(event) => event,
                Err(Errno::AGAIN | Errno::INTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                out.push(ShmEvent::Overflow);
                continue;
            }
            let Some(name) = event.file_name().and_then(|n: &CStr| n.to_str().ok()) else {
                continue;
            };
            let name = format!("/{name}");
            if flags.intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                out.push(ShmEvent::Gone(name));
            } else if flags.intersects(ReadFlags::CLOSE_WRITE | ReadFlags::CLOSE_NOWRITE) {
                out.push(ShmEvent::Released(name));
            }
        }
    }
}

/// Waits until any of `fds` is readable (or hung up), or `timeout` passes (never,
/// if `None`); which ones are. A signal ends the wait early (nothing is ready then).
pub(crate) fn wait_readable_any(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut polled: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(fd, PollFlags::IN)).collect();
    let timeout = timeout.map(|t| Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: t.subsec_nanos() as _,
    });
    match poll(&mut polled, timeout.as_ref()) {
        Ok(_) => Ok(polled.iter().map(|p| !p.revents().is_empty()).collect()),
        Err(Errno::INTR) => Ok(vec![false; fds.len()]),
        Err(e) => Err(e.into()),
    }
}

/// A descriptor kept open only to be given up when the process runs out of them
/// (see [`accept`]).
pub(crate) fn spare_descriptor() -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags, open};
    open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()
}

/// Raises this process's soft limit of open descriptors to its hard limit: the
/// tracker holds one per connected process and one per creator it watches, and the
/// usual soft limit (1024) is a few hundred processes.
pub(crate) fn raise_descriptor_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        let _ = setrlimit(Resource::Nofile, raised);
    }
}

/// Takes one waiting connection of this user's, if any, with the pid of the
/// process that connected. Connections of other users are closed as they come
/// (any local user can connect to the tracker's address): a stranger can neither
/// hold the tracker's descriptors nor have it watch a process.
///
/// Out of descriptors, a connection would stay queued and the listener readable
/// for ever, and the tracker's loop would spin: `spare` (from
/// [`spare_descriptor`]) is then closed to take the connection and close it at
/// once (that process is not watched: its segments are left to the last mapper
/// and `shmbridge gc`), and taken again.
pub(crate) fn accept(listener: &OwnedFd, spare: &mut Option<OwnedFd>) -> Option<(OwnedFd, u32)> {
    use rustix::net::{SocketFlags, accept_with, sockopt};
    let me = rustix::process::geteuid();
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    loop {
        let fd = match accept_with(listener, flags) {
            Ok(fd) => fd,
            Err(Errno::MFILE | Errno::NFILE) => {
                drop(spare.take()?);
                // Closed before the spare is taken again: it needs that descriptor.
                let turned_away = accept_with(listener, flags).map(drop);
                *spare = spare_descriptor();
                turned_away.ok()?;
                continue;
            }
            Err(_) => return None,
        };
        match sockopt::socket_peercred(&fd) {
            Ok(peer) if peer.uid == me => {
                return Some((fd, peer.pid.as_raw_nonzero().get() as u32));
            }
            _ => drop(fd),
        }
    }
}

/// Whether the other side of a connection is gone (never blocks). Anything read
/// is discarded: the tracker's clients send nothing.
pub(crate) fn hung_up(fd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut polled = [PollFd::new(fd, PollFlags::IN)];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    match poll(&mut polled, Some(&now)) {
        Ok(0) => false,
        Ok(_) if polled[0].revents().intersects(PollFlags::HUP | PollFlags::ERR) => true,
        Ok(_) => {
            let mut buf = [0u8; 64];
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => true, // end of file: the other side closed
                Ok(_) | Err(Errno::AGAIN | Errno::INTR) => false,
                Err(_) => true,
            }
        }
        Err(_) => true,
    }
}

/// Makes this process a daemon's: its own session (no terminal's Ctrl-C or hangup
/// reaches it) and no descriptor but 0, 1 and 2 (whatever its parent left open
/// without close-on-exec, such as a memfd or a pipe somebody waits on, must not be
/// kept alive by it). Call first thing, before opening anything.
pub(crate) fn detach() {
    let _ = rustix::process::setsid();
    // SAFETY: close_range(3, ~0, 0) closes every descriptor above 2; called at the
    // start of a fresh process (the contract above), when nothing in it owns one.
    // (rustix has no close_range, and its close asserts success.)
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if closed == 0 {
        return;
    }
    // Before Linux 5.9: one by one.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; the directory's own descriptor, closed already, is
        // EBADF, which libc's close reports without harm.
        unsafe { libc::close(fd) };
    }
}

/// Waits until no file is named `name` in `/dev/shm`, or `timeout` passes; whether
/// it is gone.
pub(crate) fn wait_gone(name: &str, timeout: Duration) -> io::Result<bool> {
    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, Reader, WatchFlags};
    let deadline = std::time::Instant::now() + timeout;
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
    inotify::add_watch(&fd, SHM_DIR, WatchFlags::DELETE | WatchFlags::MOVED_FROM)?;
    let bare = name.trim_start_matches('/');
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 16 * 1024];
    loop {
        // Checked after the watch is in place, so a removal in between is not missed.
        match fs::statat(fs::CWD, path_of(name).as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(true),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        wait_readable_any(&[fd.as_fd()], Some(deadline - now))?;
        let mut reader = Reader::new(&fd, &mut buf);
        while let Ok(event) = reader.next() {
            let ours = event.file_name().is_some_and(|n| n.to_bytes() == bare.as_bytes());
            if ours && event.events().intersects(ReadFlags::DELETE | ReadFlags::MOVED_FROM) {
                break;
            }
        }
    }
}

/// This process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Writes `word` and a newline on standard output, then points standard output at
/// `/dev/null`: how a started tracker tells the process that started it that it
/// is ready, without holding that process's pipe open afterwards.
pub(crate) fn announce(word: &str) -> io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{word}")?;
    out.flush()?;
    let null = fs::open("/dev/null", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::stdio::dup2_stdout(&null)?;
    Ok(())
}

/// Whether running the program at `path` as this user trusts nobody else: the
/// file it resolves to, and the directory holding it, belong to this user or to
/// root, and neither group nor others may write them. A program found beside the
/// running one, or on `PATH`, in a directory others may write (`/tmp`) could have
/// been put there by anyone.
pub(crate) fn trusted_program(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let safe = |m: &std::fs::Metadata| (m.uid() == me || m.uid() == 0) && m.mode() & 0o022 == 0;
    let Ok(file) = std::fs::canonicalize(path) else { return false };
    let (Ok(meta), Some(dir)) = (std::fs::metadata(&file), file.parent()) else { return false };
    meta.is_file() && safe(&meta) && std::fs::metadata(dir).is_ok_and(|d| safe(&d))
}
