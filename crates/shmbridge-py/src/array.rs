//! `shmbridge.SharedArray`: a self-describing array segment, seen from Python
//! through `__array_interface__` (NumPy) and `__dlpack__` (any DLPack consumer).
//!
//! Every array made from it (`numpy.asarray`, `numpy.from_dlpack`, `torch.from_dlpack`)
//! keeps it, or its `Arc` of the mapping, alive: the memory stays mapped while any
//! of them lives. The creator's name is unlinked when the object is collected
//! (unless `persist=True`) or at `unlink()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use shmbridge::SharedMemoryOptions;
use shmbridge::array::{ArraySegment, Order};

use crate::dlpack;
use crate::errors::to_py;

/// A self-describing shared array: a segment holding a header (dtype, shape,
/// strides, generation counter) and the data. ``shmbridge.create_array`` and
/// ``open_array`` return NumPy arrays whose ``.base`` is one of these.
///
/// Speaks ``__array_interface__`` (``numpy.asarray(sa)`` is zero-copy) and
/// ``__dlpack__`` (``numpy.from_dlpack(sa)``, ``torch.from_dlpack(sa)``); every
/// array made from it keeps the mapping alive. The creator's name is unlinked
/// when the object is collected, unless ``persist=True``.
///
/// The arrays are zero-copy views, so unguarded: if a peer shrinks the segment,
/// touching a vanished element kills the process with SIGBUS.
///
/// >>> import numpy as np, shmbridge
/// >>> sa = shmbridge.SharedArray.create(shmbridge.unique_name("doc"), (2, 3), "<f8")
/// >>> np.asarray(sa).shape, sa.dtype, sa.order
/// ((2, 3), '<f8', 'C')
#[pyclass(module = "shmbridge", name = "SharedArray", frozen, weakref)]
pub(crate) struct SharedArray {
    array: Arc<ArraySegment>,
    /// Set for the creator unless `persist=True`: collection unlinks the name, in
    /// the creating process only (never in a child made by `fork`).
    unlink_on_drop: AtomicBool,
    creator_pid: Option<u32>,
    /// The NumPy dtype of the elements, made at the first `numpy()`.
    descr: pyo3::sync::PyOnceLock<Py<numpy::PyArrayDescr>>,
}

fn parse_order(order: &str) -> PyResult<Order> {
    match order {
        "C" | "c" => Ok(Order::C),
        "F" | "f" => Ok(Order::F),
        other => Err(PyValueError::new_err(format!("order must be 'C' or 'F', not {other:?}"))),
    }
}

