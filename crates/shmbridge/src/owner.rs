//! Which process owns something: only the process that created a segment, or
//! claimed a channel end or a lock, releases it implicitly (on drop, close or
//! exit). A child made by `fork` inherits the parent's handles, but dropping them
//! there must not undo the parent's state.

use crate::sys;

/// This process's id: cheap (no system call on Linux once cached) and right in a
/// child after `fork`.
///
/// # Example
///
/// ```
/// assert_eq!(shmbridge::current_pid(), std::process::id());
/// ```
pub fn current_pid() -> u32 {
    sys::current_pid()
}

/// The process that created or claimed something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner(u32);

impl Owner {
    /// This process.
    pub(crate) fn current() -> Self {
        Self(current_pid())
    }

    /// Whether the caller runs in the owning process (not in a forked child).
    pub(crate) fn is_current(self) -> bool {
        self.0 == current_pid()
    }

    /// The owner's process id.
    pub(crate) fn pid(self) -> u32 {
        self.0
    }
}
