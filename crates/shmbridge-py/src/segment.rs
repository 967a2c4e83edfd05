//! `shmbridge.SharedMemory`: the Python class over the core `SharedMemory`.
//!
//! Lifetime rule: the mapping lives as long as anything can reach it. The Python
//! object holds the core segment (an `Arc`) for as long as the object itself lives,
//! and every exported buffer holds its own `Arc` too. `close()` makes the object
//! refuse further use and (for the creator) removes the name, but unmaps nothing:
//! NumPy's `np.ndarray(buffer=shm.buf)` keeps only a reference to this object, not
//! a buffer export, so the memory must stay mapped while the object is reachable.
//! The unmap happens when the object and the last export are gone.
//!
//! Only the creating process unlinks implicitly (at `close()` or collection): a
//! child made by `fork` that inherited the object never removes its parent's name.
//!
//! This module never creates a Rust reference into the mapping (Python code may
//! write through exported buffers at any time); it copies through raw pointers
//! only, with the core's bounds checks.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyTuple, PyType};

use crate::buffer;
use crate::errors::{closed, io_to_py, to_py};
use crate::input::{InputBytes, SendPtr};
use crate::typed_view::SegmentView;

type Segment = shmbridge::SharedMemory;

/// The name the core reports for a segment that has none.
const ANONYMOUS: &str = "(anonymous)";

/// Copies at least this large release the GIL (other threads run meanwhile); below
/// it the release costs more than it frees.
const DETACH_AT: usize = 1 << 20;

/// A named shared-memory segment mapped into this process.
///
/// ``SharedMemory(name, size=None)`` opens an existing segment; ``size``, if given,
/// is the least the caller expects (a smaller segment is a ValueError; opening never
/// resizes). ``SharedMemory(name, size, create=True)`` creates one, exclusively
/// (FileExistsError if the name is taken, unless ``replace=True``), zero-filled,
/// with permissions ``mode`` (default 0o600, owner only), its pages reserved (a full
/// /dev/shm is an OSError ENOSPC now, not a crash later). ``readonly=True`` maps an
/// opened segment read-only; ``populate=True`` faults all pages in up front (Linux).
///
/// The cursor methods (``read``, ``write``, ``seek``, ``tell``, ``readinto``) behave
/// like a file of fixed size; ``read_at``/``write_at`` need no cursor; ``view()``
/// gives typed memoryviews. The object speaks the buffer protocol:
/// ``memoryview(shm)``, ``shm.buf``, ``np.frombuffer(shm, dtype=...)`` and
/// ``np.ndarray(shape, dtype, buffer=shm.buf)`` are zero-copy views that every
/// process mapping the segment sees.
///
/// ``close()`` makes the object unusable and, in the process that created the
/// segment, removes its name (unless ``persist=True``); ``unlink()`` removes the name
/// whoever calls it, and is a no-op once this object removed it, so the stdlib's
/// ``close(); unlink()`` works. Views made from the object stay valid after
/// ``close()``: the memory is unmapped only when nothing can reach it any more.
/// A child process made by ``fork`` never removes its parent's name implicitly.
/// Objects pickle by name: the receiving process opens the segment, never owns it.
///
/// A peer that shrinks the segment (Linux, ``ftruncate``): the copying methods
/// (``read``, ``readinto``, ``write``, ``read_at``, ``write_at``) raise OSError
/// (``errno.EIO``) and the object refuses later copies. Zero-copy views cannot be
/// guarded: touching a vanished page through ``buffer``, ``view()``, a memoryview
/// or a NumPy array kills the process with SIGBUS. Opening refuses a symbolic link,
/// FIFO or directory planted under the name (OSError; ``errno.ELOOP`` for a link);
/// ``mode`` takes permission bits only (ValueError beyond 0o777).
///
/// >>> from shmbridge import SharedMemory, unique_name
/// >>> with SharedMemory(unique_name("doc"), 4096, create=True) as shm:
/// ...     shm.write(b"Hello")
/// ...     SharedMemory(shm.name).read(5)    # another process would do the same
/// 5
/// b'Hello'
///
/// ``lifetime`` (when creating) says how long the name lasts: ``"object"`` (the
/// default) until this object's ``close()`` or collection; ``"process"`` past
/// ``close()``, until this process has died and no process maps the segment;
/// ``"persistent"`` (as ``persist=True``) until someone unlinks it. Unless
/// persistent, a segment whose creator died before removing it (a kill) is removed
/// automatically once no process maps it (Linux: the ``shmbridge`` reclaim tracker).
#[pyclass(module = "shmbridge", name = "SharedMemory", frozen, weakref, subclass)]
pub(crate) struct SharedMemory {
    /// Held for the object's whole life (see the module docs).
    segment: Arc<Segment>,
    name: String,
    closed: AtomicBool,
    pos: Mutex<u64>,
    /// The process that created the segment through this object, if it did.
    creator_pid: Option<u32>,
    /// The creator wants the name gone at close (not persisting).
    unlink_on_close: AtomicBool,
    /// The `cast` method of a memoryview of the whole segment, made at the first
    /// `view()`: typed views of the whole segment are one call away. The memoryview
    /// is over a `_SegmentView` (which holds the mapping), not over this object, so
    /// no reference cycle forms.
    cast_whole: pyo3::sync::PyOnceLock<Py<PyAny>>,
    /// `close()` removed the name implicitly, so the stdlib's `close(); unlink()`
    /// has nothing left to do (an explicit `unlink()` twice is still an error, as
    /// `os.unlink` twice is).
    closed_unlinked: AtomicBool,
}

