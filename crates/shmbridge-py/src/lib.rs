//! `shmbridge._native`: the Python face of the shmbridge core.
//!
//! Thin by design: it converts arguments and errors, exports the mapping through
//! the buffer protocol, and releases the GIL around large copies. Every check and
//! layout lives in the core crate.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[cfg(unix)]
mod aio;
mod array;
mod array_numpy;
mod buffer;
mod channel;
mod dlpack;
mod errors;
mod input;
mod mode;
mod operations;
mod segment;
mod sole_reference;
mod sync;
mod threads;
mod typed_view;

use pyo3::prelude::*;

/// A fresh segment name of the form ``/<prefix>_<pid>_<random>``.
///
/// Raises ValueError if the prefix holds characters a name cannot, or is too long.
///
/// >>> import shmbridge
/// >>> shmbridge.unique_name("frames").startswith("/frames_")
/// True
#[pyfunction]
#[pyo3(signature = (prefix = "shmbridge"))]
fn unique_name(prefix: &str) -> PyResult<String> {
    shmbridge::unique_name(prefix).map_err(errors::to_py)
}

/// Remove a segment's name; processes that have it mapped keep their mapping.
///
/// Anyone may unlink a name, whoever created it: use it for the leftovers of a
/// creator that was killed. Raises FileNotFoundError if no segment has that name.
#[pyfunction]
fn unlink(name: &str) -> PyResult<()> {
    shmbridge::unlink(name).map_err(errors::to_py)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<segment::SharedMemory>()?;
    #[cfg(unix)]
    m.add_class::<aio::AsyncWaiter>()?;
    m.add_class::<array::SharedArray>()?;
    m.add_class::<channel::Channel>()?;
    m.add_class::<channel::Message>()?;
    m.add_class::<channel::Loan>()?;
    m.add_class::<sync::Event>()?;
    m.add_class::<sync::Semaphore>()?;
    m.add_class::<sync::Mutex>()?;
    m.add_class::<sync::SeqLock>()?;
    m.add_function(wrap_pyfunction!(unique_name, m)?)?;
    m.add_function(wrap_pyfunction!(unlink, m)?)?;
    m.add_function(wrap_pyfunction!(segment::reopen_segment, m)?)?;
    m.add_function(wrap_pyfunction!(operations::_cli, m)?)?;
    m.add_function(wrap_pyfunction!(operations::_wait_gone, m)?)?;
    operations::register_tracker(m)?;
    m.add("MAX_NAME_LEN", shmbridge::max_name_len())?;
    m.add(
        "__all__",
        [
            "MAX_NAME_LEN",
            "Channel",
            "Event",
            "Loan",
            "Message",
            "Mutex",
            "Semaphore",
            "SeqLock",
            "SharedArray",
            "SharedMemory",
            "unique_name",
            "unlink",
        ],
    )?;
    Ok(())
}
