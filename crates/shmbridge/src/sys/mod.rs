//! The only code that talks to the OS.
//!
//! Each platform file defines the same small set of items, and nothing above this
//! module mentions a platform:
//!
//! - `MAX_NAME_LEN`, `FORBIDDEN_NAME_CHARS` (and `FORBIDDEN_NAME_HINT`, said when
//!   one is refused), `CAN_UNLINK`: the naming rules;
//! - `create(name, size, mode, reserve, record)`: a new segment, exclusively, with
//!   its pages reserved so that a lack of memory shows up now and not as a SIGBUS
//!   later, carrying its ownership record from the moment its name appears (where
//!   the platform can hold one); a failed create leaves no name behind;
//! - `open(name, writable) -> (Handle, size)`;
//! - `unlink(name)`;
//! - `map(&Handle, len, writable, populate) -> NonNull<u8>` and `unsafe unmap(ptr,
//!   len)`, which this module wraps in `Mapping` (unmapped on drop, or by
//!   `Mapping::unmap`, which reports the error). Copies to and from a mapping go
//!   through `Mapping::copy_out` / `copy_in`, which turn a page that vanished under
//!   them (a peer shrank the segment) into [`PagesLost`] instead of a SIGBUS
//!   (`guard_sigbus.rs` on Linux; elsewhere pages cannot vanish, `guard_plain.rs`),
//!   and `Mapping::guarded(f)` does the same for whatever `f` touches of the
//!   mapping (atomic words, waits), with `Mapping::pages_lost` for wait loops;
//! - `free_space()`: bytes left for new segments, where the platform tells;
//! - for the worker's pipes to its child (feature `worker`): `wait_readable(pipe,
//!   timeout)`, `wait_writable(pipe, timeout)`, `set_nonblocking(pipe)` (`false`
//!   where writes cannot be made to return early), and on Unix `inherit_fd`;
//! - `wait_on(word, expected, timeout)` / `wake(word, n)`: blocking on a 32-bit word
//!   in shared memory, across processes (a shared futex on Linux; `__ulock` or
//!   `os_sync_wait_on_address` on macOS; on Windows an event per sleeping thread,
//!   found through the segment's parking table, `park_windows.rs`), and
//!   `wait_on_many` for several words at once; `process_alive(pid)`, to tell a
//!   dead lock owner from a busy one;
//! - `ProcessWatch`: asks repeatedly and cheaply whether one process runs (a pidfd
//!   on Linux);
//! - `current_pid()`: this process's id, cheap and right after `fork`, for the
//!   ownership checks (only the process that created or claimed something
//!   releases it implicitly);
//! - on Unix only: `create_anonymous`, `open_fd`, for segments with no name,
//!   handed to a child process by descriptor.
//!
//! - `accounting`: the ownership record of a segment, the list of segments, which
//!   processes use one, and what the reclaim tracker waits on (`accounting_linux.rs`;
//!   elsewhere `accounting_none.rs`, where nothing is recorded or reclaimed);
//! - `tracker_socket` (Linux): where the reclaim tracker listens, checked to be
//!   this user's process (`tracker_socket_linux.rs`).
//!
//! Linux and macOS share POSIX shared memory (`shm_open` + `mmap`) in `unix.rs`;
//! Windows uses named file mappings in `windows.rs`.

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod os;

/// Waits on words in shared memory across processes, for Apple systems (`ulock`).
#[cfg(target_vendor = "apple")]
#[path = "wait_apple.rs"]
mod wait_apple;

/// Waits on words in shared memory across processes, for Windows (no futex there).
#[cfg(windows)]
#[path = "park_windows.rs"]
mod park;

#[cfg_attr(any(target_os = "linux", target_os = "android"), path = "guard_sigbus.rs")]
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), path = "guard_plain.rs")]
mod guard;

#[cfg_attr(target_os = "linux", path = "accounting_linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "accounting_none.rs")]
pub(crate) mod accounting;

/// Which file a segment is: stays the same for one segment, and differs from any
/// segment that later takes the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

/// What `/dev/shm` says about one of its entries.
#[derive(Debug, Clone)]
pub(crate) struct ShmFile {
    /// The canonical name (with its leading `/`).
    pub(crate) name: String,
    pub(crate) id: FileId,
    pub(crate) size: u64,
    /// Permission bits.
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// A regular file (anything else is not a segment: a planted link, a FIFO...).
    pub(crate) regular: bool,
    /// Last change of the contents by a write or a resize (not through a mapping),
    /// in seconds since the epoch.
    pub(crate) modified: i64,
    /// The ownership record's bytes, if the file carries one.
    pub(crate) record: Option<Vec<u8>>,
}

