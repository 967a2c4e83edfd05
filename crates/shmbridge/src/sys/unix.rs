//! POSIX shared memory, for Linux and macOS.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{self, Mode};
use rustix::mm::{self, MapFlags, ProtFlags};
use rustix::shm;

/// `NAME_MAX` on Linux (the name is a file in `/dev/shm`); `PSHMNAMLEN` on macOS.
pub(crate) const MAX_NAME_LEN: usize = if cfg!(target_vendor = "apple") { 31 } else { 255 };
pub(crate) const FORBIDDEN_NAME_CHARS: &[char] = &[];
/// Said after a refused character (none is, here).
pub(crate) const FORBIDDEN_NAME_HINT: &str = "";
/// POSIX names outlive their creator until unlinked.
pub(crate) const CAN_UNLINK: bool = true;

/// An open shared-memory object.
pub(crate) struct Handle(OwnedFd);

/// Creates the segment `name`, exclusively, sized and reserved, with `record` as its
/// ownership record.
///
/// On Linux the file is made without a name first (`O_TMPFILE` in `/dev/shm`),
/// given its record (`fsetxattr`), mode and size and pages (one `fallocate`, which
/// sets the size of a new file), and only then linked under `name` (failing if the
/// name is taken): the name never shows a segment without its record or of the
/// wrong size, and a creator killed at any moment leaves either nothing or a
/// recorded segment. (Creating the name first and writing the record after saves
/// the `linkat`, 3 to 4 us here, but the crash campaign caught a creator killed
/// between the two: an empty, unrecorded file that nothing may ever reclaim.) Where
/// this is not possible (no `O_TMPFILE`, no `/proc` to link through) the name is
/// created first and the record written at once after.
pub(crate) fn create(
    name: &str,
    size: usize,
    mode: u32,
    reserve: bool,
    record: &[u8],
) -> io::Result<Handle> {
    let mode = Mode::from_bits_truncate(mode as _);
    #[cfg(target_os = "linux")]
    if let Some(created) = create_linked(name, size, mode, reserve, record) {
        return created;
    }
    let fd = create_object(name, mode)?;
    let handle = Handle(fd);
    #[cfg(target_os = "linux")]
    super::accounting::write_record(&handle, record);
    #[cfg(not(target_os = "linux"))]
    let _ = record;
    let sized = set_mode_and_size(&handle.0, mode, size, reserve);
    if let Err(err) = sized {
        // The name is ours (O_EXCL): take it back rather than leave a broken segment.
        let _ = shm::unlink(name);
        return Err(err);
    }
    Ok(handle)
}

