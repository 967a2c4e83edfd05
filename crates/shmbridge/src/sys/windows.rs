//! Named file mappings backed by the paging file, for Windows.
//!
//! Names: a segment `/frames` is the mapping object `Local\frames`, in the
//! namespace of the caller's logon session, where Python's
//! `multiprocessing.shared_memory` puts its segments too (it passes the bare name,
//! which means the same), so segments open across the two. `Global\` (shared
//! across sessions, which needs `SeCreateGlobalPrivilege`) cannot be reached: a
//! name may not contain a backslash.
//!
//! Lifetime: a mapping object, and so its name, lives while any process holds a
//! handle to it. Every mapping of a segment made here keeps a handle with its view
//! (see `park_windows.rs`), so a segment lives while any process has it mapped,
//! and goes away with the last one. There is nothing to unlink: [`unlink`] only
//! says whether the name exists, and a segment cannot persist past its last user.
//!
//! Sizes: the system does not tell the size a mapping was created with, only the
//! size of its pages; an opener sees the size rounded up to whole pages (4 KiB),
//! as Python's stdlib does on Windows. The creator sees its own size.

use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, OpenFileMappingW, PAGE_READWRITE, SEC_COMMIT,
    UnmapViewOfFile, VirtualQuery,
};

use super::park;

/// The longest name, leading `/` included: kernel object names are limited to
/// `MAX_PATH` (260) characters with the terminating NUL, and this leaves room for
/// the `Local\` prefix and for the name of the segment's parking table
/// (`Local\shmbridge-wait1-<name>`).
pub(crate) const MAX_NAME_LEN: usize = 200;
/// A backslash would select another object namespace (`Global\...`).
pub(crate) const FORBIDDEN_NAME_CHARS: &[char] = &['\\'];
/// Said after a refused character.
pub(crate) const FORBIDDEN_NAME_HINT: &str = " (segments live in the session's namespace, \
    `Local\\`, where Python's are too: give the name without a prefix; `Global\\` is not \
    supported)";
/// A named mapping disappears with its last handle; there is nothing to unlink.
pub(crate) const CAN_UNLINK: bool = false;

/// A kernel handle, closed on drop.
struct Owned(HANDLE);

// SAFETY: a kernel handle is valid in every thread of the process that opened it;
// this type only passes it to thread-safe system calls and closes it once, on drop.
unsafe impl Send for Owned {}
// SAFETY: as for Send; &Owned exposes no way to close or replace the handle.
unsafe impl Sync for Owned {}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: self.0 is a valid handle owned by this value, closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

/// An open file-mapping object and its name; clones share the one handle, which
/// closes with the last of them (each view keeps one: see [`map`]).
#[derive(Clone)]
pub(crate) struct Handle(Arc<Named>);

struct Named {
    object: Owned,
    /// The segment's name without its leading `/`.
    bare: Box<str>,
}

impl Handle {
    fn new(raw: HANDLE, name: &str) -> Self {
        Self(Arc::new(Named { object: Owned(raw), bare: bare(name).into() }))
    }

    fn raw(&self) -> HANDLE {
        self.0.object.0
    }

    /// The segment's name without its leading `/`.
    pub(super) fn bare_name(&self) -> &str {
        &self.0.bare
    }
}

fn bare(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

/// The object name of segment `name`, NUL-terminated UTF-16.
fn object_name(name: &str) -> Vec<u16> {
    format!("Local\\{}", bare(name)).encode_utf16().chain(std::iter::once(0)).collect()
}

pub(crate) fn create(
    name: &str,
    size: usize,
    _mode: u32,
    _reserve: bool,
    _record: &[u8],
) -> io::Result<Handle> {
    let wname = object_name(name);
    let size = size as u64;
    // SAFETY: wname is NUL-terminated UTF-16 that outlives the call; a null security
    // descriptor means the default one. SEC_COMMIT charges the whole size against the
    // commit limit now, so a lack of memory fails here rather than at first touch.
    let h = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE | SEC_COMMIT,
            (size >> 32) as u32,
            size as u32,
            wname.as_ptr(),
        )
    };
    if h.is_null() {
        return Err(no_memory_is_out_of_memory(io::Error::last_os_error()));
    }
    // SAFETY: reads this thread's last-error value, set by CreateFileMappingW above.
    if unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
        drop(Owned(h));
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    Ok(Handle::new(h, name))
}

