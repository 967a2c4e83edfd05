//! The part of the buffer protocol every exporter here shares: a one-dimensional
//! run of bytes (format "B") or of typed items, described in the `Py_buffer` that
//! Python passes to `__getbuffer__`.

use std::ffi::{c_int, c_void};
use std::ptr;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Checks the view pointer and clears `obj`, so that an error returned after this
/// leaves the caller nothing to release.
///
/// # Safety
///
/// `view` is the pointer Python passed to `__getbuffer__`.
pub(crate) unsafe fn begin(view: *mut ffi::Py_buffer) -> PyResult<()> {
    if view.is_null() {
        return Err(PyBufferError::new_err("Py_buffer pointer is null"));
    }
    // SAFETY: non-null, and owned by the caller for the duration of the export.
    unsafe { (*view).obj = ptr::null_mut() };
    Ok(())
}

/// Describes `len` bytes at `buf` in `view`, exported by `owner` (a new reference to
/// it goes into `view.obj`), with `internal` for the exporter's `__releasebuffer__`.
///
/// # Safety
///
/// `view` passed [`begin`]; `buf` is valid for `len` bytes (and for writes, unless
/// `readonly`) until Python calls the owner's `__releasebuffer__` with this view.
pub(crate) unsafe fn fill(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    buf: *mut u8,
    len: usize,
    readonly: bool,
    internal: *mut c_void,
    owner: Bound<'_, PyAny>,
) {
    let wants = |flag: c_int| flags & flag == flag;
    // SAFETY: view is valid (begin); shape and strides point into the view itself,
    // which the consumer keeps in place while the export lives, as the protocol
    // requires; format points to a static C string.
    unsafe {
        (*view).buf = buf.cast::<c_void>();
        (*view).len = len as ffi::Py_ssize_t;
        (*view).readonly = c_int::from(readonly);
        (*view).itemsize = 1;
        (*view).format =
            if wants(ffi::PyBUF_FORMAT) { c"B".as_ptr().cast_mut() } else { ptr::null_mut() };
        (*view).ndim = 1;
        (*view).shape = if wants(ffi::PyBUF_ND) { &raw mut (*view).len } else { ptr::null_mut() };
        (*view).strides =
            if wants(ffi::PyBUF_STRIDES) { &raw mut (*view).itemsize } else { ptr::null_mut() };
        (*view).suboffsets = ptr::null_mut();
        (*view).internal = internal;
        (*view).obj = owner.into_ptr();
    }
}

/// A one-dimensional run of items: its struct format, item size, and where the
/// exporter keeps its one-element shape and strides arrays.
pub(crate) struct Items {
    pub(crate) format: &'static std::ffi::CStr,
    pub(crate) itemsize: usize,
    /// Points to `[count]`, owned by the exporter, alive while the export is.
    pub(crate) shape: *const ffi::Py_ssize_t,
    /// Points to `[itemsize]`, likewise.
    pub(crate) strides: *const ffi::Py_ssize_t,
}

/// As [`fill`], for items of `items.format` (`len` is in bytes, a multiple of the
/// item size).
///
/// # Safety
///
/// As [`fill`]; `items.shape` and `items.strides` stay valid until the export is
/// released (they live in `owner`, which the export keeps alive).
pub(crate) unsafe fn fill_items(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    buf: *mut u8,
    len: usize,
    readonly: bool,
    items: Items,
    owner: Bound<'_, PyAny>,
) -> PyResult<()> {
    let wants = |flag: c_int| flags & flag == flag;
    if !wants(ffi::PyBUF_FORMAT) || !wants(ffi::PyBUF_ND) {
        // A consumer that wants plain bytes of a typed view would read the items as
        // bytes of the wrong count; refuse, as memoryview.cast's results do.
        return Err(pyo3::exceptions::PyBufferError::new_err(
            "a typed view must be taken with its format and shape (memoryview, NumPy)",
        ));
    }
    // SAFETY: as in `fill`; shape and strides point into the owner, kept alive by
    // view.obj; the consumer only reads through them.
    unsafe {
        (*view).buf = buf.cast::<c_void>();
        (*view).len = len as ffi::Py_ssize_t;
        (*view).readonly = c_int::from(readonly);
        (*view).itemsize = items.itemsize as ffi::Py_ssize_t;
        (*view).format = items.format.as_ptr().cast_mut();
        (*view).ndim = 1;
        (*view).shape = items.shape.cast_mut();
        (*view).strides =
            if wants(ffi::PyBUF_STRIDES) { items.strides.cast_mut() } else { ptr::null_mut() };
        (*view).suboffsets = ptr::null_mut();
        (*view).internal = ptr::null_mut();
        (*view).obj = owner.into_ptr();
    }
    Ok(())
}
