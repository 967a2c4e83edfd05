//! Where a user's reclaim tracker listens (Linux), and how a process makes sure
//! that what answers there is that user's tracker and not a stranger's process.
//!
//! First choice: the abstract socket `shmbridge-tracker-1-<euid>`. It vanishes with
//! the process that binds it (a crashed tracker leaves nothing behind) and binding
//! it is atomic (so there is one tracker). But abstract names carry no permissions:
//! any local user may bind another user's name first (squat it). So a connection is
//! used only if the listening process runs as this user (`SO_PEERCRED`), and when a
//! stranger holds the abstract name, the tracker listens instead on a pathname
//! socket, `tracker-1.sock`, in a directory only this user can write:
//! `/dev/shm/.shmbridge-tracker-<euid>`, or, if a stranger made that name first,
//! `/dev/shm/.shmbridge-tracker-<euid>-1` and so on up to `-15`. A directory
//! counts only if `lstat` says it is a directory (not a link), owned by this user,
//! with no permission for group or others; `/dev/shm` is sticky, so nobody else can
//! rename or remove it afterwards, and nobody else can put anything in it.
//! Every process of the user looks at the same places in the same order, so all
//! find the tracker the first one started.

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{self, AtFlags, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SocketAddrUnix, SocketFlags, SocketType, bind, connect as connect_to, listen,
    socket_with, sockopt,
};

use super::accounting::SHM_DIR;

/// The names of the tracker's private directories in `/dev/shm` start so
/// (listings of `/dev/shm` skip them).
pub(crate) const DIR_PREFIX: &str = ".shmbridge-tracker-";

/// How many directory names are tried, `<prefix><euid>` then `<prefix><euid>-<n>`.
const DIR_CANDIDATES: u32 = 16;

/// Where a tracker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrackerAddress {
    /// An abstract socket name (without the leading NUL).
    Abstract(String),
    /// A socket file.
    Path(String),
}

impl TrackerAddress {
    /// The socket file in the private directory `dir` (from [`private_dir`]).
    pub(crate) fn in_dir(dir: &str) -> Self {
        Self::Path(format!("{dir}/tracker-1.sock"))
    }

    fn unix(&self) -> io::Result<SocketAddrUnix> {
        Ok(match self {
            Self::Abstract(name) => SocketAddrUnix::new_abstract_name(name.as_bytes())?,
            Self::Path(path) => SocketAddrUnix::new(path.as_str())?,
        })
    }
}

/// What a connection to a tracker address found.
#[derive(Debug)]
pub(crate) enum Reached {
    /// A process of this user listens: the connection.
    Ours(OwnedFd),
    /// Nobody listens.
    Nobody,
    /// A process of another user listens (the connection is closed at once: it is
    /// never used); or (`pid` 0) the address does not answer: it is held by a
    /// process that does not listen, or whose queue of connections is full.
    Stranger { pid: i32, uid: u32 },
}

/// The [`Reached::Stranger`] and [`Listened::Stranger`] of an address that is held
/// but does not answer, so that nobody can tell who holds it.
pub(crate) const UNANSWERED: (i32, u32) = (0, u32::MAX);

/// Who holds a tracker address, for messages.
pub(crate) fn holder(pid: i32, uid: u32) -> String {
    if (pid, uid) == UNANSWERED {
        "a process that does not answer".to_owned()
    } else {
        format!("process {pid} of user {uid}")
    }
}

/// What binding a tracker address gave.
#[derive(Debug)]
pub(crate) enum Listened {
    /// This process listens there now.
    Listening(OwnedFd),
    /// Another process of this user (a tracker) listens there.
    Ours,
    /// A process of another user holds the address.
    Stranger { pid: i32, uid: u32 },
}

/// Connects to `address` and tells who listens there. Never waits: a connection
/// to a Unix socket completes at once or not at all, unless the listener's queue is
/// full, and a stranger can keep it full (it listens and never accepts); that is
/// [`UNANSWERED`], not a wait.
pub(crate) fn connect(address: &TrackerAddress) -> io::Result<Reached> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    match connect_to(&fd, &address.unix()?) {
        Ok(()) => {}
        // ENOENT: no socket file; ECONNREFUSED: nobody listens (a tracker's file
        // left behind, or no abstract name).
        Err(Errno::CONNREFUSED | Errno::NOENT) => return Ok(Reached::Nobody),
        Err(Errno::AGAIN) => {
            let (pid, uid) = UNANSWERED;
            return Ok(Reached::Stranger { pid, uid });
        }
        Err(e) => return Err(e.into()),
    }
    // The connection is used blocking, as before (its user reads the tracker's
    // answers with its own deadlines).
    rustix::io::ioctl_fionbio(&fd, false)?;
    // The credentials of the process that bound and listened, as the kernel
    // recorded them: they cannot be forged.
    let peer = sockopt::socket_peercred(&fd)?;
    if peer.uid != rustix::process::geteuid() {
        let (pid, uid) = (peer.pid.as_raw_nonzero().get(), peer.uid.as_raw());
        return Ok(Reached::Stranger { pid, uid });
    }
    Ok(Reached::Ours(fd))
}

