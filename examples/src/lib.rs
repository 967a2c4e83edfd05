//! Runnable Rust/Python pairs, one per block of the spec. Each Rust side creates a
//! segment, starts its Python partner (`examples/<name>.py`) as a child process with
//! the segment's name, waits for it, and checks what it left behind. Every line
//! printed says which side saw what.
//!
//! Run one with `cargo run --release -p shmbridge-examples --bin hello`, or all of
//! them with `--bin demo`. The Python interpreter is `$SHMBRIDGE_PYTHON`, else the
//! repository's `.venv`, else `python3`; it must be able to `import shmbridge`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod channel_frames;
pub mod header_layout;
pub mod hello;
pub mod numpy_array;
pub mod process_buffer;
pub mod shared_array;
pub mod typed_slices;

/// What the examples return: any error, printed by `main`.
pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("examples/ is inside the repo").to_owned()
}

/// The interpreter that runs the Python halves.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SHMBRIDGE_PYTHON") {
        return python.into();
    }
    let venv = repo_root().join(if cfg!(windows) {
        ".venv/Scripts/python.exe"
    } else {
        ".venv/bin/python"
    });
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

/// Runs `examples/<script>.py` with `args`, its output going to ours, and fails
/// unless it exits successfully.
pub fn run_python(script: &str, args: &[&str]) -> Result {
    let path = repo_root().join("examples").join(format!("{script}.py"));
    let status =
        Command::new(python()).arg(&path).args(args).status().map_err(|e| {
            format!("cannot start {} (set SHMBRIDGE_PYTHON?): {e}", python().display())
        })?;
    if !status.success() {
        return Err(format!("{} failed: {status}", path.display()).into());
    }
    Ok(())
}

/// Starts `examples/<script>.py` with `args` without waiting for it.
pub fn run_python_async(script: &str, args: &[&str]) -> Result<std::process::Child> {
    let path = repo_root().join("examples").join(format!("{script}.py"));
    Command::new(python()).arg(&path).args(args).spawn().map_err(|e| {
        format!("cannot start {} (set SHMBRIDGE_PYTHON?): {e}", python().display()).into()
    })
}

/// Prints a line from the Rust side.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        println!("[rust]   {}", format!($($arg)*));
        let _ = std::io::stdout().flush();
    }};
}