impl SharedMemory {
    fn wrap(segment: Segment, creator_pid: Option<u32>, unlink_on_close: bool) -> Self {
        Self {
            name: segment.name().to_owned(),
            segment: Arc::new(segment),
            closed: AtomicBool::new(false),
            pos: Mutex::new(0),
            creator_pid,
            unlink_on_close: AtomicBool::new(unlink_on_close),
            cast_whole: pyo3::sync::PyOnceLock::new(),
            closed_unlinked: AtomicBool::new(false),
        }
    }

    /// The segment, unless the object was closed.
    pub(crate) fn segment(&self) -> PyResult<&Arc<Segment>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed(&self.name));
        }
        Ok(&self.segment)
    }

    /// The open segment and the cursor, locked so that a cursor operation reads and
    /// advances the cursor atomically. Nothing that runs Python code or waits may
    /// happen while the guard lives.
    fn cursor(&self) -> PyResult<(&Arc<Segment>, MutexGuard<'_, u64>)> {
        let segment = self.segment()?;
        // Nothing panics while the lock is held; if it ever did, the cursor is still
        // a valid number: recover it.
        let pos = self.pos.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok((segment, pos))
    }

    /// Takes `wanted` bytes' worth of the cursor: returns where they start and how
    /// many the segment has, and moves the cursor past them.
    fn claim(&self, wanted: u64) -> PyResult<(&Arc<Segment>, u64, usize)> {
        let (segment, mut pos) = self.cursor()?;
        let start = *pos;
        let count = remaining(segment, start).min(wanted) as usize;
        *pos += count as u64;
        Ok((segment, start, count))
    }

    /// Whether this object may remove the name implicitly now: it created the
    /// segment, in this very process, and nobody asked to keep the name.
    fn owns_name(&self) -> bool {
        self.unlink_on_close.load(Ordering::Acquire)
            && self.creator_pid == Some(shmbridge::current_pid())
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
        Ok(Self::wrap(segment, None, false))
    }

    fn create_segment(
        name: &str,
        size: Option<i64>,
        mode: u32,
        lifetime: NameLifetime,
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
            .lifetime(lifetime.core())
            .create(name, size)
            .map_err(to_py)?;
        let unlink_on_close = lifetime == NameLifetime::Object;
        Ok(Self::wrap(segment, Some(shmbridge::current_pid()), unlink_on_close))
    }
}

/// How long a created segment's name lasts, as Python says it (`lifetime=`, or
/// `persist=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameLifetime {
    /// `close()` (or collection) of the creating object unlinks it.
    Object,
    /// Kept after `close()`; reclaimed once this process has died and nobody maps it.
    Process,
    /// Kept until someone unlinks it.
    Persistent,
}