/// Listens on `address` unless a process already does.
///
/// A socket file is claimed under an exclusive lock on `tracker-1.lock` beside it,
/// so that of two trackers starting at once, one listens and the other finds it:
/// under the lock, a socket file nobody listens on (left by a tracker that exited)
/// is replaced.
pub(crate) fn listen_on(address: &TrackerAddress) -> io::Result<Listened> {
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    match address {
        TrackerAddress::Abstract(_) => {
            // The holder may exit between a failed bind and the connection that
            // asks who it is: then try again (a few times).
            for _ in 0..3 {
                match bind(&fd, &address.unix()?) {
                    Ok(()) => {
                        listen(&fd, 128)?;
                        return Ok(Listened::Listening(fd));
                    }
                    Err(Errno::ADDRINUSE) => {}
                    Err(e) => return Err(e.into()),
                }
                match connect(address)? {
                    Reached::Ours(_) => return Ok(Listened::Ours),
                    Reached::Stranger { pid, uid } => return Ok(Listened::Stranger { pid, uid }),
                    Reached::Nobody => {}
                }
            }
            // Bound, yet nobody answers: a process that bound the name and never
            // listens (a stranger, as far as anyone can tell): the caller goes to
            // its private directory.
            let (pid, uid) = UNANSWERED;
            Ok(Listened::Stranger { pid, uid })
        }
        TrackerAddress::Path(path) => {
            let dir = path.rsplit_once('/').map_or(".", |(dir, _)| dir);
            let lock = fs::open(
                format!("{dir}/tracker-1.lock"),
                OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            // Held only for the few calls below (released when `lock` is dropped).
            fs::flock(&lock, FlockOperation::LockExclusive)?;
            match connect(address)? {
                Reached::Ours(_) => return Ok(Listened::Ours),
                Reached::Stranger { pid, uid } => return Ok(Listened::Stranger { pid, uid }),
                Reached::Nobody => {}
            }
            match fs::unlink(path.as_str()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
            bind(&fd, &address.unix()?)?;
            listen(&fd, 128)?;
            Ok(Listened::Listening(fd))
        }
    }
}

/// Whether the directory at `path` is this user's private one.
enum DirState {
    Ours,
    Absent,
    /// Another user's, a link, a file, or one of ours that others may write.
    Unusable,
}

fn dir_state(path: &str, uid: u32) -> io::Result<DirState> {
    // Never follows a link: a stranger's link to a directory of ours is not ours.
    match fs::statat(fs::CWD, path, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
            let private = stat.st_mode & 0o077 == 0;
            Ok(if dir && stat.st_uid == uid && private {
                DirState::Ours
            } else {
                DirState::Unusable
            })
        }
        Err(Errno::NOENT) => Ok(DirState::Absent),
        Err(e) => Err(e.into()),
    }
}

/// This user's private directory for the tracker's socket file (see the module
/// docs): the first of the candidate names that is ours; else, with `create`, the
/// first name nobody took, made now (mode 0700). `None` if there is none (every
/// name is a stranger's, or none is ours and `create` is false).
pub(crate) fn private_dir(create: bool) -> io::Result<Option<String>> {
    let uid = rustix::process::geteuid().as_raw();
    let candidate = |n: u32| match n {
        0 => format!("{SHM_DIR}/{DIR_PREFIX}{uid}"),
        n => format!("{SHM_DIR}/{DIR_PREFIX}{uid}-{n}"),
    };
    for n in 0..DIR_CANDIDATES {
        if let DirState::Ours = dir_state(&candidate(n), uid)? {
            return Ok(Some(candidate(n)));
        }
    }
    if !create {
        return Ok(None);
    }
    for n in 0..DIR_CANDIDATES {
        let path = candidate(n);
        match fs::mkdir(path.as_str(), Mode::from_raw_mode(0o700)) {
            // EEXIST: a stranger's, or another process of ours made it just now.
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        if let DirState::Ours = dir_state(&path, uid)? {
            return Ok(Some(path));
        }
    }
    Ok(None)
}
