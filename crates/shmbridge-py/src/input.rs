//! Bytes-like arguments: any object with the buffer protocol, as a pointer and a
//! length held alive for one call, and the wrapper that lets such a pointer cross
//! into a GIL-free section.

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A raw pointer that may cross into a GIL-free section.
pub(crate) struct SendPtr<T>(pub(crate) T);
// SAFETY: only used to carry a buffer pointer into `py.detach` for the duration of
// one copy, while the Python buffer export that owns the memory is held alive by the
// calling frame; the pointer is never used after that frame returns.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as for Send: shared only with the GIL-free section of the same call, which
// reads the pointer and does not outlive the frame that owns what it points to.
unsafe impl<T> Sync for SendPtr<T> {}

/// A contiguous view of any bytes-like object, as (pointer, length), held alive by
/// `_export` (or borrowed from an immutable `bytes` object).
pub(crate) struct InputBytes {
    pub(crate) ptr: *const u8,
    pub(crate) len: usize,
    _export: Option<PyUntypedBuffer>,
}

impl InputBytes {
    /// The bytes of `data`; `writable` asks for a destination (as `readinto`).
    pub(crate) fn get(data: &Bound<'_, PyAny>, writable: bool) -> PyResult<Self> {
        if !writable && let Ok(bytes) = data.cast::<PyBytes>() {
            let slice = bytes.as_bytes();
            return Ok(Self { ptr: slice.as_ptr(), len: slice.len(), _export: None });
        }
        let export = PyUntypedBuffer::get(data)?;
        if !export.is_c_contiguous() {
            return Err(PyBufferError::new_err("a C-contiguous buffer is required"));
        }
        if writable && export.readonly() {
            return Err(PyTypeError::new_err(
                "readinto() argument must be a writable bytes-like object",
            ));
        }
        Ok(Self { ptr: export.buf_ptr().cast(), len: export.len_bytes(), _export: Some(export) })
    }
}