impl NameLifetime {
    fn parse(lifetime: Option<&str>, persist: bool) -> PyResult<Self> {
        let parsed = match lifetime {
            None if persist => NameLifetime::Persistent,
            None | Some("object") => NameLifetime::Object,
            Some("process") => NameLifetime::Process,
            Some("persistent") => NameLifetime::Persistent,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "lifetime={other:?}: give \"object\", \"process\" or \"persistent\""
                )));
            }
        };
        if persist && parsed != NameLifetime::Persistent {
            return Err(PyValueError::new_err(
                "persist=True means lifetime=\"persistent\"; give one or the other",
            ));
        }
        Ok(parsed)
    }

    /// The core's lifetime: this object unlinks by itself (never the core value), so
    /// everything but `persistent` is a lifetime bound to this process's.
    fn core(self) -> shmbridge::Lifetime {
        match self {
            NameLifetime::Object | NameLifetime::Process => shmbridge::Lifetime::Process,
            NameLifetime::Persistent => shmbridge::Lifetime::Persistent,
        }
    }
}

fn non_negative(value: i64, what: &str) -> PyResult<u64> {
    u64::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{what} must not be negative, got {value}")))
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

/// Reopens a pickled segment by name: the receiver opens, never owns.
#[pyfunction]
#[pyo3(name = "_reopen_segment")]
pub(crate) fn reopen_segment(name: &str, readonly: bool) -> PyResult<SharedMemory> {
    SharedMemory::open_segment(name, None, readonly, false)
}

#[pymethods]
impl SharedMemory {
    #[new]
    #[pyo3(signature = (name, size = None, *, create = false, mode = 0o600, persist = false,
                        readonly = false, replace = false, populate = false, lifetime = None),
           text_signature = "(name, size=None, *, create=False, mode=shmbridge._signature.OWNER_ONLY, persist=False, \
                             readonly=False, replace=False, populate=False, lifetime=None)")]
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
        lifetime: Option<&str>,
    ) -> PyResult<Self> {
        if create {
            if readonly {
                return Err(PyValueError::new_err(
                    "readonly=True applies to opening; a created segment is writable",
                ));
            }
            let lifetime = NameLifetime::parse(lifetime, persist)?;
            Self::create_segment(name, size, mode, lifetime, replace, populate)
        } else {
            Self::open_segment(name, size, readonly, populate)
        }
    }

    /// Create a new segment of ``size`` bytes (same as ``SharedMemory(name, size,
    /// create=True, ...)``).
    #[classmethod]
    #[pyo3(signature = (name, size, *, mode = 0o600, persist = false, replace = false, populate = false,
                        lifetime = None),
           text_signature = "(name, size, *, mode=shmbridge._signature.OWNER_ONLY, persist=False, \
                             replace=False, populate=False, lifetime=None)")]
    #[allow(clippy::too_many_arguments)]
    fn create(
        _cls: &Bound<'_, PyType>,
        name: &str,
        size: i64,
        #[pyo3(from_py_with = crate::mode::permission_bits)] mode: u32,
        persist: bool,
        replace: bool,
        populate: bool,
        lifetime: Option<&str>,
    ) -> PyResult<Self> {
        let lifetime = NameLifetime::parse(lifetime, persist)?;
        Self::create_segment(name, Some(size), mode, lifetime, replace, populate)
    }

    /// Open an existing segment (same as the constructor without ``create``).
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

    /// Map the segment behind a file descriptor handed down by a parent process (an
    /// anonymous segment shared with a worker; Unix). The descriptor is duplicated;
    /// the caller keeps its own. The name is "(anonymous)".
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
            Ok(Self::wrap(segment, None, false))
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
        self.segment.len()
    }

    fn __len__(&self) -> usize {
        self.segment.len()
    }

    /// True once close() has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// True if the segment was opened read-only.
    #[getter]
    fn readonly(&self) -> bool {
        !self.segment.is_writable()
    }

    /// Whether close() will remove the name: this object created the segment, in
    /// this process, without persist=True, and the name is still there.
    #[getter]
    fn unlinks_on_close(&self) -> bool {
        self.owns_name() && !self.closed()
    }

    /// A memoryview of the whole segment (zero-copy; writable unless read-only).
    /// Each access makes a new memoryview.
    ///
    /// Unguarded: if a peer shrinks the segment, touching a vanished page through
    /// it kills the process with SIGBUS (copy with ``read_at`` to be safe).
    #[getter]
    fn buffer<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        slf.get().segment()?;
        PyMemoryView::from(slf.as_any())
    }

    /// Alias of ``buffer``, as in ``multiprocessing.shared_memory``.
    #[getter]
    fn buf<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyMemoryView>> {
        Self::buffer(slf)
    }

    /// Read up to ``n`` bytes at the cursor (the rest of the segment if ``n`` is
    /// negative); ``b""`` at or past the end.
    #[pyo3(signature = (n = -1), text_signature = "(self, n=-1)")]
    fn read<'py>(&self, py: Python<'py>, n: i64) -> PyResult<Bound<'py, PyBytes>> {
        let (segment, start, count) = self.claim(u64::try_from(n).unwrap_or(u64::MAX))?;
        read_bytes(py, segment, start, count)
    }

    /// Read into a writable bytes-like object at the cursor; return the count.
    fn readinto(&self, py: Python<'_>, b: &Bound<'_, PyAny>) -> PyResult<usize> {
        let dst = InputBytes::get(b, true)?;
        let (segment, start, count) = self.claim(dst.len as u64)?;
        read_into(py, segment, &dst, start, count)
    }

    /// Write all of a bytes-like object at the cursor, or raise ValueError and write
    /// nothing if it does not fit. Returns the count.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let data = InputBytes::get(data, false)?;
        let len = data.len as u64;
        let (segment, mut pos) = self.cursor()?;
        if data.len < DETACH_AT {
            write_all(py, segment, &data, *pos)?;
            *pos += len;
            return Ok(data.len);
        }
        // A large copy runs without the GIL, so the cursor lock is not held over it
        // (a thread waiting for the lock would hold the GIL this one needs back).
        let start = *pos;
        drop(pos);
        write_all(py, segment, &data, start)?;
        *self.cursor()?.1 = start + len;
        Ok(data.len)
    }

    /// Move the cursor: whence 0 from the start, 1 from the cursor, 2 from the end.
    /// Positions past the end are allowed; negative ones are a ValueError.
    #[pyo3(signature = (offset, whence = 0))]
    fn seek(&self, offset: i64, whence: i32) -> PyResult<u64> {
        let (segment, mut pos) = self.cursor()?;
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
                "cannot seek to {base} {} {} in segment {:?}: negative or overflowing position",
                if offset < 0 { '-' } else { '+' },
                offset.unsigned_abs(),
                self.name
            ))
        })?;
        Ok(*pos)
    }

    /// The cursor's position.
    fn tell(&self) -> PyResult<u64> {
        Ok(*self.cursor()?.1)
    }

    /// Read up to ``n`` bytes at ``offset``, without moving the cursor.
    fn read_at<'py>(&self, py: Python<'py>, n: i64, offset: i64) -> PyResult<Bound<'py, PyBytes>> {
        let n = non_negative(n, "n")?;
        let offset = non_negative(offset, "offset")?;
        let segment = self.segment()?;
        read_bytes(py, segment, offset, remaining(segment, offset).min(n) as usize)
    }

    /// Write all of ``data`` at ``offset`` without moving the cursor, or raise
    /// ValueError and write nothing if it does not fit. Returns the count.
    fn write_at(&self, py: Python<'_>, data: &Bound<'_, PyAny>, offset: i64) -> PyResult<usize> {
        let offset = non_negative(offset, "offset")?;
        let data = InputBytes::get(data, false)?;
        write_all(py, self.segment()?, &data, offset)?;
        Ok(data.len)
    }

    /// A typed memoryview of ``count`` items of the native struct format ``format``
    /// (one character, as ``memoryview.cast`` takes: ``"d"``, ``"i"``, ``"B"``...)
    /// at byte ``offset``; as many as fit if ``count`` is None.
    ///
    /// Raises ValueError if the items do not fit, ``offset`` is not a multiple of
    /// the item size, or the format is not one memoryview can cast to.
    #[pyo3(signature = (format, offset = 0, count = None))]
    fn view<'py>(
        slf: &Bound<'py, Self>,
        format: &str,
        offset: i64,
        count: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        let segment = this.segment()?;
        let offset = non_negative(offset, "offset")?;
        let count = count.map(|c| non_negative(c, "count")).transpose()?;
        let whole_fits = crate::typed_view::native_format(format)
            .is_some_and(|(_, itemsize)| segment.len().is_multiple_of(itemsize));
        if offset == 0 && count.is_none() && whole_fits {
            // The common case, about as cheap as the stdlib's `shm.buf.cast(format)`.
            let cast = this.cast_whole.get_or_try_init(py, || {
                let bytes = SegmentView::new(segment, "B", 0, None)?;
                let whole = PyMemoryView::from(Bound::new(py, bytes)?.as_any())?;
                whole.getattr(pyo3::intern!(py, "cast")).map(Bound::unbind)
            })?;
            return cast.bind(py).call1((format,));
        }
        let view = SegmentView::new(segment, format, offset, count)?;
        Ok(PyMemoryView::from(Bound::new(py, view)?.as_any())?.into_any())
    }

    /// Make the object unusable (ValueError on further use) and, if this object
    /// created the segment in this very process and ``persist`` was not set, remove
    /// its name. Views made earlier stay valid: the memory is unmapped when nothing
    /// can reach it any more. Calling close() again does nothing.
    fn close(&self) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.owns_name() {
            self.unlink_on_close.store(false, Ordering::Release);
            match shmbridge::unlink(&self.name) {
                // Someone else removed it first: the name is gone, as asked.
                Ok(()) | Err(shmbridge::Error::NotFound { .. }) => {
                    self.closed_unlinked.store(true, Ordering::Release);
                }
                Err(e) => return Err(to_py(e)),
            }
        }
        Ok(())
    }

    /// Remove the segment's name now, whoever created it; mappings stay valid, and
    /// nobody new can open it. FileNotFoundError if the name is already gone,
    /// except right after this object's own ``close()`` removed it, so that the
    /// stdlib's ``close(); unlink()`` works.
    fn unlink(&self) -> PyResult<()> {
        self.unlink_on_close.store(false, Ordering::Release);
        if self.closed_unlinked.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        shmbridge::unlink(&self.name).map_err(to_py)
    }

    /// ``with SharedMemory(...) as shm:`` closes the object at the end (see ``close``).
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Close the object (as ``close()``); exceptions propagate.
    fn __exit__(
        &self,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close()?;
        Ok(false)
    }

    /// Pickles by name: unpickling opens the segment (read-only if this object is),
    /// and the receiving process never removes the name implicitly.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let this = slf.get();
        if this.segment()?.creator_pid().is_none() && this.name == ANONYMOUS {
            return Err(PyTypeError::new_err(
                "an anonymous segment has no name to pickle: hand its file descriptor to the \
                 other process instead",
            ));
        }
        // The module's own function object, so that pickle finds it by its name.
        let reopen = py.import("shmbridge._native")?.getattr("_reopen_segment")?;
        (reopen, (this.name.as_str(), this.readonly())).into_pyobject(py)
    }

    fn __repr__(&self) -> String {
        let status = if self.closed() { ", closed" } else { "" };
        let access = if self.readonly() { ", readonly" } else { "" };
        format!(
            "<shmbridge.SharedMemory name={:?} size={}{access}{status}>",
            self.name,
            self.segment.len()
        )
    }

    /// Exports the whole mapping; the export holds its own reference to it.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        // SAFETY: view is the pointer Python passed to __getbuffer__.
        unsafe { buffer::begin(view)? };
        let segment = Arc::clone(slf.get().segment()?);
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
    /// A creator collected without close() still releases its name, in the process
    /// that created it only; never panics.
    fn drop(&mut self) {
        if self.owns_name() {
            let _ = shmbridge::unlink(&self.name);
        }
    }
}
