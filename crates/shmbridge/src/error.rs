//! The one error type of the crate.

use std::io;

/// Everything that can go wrong: with a shared-memory segment (every such variant
/// names the segment) or with a worker call. Each message says what to do next. `Error` converts into [`std::io::Error`] (keeping the kind), so it flows
/// through `?` in code that speaks `io::Result`.
///
/// # Example
///
/// ```
/// use std::io;
/// use shmbridge::{Error, SharedMemory};
///
/// match SharedMemory::open("/doc_no_such_segment") {
///     Err(Error::NotFound { name }) => assert_eq!(name, "/doc_no_such_segment"),
///     other => panic!("expected NotFound, got {other:?}"),
/// }
/// // Each error says what to do next, and converts into io::Error with its kind.
/// let err = SharedMemory::open("/doc_no_such_segment").unwrap_err();
/// assert!(err.to_string().contains("create it first"));
/// assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The name cannot be used as a segment name on this platform.
    #[error("invalid segment name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused, and the rule it broke.
        reason: String,
    },

    /// The requested size cannot be created or mapped.
    #[error("invalid size {size} for segment {name:?}: {reason}")]
    InvalidSize {
        /// The segment name.
        name: String,
        /// The size asked for, in bytes.
        size: u64,
        /// Why it was refused.
        reason: &'static str,
    },

    /// No segment of that name exists.
    #[error(
        "no shared memory segment named {name:?}: create it first, or check the name \
         (it is global to the machine and case-sensitive)"
    )]
    NotFound {
        /// The segment name.
        name: String,
    },

    /// A segment of that name exists already, and create is exclusive.
    #[error(
        "a shared memory segment named {name:?} already exists: open it instead, pick \
         another name (see unique_name), or ask to replace it"
    )]
    AlreadyExists {
        /// The segment name.
        name: String,
    },

    /// The OS refused access (permissions, or another user's segment).
    #[error("permission denied for segment {name:?}: {source}")]
    PermissionDenied {
        /// The segment name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The name is taken by something that is not a shared-memory segment: a
    /// symbolic link, a FIFO, a directory. On Linux anyone may put such a file in
    /// `/dev/shm` under a name they expect another user to open (a link to that
    /// user's private file, a FIFO that would block the open forever), so open
    /// never follows a link and refuses anything but a regular file.
    #[error(
        "{name:?} is {found}, not a shared memory segment, so it was not opened (on Linux \
         segments are regular files in /dev/shm, and someone may have planted this one): \
         remove it if you know where it comes from, or use another name"
    )]
    NotASegment {
        /// The segment name.
        name: String,
        /// What was found, as "a symbolic link".
        found: &'static str,
        /// The OS error that best describes it (`ELOOP` for a link, `EISDIR` for a
        /// directory, `ENODEV` for anything else that cannot be mapped).
        #[source]
        source: io::Error,
    },

    /// A create mode with bits beyond the permission bits `0o777`.
    #[error(
        "mode {mode:#o} for segment {name:?} has bits beyond the permission bits 0o777 \
         (setuid, setgid, sticky or file type bits): pass permission bits only, e.g. 0o600"
    )]
    InvalidMode {
        /// The segment name.
        name: String,
        /// The mode asked for.
        mode: u32,
    },

    /// Pages of the segment vanished under a copy or another guarded operation (a
    /// primitive's or an array header's words): another process shrank the
    /// segment (`ftruncate`), or the system had no memory left for a page of a
    /// segment created without reserving its memory (a sparse one, as Python's
    /// stdlib makes). The operation did not complete (missing bytes read as zeros,
    /// bytes written to them are lost, a wake-up may not reach the other
    /// process), and the handle, with every object built on it, refuses every later
    /// guarded operation.
    #[error(
        "segment {name:?} lost pages while this process used it: another process shrank it \
         (ftruncate), or the system had no memory left for a page it never reserved; the \
         operation is incomplete and this handle refuses further use: close it, and open \
         or create the segment again"
    )]
    PagesLost {
        /// The segment name.
        name: String,
    },

    /// The segment exists but is smaller than the caller expected.
    #[error(
        "segment {name:?} holds {actual} bytes but {expected} were expected: opening never \
         resizes; create it with the right size or expect less"
    )]
    TooSmall {
        /// The segment name.
        name: String,
        /// The size the caller asked for.
        expected: u64,
        /// The segment's real size.
        actual: u64,
    },

    /// Not enough memory to back the segment (a full `/dev/shm` on Linux).
    #[error(
        "no space to create segment {name:?} of {size} bytes{}: ask for less, or free shared \
         memory (on Linux, segments are the files in /dev/shm)",
        match .available { Some(a) => format!(" ({a} bytes free)"), None => String::new() }
    )]
    NoSpace {
        /// The segment name.
        name: String,
        /// The size asked for.
        size: u64,
        /// Free bytes where the platform tells.
        available: Option<u64>,
    },

    /// A range that does not lie inside the segment.
    #[error("range of {len} bytes at offset {offset} is outside segment {name:?} of {size} bytes")]
    OutOfBounds {
        /// The segment name.
        name: String,
        /// Start of the range, in bytes.
        offset: u64,
        /// Length of the range, in bytes.
        len: u64,
        /// The segment's size.
        size: u64,
    },

    /// A typed view whose start is not aligned for its element type.
    #[error(
        "offset {offset} in segment {name:?} is not aligned for {type_name} (alignment \
         {align}): use an offset that is a multiple of {align}"
    )]
    Misaligned {
        /// The segment name.
        name: String,
        /// The offset asked for.
        offset: u64,
        /// The element type.
        type_name: &'static str,
        /// The alignment it needs.
        align: usize,
    },

    /// A write through a segment that was opened read-only.
    #[error("segment {name:?} was opened read-only: open it writable to change it")]
    ReadOnly {
        /// The segment name.
        name: String,
    },

    /// An array that cannot be created as asked (unsupported dtype, shape too large).
    #[error("cannot create array {name:?}: {reason}")]
    InvalidArray {
        /// The segment name.
        name: String,
        /// What is wrong with the request.
        reason: String,
    },

    /// A segment whose header (of an array, a channel) is missing, corrupt, or not
    /// supported.
    #[error("segment {name:?} holds no valid {what} header: {reason}")]
    BadHeader {
        /// The segment name.
        name: String,
        /// What the segment was opened as: `"array"`, `"channel"`.
        what: &'static str,
        /// The first field found wrong.
        reason: String,
    },

    /// An array whose elements are not of the type asked for.
    #[error(
        "array {name:?} holds elements of dtype {found}, not {expected}: open it with the \
         matching element type"
    )]
    DTypeMismatch {
        /// The segment name.
        name: String,
        /// The dtype asked for.
        expected: &'static str,
        /// The dtype in the header.
        found: &'static str,
    },

    /// A shared structure that exists with other settings than the ones asked for.
    #[error("{what} in segment {name:?} {reason}")]
    Incompatible {
        /// The segment name.
        name: String,
        /// The structure and where it is.
        what: String,
        /// How it differs, and what to do.
        reason: String,
    },

    /// The process on the other side died while it held a lock or was writing;
    /// what it was doing may be half done.
    #[error("{what} in segment {name:?}: process {pid} died {during}")]
    PeerDied {
        /// The segment name.
        name: String,
        /// The structure.
        what: &'static str,
        /// The dead process.
        pid: u32,
        /// What it was doing.
        during: &'static str,
    },

    /// The Python process of a worker could not be started.
    #[error(
        "cannot start the worker {program:?}: {source} (is Python installed? pass its path \
         with WorkerBuilder::python, or create the project's .venv)"
    )]
    Spawn {
        /// The interpreter and script or module.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A worker's function raised an exception; the worker keeps serving.
    #[error("{function}() raised {kind}: {message}\n{traceback}")]
    Remote {
        /// The function called.
        function: String,
        /// The exception's type, e.g. `"ValueError"`.
        kind: String,
        /// The exception's message.
        message: String,
        /// The Python traceback, as Python formats it.
        traceback: String,
    },

    /// A worker call did not answer in time. The worker may still be busy with it;
    /// a late answer is discarded, and the worker takes further calls.
    #[error(
        "{function}() did not answer within {after:?}: the worker is still running it or stuck"
    )]
    Timeout {
        /// The function called (`"(startup)"` while waiting for the worker to start).
        function: String,
        /// The time waited.
        after: std::time::Duration,
    },

    /// A structure in shared memory stayed busy (mid-update by another process)
    /// past the caller's deadline.
    #[error(
        "{what} in segment {name:?} was still being written after {after:?}: its writer is \
         slow, stopped, or stuck; try again, or with a longer timeout"
    )]
    Busy {
        /// The segment name.
        name: String,
        /// What was busy.
        what: String,
        /// How long the caller waited.
        after: std::time::Duration,
    },

    /// The worker's process ended (or closed its channel); calls to it fail from
    /// then on.
    #[error(
        "the worker {program:?} exited ({}){}",
        match .status { Some(s) => s.to_string(), None => "status unknown".to_owned() },
        if .stderr_tail.is_empty() { String::new() } else { format!("; the end of its stderr:\n{}", .stderr_tail) }
    )]
    WorkerExited {
        /// The interpreter and script or module.
        program: String,
        /// How it ended, if known.
        status: Option<std::process::ExitStatus>,
        /// The last lines it wrote to stderr (a traceback, usually).
        stderr_tail: String,
    },

    /// The worker and this process disagree about the protocol or its data.
    #[error("worker protocol error: {reason}")]
    Protocol {
        /// What was wrong.
        reason: String,
    },

    /// Any other OS error, with the operation that failed.
    #[error("{op} failed for segment {name:?}: {source}")]
    Os {
        /// The segment name.
        name: String,
        /// What was being done (`"shm_open"`, `"mmap"`, ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The [`io::ErrorKind`] that best describes this error.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::InvalidName { .. }
            | Error::InvalidSize { .. }
            | Error::TooSmall { .. }
            | Error::OutOfBounds { .. }
            | Error::Misaligned { .. }
            | Error::InvalidMode { .. }
            | Error::NotASegment { .. }
            | Error::InvalidArray { .. }
            | Error::DTypeMismatch { .. } => io::ErrorKind::InvalidInput,
            Error::BadHeader { .. } => io::ErrorKind::InvalidData,
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            Error::PermissionDenied { .. } | Error::ReadOnly { .. } => {
                io::ErrorKind::PermissionDenied
            }
            Error::NoSpace { .. } => io::ErrorKind::StorageFull,
            Error::Os { source, .. } | Error::Spawn { source, .. } => source.kind(),
            Error::Timeout { .. } | Error::Busy { .. } => io::ErrorKind::TimedOut,
            Error::WorkerExited { .. } => io::ErrorKind::BrokenPipe,
            Error::Remote { .. } => io::ErrorKind::Other,
            Error::Protocol { .. } => io::ErrorKind::InvalidData,
            Error::Incompatible { .. } => io::ErrorKind::InvalidInput,
            Error::PeerDied { .. } => io::ErrorKind::BrokenPipe,
            // The segment ended before the range being copied did.
            Error::PagesLost { .. } => io::ErrorKind::UnexpectedEof,
        }
    }

    /// The OS error number behind this error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::PermissionDenied { source, .. }
            | Error::Os { source, .. }
            | Error::NotASegment { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Wraps an OS error for `name`, choosing the variant from its kind.
    pub(crate) fn from_os(name: &str, op: &'static str, source: io::Error) -> Self {
        let name = name.to_owned();
        if let Some(found) = crate::sys::not_a_segment(&source) {
            let source = io::Error::from_raw_os_error(found.errno);
            return Error::NotASegment { name, found: found.found, source };
        }
        match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound { name },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists { name },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { name, source },
            _ => Error::Os { name, op, source },
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        io::Error::new(err.kind(), err)
    }
}