#[pymethods]
impl SharedArray {
    /// Create a zero-filled array segment; ``dtype`` is a NumPy type string ("<f8").
    /// ``shmbridge.create_array`` does the same and returns a NumPy array.
    #[classmethod]
    #[pyo3(signature = (name, shape, dtype, order = "C", *, mode = 0o600, persist = false, replace = false),
           text_signature = "(name, shape, dtype, order='C', *, mode=shmbridge._signature.OWNER_ONLY, persist=False, \
                             replace=False)")]
    #[allow(clippy::too_many_arguments)]
    fn create(
        _cls: &Bound<'_, PyType>,
        name: &str,
        shape: Vec<i64>,
        dtype: &str,
        order: &str,
        #[pyo3(from_py_with = crate::mode::permission_bits)] mode: u32,
        persist: bool,
        replace: bool,
    ) -> PyResult<Self> {
        let shape = shape
            .iter()
            .map(|&d| {
                usize::try_from(d).map_err(|_| {
                    PyValueError::new_err(format!("negative dimensions are not allowed: {d}"))
                })
            })
            .collect::<PyResult<Vec<usize>>>()?;
        // The core never unlinks here; this object does when collected, as the last
        // NumPy array made from it goes.
        let lifetime =
            if persist { shmbridge::Lifetime::Persistent } else { shmbridge::Lifetime::Process };
        let options =
            SharedMemoryOptions::new().mode(mode).replace(replace).lifetime(lifetime).clone();
        let array = ArraySegment::create(&options, name, dtype, &shape, parse_order(order)?)
            .map_err(to_py)?;
        Ok(Self {
            array: Arc::new(array),
            unlink_on_drop: AtomicBool::new(!persist),
            creator_pid: Some(shmbridge::current_pid()),
            descr: pyo3::sync::PyOnceLock::new(),
        })
    }

    /// Opens an existing array segment by name (see `shmbridge.open_array`).
    #[classmethod]
    #[pyo3(signature = (name, *, readonly = false))]
    fn open(_cls: &Bound<'_, PyType>, name: &str, readonly: bool) -> PyResult<Self> {
        let options = SharedMemoryOptions::new().read_only(readonly).clone();
        let array = ArraySegment::open(&options, name).map_err(to_py)?;
        Ok(Self {
            array: Arc::new(array),
            unlink_on_drop: AtomicBool::new(false),
            creator_pid: None,
            descr: pyo3::sync::PyOnceLock::new(),
        })
    }

    /// The segment's name.
    #[getter]
    fn name(&self) -> &str {
        self.array.name()
    }

    /// Length of each dimension.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.array.layout().shape())
    }

    /// Bytes between neighbours along each dimension.
    #[getter]
    fn strides<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.array.layout().strides())
    }

    /// The NumPy type string of the elements, e.g. "<f8".
    #[getter]
    fn dtype(&self) -> &'static str {
        self.array.layout().dtype().typestr()
    }

    /// "C" or "F": the order the creator laid the elements out in.
    #[getter]
    fn order(&self) -> &'static str {
        match self.array.layout().order() {
            Order::C => "C",
            Order::F => "F",
        }
    }

    /// The number of elements.
    #[getter]
    fn size(&self) -> usize {
        self.array.layout().len()
    }

    /// Bytes of the data region.
    #[getter]
    fn nbytes(&self) -> usize {
        self.array.layout().data_size()
    }

    /// True if opened read-only.
    #[getter]
    fn readonly(&self) -> bool {
        !self.array.is_writable()
    }

    /// The generation counter, which writers bump to say the contents changed
    /// (OSError, `errno.EIO`, if a peer shrank the segment).
    #[getter]
    fn generation(&self) -> PyResult<u64> {
        self.array.generation().map_err(to_py)
    }

    /// Add one to the generation counter and return the new value, telling readers
    /// the contents changed (TypeError if read-only; OSError, `errno.EIO`, if a peer
    /// shrank the segment).
    fn bump_generation(&self) -> PyResult<u64> {
        self.array.bump_generation().map_err(to_py)
    }

    /// Removes the segment's name now; arrays made from it stay valid.
    fn unlink(&self) -> PyResult<()> {
        self.unlink_on_drop.store(false, Ordering::Relaxed);
        shmbridge::unlink(self.array.name()).map_err(to_py)
    }

    /// A new NumPy array over the data (zero-copy) whose ``.base`` is this object:
    /// what ``np.asarray(shared_array)`` gives, made directly through NumPy's C API
    /// (about as fast as ``np.frombuffer``, where ``np.asarray`` first parses the
    /// ``__array_interface__`` dictionary).
    fn numpy<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let descr = this.descr.get_or_try_init(slf.py(), || {
            numpy::PyArrayDescr::new(slf.py(), this.array.layout().dtype().typestr())
                .map(Bound::unbind)
        })?;
        crate::array_numpy::view(slf.as_any(), &this.array, descr.bind(slf.py()))
    }

    /// NumPy's array interface (version 3): a zero-copy view of the data.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("shape", self.shape(py)?)?;
        d.set_item("strides", self.strides(py)?)?;
        d.set_item("typestr", self.dtype())?;
        d.set_item("data", (self.array.data_ptr() as usize, self.readonly()))?;
        Ok(d)
    }

    /// A DLPack capsule of the data (zero-copy, CPU; versioned, with the read-only
    /// flag, if ``max_version >= (1, 0)``).
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        if stream.is_some_and(|s| !s.is_none()) {
            return Err(PyValueError::new_err("stream must be None for a CPU array"));
        }
        if dl_device.is_some_and(|d| d != (1, 0)) {
            return Err(PyBufferError::new_err("shmbridge arrays live on the CPU (device (1, 0))"));
        }
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "shmbridge exports zero-copy views only; copy the imported array instead",
            ));
        }
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        dlpack::capsule(py, &self.array, versioned)
    }

    /// (device type, device id): (1, 0), the CPU.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (1, 0)
    }

    fn __repr__(&self) -> String {
        let layout = self.array.layout();
        format!(
            "<shmbridge.SharedArray name={:?} shape={:?} dtype={:?} order={:?}{}>",
            self.array.name(),
            layout.shape(),
            self.dtype(),
            self.order(),
            if self.readonly() { " readonly" } else { "" }
        )
    }
}

impl Drop for SharedArray {
    /// A creator collected (with the last array made from it) releases its name.
    fn drop(&mut self) {
        if *self.unlink_on_drop.get_mut() && self.creator_pid == Some(shmbridge::current_pid()) {
            let _ = shmbridge::unlink(self.array.name());
        }
    }
}
