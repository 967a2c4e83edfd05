//! The operator's side in Python: the `shmbridge` command (the console script
//! `shmbridge._cli:main` calls [`cli`]), and how this process starts the reclaim
//! tracker (through that same command, run by this interpreter).

use std::ffi::OsString;

use pyo3::prelude::*;

use crate::errors::to_py;

/// Runs the `shmbridge` command line `argv` (program name first) and returns its
/// exit status; output goes straight to file descriptors 1 and 2. The GIL is
/// released meanwhile (`shmbridge track` runs until idle).
#[pyfunction]
pub(crate) fn _cli(py: Python<'_>, argv: Vec<OsString>) -> i32 {
    py.detach(|| {
        std::panic::catch_unwind(|| shmbridge_cli::run(argv)).unwrap_or_else(|_| {
            eprintln!("shmbridge: internal error (a bug: please report it)");
            70
        })
    })
}

/// Loads this extension from its file alone and runs its CLI: starting a tracker
/// this way costs Python's bare start-up, not the package's imports (`asyncio`,
/// NumPy) that `python -m shmbridge._cli` would pay on the creating process's first
/// create.
const TRACKER_SCRIPT: &str = "import sys, importlib.util as u\n\
s = u.spec_from_file_location('shmbridge._native', sys.argv[1])\n\
m = u.module_from_spec(s)\n\
s.loader.exec_module(m)\n\
sys.exit(m._cli(['shmbridge'] + sys.argv[2:]))\n";

/// Points the core at this interpreter and this extension's own CLI for starting
/// the reclaim tracker, so that no binary on `PATH` is needed: the tracker runs as
/// `python -I -S -c TRACKER_SCRIPT <this module's file> track`.
/// `SHMBRIDGE_TRACKER` still wins. Nothing is done for an embedded interpreter
/// with no `sys.executable`, or a module with no file.
pub(crate) fn register_tracker(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let executable: Option<String> = py.import("sys")?.getattr("executable")?.extract()?;
    let file: Option<String> = module.getattr("__file__").ok().and_then(|f| f.extract().ok());
    if let (Some(executable), Some(file)) = (executable.filter(|e| !e.is_empty()), file) {
        shmbridge::reclaim::set_tracker_command(
            executable,
            ["-I", "-S", "-c", TRACKER_SCRIPT, &file],
        );
    }
    Ok(())
}

/// Waits until no segment is named `name`, or `timeout` seconds pass; whether it
/// is gone. Sleeps on `/dev/shm` (inotify) with the GIL released, so it answers as
/// soon as the name goes. For tests and tools that wait for a reclaim (Linux).
#[pyfunction]
pub(crate) fn _wait_gone(py: Python<'_>, name: &str, timeout: f64) -> PyResult<bool> {
    if !(timeout.is_finite() && timeout >= 0.0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout {timeout}: give seconds, 0 or more"
        )));
    }
    let timeout = std::time::Duration::from_secs_f64(timeout.min(1e9));
    py.detach(|| shmbridge::reclaim::wait_gone(name, timeout)).map_err(to_py)
}
