//! The one place where Rust errors become Python exceptions.
//!
//! | Rust                                         | Python                      |
//! |----------------------------------------------|-----------------------------|
//! | `NotFound`                                   | `FileNotFoundError`         |
//! | `AlreadyExists`                              | `FileExistsError`           |
//! | `PermissionDenied`                           | `PermissionError`           |
//! | `NoSpace`                                    | `OSError` (errno `ENOSPC`)  |
//! | `Os`                                         | `OSError` subclass of errno |
//! | `NotASegment` (a planted link, FIFO, ...)    | `OSError` (errno `ELOOP` for a link, as the stdlib; `IsADirectoryError`; `ENODEV` otherwise) |
//! | `PagesLost` (a peer shrank the segment)      | `OSError` (errno `EIO`)     |
//! | `InvalidName`, `InvalidSize`, `TooSmall`,    | `ValueError`                |
//! | `OutOfBounds`, `Misaligned`, `InvalidMode`   |                             |
//! | `ReadOnly`                                   | `TypeError` (as `mmap`)     |
//! | `PeerDied` (the other process died)          | `BrokenPipeError`           |
//! | `Busy`, `Timeout`                            | `TimeoutError`              |
//! | `Incompatible`                               | `ValueError`                |
//! | use after `close()`                          | `ValueError` (as files)     |

use pyo3::PyErr;
use pyo3::exceptions::{PyBrokenPipeError, PyOSError, PyTimeoutError, PyTypeError, PyValueError};
use shmbridge::Error;

/// errno values used for the OSError subclasses; Python picks the subclass
/// (FileNotFoundError, ...) from the errno given to OSError's constructor.
mod errno {
    pub const ENOENT: i32 = 2;
    pub const EACCES: i32 = 13;
    pub const EEXIST: i32 = 17;
    pub const ENOSPC: i32 = 28;
    pub const EIO: i32 = 5;
}

/// Converts a core error into the Python exception a Python user expects.
pub(crate) fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    let os = |code: i32| PyOSError::new_err((code, msg.clone()));
    match &err {
        Error::NotFound { .. } => os(errno::ENOENT),
        Error::AlreadyExists { .. } => os(errno::EEXIST),
        Error::PermissionDenied { .. } => os(err.raw_os_error().unwrap_or(errno::EACCES)),
        Error::NoSpace { .. } => os(errno::ENOSPC),
        Error::ReadOnly { .. } => PyTypeError::new_err(msg),
        Error::PeerDied { .. } => PyBrokenPipeError::new_err(msg),
        Error::Busy { .. } | Error::Timeout { .. } => PyTimeoutError::new_err(msg),
        Error::NotASegment { .. } => match err.raw_os_error() {
            Some(code) => os(code),
            None => PyOSError::new_err(msg),
        },
        // An I/O call (read, write, readinto) failed because the memory behind the
        // file-like object went away: what `except OSError` around file I/O expects.
        // Not BufferError, which is about exporting buffers, not about lost data.
        Error::PagesLost { .. } => os(errno::EIO),
        Error::Os { .. } => match err.raw_os_error() {
            Some(code) => os(code),
            None => PyOSError::new_err(msg),
        },
        // InvalidName, InvalidSize, TooSmall, OutOfBounds, Misaligned, and whatever a
        // later version adds: the caller passed something unusable.
        _ => PyValueError::new_err(msg),
    }
}

/// Converts an `io::Error` from the core's `std::io`-style methods: the core error
/// inside it, if any, maps as in [`to_py`].
pub(crate) fn io_to_py(err: std::io::Error) -> PyErr {
    if !err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return PyErr::from(err);
    }
    match err.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(inner)) => to_py(*inner),
        // Checked above; kept total rather than panic.
        Some(Err(other)) => PyOSError::new_err(other.to_string()),
        None => PyOSError::new_err("I/O error"),
    }
}

pub(crate) fn closed(name: &str) -> PyErr {
    PyValueError::new_err(format!(
        "I/O operation on closed segment {name:?}: open it again to use it"
    ))
}