/// The commit limit reached (`ERROR_COMMITMENT_LIMIT`) is a lack of memory, as
/// `ERROR_NOT_ENOUGH_MEMORY` is; std maps only the latter to `OutOfMemory`.
fn no_memory_is_out_of_memory(err: io::Error) -> io::Error {
    const ERROR_COMMITMENT_LIMIT: i32 = 1455;
    if err.raw_os_error() == Some(ERROR_COMMITMENT_LIMIT) {
        return io::Error::new(io::ErrorKind::OutOfMemory, err);
    }
    err
}

pub(crate) fn open(name: &str, writable: bool) -> io::Result<(Handle, u64)> {
    let wname = object_name(name);
    let access = if writable { FILE_MAP_READ | FILE_MAP_WRITE } else { FILE_MAP_READ };
    // SAFETY: wname is NUL-terminated UTF-16 that outlives the call.
    let h = unsafe { OpenFileMappingW(access, 0, wname.as_ptr()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    let handle = Handle::new(h, name);
    let size = query_size(&handle)?;
    Ok((handle, size))
}

/// The size of a mapping object, in whole pages (the system keeps no other), read
/// from a temporary view of the whole of it.
fn query_size(handle: &Handle) -> io::Result<u64> {
    // SAFETY: a read-only view of the whole object at an address of the system's choice.
    let view = unsafe { MapViewOfFile(handle.raw(), FILE_MAP_READ, 0, 0, 0) };
    if view.Value.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid MEMORY_BASIC_INFORMATION (integers and pointers).
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: view.Value is the base of the live view made above; info is writable and
    // of the size passed.
    let written = unsafe {
        VirtualQuery(view.Value, &mut info, std::mem::size_of::<MEMORY_BASIC_INFORMATION>())
    };
    let result =
        if written == 0 { Err(io::Error::last_os_error()) } else { Ok(info.RegionSize as u64) };
    // SAFETY: unmaps the view made above, which nothing else refers to.
    unsafe { UnmapViewOfFile(view) };
    result
}

/// Removes nothing (a mapping goes away with its last handle), but answers as an
/// unlink does: `NotFound` if no segment has the name.
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    let wname = object_name(name);
    // SAFETY: wname is NUL-terminated UTF-16 that outlives the call.
    let h = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, wname.as_ptr()) };
    if h.is_null() {
        let err = io::Error::last_os_error();
        // Access denied means it exists: somebody else's.
        return if err.kind() == io::ErrorKind::PermissionDenied { Ok(()) } else { Err(err) };
    }
    drop(Owned(h));
    Ok(())
}

/// The commit charge this process may still add (what a new segment draws on).
pub(crate) fn free_space() -> Option<u64> {
    use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
    // SAFETY: all-zero is a valid MEMORYSTATUSEX (integers).
    let mut status: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
    status.dwLength = size_of::<MEMORYSTATUSEX>() as u32;
    // SAFETY: status is writable, and its dwLength says its size, as required.
    (unsafe { GlobalMemoryStatusEx(&mut status) } != 0).then_some(status.ullAvailPageFile)
}

