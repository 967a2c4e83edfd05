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
//! - `map(&Handle, len, writable, populate) -> Mapping`, where `Mapping` unmaps on
//!   drop and `Mapping::unmap` reports the error instead;
//! - `free_space()`: bytes left for new segments, where the platform tells.
//!
//! Linux and macOS share POSIX shared memory (`shm_open` + `mmap`) in `unix.rs`;
//! Windows uses named file mappings in `windows.rs`.

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod os;

pub(crate) use os::*;