/// [`create`] through an unnamed file linked into place once complete; `None` if
/// this system cannot (the caller then creates the name directly).
#[cfg(target_os = "linux")]
fn create_linked(
    name: &str,
    size: usize,
    mode: Mode,
    reserve: bool,
    record: &[u8],
) -> Option<io::Result<Handle>> {
    use rustix::io::Errno;
    use std::os::fd::AsRawFd;
    let flags = fs::OFlags::TMPFILE | fs::OFlags::RDWR | fs::OFlags::CLOEXEC;
    let handle = match fs::open("/dev/shm", flags, mode) {
        Ok(fd) => Handle(fd),
        // No O_TMPFILE on this file system or kernel.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => return None,
        Err(e) => return Some(Err(e.into())),
    };
    super::accounting::write_record(&handle, record);
    if let Err(e) = set_mode_and_size(&handle.0, mode, size, reserve) {
        return Some(Err(e)); // the file has no name: it goes with the descriptor
    }
    let target = format!("/dev/shm/{}", name.trim_start_matches('/'));
    // Linking the descriptor itself (AT_EMPTY_PATH) is allowed to its opener since
    // Linux 6.10, and to privileged processes before; else through /proc.
    match fs::linkat(&handle.0, "", fs::CWD, target.as_str(), fs::AtFlags::EMPTY_PATH) {
        Ok(()) => return Some(Ok(handle)),
        Err(Errno::NOENT | Errno::PERM | Errno::INVAL) => {}
        Err(e) => return Some(Err(e.into())),
    }
    let source = format!("/proc/self/fd/{}", handle.0.as_raw_fd());
    let flags = fs::AtFlags::SYMLINK_FOLLOW;
    match fs::linkat(fs::CWD, source.as_str(), fs::CWD, target.as_str(), flags) {
        Ok(()) => Some(Ok(handle)),
        // /proc is not mounted: the caller creates the name directly.
        Err(Errno::NOENT) if !std::path::Path::new("/proc/self/fd").exists() => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// Creates the object exclusively. On Linux `O_CREAT | O_EXCL` makes a new regular
/// file or fails with `EEXIST` whatever holds the name (a planted link is not
/// followed, a FIFO not opened), so none of [`open_object`]'s checks are needed.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn create_object(name: &str, mode: Mode) -> io::Result<OwnedFd> {
    use fs::OFlags;
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(fs::open(path, flags, mode)?)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn create_object(name: &str, mode: Mode) -> io::Result<OwnedFd> {
    Ok(open_object(name, Access::Create, mode)?.0)
}

/// How [`open_object`] opens.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    /// Linux creates through `create_object` instead.
    #[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
    Create,
    ReadWrite,
    ReadOnly,
}

/// Opens (or creates, exclusively) the object named `name`, refusing anything that
/// is not a segment; returns it with its size.
///
/// On Linux `shm_open` is `open` of a file in `/dev/shm`, where anyone may plant a
/// file under a name they expect somebody else to open. rustix's `shm::open` (unlike
/// glibc's) would follow a symbolic link there to any file the caller may write, and
/// opening a FIFO would wait for a writer forever. So the file is opened here with
/// `O_NOFOLLOW` (a link is `ELOOP`) and `O_NONBLOCK` (a FIFO opens at once), and
/// checked to be a regular file. The flag stays: it changes nothing for a regular
/// file, and the descriptor of a named segment is closed once it is mapped.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_object(name: &str, access: Access, mode: Mode) -> io::Result<(OwnedFd, u64)> {
    use fs::{FileType, OFlags};
    use rustix::io::Errno;
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let flags = match access {
        Access::Create => flags | OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
        Access::ReadWrite => flags | OFlags::RDWR,
        Access::ReadOnly => flags | OFlags::RDONLY,
    };
    let fd = match fs::open(path, flags, mode) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Err(not_a_segment(FileType::Symlink)),
        Err(Errno::ISDIR) => return Err(not_a_segment(FileType::Directory)),
        Err(e) => return Err(e.into()),
    };
    let stat = fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(not_a_segment(kind));
    }
    Ok((fd, stat.st_size.max(0) as u64))
}

/// macOS keeps POSIX segments in a namespace of their own, not in a directory:
/// nobody can plant a link or a FIFO there, and `fstat` reports no file type.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn open_object(name: &str, access: Access, mode: Mode) -> io::Result<(OwnedFd, u64)> {
    let flags = match access {
        Access::Create => shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        Access::ReadWrite => shm::OFlags::RDWR,
        Access::ReadOnly => shm::OFlags::RDONLY,
    };
    let fd = shm::open(name, flags, mode)?;
    let size = if access == Access::Create { 0 } else { fs::fstat(&fd)?.st_size.max(0) as u64 };
    Ok((fd, size))
}

/// The error for a name that is taken by something other than a segment.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn not_a_segment(kind: fs::FileType) -> io::Error {
    use fs::FileType;
    use rustix::io::Errno;
    let (found, errno) = match kind {
        FileType::Symlink => ("a symbolic link", Errno::LOOP),
        FileType::Directory => ("a directory", Errno::ISDIR),
        FileType::Fifo => ("a FIFO (named pipe)", Errno::NODEV),
        FileType::Socket => ("a socket", Errno::NODEV),
        FileType::CharacterDevice | FileType::BlockDevice => ("a device", Errno::NODEV),
        FileType::RegularFile | FileType::Unknown => ("not a regular file", Errno::NODEV),
    };
    io::Error::other(super::NotASegment { found, errno: errno.raw_os_error() })
}

fn set_mode_and_size(fd: &OwnedFd, mode: Mode, size: usize, reserve: bool) -> io::Result<()> {
    // shm_open applies the umask; the caller asked for exactly `mode`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fs::fchmod(fd, mode)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = mode;
    // tmpfs reserves nothing on ftruncate: without fallocate, a full /dev/shm shows
    // up as SIGBUS at the first touch of a page, long after create returned Ok. On a
    // new, empty file fallocate also sets the size, so it replaces ftruncate.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if reserve {
        fs::fallocate(fd, fs::FallocateFlags::empty(), 0, size as u64)?;
        return Ok(());
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = reserve;
    fs::ftruncate(fd, size as u64)?;
    Ok(())
}

