//! `shmbridge.SharedMemory`: the Python class over the core `SharedMemory`.
//!
//! The core segment lives in an `Arc`. The Python object holds one reference until
//! `close()`, and every exported buffer (memoryview, NumPy array) holds its own, so
//! the memory stays mapped until the last of them goes: `close()` with live views
//! succeeds, the views keep working, and the unmap follows the last release.
//!
//! This module never creates a Rust reference into the mapping (Python code may
//! write through exported buffers at any time); it copies through raw pointers
//! only, with the core's bounds checks.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyType};

use crate::buffer;
use crate::errors::{closed, io_to_py, to_py};

type Segment = shmbridge::SharedMemory;

/// Copies at least this large release the GIL (other threads run meanwhile); below
/// it the release costs more than it frees.
const DETACH_AT: usize = 1 << 20;

/// A shared-memory segment: a named block of memory that several processes map.
///
/// Opens an existing segment by default (`SharedMemory("/my_data")`); with
/// `create=True` makes a new one. See the package docstring for the full story.
#[pyclass(module = "shmbridge", name = "SharedMemory", frozen, weakref)]
pub(crate) struct SharedMemory {
    name: String,
    size: usize,
    readonly: bool,
    /// Set for the creator unless `persist=True`: close (or collection) unlinks.
    unlink_on_close: AtomicBool,
    state: Mutex<State>,
}

struct State {
    /// `None` once closed.
    segment: Option<Arc<Segment>>,
    pos: u64,
}

impl SharedMemory {
    fn wrap(segment: Segment, unlink_on_close: bool) -> Self {
        Self {
            name: segment.name().to_owned(),
            size: segment.len(),
            readonly: !segment.is_writable(),
            unlink_on_close: AtomicBool::new(unlink_on_close),
            state: Mutex::new(State { segment: Some(Arc::new(segment)), pos: 0 }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic cannot happen while the lock is held (no code there can panic), but
        // if it ever did, the state is still consistent: recover it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the open segment and the cursor under the state lock, so that
    /// a cursor operation reads and advances the cursor atomically.
    ///
    /// `f` must run no Python code, or a finalizer could re-enter this object and
    /// deadlock. Allocating a `bytes` object and creating a (lazy) exception are fine:
    /// bytes are not tracked by the garbage collector, so allocating one runs nothing.
    /// Copies under the lock are small (below `DETACH_AT`): the GIL stays held.
    fn locked<R>(&self, f: impl FnOnce(&Arc<Segment>, &mut u64) -> PyResult<R>) -> PyResult<R> {
        let mut state = self.state();
        let State { segment, pos } = &mut *state;
        match segment {
            Some(segment) => f(segment, pos),
            None => Err(closed(&self.name)),
        }
    }

    /// A reference to the open segment that outlives the lock, for large copies
    /// (made with the GIL released) and buffer exports.
    pub(crate) fn segment(&self) -> PyResult<Arc<Segment>> {
        self.locked(|segment, _| Ok(Arc::clone(segment)))
    }

    fn open_segment(
        name: &str,
        min_size: Option<i64>,
        readonly: bool,
        populate: bool,
    ) -> PyResult<Self> {
        let min_size = match min_size {
            None => 0,
            Some(n) => non_negative(n, "size")? as usize,
        };
        let segment = Segment::options()
            .read_only(readonly)
            .populate(populate)
            .min_size(min_size)
            .open(name)
            .map_err(to_py)?;
        Ok(Self::wrap(segment, false))
    }

    fn create_segment(
        name: &str,
        size: Option<i64>,
        mode: u32,
        persist: bool,
        replace: bool,
        populate: bool,
    ) -> PyResult<Self> {
        let Some(size) = size else {
            return Err(PyValueError::new_err(format!(
                "creating segment {name:?} needs a size in bytes"
            )));
        };
        let size = non_negative(size, "size")?;
        let size = usize::try_from(size)
            .map_err(|_| PyValueError::new_err(format!("size {size} is too large")))?;
        // The core never unlinks here: this object does, at close(), so that the name
        // goes away when the user says, not when the last NumPy view is collected.
        let segment = Segment::options()
            .mode(mode)
            .replace(replace)
            .populate(populate)
            .persist(true)
            .create(name, size)
            .map_err(to_py)?;
        Ok(Self::wrap(segment, !persist))
    }
}

fn non_negative(value: i64, what: &str) -> PyResult<u64> {
    u64::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{what} must not be negative, got {value}")))
}

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

/// Bytes from `offset` to the end of the segment.
fn remaining(segment: &Segment, offset: u64) -> u64 {
    (segment.len() as u64).saturating_sub(offset)
}

/// Copies `count` bytes at `offset` into the buffer `dst` (count <= dst.len),
/// releasing the GIL for large copies.
fn read_into(
    py: Python<'_>,
    segment: &Segment,
    dst: &InputBytes,
    offset: u64,
    count: usize,
) -> PyResult<usize> {
    let read = |dst_ptr: SendPtr<*mut u8>| {
        // SAFETY: dst_ptr points to at least `count` writable bytes of an export held
        // by `dst` for this whole call; this module holds no Rust reference to them,
        // and overlap with the segment is tolerated.
        unsafe { segment.read_at_raw(dst_ptr.0, count, offset) }
    };
    let ptr = SendPtr(dst.ptr.cast_mut());
    let result = if count >= DETACH_AT { py.detach(|| read(ptr)) } else { read(ptr) };
    result.map_err(to_py)
}

/// Copies `count` bytes at `offset` into a new `bytes` object.
fn read_bytes<'py>(
    py: Python<'py>,
    segment: &Segment,
    offset: u64,
    count: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, count, |buf| {
        if count >= DETACH_AT {
            py.detach(|| segment.read_at(buf, offset)).map_err(io_to_py)?;
        } else {
            segment.read_at(buf, offset).map_err(io_to_py)?;
        }
        Ok(())
    })
}

/// Writes all of `data` at `offset` or nothing.
fn write_all(py: Python<'_>, segment: &Segment, data: &InputBytes, offset: u64) -> PyResult<()> {
    let len = data.len;
    let copy = |src: SendPtr<*const u8>| {
        // SAFETY: src points to `len` readable bytes, kept alive by `data` (a held
        // buffer export, or an immutable bytes object) for this whole call. This module
        // never holds a Rust reference into the segment, and the copy tolerates overlap
        // when the source is itself a view of the segment.
        unsafe { segment.write_all_at_raw(src.0, len, offset) }
    };
    let src = SendPtr(data.ptr);
    let result = if len >= DETACH_AT { py.detach(|| copy(src)) } else { copy(src) };
    result.map_err(to_py)
}

#[pymethods]
impl SharedMemory {
    #[new]
    #[pyo3(signature = (name, size = None, *, create = false, mode = 0o600, persist = false,
                        readonly = false, replace = false, populate = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        size: Option<i64>,
        create: bool,
        #[pyo3(from_py_with = crate::mode::permission_bits)] mode: u32,
        persist: bool,
        readonly: bool,
        replace: bool,
        populate: bool,
    ) -> PyResult<Self> {
        if create {
            if readonly {
                return Err(PyValueError::new_err(
                    "readonly=True applies to opening; a created segment is writable",
                ));
            }
            Self::create_segment(name, size, mode, persist, replace, populate)
        } else {
            Self::open_segment(name, size, readonly, populate)
        }
    }

