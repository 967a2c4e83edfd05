//! Whether the object a method runs on can be reached by nothing but the caller's
//! own name for it, so that the ring room it lends may be given back at once.
//!
//! A `Message` or a `Loan` keeps its room in the ring while the Python object
//! lives, because NumPy's `np.ndarray(buffer=obj)` and `np.frombuffer(obj)` keep a
//! reference to the object, not a buffer export: there is no other way to know
//! that no array still points into the room. That makes the documented idiom
//! `with rx.recv_view() as m: ...` hold the room after the block for as long as the
//! name `m` lives, and a ring whose oldest room is held fills up.
//!
//! The reference count tells the two cases apart. At the end of a `with` block (or
//! in a plain `m.release()` call) the count is a fixed number made of the
//! interpreter's own references and the caller's name; anything else that holds the
//! object (an array, a list, a second name, a closure, an export) adds to it. That
//! fixed number depends on the interpreter's version and calling conventions, so it
//! is measured once, on a probe object that takes exactly the same paths, rather
//! than assumed.
//!
//! Only ever errs towards keeping the room: with a tracer or profiler installed at
//! measuring time (which may hold extra references), on free-threaded builds (whose
//! counts are split) and on interpreters newer than those measured here (3.14
//! borrows stack references, so a count can be one lower than the holders), nothing
//! is given back early.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicIsize, Ordering};

use pyo3::prelude::*;

/// Where the count is taken.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Site {
    /// In `__exit__`, called by a `with` statement.
    Exit,
    /// In a method called as `obj.method()`.
    Call,
}

/// The counts measured on the probe, or `None` where the shortcut is off.
static BASELINE: OnceLock<Option<(isize, isize)>> = OnceLock::new();

/// Whether `obj`, as seen by a method at `site`, is held by nothing but the
/// interpreter and at most one name of the caller's.
pub(crate) fn only_the_caller_holds<T: pyo3::PyClass>(obj: &Bound<'_, T>, site: Site) -> bool {
    let Some((exit, call)) = baseline(obj.py()) else {
        return false;
    };
    let limit = match site {
        Site::Exit => exit,
        Site::Call => call,
    };
    count(obj.as_any()) <= limit
}

/// The object's reference count.
fn count(obj: &Bound<'_, PyAny>) -> isize {
    // SAFETY: obj is a live object (the Bound holds it) and the GIL is held.
    unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) }
}

fn baseline(py: Python<'_>) -> Option<(isize, isize)> {
    if let Some(known) = BASELINE.get() {
        return *known;
    }
    match measure(py) {
        Ok(Some(counts)) => *BASELINE.get_or_init(|| Some(counts)),
        // Traced right now: measure again next time rather than trust these counts.
        Ok(None) => None,
        Err(_) => *BASELINE.get_or_init(|| None),
    }
}

/// The counts a probe sees at the end of `with Probe() as probe:` and in
/// `single.release()`, where each object has exactly one name.
fn measure(py: Python<'_>) -> PyResult<Option<(isize, isize)>> {
    if py.version_info() >= (3, 14) {
        return Ok(None);
    }
    let code = cr#"
import sys, sysconfig

def measure(Probe):
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return None
    with Probe() as probe:
        pass
    single = Probe()
    single.release()
    return probe.seen(), single.seen()
"#;
    let module = PyModule::from_code(py, code, c"shmbridge_sole_reference.py", c"_sole_reference")?;
    let seen = module.getattr("measure")?.call1((py.get_type::<ReferenceProbe>(),))?;
    if seen.is_none() {
        return Ok(None);
    }
    if seen.is_instance_of::<pyo3::types::PyBool>() {
        return Err(pyo3::exceptions::PyNotImplementedError::new_err("free-threaded build"));
    }
    let ((exit, _), (_, call)): ((isize, isize), (isize, isize)) = seen.extract()?;
    // A count below 2 would mean the measurement saw no name at all: distrust it.
    Ok((exit >= 2 && call >= 2).then_some((exit, call)))
}

/// Takes the same paths as `Message` and `Loan` (a `Py<Self>` from `__enter__`, a
/// `&Bound<Self>` receiver in `__exit__` and in a method) and records the counts.
#[pyclass(module = "shmbridge._native", name = "_ReferenceProbe", frozen)]
#[derive(Default)]
pub(crate) struct ReferenceProbe {
    exit: AtomicIsize,
    call: AtomicIsize,
}

#[pymethods]
impl ReferenceProbe {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        slf: &Bound<'_, Self>,
        _t: &Bound<'_, PyAny>,
        _v: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> bool {
        slf.get().exit.store(count(slf.as_any()), Ordering::Relaxed);
        false
    }

    fn release(slf: &Bound<'_, Self>) {
        slf.get().call.store(count(slf.as_any()), Ordering::Relaxed);
    }

    /// The counts seen in `__exit__` and in `release()`.
    fn seen(&self) -> (isize, isize) {
        (self.exit.load(Ordering::Relaxed), self.call.load(Ordering::Relaxed))
    }
}
