//! Typed views of part of a segment (`SharedMemory.view("d", offset, count)`): a
//! small exporter object that memoryviews (and NumPy, which keeps the exporter as
//! its base) hold, and which holds the mapping.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::buffer::{self, Items};

type Segment = shmbridge::SharedMemory;

/// A run of typed items in a segment, exported through the buffer protocol.
#[pyclass(module = "shmbridge._native", name = "_SegmentView", frozen)]
pub(crate) struct SegmentView {
    segment: Arc<Segment>,
    offset: usize,
    format: &'static std::ffi::CStr,
    /// `[count]` and `[itemsize]`: the exported shape and strides point here.
    shape: [ffi::Py_ssize_t; 1],
    strides: [ffi::Py_ssize_t; 1],
}

/// The item size of a native struct format that `memoryview.cast` accepts (one
/// character, optionally after `@`), and the format as a C string.
pub(crate) fn native_format(format: &str) -> Option<(&'static std::ffi::CStr, usize)> {
    use std::ffi::{c_int, c_long, c_short};
    let code = format.strip_prefix('@').unwrap_or(format);
    Some(match code {
        "c" => (c"c", 1),
        "b" => (c"b", 1),
        "B" => (c"B", 1),
        "?" => (c"?", 1),
        "h" => (c"h", size_of::<c_short>()),
        "H" => (c"H", size_of::<c_short>()),
        "i" => (c"i", size_of::<c_int>()),
        "I" => (c"I", size_of::<c_int>()),
        "l" => (c"l", size_of::<c_long>()),
        "L" => (c"L", size_of::<c_long>()),
        "q" => (c"q", 8),
        "Q" => (c"Q", 8),
        "n" => (c"n", size_of::<isize>()),
        "N" => (c"N", size_of::<isize>()),
        "e" => (c"e", 2),
        "f" => (c"f", 4),
        "d" => (c"d", 8),
        "P" => (c"P", size_of::<*const u8>()),
        _ => return None,
    })
}

impl SegmentView {
    /// `count` items of `format` at byte `offset` of `segment` (as many as fit if
    /// `None`), checked for format, bounds and alignment.
    pub(crate) fn new(
        segment: &Arc<Segment>,
        format: &str,
        offset: u64,
        count: Option<u64>,
    ) -> PyResult<Self> {
        let name = segment.name();
        let Some((c_format, itemsize)) = native_format(format) else {
            return Err(PyValueError::new_err(format!(
                "format {format:?} is not one native struct format character that memoryview \
                 can cast to (such as 'B', 'i', 'q', 'f', 'd')"
            )));
        };
        let size = segment.len() as u64;
        if offset > size {
            return Err(PyValueError::new_err(format!(
                "offset {offset} is past the end of segment {name:?} of {size} bytes"
            )));
        }
        let count = count.unwrap_or((size - offset) / itemsize as u64);
        let end = count.checked_mul(itemsize as u64).and_then(|len| len.checked_add(offset));
        let Some(end) = end.filter(|&end| end <= size) else {
            return Err(PyValueError::new_err(format!(
                "{count} items of format {format:?} at offset {offset} do not fit in segment \
                 {name:?} of {size} bytes"
            )));
        };
        // Native formats are aligned to their size here; the mapping starts on a page.
        if !offset.is_multiple_of(itemsize as u64) {
            return Err(PyValueError::new_err(format!(
                "offset {offset} in segment {name:?} is not aligned for format {format:?}: use \
                 a multiple of {itemsize}"
            )));
        }
        let _ = end;
        Ok(Self {
            segment: Arc::clone(segment),
            offset: offset as usize,
            format: c_format,
            shape: [count as ffi::Py_ssize_t],
            strides: [itemsize as ffi::Py_ssize_t],
        })
    }
}

#[pymethods]
impl SegmentView {
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        // SAFETY: view is the pointer Python passed to __getbuffer__.
        unsafe { buffer::begin(view)? };
        let this = slf.get();
        let writable = this.segment.is_writable();
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE && !writable {
            return Err(pyo3::exceptions::PyBufferError::new_err(format!(
                "segment {:?} was opened read-only; its buffer is not writable",
                this.segment.name()
            )));
        }
        let itemsize = this.strides[0] as usize;
        let len = this.shape[0] as usize * itemsize;
        // The range was checked against the segment in `new`.
        let buf = this.segment.as_mut_ptr().wrapping_add(this.offset);
        let items = Items {
            format: this.format,
            itemsize,
            shape: this.shape.as_ptr(),
            strides: this.strides.as_ptr(),
        };
        // SAFETY: [buf, buf + len) lies in the mapping, which this object's Arc keeps
        // mapped while the export (holding a reference to this object) lives; shape and
        // strides live in this immutable object.
        unsafe { buffer::fill_items(view, flags, buf, len, !writable, items, slf.into_any()) }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