impl Handle {
    /// The descriptor, to hand to a child process.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A segment with no name at all: a memfd on Linux; on macOS a POSIX segment whose
/// name is unlinked at once. Only processes given the descriptor can map it.
pub(crate) fn create_anonymous(size: usize, reserve: bool) -> io::Result<Handle> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let fd =
        fs::memfd_create("shmbridge", fs::MemfdFlags::CLOEXEC | fs::MemfdFlags::ALLOW_SEALING)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let fd = {
        // A scratch name, gone again at once: pid and a random part keep it apart
        // from other processes' (O_EXCL refuses a collision rather than share).
        use std::hash::BuildHasher;
        let random = std::collections::hash_map::RandomState::new().hash_one(()) as u32;
        let name = format!("/anon_{}_{random:08x}", std::process::id());
        let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
        let fd = shm::open(name.as_str(), flags, Mode::RUSR | Mode::WUSR)?;
        shm::unlink(name.as_str())?;
        fd
    };
    set_mode_and_size(&fd, Mode::RUSR | Mode::WUSR, size, reserve)?;
    // Whoever gets the descriptor can write the segment, but not shrink it (pages
    // would vanish under every mapping: SIGBUS), nor resize it at all (its size is
    // the creator's, as for named segments; growing would be harmless), nor add
    // seals of its own (F_SEAL_FUTURE_WRITE would keep later openers from writing).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fs::fcntl_add_seals(&fd, fs::SealFlags::SHRINK | fs::SealFlags::GROW | fs::SealFlags::SEAL)?;
    Ok(Handle(fd))
}

/// Takes a segment by descriptor (an anonymous segment handed down by a parent):
/// a duplicate of it, and its size.
pub(crate) fn open_fd(fd: BorrowedFd<'_>) -> io::Result<(Handle, u64)> {
    let fd = rustix::io::fcntl_dupfd_cloexec(fd, 3)?;
    let stat = fs::fstat(&fd)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let kind = fs::FileType::from_raw_mode(stat.st_mode);
        if kind != fs::FileType::RegularFile {
            return Err(not_a_segment(kind));
        }
    }
    Ok((Handle(fd), stat.st_size.max(0) as u64))
}

/// Lets a child process inherit `fd`: clears its close-on-exec flag. Meant for the
/// child side of a fork, before exec (async-signal-safe: one fcntl).
#[cfg(feature = "worker")]
pub(crate) fn inherit_fd(fd: std::os::fd::RawFd) -> io::Result<()> {
    // SAFETY: the caller passes a descriptor it keeps open across this call (the
    // parent's Handle, alive while the child is spawned).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?)
}

pub(crate) fn open(name: &str, writable: bool) -> io::Result<(Handle, u64)> {
    let access = if writable { Access::ReadWrite } else { Access::ReadOnly };
    let (fd, size) = open_object(name, access, Mode::empty())?;
    Ok((Handle(fd), size))
}

pub(crate) fn unlink(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// Bytes free for new segments: the free space of `/dev/shm` on Linux.
pub(crate) fn free_space() -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let st = fs::statvfs("/dev/shm").ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    None
}