    /// Creates a new segment of `size` bytes (see the class docstring).
    #[classmethod]
    #[pyo3(signature = (name, size, *, mode = 0o600, persist = false, replace = false, populate = false))]
    fn create(
        _cls: &Bound<'_, PyType>,
        name: &str,
        size: i64,
        #[pyo3(from_py_with = crate::mode::permission_bits)] mode: u32,
        persist: bool,
        replace: bool,
        populate: bool,
    ) -> PyResult<Self> {
        Self::create_segment(name, Some(size), mode, persist, replace, populate)
    }

    /// Opens an existing segment (see the class docstring).
    #[classmethod]
    #[pyo3(signature = (name, size = None, *, readonly = false, populate = false))]
    fn open(
        _cls: &Bound<'_, PyType>,
        name: &str,
        size: Option<i64>,
        readonly: bool,
        populate: bool,
    ) -> PyResult<Self> {
        Self::open_segment(name, size, readonly, populate)
    }

    /// Maps the segment behind a file descriptor handed down by a parent process (an
    /// anonymous segment shared with a worker). The descriptor is duplicated; the
    /// caller keeps its own.
    #[classmethod]
    #[pyo3(signature = (fd, *, readonly = false))]
    fn from_fd(_cls: &Bound<'_, PyType>, fd: i32, readonly: bool) -> PyResult<Self> {
        #[cfg(unix)]
        {
            if fd < 0 {
                return Err(PyValueError::new_err(format!("invalid file descriptor {fd}")));
            }
            // SAFETY: the descriptor is only borrowed for the duration of open_fd, which
            // duplicates it; an fd that is not open makes that dup fail with EBADF.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let segment =
                Segment::options().read_only(readonly).open_fd(borrowed).map_err(to_py)?;
            Ok(Self::wrap(segment, false))
        }
        #[cfg(not(unix))]
        {
            let _ = (fd, readonly);
            Err(pyo3::exceptions::PyNotImplementedError::new_err(
                "segments by file descriptor exist on Unix only",
            ))
        }
    }

