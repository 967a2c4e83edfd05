//! POSIX shared memory, for Linux and macOS.

use std::io;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use rustix::fs::{self, Mode};
use rustix::mm::{self, MapFlags, ProtFlags};
use rustix::shm;

/// `NAME_MAX` on Linux (the name is a file in `/dev/shm`); `PSHMNAMLEN` on macOS.
pub(crate) const MAX_NAME_LEN: usize = if cfg!(target_vendor = "apple") { 31 } else { 255 };
pub(crate) const FORBIDDEN_NAME_CHARS: &[char] = &[];
/// POSIX names outlive their creator until unlinked.
pub(crate) const CAN_UNLINK: bool = true;

/// An open shared-memory object.
pub(crate) struct Handle(OwnedFd);

pub(crate) fn create(name: &str, size: usize, mode: u32, reserve: bool) -> io::Result<Handle> {
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    let mode = Mode::from_bits_truncate(mode as _);
    let fd = shm::open(name, flags, mode)?;
    let sized = set_mode_and_size(&fd, mode, size, reserve);
    if let Err(err) = sized {
        // The name is ours (O_EXCL): take it back rather than leave a broken segment.
        let _ = shm::unlink(name);
        return Err(err);
    }
    Ok(Handle(fd))
}

fn set_mode_and_size(fd: &OwnedFd, mode: Mode, size: usize, reserve: bool) -> io::Result<()> {
    // shm_open applies the umask; the caller asked for exactly `mode`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fs::fchmod(fd, mode)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = mode;
    fs::ftruncate(fd, size as u64)?;
    // tmpfs reserves nothing on ftruncate: without this, a full /dev/shm shows up as
    // SIGBUS at the first touch of a page, long after create returned Ok.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if reserve {
        fs::fallocate(fd, fs::FallocateFlags::empty(), 0, size as u64)?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = reserve;
    Ok(())
}

pub(crate) fn open(name: &str, writable: bool) -> io::Result<(Handle, u64)> {
    let flags = if writable { shm::OFlags::RDWR } else { shm::OFlags::RDONLY };
    let fd = shm::open(name, flags, Mode::empty())?;
    let size = fs::fstat(&fd)?.st_size;
    Ok((Handle(fd), size.max(0) as u64))
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