/// Maps `len` bytes of the object shared, at an address of the kernel's choosing.
pub(crate) fn map(
    handle: &Handle,
    len: usize,
    writable: bool,
    populate: bool,
) -> io::Result<NonNull<u8>> {
    let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
    #[allow(unused_mut)]
    let mut flags = MapFlags::SHARED;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if populate {
        flags |= MapFlags::POPULATE;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = populate;
    // SAFETY: a fresh mapping at an address of the kernel's choosing (null hint, no
    // MAP_FIXED) cannot overlap memory Rust already uses. `len` is non-zero and at most
    // the object's size, both checked by the segment layer.
    let ptr = unsafe { mm::mmap(std::ptr::null_mut(), len, prot, flags, &handle.0, 0)? };
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// Unmaps a mapping made by `map`.
///
/// # Safety
///
/// `ptr` and `len` must describe a live mapping made by `map`, unmapped only once,
/// with no reference into it alive.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: the caller vouches for a live mapping of exactly this range.
    unsafe { mm::munmap(ptr.as_ptr().cast(), len)? };
    Ok(())
}

/// Waits until `pipe` can be read (data, end of file, or an error to report) or
/// `timeout` passes; `true` if readable.
#[cfg(feature = "worker")]
pub(crate) fn wait_readable(pipe: &impl AsFd, timeout: std::time::Duration) -> io::Result<bool> {
    poll_one(pipe.as_fd(), rustix::event::PollFlags::IN, timeout)
}

/// Waits until `pipe` has room for a write (or its reader is gone, which the write
/// will report) or `timeout` passes; `true` if a write will not wait.
#[cfg(feature = "worker")]
pub(crate) fn wait_writable(pipe: &impl AsFd, timeout: std::time::Duration) -> io::Result<bool> {
    poll_one(pipe.as_fd(), rustix::event::PollFlags::OUT, timeout)
}

#[cfg(feature = "worker")]
fn poll_one(
    fd: BorrowedFd<'_>,
    events: rustix::event::PollFlags,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    use rustix::event::{PollFd, Timespec, poll};
    let timeout = Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    let mut fds = [PollFd::new(&fd, events)];
    match poll(&mut fds, Some(&timeout)) {
        Ok(n) => Ok(n > 0),
        // A signal cut the wait short: the caller loops with its deadline.
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Makes writes to our end of `pipe` take what fits and fail with `WouldBlock`
/// instead of waiting for room, so that a writer can keep a deadline; `true`: done
/// (always, here). The flag is our end's alone: the child reads from its own end
/// of the pipe, an open file of its own.
#[cfg(feature = "worker")]
pub(crate) fn set_nonblocking(pipe: &impl AsFd) -> io::Result<bool> {
    let flags = fs::fcntl_getfl(pipe)?;
    fs::fcntl_setfl(pipe, flags | fs::OFlags::NONBLOCK)?;
    Ok(true)
}

/// Sleeps while `word` holds `expected`: until another process or thread calls
/// [`wake`] on it, `timeout` passes, or spuriously. Callers re-check their condition.
///
/// Linux: a futex in its shared form (never `FUTEX_PRIVATE_FLAG`, or wake-ups from
/// other processes would not arrive). Apple systems: the kernel's `ulock` in its
/// shared form (`wait_apple.rs`). Elsewhere: a short sleep, so waiters poll.
/// Returns `true` if a signal handler ran during the wait (EINTR), for callers
/// that want to give up then.
pub(crate) fn wait_on(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::thread::futex;
        let timeout = timeout.map(|t| rustix::fs::Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as _,
            tv_nsec: t.subsec_nanos() as _,
        });
        // EAGAIN (the word changed), EINTR and ETIMEDOUT all mean: re-check. So does
        // EFAULT: the word's page vanished (a peer shrank the segment), which the
        // kernel reports here instead of raising SIGBUS; the caller's next touch of
        // the word, in a guarded scope, finds out.
        let result = futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref());
        debug_assert!(matches!(
            result,
            Ok(())
                | Err(rustix::io::Errno::AGAIN
                    | rustix::io::Errno::INTR
                    | rustix::io::Errno::TIMEDOUT
                    | rustix::io::Errno::FAULT)
        ));
        matches!(result, Err(rustix::io::Errno::INTR))
    }
    #[cfg(target_vendor = "apple")]
    {
        super::wait_apple::wait_on(word, expected, timeout)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    {
        let _ = (word, expected);
        let pause = std::time::Duration::from_micros(200);
        std::thread::sleep(timeout.map_or(pause, |t| t.min(pause)));
        false
    }
}

/// Wakes up to `count` waiters of `word` (in any process).
pub(crate) fn wake(word: &std::sync::atomic::AtomicU32, count: u32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), count);
    }
    #[cfg(target_vendor = "apple")]
    super::wait_apple::wake(word, count);
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    let _ = (word, count); // waiters poll
}

/// Whether any process (a zombie, or another user's, included) has this id: one
/// `kill(pid, 0)`.
pub(crate) fn process_exists(pid: u32) -> bool {
    let Some(id) = rustix::process::Pid::from_raw(pid as i32) else { return false };
    !matches!(rustix::process::test_kill_process(id), Err(rustix::io::Errno::SRCH))
}

