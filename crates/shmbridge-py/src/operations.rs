//! The operator's side in Python: the `shmbridge` command (the console script
//! `shmbridge._cli:main` calls [`cli`]), and how this process starts the reclaim
//! tracker (through that same command, run by this interpreter).

use std::ffi::OsString;

use pyo3::prelude::*;

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

/// Points the core at this interpreter's own CLI for starting the reclaim tracker
/// (`python -m shmbridge._cli track`), so that no binary on `PATH` is needed.
/// `SHMBRIDGE_TRACKER` still wins. Nothing is done for an embedded interpreter
/// with no `sys.executable`.
pub(crate) fn register_tracker(py: Python<'_>) -> PyResult<()> {
    let executable: Option<String> = py.import("sys")?.getattr("executable")?.extract()?;
    if let Some(executable) = executable.filter(|e| !e.is_empty()) {
        shmbridge::reclaim::set_tracker_command(executable, ["-m", "shmbridge._cli"]);
    }
    Ok(())
}
