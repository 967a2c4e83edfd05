//! Copies on platforms where a mapped segment cannot shrink.
//!
//! macOS sizes a POSIX segment once (a second `ftruncate` fails), and Windows
//! cannot shrink a file mapping while any view of it exists: pages never vanish
//! under a mapping, so a copy is a plain copy and a guarded scope just runs.

use std::ptr::NonNull;

/// Pages of the mapping vanished (never, here).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PagesLost;

/// Stands for the Linux mapping registration; holds nothing.
pub(crate) struct Guard;

impl Guard {
    pub(crate) fn register(_ptr: NonNull<u8>, _len: usize, _writable: bool) -> Self {
        Self
    }

    pub(crate) fn unregister(&mut self) {}

    /// Copies `len` bytes from `src` to `dst` (overlap allowed).
    ///
    /// # Safety
    ///
    /// As for [`std::ptr::copy`].
    #[inline]
    pub(crate) unsafe fn copy(
        &self,
        src: *const u8,
        dst: *mut u8,
        len: usize,
    ) -> Result<(), PagesLost> {
        // SAFETY: the caller vouches for both ranges; overlap is allowed.
        unsafe { super::copy_bytes(src, dst, len) };
        Ok(())
    }

    /// Runs `f`: nothing can vanish under it.
    #[inline]
    pub(crate) fn guarded<R>(&self, f: impl FnOnce() -> R) -> Result<R, PagesLost> {
        Ok(f())
    }

    /// Never: pages cannot vanish here.
    #[inline]
    pub(crate) fn pages_lost(&self) -> bool {
        false
    }
}