/// Whether a process with this id is running (a process of another user counts).
///
/// A zombie (exited, not yet reaped by its parent) is not running: `kill(pid, 0)`
/// still succeeds on it, so on Linux its state is read from `/proc/<pid>/stat`.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Some(id) = rustix::process::Pid::from_raw(pid as i32) else { return false };
    if matches!(rustix::process::test_kill_process(id), Err(rustix::io::Errno::SRCH)) {
        return false;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (command) S ...": the state follows the last ')', as the command may
        // itself contain parentheses.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X'));
    }
    true
}

/// This process's id, without a system call on the common path, and right in a
/// child after `fork` (whichever way it was called).
///
/// glibc no longer caches `getpid`, and ownership checks (who may unlink, close a
/// channel end, unlock) run on hot paths. On Linux the id lives in a page marked
/// `MADV_WIPEONFORK`: the kernel hands a forked child that page zeroed, so a zero
/// means "ask again". Elsewhere `getpid` is asked each time.
pub(crate) fn current_pid() -> u32 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(cached) = pid_page() {
        let pid = cached.load(std::sync::atomic::Ordering::Relaxed);
        if pid != 0 {
            return pid;
        }
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        cached.store(pid, std::sync::atomic::Ordering::Relaxed);
        return pid;
    }
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The wipe-on-fork page that caches the pid; `None` if the kernel refuses it
/// (before Linux 4.14), in which case every call asks the kernel.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn pid_page() -> Option<&'static std::sync::atomic::AtomicU32> {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU32;

    struct Page(Option<NonNull<AtomicU32>>);
    // SAFETY: the page is private to this process, never unmapped, and only
    // accessed through the AtomicU32 it holds.
    unsafe impl Send for Page {}
    // SAFETY: as for Send.
    unsafe impl Sync for Page {}

    static PAGE: OnceLock<Page> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        let len = rustix::param::page_size();
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's
        // choosing cannot overlap anything Rust uses.
        let mapped = unsafe {
            mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        };
        let Ok(ptr) = mapped else { return Page(None) };
        // SAFETY: ptr/len is the mapping made above, which is ours alone.
        if unsafe { mm::madvise(ptr, len, mm::Advice::LinuxWipeOnFork) }.is_err() {
            // SAFETY: the mapping made above, not yet shared with anyone.
            let _ = unsafe { mm::munmap(ptr, len) };
            return Page(None);
        }
        // The page is zero-filled, page-aligned, and lives for the rest of the process:
        // a valid, suitably aligned AtomicU32 (0 means "not cached").
        Page(NonNull::new(ptr.cast::<AtomicU32>()))
    });
    // SAFETY: see above: the page stays mapped for the life of the process.
    page.0.map(|p| unsafe { p.as_ref() })
}

/// A way to ask, cheaply and repeatedly, whether one process still runs: a pidfd
/// on Linux (one `poll`, immune to pid reuse once opened, and a zombie counts as
/// dead), else [`process_alive`].
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    pid: u32,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pidfd: Option<OwnedFd>,
    /// The process was already gone when the watch was made.
    gone: bool,
}

