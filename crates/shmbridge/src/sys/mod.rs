//! The only code that talks to the OS.
//!
//! Each platform file defines the same small set of items, and nothing above this
//! module mentions a platform:
//!
//! - `MAX_NAME_LEN`, `FORBIDDEN_NAME_CHARS`, `CAN_UNLINK`: the naming rules;
//! - `create(name, size, mode, reserve)`: a new segment, exclusively, with its pages
//!   reserved so that a lack of memory shows up now and not as a SIGBUS later;
//!   a failed create leaves no name behind;
//! - `open(name, writable) -> (Handle, size)`;
//! - `unlink(name)`;
//! - `map(&Handle, len, writable, populate) -> NonNull<u8>` and `unsafe unmap(ptr,
//!   len)`, which this module wraps in `Mapping` (unmapped on drop, or by
//!   `Mapping::unmap`, which reports the error);
//! - `free_space()`: bytes left for new segments, where the platform tells;
//! - for the worker's pipes to its child (feature `worker`): `wait_readable(pipe,
//!   timeout)`, `wait_writable(pipe, timeout)`, `set_nonblocking(pipe)` (`false`
//!   where writes cannot be made to return early), and on Unix `inherit_fd`;
//! - `wait_on(word, expected, timeout)` / `wake(word, n)`: blocking on a 32-bit word
//!   in shared memory, across processes (a shared futex on Linux; polling
//!   elsewhere); `process_alive(pid)`, to tell a dead lock owner from a busy one;
//! - `ProcessWatch`: asks repeatedly and cheaply whether one process runs (a pidfd
//!   on Linux);
//! - `current_pid()`: this process's id, cheap and right after `fork`, for the
//!   ownership checks (only the process that created or claimed something
//!   releases it implicitly);
//! - on Unix only: `create_anonymous`, `open_fd`, for segments with no name,
//!   handed to a child process by descriptor.
//!
//! Linux and macOS share POSIX shared memory (`shm_open` + `mmap`) in `unix.rs`;
//! Windows uses named file mappings in `windows.rs`.

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod os;

use std::io;
use std::ptr::NonNull;

#[cfg(all(unix, feature = "worker"))]
pub(crate) use os::inherit_fd;
pub(crate) use os::{
    CAN_UNLINK, FORBIDDEN_NAME_CHARS, Handle, MAX_NAME_LEN, ProcessWatch, create, current_pid,
    free_space, open, process_alive, unlink, wait_on, wake,
};
#[cfg(unix)]
pub(crate) use os::{create_anonymous, open_fd};
#[cfg(feature = "worker")]
pub(crate) use os::{set_nonblocking, wait_readable, wait_writable};

/// A shared mapping of a segment into this process; unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    /// 0 once unmapped.
    len: usize,
}

// SAFETY: a Mapping is a range of shared memory owned by this value alone; moving it
// to or sharing it with another thread is no different from doing so with a Box<[u8]>.
// What the crate lets callers do with the bytes is governed by SharedMemory's borrows.
unsafe impl Send for Mapping {}
// SAFETY: as for Send; &Mapping exposes only the pointer and length.
unsafe impl Sync for Mapping {}

/// Maps `len` bytes of the segment; `len` is non-zero and at most the segment's
/// size, both checked by the segment layer.
pub(crate) fn map(
    handle: &Handle,
    len: usize,
    writable: bool,
    populate: bool,
) -> io::Result<Mapping> {
    Ok(Mapping { ptr: os::map(handle, len, writable, populate)?, len })
}

impl Mapping {
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Unmaps now and reports the error; the drop that follows does nothing.
    pub(crate) fn unmap(&mut self) -> io::Result<()> {
        let len = std::mem::take(&mut self.len);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: ptr/len describe the live mapping made by `map` (len was non-zero and
        // is now zeroed, so this runs once). The crate hands out references into it
        // only with borrows of its owner, which `&mut self` has ended.
        unsafe { os::unmap(self.ptr, len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let _ = self.unmap();
    }
}
