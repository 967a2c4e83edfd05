//! Named file mappings backed by the paging file, for Windows.
//!
//! Names are used without their leading `/` and live in the session's namespace,
//! which is what Python's `multiprocessing.shared_memory` does, so segments open
//! across the two. A mapping lives while any process holds a handle or a view:
//! there is no unlink and no persistence past the last user.

use std::io;
use std::ptr::NonNull;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, GetLastError, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, OpenFileMappingW, PAGE_READWRITE, SEC_COMMIT,
    UnmapViewOfFile, VirtualQuery,
};

/// Kernel object names may be up to MAX_PATH characters.
pub(crate) const MAX_NAME_LEN: usize = 255;
/// A backslash would select another object namespace (`Global\...`).
pub(crate) const FORBIDDEN_NAME_CHARS: &[char] = &['\\'];
/// A named mapping disappears with its last handle; there is nothing to unlink.
pub(crate) const CAN_UNLINK: bool = false;

/// An open file-mapping object.
pub(crate) struct Handle(HANDLE);

// SAFETY: a kernel handle is valid in every thread of the process that opened it;
// this type only passes it to thread-safe system calls and closes it once, on drop.
unsafe impl Send for Handle {}
// SAFETY: as for Send; &Handle exposes no way to close or replace the handle.
unsafe impl Sync for Handle {}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: self.0 is a valid handle owned by this value, closed only here.
        unsafe { CloseHandle(self.0) };
    }
}

fn wide(name: &str) -> Vec<u16> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    bare.encode_utf16().chain(std::iter::once(0)).collect()
}

pub(crate) fn create(
    name: &str,
    size: usize,
    _mode: u32,
    _reserve: bool,
    _record: &[u8],
) -> io::Result<Handle> {
    let wname = wide(name);
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
        return Err(io::Error::last_os_error());
    }
    // SAFETY: reads this thread's last-error value, set by CreateFileMappingW above.
    if unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
        drop(Handle(h));
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    Ok(Handle(h))
}

pub(crate) fn open(name: &str, writable: bool) -> io::Result<(Handle, u64)> {
    let wname = wide(name);
    let access = if writable { FILE_MAP_READ | FILE_MAP_WRITE } else { FILE_MAP_READ };
    // SAFETY: wname is NUL-terminated UTF-16 that outlives the call.
    let h = unsafe { OpenFileMappingW(access, 0, wname.as_ptr()) };
    if h.is_null() {
        return Err(io::Error::last_os_error());
    }
    let handle = Handle(h);
    let size = query_size(&handle)?;
    Ok((handle, size))
}

/// The size of a mapping object, read from a temporary view of the whole of it.
fn query_size(handle: &Handle) -> io::Result<u64> {
    // SAFETY: a read-only view of the whole object at an address of the system's choice.
    let view = unsafe { MapViewOfFile(handle.0, FILE_MAP_READ, 0, 0, 0) };
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

pub(crate) fn unlink(_name: &str) -> io::Result<()> {
    Ok(())
}

pub(crate) fn free_space() -> Option<u64> {
    None
}

/// Maps a view of `len` bytes of the object, at an address of the system's choosing.
pub(crate) fn map(
    handle: &Handle,
    len: usize,
    writable: bool,
    _populate: bool,
) -> io::Result<NonNull<u8>> {
    let access = if writable { FILE_MAP_READ | FILE_MAP_WRITE } else { FILE_MAP_READ };
    // SAFETY: a fresh view at an address of the system's choosing, of at most the
    // object's size (checked by the segment layer).
    let view = unsafe { MapViewOfFile(handle.0, access, 0, 0, len) };
    NonNull::new(view.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)
}

/// Unmaps a view made by `map`.
///
/// # Safety
///
/// `ptr` must be the base of a live view made by `map`, unmapped only once, with no
/// reference into it alive.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, _len: usize) -> io::Result<()> {
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

/// Sleeps briefly: Windows has no wait on an address shared between processes
/// (`WaitOnAddress` is per process), so waiters poll. Callers re-check.
/// Returns whether a signal interrupted the wait: never, here.
pub(crate) fn wait_on(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) -> bool {
    let _ = (word, expected);
    let pause = std::time::Duration::from_micros(200);
    std::thread::sleep(timeout.map_or(pause, |t| t.min(pause)));
    false
}

/// Nothing to do: waiters poll.
pub(crate) fn wake(word: &std::sync::atomic::AtomicU32, count: u32) {
    let _ = (word, count);
}

/// Whether a process with this id is still running.
/// Whether a process has this id (here: whether it runs).
pub(crate) fn process_exists(pid: u32) -> bool {
    process_alive(pid)
}

pub(crate) fn process_alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::STILL_ACTIVE;
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: OpenProcess takes plain values; a null result means no such process
    // (or no access, which means it exists).
    let h = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if h.is_null() {
        return io::Error::last_os_error().raw_os_error() == Some(5); // ERROR_ACCESS_DENIED
    }
    let handle = Handle(h);
    let mut code = 0u32;
    // SAFETY: handle is a live process handle; code is a local out-parameter.
    let ok = unsafe { GetExitCodeProcess(handle.0, &mut code) };
    ok != 0 && code == STILL_ACTIVE as u32
}

/// This process's id (`GetCurrentProcessId` reads it from the process block; no
/// fork on Windows).
pub(crate) fn current_pid() -> u32 {
    std::process::id()
}

/// A way to ask repeatedly whether one process still runs.
#[derive(Debug)]
pub(crate) struct ProcessWatch {
    pid: u32,
}

impl ProcessWatch {
    pub(crate) fn new(pid: u32) -> Self {
        Self { pid }
    }

    /// The watched process.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process still runs.
    pub(crate) fn is_alive(&self) -> bool {
        process_alive(self.pid)
    }
}

/// Sleeps briefly, so the caller polls `words` (no cross-process multi-wait here).
pub(crate) fn wait_on_many(
    words: &[(&std::sync::atomic::AtomicU32, u32)],
    timeout: Option<std::time::Duration>,
) {
    let _ = words;
    let pause = std::time::Duration::from_micros(200);
    std::thread::sleep(timeout.map_or(pause, |t| t.min(pause)));
}