    /// The segment's name, with its leading "/".
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The segment's size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.size
    }

    fn __len__(&self) -> usize {
        self.size
    }

    /// True once close() has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.state().segment.is_none()
    }

    /// True if the segment was opened read-only.
    #[getter]
    fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether close() will unlink the name (the creator, unless persist=True).
    #[getter]
    fn unlinks_on_close(&self) -> bool {
        self.unlink_on_close.load(Ordering::Relaxed)
    }

    /// A writable memoryview of the whole segment (zero-copy).
    #[getter]
    fn buffer<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        slf.get().segment()?;
        PyMemoryView::from(slf.as_any())
    }

    /// Alias of `buffer`, as in `multiprocessing.shared_memory`.
    #[getter]
    fn buf<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        Self::buffer(slf)
    }

    /// Reads up to n bytes at the cursor (all the rest if n is negative).
    #[pyo3(signature = (n = -1), text_signature = "(self, n=-1)")]
    fn read<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Bound<'py, PyBytes>> {
        let wanted = u64::try_from(n).unwrap_or(u64::MAX);
        let claim = |segment: &Arc<Segment>, pos: &mut u64| {
            let start = *pos;
            let count = remaining(segment, start).min(wanted) as usize;
            *pos += count as u64;
            (start, count)
        };
        if wanted < DETACH_AT as u64 {
            return self.locked(|segment, pos| {
                let (start, count) = claim(segment, pos);
                read_bytes(py, segment, start, count)
            });
        }
        let (segment, (start, count)) =
            self.locked(|segment, pos| Ok((Arc::clone(segment), claim(segment, pos))))?;
        read_bytes(py, &segment, start, count)
    }

    /// Reads into a writable bytes-like object at the cursor; returns the count.
    fn readinto(&self, py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<usize> {
        let dst = InputBytes::get(b, true)?;
        let claim = |segment: &Arc<Segment>, pos: &mut u64| {
            let start = *pos;
            let count = remaining(segment, start).min(dst.len as u64) as usize;
            *pos += count as u64;
            (start, count)
        };
        if dst.len < DETACH_AT {
            return self.locked(|segment, pos| {
                let (start, count) = claim(segment, pos);
                read_into(py, segment, &dst, start, count)
            });
        }
        let (segment, (start, count)) =
            self.locked(|segment, pos| Ok((Arc::clone(segment), claim(segment, pos))))?;
        read_into(py, &segment, &dst, start, count)
    }

    /// Writes all of a bytes-like object at the cursor, or raises ValueError and
    /// writes nothing if it does not fit.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let data = InputBytes::get(data, false)?;
        let len = data.len as u64;
        if data.len < DETACH_AT {
            return self.locked(|segment, pos| {
                write_all(py, segment, &data, *pos)?;
                *pos += len;
                Ok(data.len)
            });
        }
        let (segment, start) = self.locked(|segment, pos| Ok((Arc::clone(segment), *pos)))?;
        write_all(py, &segment, &data, start)?;
        self.state().pos = start + len;
        Ok(data.len)
    }

    /// Moves the cursor: whence 0 from the start, 1 from the cursor, 2 from the
    /// end. Positions past the end are allowed; negative ones are a ValueError.
    #[pyo3(signature = (offset, whence = 0))]
    fn seek(&self, offset: i64, whence: i32) -> PyResult<u64> {
        self.locked(|segment, pos| {
            let base = match whence {
                0 => 0,
                1 => *pos,
                2 => segment.len() as u64,
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "invalid whence ({whence}, should be 0, 1 or 2)"
                    )));
                }
            };
            *pos = base.checked_add_signed(offset).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "cannot seek to {base} {} {} in segment {:?}: negative or overflowing \
                     position",
                    if offset < 0 { '-' } else { '+' },
                    offset.unsigned_abs(),
                    self.name
                ))
            })?;
            Ok(*pos)
        })
    }

    /// The cursor's position.
    fn tell(&self) -> PyResult<u64> {
        self.locked(|_, pos| Ok(*pos))
    }

    /// Reads up to n bytes at offset, without moving the cursor.
    fn read_at<'py>(&self, py: Python<'py>, n: i64, offset: i64) -> PyResult<Bound<'py, PyBytes>> {
        let n = non_negative(n, "n")?;
        let offset = non_negative(offset, "offset")?;
        if n < DETACH_AT as u64 {
            return self.locked(|segment, _| {
                read_bytes(py, segment, offset, remaining(segment, offset).min(n) as usize)
            });
        }
        let segment = self.segment()?;
        read_bytes(py, &segment, offset, remaining(&segment, offset).min(n) as usize)
    }

    /// Writes all of data at offset without moving the cursor, or raises
    /// ValueError and writes nothing if it does not fit.
    fn write_at(&self, py: Python<'_>, data: &Bound<'_, PyAny>, offset: i64) -> PyResult<usize> {
        let offset = non_negative(offset, "offset")?;
        let data = InputBytes::get(data, false)?;
        if data.len < DETACH_AT {
            self.locked(|segment, _| write_all(py, segment, &data, offset))?;
        } else {
            let segment = self.segment()?;
            write_all(py, &segment, &data, offset)?;
        }
        Ok(data.len)
    }

    /// A typed memoryview of `count` items of struct format `format` at byte
    /// `offset` (as many as fit if count is None).
    #[pyo3(signature = (format, offset = 0, count = None))]
    fn view<'py>(
        slf: &Bound<'py, Self>,
        format: &str,
        offset: i64,
        count: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        this.segment()?;
        let itemsize: usize =
            py.import("struct")?.call_method1("calcsize", (format,))?.extract()?;
        let offset = non_negative(offset, "offset")?;
        let size = this.size as u64;
        if offset > size {
            return Err(PyValueError::new_err(format!(
                "offset {offset} is past the end of segment {:?} of {size} bytes",
                this.name
            )));
        }
        let count = match count {
            Some(c) => non_negative(c, "count")?,
            None => (size - offset) / itemsize as u64,
        };
        let end = count.checked_mul(itemsize as u64).and_then(|len| len.checked_add(offset));
        if end.is_none_or(|end| end > size) {
            return Err(PyValueError::new_err(format!(
                "{count} items of format {format:?} at offset {offset} do not fit in segment \
                 {:?} of {size} bytes",
                this.name
            )));
        }
        // Native struct formats are aligned to their size; the mapping starts on a page.
        if offset % itemsize as u64 != 0 {
            return Err(PyValueError::new_err(format!(
                "offset {offset} in segment {:?} is not aligned for format {format:?} \
                 (alignment {itemsize}): use a multiple of {itemsize}",
                this.name
            )));
        }
        let whole = Self::buffer(slf)?;
        let part = whole.get_item(pyo3::types::PySlice::new(
            py,
            offset as isize,
            end.unwrap_or(offset) as isize,
            1,
        ))?;
        part.call_method1("cast", (format,))
    }

    /// Unmaps the segment from this process, and unlinks its name if this object
    /// created it (unless persist=True). Exported views stay valid: the memory is
    /// unmapped when the last of them is released. Calling close() again does nothing.
    fn close(&self) -> PyResult<()> {
        let segment = self.state().segment.take();
        drop(segment);
        if self.unlink_on_close.swap(false, Ordering::Relaxed) {
            match shmbridge::unlink(&self.name) {
                Err(shmbridge::Error::NotFound { .. }) | Ok(()) => {}
                Err(e) => return Err(to_py(e)),
            }
        }
        Ok(())
    }

    /// Removes the segment's name now (anyone may); mappings stay valid.
    fn unlink(&self) -> PyResult<()> {
        self.unlink_on_close.store(false, Ordering::Relaxed);
        shmbridge::unlink(&self.name).map_err(to_py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let status = if self.closed() { ", closed" } else { "" };
        let access = if self.readonly { ", readonly" } else { "" };
        format!("<shmbridge.SharedMemory name={:?} size={}{access}{status}>", self.name, self.size)
    }

    /// Exports the whole mapping; the export holds its own reference to it.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: view is the pointer Python passed to __getbuffer__.
        unsafe { buffer::begin(view)? };
        let segment = slf.get().segment()?;
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE && !segment.is_writable() {
            return Err(PyBufferError::new_err(format!(
                "segment {:?} was opened read-only; its buffer is not writable",
                segment.name()
            )));
        }
        let (buf, len, readonly) = (segment.as_mut_ptr(), segment.len(), !segment.is_writable());
        // SAFETY: the mapping stays mapped while the export lives: the Arc stored in
        // `internal` is dropped only by __releasebuffer__.
        unsafe {
            let internal = Box::into_raw(Box::new(segment)).cast::<c_void>();
            buffer::fill(view, flags, buf, len, readonly, internal, slf.into_any());
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, view: *mut ffi::Py_buffer) {
        // SAFETY: Python calls this once per successful __getbuffer__ with the same
        // view, whose `internal` holds the Box<Arc<Segment>> made there.
        drop(unsafe { Box::from_raw((*view).internal.cast::<Arc<Segment>>()) });
    }
}

impl Drop for SharedMemory {
    /// A creator collected without close() still releases its name; never panics.
    fn drop(&mut self) {
        if *self.unlink_on_close.get_mut() {
            let _ = shmbridge::unlink(&self.name);
        }
    }
}