/// Maps a view of `len` bytes of the object, at an address of the system's
/// choosing; the view keeps a handle to the object (so its name lives while the
/// view does) and is known to the parking tables (for waits on its words).
pub(crate) fn map(
    handle: &Handle,
    len: usize,
    writable: bool,
    _populate: bool,
) -> io::Result<NonNull<u8>> {
    let access = if writable { FILE_MAP_READ | FILE_MAP_WRITE } else { FILE_MAP_READ };
    // SAFETY: a fresh view at an address of the system's choosing, of at most the
    // object's size (checked by the segment layer).
    let view = unsafe { MapViewOfFile(handle.raw(), access, 0, 0, len) };
    let base = NonNull::new(view.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
    park::register_view(base, len, handle);
    Ok(base)
}

/// Unmaps a view made by `map`.
///
/// # Safety
///
/// `ptr` must be the base of a live view made by `map`, unmapped only once, with no
/// reference into it alive.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
    park::unregister_view(ptr);
    let view = MEMORY_MAPPED_VIEW_ADDRESS { Value: ptr.as_ptr().cast() };
    // SAFETY: the caller vouches for a live view based at ptr.
    if unsafe { UnmapViewOfFile(view) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until the pipe `handle` has data (or is broken) or `timeout` passes;
/// `true` if a read will not block. Anonymous pipes cannot be waited on, so this
/// polls `PeekNamedPipe` with short pauses.
#[cfg(feature = "worker")]
pub(crate) fn wait_readable(
    pipe: &impl std::os::windows::io::AsHandle,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::System::Pipes::PeekNamedPipe;
    let handle = pipe.as_handle();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut available = 0u32;
        // SAFETY: the handle is a live pipe handle borrowed for this call; only the
        // byte count is asked for, into a local.
        let ok = unsafe {
            PeekNamedPipe(
                handle.as_raw_handle(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut available,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || available > 0 {
            return Ok(true); // data, or a broken pipe that the read will report
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// `true` at once: an anonymous pipe does not tell how much room it has. Unused
/// while [`set_nonblocking`] says it cannot make writes return early here.
#[cfg(feature = "worker")]
pub(crate) fn wait_writable(
    pipe: &impl std::os::windows::io::AsHandle,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    let _ = (pipe.as_handle(), timeout);
    Ok(true)
}

/// `false`: std's writes to a child's pipe wait until it has room, whatever the
/// handle's mode, so the worker writes to it the blocking way here.
#[cfg(feature = "worker")]
pub(crate) fn set_nonblocking(pipe: &impl std::os::windows::io::AsHandle) -> io::Result<bool> {
    let _ = pipe.as_handle();
    Ok(false)
}

/// Sleeps while `word` holds `expected`: until another process or thread calls
/// [`wake`] on it, `timeout` passes, or spuriously. Callers re-check their
/// condition. Returns whether a signal interrupted the wait: never, here (Ctrl-C
/// runs a handler on a thread of its own).
///
/// Each sleeping thread waits on an event of its own, listed in the segment's
/// parking table (`park_windows.rs`): a wait that blocks in the kernel, which a
/// thread of any process can end.
pub(crate) fn wait_on(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) -> bool {
    park::park(&[(word, expected)], timeout);
    false
}

/// Wakes up to `count` waiters of `word` (in any process).
pub(crate) fn wake(word: &std::sync::atomic::AtomicU32, count: u32) {
    park::wake(word, count);
}

/// Whether a process with this id is still running.
/// Whether a process has this id (here: whether it runs).
pub(crate) fn process_exists(pid: u32) -> bool {
    process_alive(pid)
}

pub(crate) fn process_alive(pid: u32) -> bool {
    match open_process(pid) {
        Ok(process) => is_running(&process),
        // No access means it exists (somebody else's).
        Err(err) => err.kind() == io::ErrorKind::PermissionDenied,
    }
}

/// A handle to process `pid` that can be waited on.
fn open_process(pid: u32) -> io::Result<Owned> {
    use windows_sys::Win32::System::Threading::{
        OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
    };
    // SAFETY: OpenProcess takes plain values; a null result means no such process
    // (or no access).
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE, 0, pid) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(Owned(h))
}

/// Whether the process behind `process` has not exited (its handle is signalled
/// once it has).
fn is_running(process: &Owned) -> bool {
    use windows_sys::Win32::Foundation::WAIT_TIMEOUT;
    use windows_sys::Win32::System::Threading::WaitForSingleObject;
    // SAFETY: process is a live process handle with SYNCHRONIZE access.
    unsafe { WaitForSingleObject(process.0, 0) == WAIT_TIMEOUT }
}

/// This process's id (`GetCurrentProcessId` reads it from the process block; no
/// fork on Windows).
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// A way to ask repeatedly whether one process still runs: a handle to it, held
/// from the start, so a later process that gets the same id is never taken for it.
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    pid: u32,
    /// `None` if the process could not be opened: gone already, or no access (then
    /// asked by id each time).
    process: Option<Owned>,
    gone: bool,
}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:p}", self.0)
    }
}

impl ProcessWatch {
    pub(crate) fn new(pid: u32) -> Self {
        match open_process(pid) {
            Ok(process) => Self { pid, process: Some(process), gone: false },
            Err(err) => {
                let gone = err.kind() != io::ErrorKind::PermissionDenied;
                Self { pid, process: None, gone }
            }
        }
    }

    /// The watched process.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process still runs.
    pub(crate) fn is_alive(&self) -> bool {
        match &self.process {
            Some(process) => is_running(process),
            None => !self.gone && process_alive(self.pid),
        }
    }
}

/// Sleeps until one of `words` no longer holds its expected value or is woken,
/// `timeout` passes, or spuriously: one event wait, with a parking slot for each
/// word. Callers re-check.
pub(crate) fn wait_on_many(
    words: &[(&std::sync::atomic::AtomicU32, u32)],
    timeout: Option<std::time::Duration>,
) {
    park::park(words, timeout);
}
