//! What the bench's Rust programs share: argument parsing and the JSON they print.
//!
//! The programs (`src/bin/`) are driven by the Python bench (`bench/shmbench`,
//! run with `./dev bench`): it starts them, tells them what to measure on the
//! command line and reads one JSON object from their stdout. Times are whole
//! nanoseconds.

use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The error type of the bench programs: any error, printed on exit.
pub type BoxError = Box<dyn std::error::Error>;

/// How long any single wait of a bench program may take before it gives up.
/// (A peer waits for its next block while every other contender of its group runs.)
pub const PATIENCE: Duration = Duration::from_secs(600);

/// The command line after the program's name.
pub struct Args(Vec<String>);

impl Args {
    /// The process's arguments.
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// The `i`-th argument (0: the mode), parsed.
    ///
    /// # Errors
    ///
    /// If it is missing or does not parse, naming it.
    pub fn get<T: FromStr>(&self, i: usize) -> Result<T, BoxError>
    where
        T::Err: Display,
    {
        let text = self.0.get(i).ok_or_else(|| format!("argument {i} is missing"))?;
        text.parse().map_err(|e| format!("argument {i} ({text:?}): {e}").into())
    }

    /// The `i`-th argument as text.
    ///
    /// # Errors
    ///
    /// If it is missing.
    pub fn text(&self, i: usize) -> Result<&str, BoxError> {
        self.0.get(i).map(String::as_str).ok_or_else(|| format!("argument {i} is missing").into())
    }
}

/// Nanoseconds since `start`.
pub fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// `"key": [n, n, ...]`, for building the one JSON object a program prints.
pub fn json_list(key: &str, values: &[u64]) -> String {
    let items: Vec<String> = values.iter().map(u64::to_string).collect();
    format!("\"{key}\": [{}]", items.join(","))
}

/// `"key": [x, x, ...]`, for figures finer than a nanosecond.
pub fn json_floats(key: &str, values: &[f64]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
    format!("\"{key}\": [{}]", items.join(","))
}

/// Prints `{fields...}` as one line of JSON on stdout.
pub fn print_object(fields: &[String]) {
    println!("{{{}}}", fields.join(", "));
}
