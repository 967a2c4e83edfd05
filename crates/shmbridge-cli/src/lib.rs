//! `shmbridge`, the operator's command for the shared-memory segments of a machine
//! (Linux):
//!
//! ```text
//! shmbridge ls [--ours]          every segment: name, kind, size, mode, owner, creator, users
//! shmbridge info NAME            one segment, and what is inside (array, channel, primitive)
//! shmbridge rm NAME...           remove names (processes that map them keep their memory)
//! shmbridge gc [--dry-run]       remove what automatic reclaim would: dead creators' segments nobody uses
//! shmbridge track                the reclaim tracker (started by creating processes; see below)
//! ```
//!
//! Every command takes `--json` for scripts (schemas in `docs/CLI.md`). Errors are
//! one line on standard error and exit status 1 (2 for a malformed command line).
//!
//! The same code runs as the binary `shmbridge` (this crate) and, in the Python
//! package, as the console script `shmbridge` (an entry point into the
//! extension module, which calls [`run`]).

mod args;
mod commands;
mod json;
mod show;

use std::ffi::OsString;
use std::io::{self, Write};

use clap::Parser;

use args::{Cli, Failure};

/// Runs the command line `args` (the program name first) and returns the exit
/// status: 0 on success, 1 on failure (one line on standard error), 2 for a
/// command line that does not parse (clap's message). Never panics on bad input
/// or a closed output pipe.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let mut out = Vec::new();
    let result = commands::run(&cli.command, cli.json, &mut out);
    let flushed = io::stdout().lock().write_all(&out).and_then(|()| io::stdout().lock().flush());
    // A reader that went away (`shmbridge ls | head`) is not an error.
    if let Some(e) = flushed.err().filter(|e| e.kind() != io::ErrorKind::BrokenPipe) {
        let _ = writeln!(io::stderr(), "shmbridge: cannot write the output: {e}");
        return 1;
    }
    match result {
        Ok(status) => status,
        Err(Failure(message)) => {
            let _ = writeln!(io::stderr(), "shmbridge: {}", show::printable_message(&message));
            1
        }
    }
}
