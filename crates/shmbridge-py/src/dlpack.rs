//! DLPack export (versioned 1.x, and the legacy unversioned form): hands an array
//! to NumPy, PyTorch, JAX... without a copy. The structs follow `dlpack.h`.
//!
//! The capsule owns a `Box<Exported>` holding an `Arc` of the mapping plus the
//! shape and strides arrays, so the memory stays mapped until the consumer calls
//! the deleter (or the capsule dies unconsumed).

use std::ffi::{CStr, c_void};
use std::sync::Arc;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;
use shmbridge::array::ArraySegment;

const DL_CPU: i32 = 1;
const FLAG_READ_ONLY: u64 = 1;
const VERSIONED: &CStr = c"dltensor_versioned";
const LEGACY: &CStr = c"dltensor";

#[repr(C)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

#[repr(C)]
struct DLManagedTensorVersioned {
    version: DLPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

/// What a capsule keeps alive: the mapping, and the arrays DLTensor points into.
struct Exported {
    _segment: Arc<ArraySegment>,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

/// The DLPack dtype of a NumPy type string, if DLPack can express it (it has no
/// byte order, so only native-order arrays can go).
fn dl_dtype(array: &ArraySegment) -> PyResult<DLDataType> {
    let dtype = array.layout().dtype();
    if !dtype.is_native() {
        return Err(PyBufferError::new_err(format!(
            "array {:?} has dtype {dtype}, not in this machine's byte order, which DLPack \
             cannot express",
            array.name()
        )));
    }
    let code = match dtype.kind() {
        'i' => 0,
        'u' => 1,
        'f' => 2,
        'c' => 5,
        'b' => 6,
        other => unreachable!("kind {other} is not among the supported dtypes"),
    };
    Ok(DLDataType { code, bits: (dtype.itemsize() * 8) as u8, lanes: 1 })
}

/// A new DLPack capsule of `array`: versioned (with the read-only flag) when the
/// consumer accepts version 1, else legacy (refused for read-only arrays, which it
/// cannot mark).
pub(crate) fn capsule(
    py: Python<'_>,
    array: &Arc<ArraySegment>,
    versioned: bool,
) -> PyResult<Py<PyAny>> {
    let readonly = !array.is_writable();
    if readonly && !versioned {
        return Err(PyBufferError::new_err(
            "a read-only array needs DLPack 1.0 or later (pass max_version=(1, 0)) to be \
             exported, since the older form cannot mark it read-only",
        ));
    }
    let layout = array.layout();
    let itemsize = layout.dtype().itemsize();
    let mut exported = Box::new(Exported {
        _segment: Arc::clone(array),
        shape: layout.shape().iter().map(|&d| d as i64).collect(),
        // DLPack strides count elements; the layout's are validated multiples of
        // the item size.
        strides: layout.strides().iter().map(|&s| (s / itemsize) as i64).collect(),
    });
    let dl_tensor = DLTensor {
        data: array.data_ptr().cast(),
        device: DLDevice { device_type: DL_CPU, device_id: 0 },
        ndim: layout.shape().len() as i32,
        dtype: dl_dtype(array)?,
        shape: exported.shape.as_mut_ptr(),
        strides: exported.strides.as_mut_ptr(),
        byte_offset: 0,
    };
    let ctx = Box::into_raw(exported).cast::<c_void>();
    let (pointer, name, destructor): (*mut c_void, &CStr, Option<ffi::PyCapsule_Destructor>) =
        if versioned {
            let managed = Box::new(DLManagedTensorVersioned {
                version: DLPackVersion { major: 1, minor: 1 },
                manager_ctx: ctx,
                deleter: Some(delete_versioned),
                flags: if readonly { FLAG_READ_ONLY } else { 0 },
                dl_tensor,
            });
            (Box::into_raw(managed).cast(), VERSIONED, Some(capsule_destructor_versioned as _))
        } else {
            let managed = Box::new(DLManagedTensor {
                dl_tensor,
                manager_ctx: ctx,
                deleter: Some(delete_legacy),
            });
            (Box::into_raw(managed).cast(), LEGACY, Some(capsule_destructor_legacy as _))
        };
    // SAFETY: pointer is a live Box of the managed tensor, name a static C string;
    // on failure the capsule does not own the pointer, so it is freed here.
    let capsule = unsafe { ffi::PyCapsule_New(pointer, name.as_ptr(), destructor) };
    if capsule.is_null() {
        // SAFETY: the capsule was not made, so nothing else owns the managed tensor.
        unsafe {
            if versioned {
                delete_versioned(pointer.cast());
            } else {
                delete_legacy(pointer.cast());
            }
        }
        return Err(PyErr::fetch(py));
    }
    // SAFETY: PyCapsule_New returned a new, non-null reference.
    Ok(unsafe { Bound::from_owned_ptr(py, capsule) }.unbind())
}

/// Frees a versioned managed tensor and what it keeps alive.
unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: managed and its manager_ctx were made by Box::into_raw in `capsule`, and
    // DLPack calls the deleter once.
    unsafe {
        let managed = Box::from_raw(managed);
        drop(Box::from_raw(managed.manager_ctx.cast::<Exported>()));
    }
}

/// Frees a legacy managed tensor and what it keeps alive.
unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: as in delete_versioned.
    unsafe {
        let managed = Box::from_raw(managed);
        drop(Box::from_raw(managed.manager_ctx.cast::<Exported>()));
    }
}

/// A capsule that dies unconsumed (still named "dltensor_versioned") frees its
/// tensor; a consumer renames it "used_dltensor_versioned" and calls the deleter
/// itself.
unsafe extern "C" fn capsule_destructor_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with a live capsule, holding the GIL.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED.as_ptr()) == 1 {
            let managed = ffi::PyCapsule_GetPointer(capsule, VERSIONED.as_ptr());
            delete_versioned(managed.cast());
        }
    }
}

/// As `capsule_destructor_versioned`, for the legacy name.
unsafe extern "C" fn capsule_destructor_legacy(capsule: *mut ffi::PyObject) {
    // SAFETY: called by Python with a live capsule, holding the GIL.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY.as_ptr()) == 1 {
            let managed = ffi::PyCapsule_GetPointer(capsule, LEGACY.as_ptr());
            delete_legacy(managed.cast());
        }
    }
}
