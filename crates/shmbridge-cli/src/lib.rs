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

mod commands;
mod json;
mod show;

use std::ffi::OsString;
use std::io::{self, Write};

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "shmbridge",
    version,
    about = "List, inspect, remove and reclaim shared-memory segments (/dev/shm)",
    long_about = "List, inspect, remove and reclaim shared-memory segments (/dev/shm).\n\n\
        Segments made by shmbridge carry an ownership record (creator, kind, \
        persistence); others (Python's stdlib, C, ...) show as `raw` and are never \
        touched by `gc`."
)]
struct Cli {
    /// Print JSON instead of text (schemas in docs/CLI.md).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the segments: name, kind, size, mode, owner, creator (and whether it
    /// runs), the processes using each now.
    Ls {
        /// Only segments made by shmbridge (with an ownership record).
        #[arg(long)]
        ours: bool,
    },
    /// Show one segment: its record, its users, and what is inside (an array's
    /// dtype, shape, strides and generation; a channel's capacity, fill and ends;
    /// a primitive's state).
    Info {
        /// The segment's name (the leading `/` is optional).
        name: String,
    },
    /// Remove segments by name. Processes that map one keep its memory until they
    /// unmap it; nobody can open it any more.
    Rm {
        /// The segments' names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every segment automatic reclaim would remove: made by shmbridge, not
    /// persistent, its creator dead, used by no process. Others are never touched.
    Gc {
        /// Show what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also list the segments of ours that stay, with the reason.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Run the reclaim tracker of this user: removes the segments of creators that
    /// died as soon as their last user lets go, and exits when no creating process
    /// is left. Creating processes start it on their own; by hand, use
    /// `--foreground`.
    Track {
        /// Stay in this terminal's session, say nothing on standard output, and
        /// describe each reclaim on standard error (instead of detaching, as
        /// creating processes ask for).
        #[arg(long)]
        foreground: bool,
        /// Seconds to wait, with no creating process connected and nothing to
        /// reclaim, before exiting.
        #[arg(long, default_value_t = 2.0)]
        idle_exit: f64,
    },
}

/// A failure, printed as one line.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

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
            let _ = writeln!(io::stderr(), "shmbridge: {}", show::printable(&message));
            1
        }
    }
}