impl ProcessWatch {
    pub(crate) fn new(pid: u32) -> Self {
        let Some(id) = rustix::process::Pid::from_raw(pid as i32) else {
            return Self::gone(pid);
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            match rustix::process::pidfd_open(id, rustix::process::PidfdFlags::empty()) {
                Ok(fd) => Self { pid, pidfd: Some(fd), gone: false },
                Err(rustix::io::Errno::SRCH) => Self::gone(pid),
                // Older kernels (before 5.3) or a seccomp filter: ask each time.
                Err(_) => Self { pid, pidfd: None, gone: false },
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = id;
            Self { pid, gone: false }
        }
    }

    fn gone(pid: u32) -> Self {
        Self {
            pid,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            pidfd: None,
            gone: true,
        }
    }

    /// The watched process.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// A descriptor that becomes readable when the process exits (its pidfd), for
    /// waiting on many processes at once; `None` where there is none (then poll
    /// [`is_alive`](Self::is_alive)).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub(crate) fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// Whether the process still runs (a zombie does not).
    pub(crate) fn is_alive(&self) -> bool {
        if self.gone {
            return false;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(fd) = &self.pidfd {
            use rustix::event::{PollFd, PollFlags, Timespec, poll};
            // A pidfd becomes readable when its process exits.
            let mut fds = [PollFd::new(fd, PollFlags::IN)];
            let now = Timespec { tv_sec: 0, tv_nsec: 0 };
            return !matches!(poll(&mut fds, Some(&now)), Ok(n) if n > 0);
        }
        process_alive(self.pid)
    }
}

/// Sleeps until one of `words` no longer holds its expected value or is woken,
/// `timeout` passes, or spuriously; at most 128 words. Callers re-check.
///
/// Linux 5.16+: one `futex_waitv` over all of them (shared futexes, so wake-ups
/// from other processes arrive). Older kernels, and other systems: a short sleep,
/// so the caller polls (macOS has no wait on several addresses at once: its
/// `ulock` takes one).
pub(crate) fn wait_on_many(
    words: &[(&std::sync::atomic::AtomicU32, u32)],
    timeout: Option<std::time::Duration>,
) {
    let poll = std::time::Duration::from_micros(200);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::thread::futex::{self, Wait, WaitFlags, WaitPtr, WaitvFlags};
        use rustix::time::{ClockId, clock_gettime};
        debug_assert!(words.len() <= 128);
        let waiters: Vec<Wait> = words
            .iter()
            .map(|&(word, expected)| {
                let mut wait = Wait::new();
                wait.val = u64::from(expected);
                wait.uaddr = WaitPtr::new(word.as_ptr().cast());
                wait.flags = WaitFlags::SIZE_U32; // shared: no FUTEX2_PRIVATE
                wait
            })
            .collect();
        // futex_waitv takes an absolute time on the given clock.
        let deadline = timeout.map(|t| {
            let now = clock_gettime(ClockId::Monotonic);
            let nanos = now.tv_nsec as u64 + u64::from(t.subsec_nanos());
            rustix::fs::Timespec {
                tv_sec: now.tv_sec.saturating_add(
                    (t.as_secs() + nanos / 1_000_000_000).min(i64::MAX as u64 / 2) as _,
                ),
                tv_nsec: (nanos % 1_000_000_000) as _,
            }
        });
        match futex::waitv(&waiters, WaitvFlags::empty(), deadline.as_ref(), ClockId::Monotonic) {
            // Woken, a word changed (EAGAIN), a signal, or the time passed: re-check.
            Ok(_)
            | Err(
                rustix::io::Errno::AGAIN | rustix::io::Errno::INTR | rustix::io::Errno::TIMEDOUT,
            ) => return,
            // A word's page vanished (a peer shrank its segment): the caller's
            // guarded look at the words finds which, and drops it; poll meanwhile.
            Err(rustix::io::Errno::FAULT) => {}
            // Before Linux 5.16: poll instead.
            Err(_) => {}
        }
    }
    let _ = words;
    std::thread::sleep(timeout.map_or(poll, |t| t.min(poll)));
}

/// A descriptor that an event loop can watch for readability, made readable by
/// [`WakeFd::notify`] from any thread: an eventfd on Linux, a pipe elsewhere.
#[derive(Debug)]
pub(crate) struct WakeFd {
    read: OwnedFd,
    /// The pipe's write end; `None` for an eventfd, which is both.
    write: Option<OwnedFd>,
}

impl WakeFd {
    pub(crate) fn new() -> io::Result<Self> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::event::{EventfdFlags, eventfd};
            let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            Ok(Self { read: fd, write: None })
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let (read, write) = rustix::pipe::pipe()?;
            for fd in [&read, &write] {
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
                let flags = fs::fcntl_getfl(fd)?;
                fs::fcntl_setfl(fd, flags | fs::OFlags::NONBLOCK)?;
            }
            Ok(Self { read, write: Some(write) })
        }
    }

    /// The descriptor to watch.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Makes the descriptor readable (a full pipe or counter already is).
    pub(crate) fn notify(&self) {
        let fd = self.write.as_ref().unwrap_or(&self.read);
        let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
    }

    /// Makes it unreadable again, until the next notify.
    pub(crate) fn clear(&self) {
        let mut buf = [0u8; 64];
        while matches!(rustix::io::read(&self.read, &mut buf), Ok(n) if n > 0) {}
    }
}