/// What `/proc/<pid>/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessStat {
    /// Every thread of it has exited (a zombie not yet waited for, or dying). A
    /// group whose first thread ended while others run shows that thread as a
    /// zombie too (`pthread_exit` in `main`): that process still runs.
    pub(crate) exited: bool,
    /// When it started, in clock ticks after boot: with the pid, what names it.
    pub(crate) start: u64,
}

/// Where the reclaim tracker listens, and who listens there (Linux).
#[cfg(target_os = "linux")]
#[path = "tracker_socket_linux.rs"]
pub(crate) mod tracker_socket;

pub(crate) use guard::PagesLost;

use std::io;
use std::ptr::NonNull;

#[cfg(all(unix, feature = "worker"))]
pub(crate) use os::inherit_fd;
pub(crate) use os::{
    CAN_UNLINK, FORBIDDEN_NAME_CHARS, FORBIDDEN_NAME_HINT, Handle, MAX_NAME_LEN, ProcessWatch,
    create, current_pid, free_space, open, process_alive, process_exists, unlink, wait_on,
    wait_on_many, wake,
};
#[cfg(unix)]
pub(crate) use os::{WakeFd, create_anonymous, open_fd};
#[cfg(feature = "worker")]
pub(crate) use os::{set_nonblocking, wait_readable, wait_writable};

/// Copies `len` bytes from `src` to `dst`, which may overlap (as `ptr::copy`).
///
/// Up to 64 bytes are copied inline, by loading them all (two possibly overlapping
/// words of the right size from each end) before storing any, which saves the call
/// to the C library's `memmove` (an indirect jump to the CPU's variant, then its
/// size dispatch) and pays for part of a guard's bookkeeping around small copies.
/// Longer copies go to `memmove`, which is faster there.
///
/// # Safety
///
/// As for [`std::ptr::copy`]: `src` valid for reads and `dst` for writes of `len`
/// bytes.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    /// Copies `len` bytes (between `size_of::<T>()` and twice that) as the first
    /// and the last `T` of the range, both loaded before either is stored.
    ///
    /// # Safety
    ///
    /// As `copy_bytes`, with `size_of::<T>() <= len <= 2 * size_of::<T>()`.
    #[inline(always)]
    unsafe fn ends<T: Copy>(src: *const u8, dst: *mut u8, len: usize) {
        let tail = len - size_of::<T>();
        // SAFETY: both words lie in [0, len) of src and of dst (the caller's range
        // bounds); unaligned accesses are used, so any address is fine.
        unsafe {
            let first = src.cast::<T>().read_unaligned();
            let last = src.add(tail).cast::<T>().read_unaligned();
            dst.cast::<T>().write_unaligned(first);
            dst.add(tail).cast::<T>().write_unaligned(last);
        }
    }
    // SAFETY: the caller vouches for both ranges, and each branch passes a length
    // within the bounds that `ends` requires.
    unsafe {
        match len {
            0 => {}
            1 => dst.write(src.read()),
            2..=3 => ends::<u16>(src, dst, len),
            4..=7 => ends::<u32>(src, dst, len),
            8..=15 => ends::<u64>(src, dst, len),
            16..=32 => ends::<u128>(src, dst, len),
            33..=64 => ends::<[u128; 2]>(src, dst, len),
            _ => std::ptr::copy(src, dst, len),
        }
    }
}

/// The name is taken by something that is not a segment (a symbolic link, a FIFO,
/// a directory: possibly planted by another user), which open refuses. Travels
/// inside an `io::Error`; see [`not_a_segment`].
#[derive(Debug)]
pub(crate) struct NotASegment {
    /// What was found, as "a symbolic link".
    pub(crate) found: &'static str,
    /// The errno that best describes it (`ELOOP` for a link, as `O_NOFOLLOW` says).
    pub(crate) errno: i32,
}

impl std::fmt::Display for NotASegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the name is {}, not a shared memory segment", self.found)
    }
}

impl std::error::Error for NotASegment {}

/// The [`NotASegment`] inside an error of `open`/`create`/`open_fd`, if that is
/// what it is.
pub(crate) fn not_a_segment(err: &io::Error) -> Option<&NotASegment> {
    err.get_ref()?.downcast_ref::<NotASegment>()
}

