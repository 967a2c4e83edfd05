//! The one place where Rust errors become Python exceptions.
//!
//! | Rust                                         | Python                      |
//! |----------------------------------------------|-----------------------------|
//! | `NotFound`                                   | `FileNotFoundError`         |
//! | `AlreadyExists`                              | `FileExistsError`           |
//! | `PermissionDenied`                           | `PermissionError`           |
//! | `NoSpace`                                    | `OSError` (errno `ENOSPC`)  |
//! | `Os`                                         | `OSError` subclass of errno |
//! | `InvalidName`, `InvalidSize`, `TooSmall`,    | `ValueError`                |
//! | `OutOfBounds`, `Misaligned`                  |                             |
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
        Error::Os { .. } => match err.raw_os_error() {
            Some(code) => os(code),
            None => PyOSError::new_err(msg),
        },
        // InvalidName, InvalidSize, TooSmall, OutOfBounds, Misaligned, and whatever a
        // later version adds: the caller passed something unusable.
        _ => PyValueError::new_err(msg),
    }
}

pub(crate) fn closed(name: &str) -> PyErr {
    PyValueError::new_err(format!(
        "I/O operation on closed segment {name:?}: open it again to use it"
    ))
}
