//! NumPy arrays over a shared array's data, made through NumPy's C API (the
//! `numpy` crate's function table): one call, no `__array_interface__` dictionary
//! to build and parse.

use std::ffi::c_int;
use std::sync::Arc;

use numpy::PyArrayDescr;
use numpy::npyffi::{NPY_ARRAY_WRITEABLE, NpyTypes, PY_ARRAY_API, get_type_object, npy_intp};
use pyo3::prelude::*;
use shmbridge::array::ArraySegment;

/// A new array of `descr` over `array`'s data, with `owner` (the Python object
/// holding `array`) as its base, so the mapping lives while the array does.
pub(crate) fn view<'py>(
    owner: &Bound<'py, PyAny>,
    array: &Arc<ArraySegment>,
    descr: &Bound<'py, PyArrayDescr>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = owner.py();
    let layout = array.layout();
    let mut dims: Vec<npy_intp> = layout.shape().iter().map(|&d| d as npy_intp).collect();
    let mut strides: Vec<npy_intp> = layout.strides().iter().map(|&s| s as npy_intp).collect();
    let flags: c_int = if array.is_writable() { NPY_ARRAY_WRITEABLE } else { 0 };
    // SAFETY: the function table is NumPy's own (imported on first use); the
    // descriptor reference handed over is a new one (NewFromDescr steals it); dims
    // and strides hold `nd` values each, which NumPy copies; the data pointer spans
    // the validated layout inside the mapping, which `owner` keeps mapped, and
    // SetBaseObject (which steals the new reference to `owner`) makes the array
    // keep `owner` alive.
    unsafe {
        let subtype = get_type_object(py, NpyTypes::PyArray_Type);
        let created = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            subtype,
            descr.clone().into_ptr().cast(),
            dims.len() as c_int,
            dims.as_mut_ptr(),
            strides.as_mut_ptr(),
            array.data_ptr().cast(),
            flags,
            std::ptr::null_mut(),
        );
        let created = Bound::from_owned_ptr_or_err(py, created)?;
        if PY_ARRAY_API.PyArray_SetBaseObject(py, created.as_ptr().cast(), owner.clone().into_ptr())
            < 0
        {
            return Err(PyErr::fetch(py));
        }
        Ok(created)
    }
}