/// A shared mapping of a segment into this process; unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    /// 0 once unmapped.
    len: usize,
    /// Registers the range with the SIGBUS handler, for guarded copies.
    guard: guard::Guard,
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
    let ptr = os::map(handle, len, writable, populate)?;
    Ok(Mapping { ptr, len, guard: guard::Guard::register(ptr, len, writable) })
}

impl Mapping {
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `len` bytes at `offset` of the mapping to `dst` (overlap allowed).
    ///
    /// A page of the mapping that vanishes during the copy (another process shrank
    /// the segment, or could not back the page) reads as zeros, and the result is
    /// [`PagesLost`]; from then on every copy of this mapping is refused with it.
    ///
    /// # Safety
    ///
    /// `offset + len <= self.len()` (so the mapping is not unmapped: its length
    /// would be 0); `dst` is valid for writes of `len` bytes, and no Rust reference
    /// to those bytes is alive.
    #[inline]
    pub(crate) unsafe fn copy_out(
        &self,
        offset: usize,
        dst: *mut u8,
        len: usize,
    ) -> Result<(), PagesLost> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: the source lies in this live, registered mapping (the caller's
        // bounds); the caller vouches for dst.
        unsafe { self.guard.copy(self.ptr.as_ptr().add(offset), dst, len) }
    }

    /// Copies `len` bytes from `src` to `offset` of the mapping (overlap allowed).
    ///
    /// A page of the mapping that vanishes during the copy takes the bytes meant for
    /// it into a private page nobody else sees, and the result is [`PagesLost`]; from
    /// then on every copy of this mapping is refused with it.
    ///
    /// # Safety
    ///
    /// The mapping is writable; `offset + len <= self.len()` (so it is not
    /// unmapped); `src` is valid for reads of `len` bytes; no Rust reference to the
    /// bytes written is alive.
    #[inline]
    pub(crate) unsafe fn copy_in(
        &self,
        src: *const u8,
        offset: usize,
        len: usize,
    ) -> Result<(), PagesLost> {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: the destination lies in this live, registered, writable mapping
        // (the caller's bounds and check); the caller vouches for src and for the
        // references.
        unsafe { self.guard.copy(src, self.ptr.as_ptr().add(offset), len) }
    }

    /// Runs `f`, in which this thread touches the mapping other than by the copies
    /// above (atomic words, loops, waits), so that a page that vanishes under it
    /// is repaired as in a copy: the result is then [`PagesLost`] instead of `f`'s.
    /// If the mapping lost pages before, `f` does not run. Nested scopes work; the
    /// innermost one's mapping is the one repaired.
    ///
    /// Zero-copy views used inside `f` are covered too: only our own code runs
    /// there, which never hands such a view out of the scope.
    #[inline]
    pub(crate) fn guarded<R>(&self, f: impl FnOnce() -> R) -> Result<R, PagesLost> {
        // A mapping is unmapped only through `&mut self` (or on drop), so it stays
        // mapped, and its guard registered, while `f` runs.
        self.guard.guarded(f)
    }

    /// Whether pages of the mapping vanished (some copy or scope of this process
    /// repaired a fault): the mapping is no longer wholly shared.
    #[inline]
    pub(crate) fn pages_lost(&self) -> bool {
        self.guard.pages_lost()
    }

    /// Unmaps now and reports the error; the drop that follows does nothing.
    pub(crate) fn unmap(&mut self) -> io::Result<()> {
        let len = std::mem::take(&mut self.len);
        if len == 0 {
            return Ok(());
        }
        // Unregistered first, so that the handler never takes a later mapping at
        // the same address for this one.
        self.guard.unregister();
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

#[cfg(test)]
mod tests {
    /// Every size up to well past the inline ones, with the ranges apart and
    /// overlapping either way, copies as `ptr::copy` (memmove) does.
    #[test]
    fn copy_bytes_copies_like_memmove() {
        let pattern: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=100 {
            for (src, dst) in [(0, 150), (150, 0), (10, 13), (13, 10), (20, 20), (5, 5 + len)] {
                let mut expected = pattern.clone();
                let mut got = pattern.clone();
                // SAFETY: both ranges lie inside the 300-byte buffers (at most
                // 150 + 100), which nothing else references.
                unsafe {
                    let base = expected.as_mut_ptr();
                    std::ptr::copy(base.add(src), base.add(dst), len);
                    let base = got.as_mut_ptr();
                    super::copy_bytes(base.add(src), base.add(dst), len);
                }
                assert_eq!(got, expected, "len {len}, src {src}, dst {dst}");
            }
        }
    }
}
