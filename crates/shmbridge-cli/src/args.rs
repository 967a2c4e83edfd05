//! The command line (what clap parses) and the one-line failure every command
//! may end with.

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
pub(crate) struct Cli {
    /// Print JSON instead of text (schemas in docs/CLI.md).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
