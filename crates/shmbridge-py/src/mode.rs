//! The `mode=` argument of every create: permission bits, as a Python int.

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;

/// Extracts a `mode=` argument. The core refuses anything beyond `0o777` (setuid,
/// setgid, sticky bits) with `InvalidMode`, a ValueError; an int no `u32` holds
/// (negative, huge) would be an OverflowError from PyO3, so it becomes the same
/// ValueError here.
pub(crate) fn permission_bits(mode: &Bound<'_, PyAny>) -> PyResult<u32> {
    mode.extract::<u32>().map_err(|err| {
        if err.is_instance_of::<PyOverflowError>(mode.py()) {
            PyValueError::new_err(format!(
                "mode {mode} is not permission bits: pass bits within 0o777 only, e.g. 0o600"
            ))
        } else {
            err
        }
    })
}
