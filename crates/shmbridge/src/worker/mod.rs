//! Worker: start a Python process and call the functions it registered — the
//! spec's "queue process", done for Rust.
//!
//! The Python side is a script or module that registers functions on a
//! `shmbridge.Server` and calls `server.serve()`:
//!
//! ```python
//! from shmbridge import Server
//! server = Server()
//!
//! @server.register
//! def process_buffer(shm, size):
//!     data = shm.read(size)
//!     return {"status": "done", "sum": sum(data)}
//!
//! server.serve()
//! ```
//!
//! The Rust side starts it and calls:
//!
//! ```no_run
//! use std::time::Duration;
//! use serde_json::json;
//! use shmbridge::{SharedMemory, worker::Worker};
//!
//! let worker = Worker::script("worker.py").spawn()?;
//! let mut shm = SharedMemory::create_unique("buf", 1 << 20)?;
//! shm.write_all_at(b"hello", 0)?;
//! // A segment in the arguments arrives in Python as an opened SharedMemory.
//! let reply: serde_json::Value =
//!     worker.call("process_buffer", json!({"shm": &shm, "size": 5}), Duration::from_secs(10))?;
//! assert_eq!(reply["status"], "done");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The transport is JSON lines over the child's stdin and stdout, specified in
//! `docs/FORMAT.md`; the server moves them out of user code's reach, so what the
//! child prints goes to its stderr and cannot corrupt the protocol. Calls may come
//! from several threads at once; answers are matched to calls by id. Every call
//! keeps its own timeout, while it waits to write its request as while it waits
//! for the answer, and a worker that dies, whatever it was doing, is reported as
//! [`Error::WorkerExited`] at once: waiting callers
//! check the process itself every 20 ms.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::channel::{Channel, ChannelError, Message, Receiver};
use crate::error::{Error, Result};
use crate::sys;

mod arguments;
mod async_call;
mod outbox;

pub use arguments::MARKER;
use outbox::{Outbox, Unsent};

/// The protocol version this build speaks.
pub const PROTOCOL: u64 = 1;
/// Bytes of the worker's stderr kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// What to run, and how: the interpreter, the script or module, environment,
/// working directory, timeouts.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use shmbridge::worker::{Transport, Worker};
///
/// // A worker script, as a Python user would write it:
/// let script = std::env::temp_dir().join(format!("doc_worker_{}.py", std::process::id()));
/// std::fs::write(&script, "\
/// from shmbridge import Server
/// server = Server()
///
/// @server.register
/// def add(a, b):
///     return a + b
///
/// server.serve()
/// ")?;
/// let worker = Worker::script(&script) // the .venv's python, found from the current directory
///     .env("PYTHONUNBUFFERED", "1")
///     .startup_timeout(Duration::from_secs(30))
///     .transport(Transport::SharedMemory { capacity: 1 << 16 })
///     .spawn()?;
/// assert!(worker.functions().contains(&"add".to_owned()));
/// let sum: i64 = worker.call("add", json!({"a": 2, "b": 40}), Duration::from_secs(10))?;
/// assert_eq!(sum, 42);
/// worker.shutdown()?;
/// std::fs::remove_file(&script)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    python: Option<PathBuf>,
    target: Vec<OsString>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
    startup_timeout: Duration,
    shutdown_timeout: Duration,
    forward_stderr: bool,
    transport: Transport,
    #[cfg(unix)]
    shared_fds: Vec<std::os::fd::RawFd>,
}

/// How requests and answers travel once the worker has started (the handshake
/// always comes over its stdout pipe).
///
/// The default is [`Transport::SharedMemory`] of [`Transport::DEFAULT_CAPACITY`]:
/// `./dev bench` measures it the faster of the two on a quiet and a busy machine
/// (docs/benchmarks.md, "Worker calls").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// JSON lines over the child's stdin and stdout.
    Pipe,
    /// Two shared-memory channels of `capacity` bytes each: no system call per
    /// message while both sides are busy. A request or answer longer than half of
    /// it (a channel's largest message) goes down the pipe instead, in its turn.
    SharedMemory {
        /// Bytes of each channel's ring.
        capacity: usize,
    },
}

impl Transport {
    /// Each channel's ring in the default transport: 1 MiB (answers and requests
    /// of up to 512 KiB go through shared memory, longer ones down the pipe).
    pub const DEFAULT_CAPACITY: usize = 1 << 20;
}

impl Default for Transport {
    fn default() -> Self {
        Transport::SharedMemory { capacity: Self::DEFAULT_CAPACITY }
    }
}

impl WorkerBuilder {
    fn new(target: Vec<OsString>) -> Self {
        Self {
            python: None,
            target,
            args: Vec::new(),
            envs: Vec::new(),
            current_dir: None,
            startup_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(5),
            forward_stderr: true,
            transport: Transport::default(),
            #[cfg(unix)]
            shared_fds: Vec::new(),
        }
    }

    /// The Python interpreter (default: the `.venv` of the current directory or
    /// the nearest parent that has one, else `python3`).
    pub fn python(&mut self, python: impl AsRef<Path>) -> &mut Self {
        self.python = Some(python.as_ref().to_owned());
        self
    }

    /// An argument for the script or module (`sys.argv[1:]`).
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// An environment variable for the worker, on top of this process's.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The worker's working directory (default: this process's).
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// How long `spawn` waits for the server to say it is ready (default 60 s:
    /// importing NumPy on a busy machine takes a while).
    pub fn startup_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long shutdown (and drop) waits for the worker to exit after its channel
    /// is closed before killing it (default 5 s).
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether the worker's stderr (and so its prints) is copied to this process's
    /// stderr (default `true`). Its tail is kept for error messages either way.
    pub fn forward_stderr(&mut self, yes: bool) -> &mut Self {
        self.forward_stderr = yes;
        self
    }

    /// How calls travel (default: [`Transport::default`]).
    pub fn transport(&mut self, transport: Transport) -> &mut Self {
        self.transport = transport;
        self
    }

    /// Hands an anonymous segment (see
    /// [`SharedMemory::anonymous`](crate::SharedMemory::anonymous)) to the worker:
    /// its descriptor is inherited, so passing the segment in a call's arguments
    /// later gives the handler an opened `SharedMemory`, with no name anywhere.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] if the segment has no descriptor (a named segment: pass
    /// it in the arguments directly).
    #[cfg(unix)]
    pub fn share(&mut self, segment: &crate::SharedMemory) -> Result<&mut Self> {
        use std::os::fd::AsRawFd;
        let fd = segment.as_fd().ok_or_else(|| Error::Protocol {
            reason: format!(
                "segment {:?} has a name; pass it in a call's arguments instead of sharing it",
                segment.name()
            ),
        })?;
        self.shared_fds.push(fd.as_raw_fd());
        Ok(self)
    }

    /// Starts the worker and waits until its server is ready.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the interpreter cannot be started; [`Error::WorkerExited`]
    /// (with the end of its stderr: usually a traceback) if it exits before serving;
    /// [`Error::Timeout`] if it is not ready within the startup timeout (it is then
    /// killed); [`Error::Protocol`] if it speaks another protocol.
    pub fn spawn(&self) -> Result<Worker> {
        let python = self.python.clone().unwrap_or_else(default_python);
        let program = std::iter::once(python.as_os_str())
            .chain(self.target.iter().map(OsString::as_os_str))
            .map(|s| s.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let channels = match self.transport {
            Transport::Pipe => None,
            Transport::SharedMemory { capacity } => {
                let requests = Channel::create(&crate::unique_name("worker_req")?, capacity)?;
                let answers = Channel::create(&crate::unique_name("worker_ans")?, capacity)?;
                Some((requests.sender()?, answers.receiver()?, requests, answers))
            }
        };
        let mut cmd = Command::new(&python);
        if let Some((_, _, requests, answers)) = &channels {
            cmd.env("SHMBRIDGE_WORKER_CHANNELS", format!("{},{}", requests.name(), answers.name()));
        }
        cmd.args(&self.target)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        #[cfg(unix)]
        if !self.shared_fds.is_empty() {
            use std::os::unix::process::CommandExt;
            let fds = self.shared_fds.clone();
            // SAFETY: the closure runs in the child between fork and exec, where only
            // async-signal-safe calls are allowed: it makes one fcntl per descriptor
            // and allocates nothing (the Vec was built before the fork).
            unsafe {
                cmd.pre_exec(move || fds.iter().try_for_each(|&fd| crate::sys::inherit_fd(fd)));
            }
        }
        let mut child =
            cmd.spawn().map_err(|source| Error::Spawn { program: program.clone(), source })?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        let stderr = child.stderr.take().expect("stderr was piped");
        let pid = child.id();
        let shared = Arc::new(Shared {
            program,
            child: Mutex::new(child),
            calls: Mutex::new(Calls { pending: HashMap::new(), ended: false, stopping: false }),
            async_waiting: Condvar::new(),
            expiring: Mutex::new(Vec::new()),
            replies: Mutex::new(match &channels {
                None => Inbox::Pipe(BufReader::new(stdout)),
                Some(_) => Inbox::Channel(BufReader::new(stdout), None, false),
            }),
            stderr: Mutex::new(StderrTail { bytes: Vec::new(), closed: false, held_open: false }),
            stderr_closed: Condvar::new(),
        });
        let stderr_thread = {
            let shared = Arc::clone(&shared);
            let forward = self.forward_stderr;
            std::thread::Builder::new()
                .name(format!("shmbridge-worker-{pid}-stderr"))
                .spawn(move || shared.collect_stderr(stderr, forward))
                .map_err(|e| Error::Protocol { reason: format!("cannot start a thread: {e}") })?
        };
        let mut worker = Worker {
            shared,
            outbox: Outbox::pipe(stdin),
            next_id: AtomicU64::new(1),
            functions: Vec::new(),
            pid,
            shutdown_timeout: self.shutdown_timeout,
            threads: vec![stderr_thread],
            async_reader: Mutex::new(None),
        };
        match worker.shared.handshake(self.startup_timeout) {
            Ok(functions) => {
                worker.functions = functions;
                if let Some((sender, receiver, ..)) = channels {
                    worker.outbox.use_channel(sender);
                    if let Inbox::Channel(_, slot, _) = &mut *lock(&worker.shared.replies) {
                        *slot = Some(receiver);
                    }
                }
                Ok(worker)
            }
            Err(e) => {
                if matches!(e, Error::Timeout { .. }) {
                    worker.shutdown_timeout = Duration::ZERO;
                }
                Err(e) // dropping the worker reaps the process
            }
        }
    }
}

/// The interpreter to use when none is given: the nearest `.venv`, else `python3`.
fn default_python() -> PathBuf {
    let venv_python = if cfg!(windows) {
        Path::new(".venv/Scripts/python.exe")
    } else {
        Path::new(".venv/bin/python")
    };
    std::env::current_dir()
        .ok()
        .and_then(|dir| dir.ancestors().map(|d| d.join(venv_python)).find(|p| p.exists()))
        .unwrap_or_else(|| PathBuf::from(if cfg!(windows) { "python" } else { "python3" }))
}

/// A running Python worker whose registered functions can be called.
///
/// Calls may be made from several threads at once. Dropping the worker closes its
/// channel, waits for it to exit (up to the shutdown timeout), kills it if it
/// does not, and reaps it: no zombie, no orphan.
pub struct Worker {
    shared: Arc<Shared>,
    /// Where requests go.
    outbox: Outbox,
    next_id: AtomicU64,
    functions: Vec<String>,
    pid: u32,
    shutdown_timeout: Duration,
    threads: Vec<JoinHandle<()>>,
    /// The reader of answers for async calls, started by the first one.
    async_reader: Mutex<Option<JoinHandle<()>>>,
}

/// State shared by the calling threads and the thread that reads stderr.
///
/// Answers are read by the callers themselves ("leader/follower"): a caller that
/// finds nobody reading `replies` takes the lock and reads until its own answer
/// comes, routing the others' to their callers; when it leaves, it hands the
/// reading over to a waiting caller. A lone caller thus waits on the pipe itself,
/// with no thread in between.
struct Shared {
    program: String,
    child: Mutex<Child>,
    calls: Mutex<Calls>,
    /// Where answers come from; whoever holds the lock is the reader.
    replies: Mutex<Inbox>,
    stderr: Mutex<StderrTail>,
    stderr_closed: Condvar,
    /// Signalled (with `calls`) when async calls start waiting, or on shutdown.
    async_waiting: Condvar,
    /// Async calls with their deadlines, for the async reader to end on time.
    expiring: Mutex<Vec<(Arc<async_call::Slot>, Arc<std::sync::atomic::AtomicBool>)>>,
}

struct Calls {
    /// How to reach each waiting caller, by call id.
    pending: HashMap<u64, Route>,
    /// Set once the worker's channel closed: no answer will come any more.
    ended: bool,
    /// Set when the worker is being shut down: the async reader leaves.
    stopping: bool,
}

/// How an answer reaches its caller.
enum Route {
    /// A blocking caller, through its channel.
    Blocking(mpsc::Sender<Wake>),
    /// An async caller, through the slot its future polls.
    Async(Arc<async_call::Slot>),
}

impl Route {
    fn deliver(&self, answer: Result<Value>) {
        match self {
            Route::Blocking(tx) => {
                let _ = tx.send(Wake::Answer(answer));
            }
            Route::Async(slot) => slot.fill(answer),
        }
    }
}

/// The answers' way back: the stdout pipe (which always carries the handshake),
/// and for the shared-memory transport the answer channel, with whether the
/// channel said that the next answer comes down the pipe (too long for it).
enum Inbox {
    Pipe(BufReader<ChildStdout>),
    Channel(BufReader<ChildStdout>, Option<Receiver>, bool),
}

/// The message a channel of the shared-memory transport carries in place of one
/// too long for it: the next line on the pipe is that message (JSON never starts
/// with a NUL byte). The server does the same with answers.
pub(crate) const SPILLED: &[u8] = b"\0spilled";

/// What a waiting caller is told.
enum Wake {
    /// Its answer.
    Answer(Result<Value>),
    /// The reader left: take over the reading.
    Lead,
}

struct StderrTail {
    bytes: Vec<u8>,
    /// The worker's stderr reached its end.
    closed: bool,
    /// The worker exited and its stderr stayed open past the grace period: a process
    /// it started holds the pipe. Nobody waits for the end again.
    held_open: bool,
}

/// How long, once the worker exited, its stderr may take to reach its end (the
/// last words of a crash) before we stop waiting: a process the worker started
/// may hold the pipe open for as long as it lives.
const STDERR_GRACE: Duration = Duration::from_secs(1);

/// How long a waiting caller goes without checking whether anybody is reading.
const FOLLOWER_CHECK: Duration = Duration::from_millis(50);

/// How long a caller waits (for an answer, or for room for its request) before it
/// checks that the worker's process still runs. Its death is reported within this
/// even where nothing else shows it: a channel it never opened, or pipes that a
/// child of its inherited and holds open.
const LIVENESS_CHECK: Duration = Duration::from_millis(20);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Worker {
    /// A worker running a Python script: `python SCRIPT`.
    pub fn script(path: impl AsRef<Path>) -> WorkerBuilder {
        WorkerBuilder::new(vec![path.as_ref().as_os_str().to_owned()])
    }

    /// A worker running a Python module: `python -m MODULE`.
    pub fn module(name: &str) -> WorkerBuilder {
        WorkerBuilder::new(vec!["-m".into(), name.into()])
    }

    /// Calls `function` with keyword arguments `args` (anything that serializes to
    /// a JSON object, e.g. `json!({...})` or a struct), and returns its result as
    /// `T` (`serde_json::Value` for any JSON).
    ///
    /// Shared-memory segments and arrays inside `args` travel as references and
    /// arrive opened in the handler.
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] if the function raised (with the Python traceback; the
    /// worker goes on serving); [`Error::Timeout`] if no answer came within
    /// `timeout`, which includes waiting for room for the request while the worker
    /// reads nothing (a late answer is discarded, and a request cut short is
    /// finished before the next one, so the worker stays usable);
    /// [`Error::WorkerExited`] as soon as the worker is found dead, at any moment
    /// (with its status and the end of its stderr); [`Error::Protocol`] if the
    /// arguments are not a JSON object, the request does not fit the
    /// shared-memory transport, or the result does not deserialize as `T`.
    ///
    /// The call returns within `timeout` (plus the time to serialize the
    /// arguments and to be scheduled) whatever the worker and other callers do,
    /// except on Windows, where writing a request to a full pipe waits for room.
    pub fn call<T: DeserializeOwned>(
        &self,
        function: &str,
        args: impl Serialize,
        timeout: Duration,
    ) -> Result<T> {
        let deadline = deadline_after(timeout);
        let (tx, rx) = mpsc::channel::<Wake>();
        let id = self.start_call(function, args, timeout, deadline, Route::Blocking(tx))?;
        let answer = self.shared.await_answer(id, &rx, deadline);
        finish_call(function, timeout, answer)
    }

    /// Sends the request of a call whose answer goes to `route`; returns its id.
    fn start_call(
        &self,
        function: &str,
        args: impl Serialize,
        timeout: Duration,
        deadline: Instant,
        route: Route,
    ) -> Result<u64> {
        let params = serde_json::to_value(args)
            .map_err(|e| Error::Protocol { reason: format!("arguments do not serialize: {e}") })?;
        if !params.is_object() {
            return Err(Error::Protocol {
                reason: format!(
                    "arguments must be a JSON object of keyword arguments, not {params}"
                ),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut calls = lock(&self.shared.calls);
            if calls.ended {
                return Err(self.shared.exited());
            }
            calls.pending.insert(id, route);
        }
        let mut line = serde_json::to_vec(&json!({"id": id, "method": function, "params": params}))
            .expect("a JSON value serializes");
        line.push(b'\n');
        match self.outbox.send(&line, deadline, &|| self.shared.has_exited()) {
            // A worker that is gone: whoever reads the answers sees that too and
            // answers this call with WorkerExited, saying how it ended.
            Ok(()) | Err(Unsent::Gone) => Ok(id),
            Err(Unsent::Timeout) => {
                lock(&self.shared.calls).pending.remove(&id);
                Err(Error::Timeout { function: function.to_owned(), after: timeout })
            }
        }
    }

    /// The names the server registered.
    pub fn functions(&self) -> &[String] {
        &self.functions
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the worker is still running and its channel open.
    pub fn is_alive(&self) -> bool {
        !lock(&self.shared.calls).ended && matches!(lock(&self.shared.child).try_wait(), Ok(None))
    }

    /// Closes the worker's channel, waits for it to exit (killing it after the
    /// shutdown timeout), and returns how it ended.
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if waiting for or killing the process fails.
    pub fn shutdown(mut self) -> Result<ExitStatus> {
        self.stop()
    }

    fn stop(&mut self) -> Result<ExitStatus> {
        lock(&self.shared.calls).stopping = true;
        self.shared.async_waiting.notify_all();
        if let Some(reader) = lock(&self.async_reader).take() {
            let _ = reader.join();
        }
        // Closing the request channel (or stdin) ends serve(), and the process exits.
        self.outbox.close();
        let deadline = Instant::now() + self.shutdown_timeout;
        let status = match self.shared.wait_until(deadline) {
            Some(status) => Ok(status),
            None => {
                let mut child = lock(&self.shared.child);
                let _ = child.kill();
                child.wait()
            }
        };
        // The stderr reader ends when the pipe does, which a process the worker
        // started may hold open: join it only if its end came within the grace
        // period, else leave it to finish (forwarding) on its own.
        if self.shared.wait_for_stderr_end() {
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        } else {
            self.threads.clear();
        }
        status.map_err(|e| Error::from_os(&self.shared.program, "wait", e))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("program", &self.shared.program)
            .field("pid", &self.pid)
            .field("functions", &self.functions)
            .finish()
    }
}

impl Shared {
    /// Reads the server's first line, `{"ready": true, ...}`, within `timeout`.
    fn handshake(&self, timeout: Duration) -> Result<Vec<String>> {
        let deadline = deadline_after(timeout);
        let mut replies = lock(&self.replies);
        let stdout = match &mut *replies {
            Inbox::Pipe(stdout) | Inbox::Channel(stdout, _, _) => stdout,
        };
        match self.read_pipe_line(stdout, deadline) {
            Some(Ok(line)) => parse_handshake(&line),
            Some(Err(e)) => Err(e),
            None => Err(Error::Timeout { function: "(startup)".into(), after: timeout }),
        }
    }

    /// Waits for the answer to call `id` until `deadline` (`None`: timed out),
    /// reading the worker's replies itself whenever nobody else is.
    fn await_answer(
        &self,
        id: u64,
        rx: &mpsc::Receiver<Wake>,
        deadline: Instant,
    ) -> Option<Result<Value>> {
        loop {
            match self.replies.try_lock() {
                Ok(mut replies) => {
                    let answer = self.lead(&mut replies, id, rx, deadline);
                    drop(replies);
                    self.hand_over(id);
                    return answer;
                }
                Err(TryLockError::Poisoned(poisoned)) => drop(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                lock(&self.calls).pending.remove(&id);
                return None;
            }
            match rx.recv_timeout((deadline - now).min(FOLLOWER_CHECK)) {
                Ok(Wake::Answer(answer)) => return Some(answer),
                Ok(Wake::Lead) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Some(Err(self.exited())),
            }
        }
    }

    /// Reads replies until the one for `id` (or the deadline, or the end).
    fn lead(
        &self,
        replies: &mut Inbox,
        id: u64,
        rx: &mpsc::Receiver<Wake>,
        deadline: Instant,
    ) -> Option<Result<Value>> {
        loop {
            // A previous reader may have routed our answer to us already.
            while let Ok(wake) = rx.try_recv() {
                if let Wake::Answer(answer) = wake {
                    return Some(answer);
                }
            }
            let line = match self.read_line(replies, deadline)? {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            let Some((their_id, answer)) = parse_answer(&line) else { continue };
            if their_id == id {
                return Some(answer);
            }
            if let Some(route) = lock(&self.calls).pending.get(&their_id) {
                route.deliver(answer);
            }
        }
    }

    /// One line from the worker by `deadline` (`None`: timed out); the end of the
    /// channel ends the worker for every caller.
    fn read_line(&self, replies: &mut Inbox, deadline: Instant) -> Option<Result<String>> {
        match replies {
            Inbox::Pipe(stdout) | Inbox::Channel(stdout, None, _) => {
                self.read_pipe_line(stdout, deadline)
            }
            Inbox::Channel(stdout, Some(_), spilled @ true) => {
                let line = self.read_pipe_line(stdout, deadline);
                *spilled = line.is_none(); // timed out: the line is still to come
                line
            }
            Inbox::Channel(stdout, Some(receiver), spilled) => loop {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                // In slices: a worker that died before it opened its end of the
                // channel cannot be seen in the channel, only as a process.
                let slice = deadline.min(now + LIVENESS_CHECK);
                // A guarded copy: the worker may write its ring at any moment.
                let text = |message: Message<'_>| {
                    message.to_vec().map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                };
                match receiver.recv_deadline(Some(slice)).and_then(text) {
                    Ok(line) if line.as_bytes() == SPILLED => {
                        let line = self.read_pipe_line(stdout, deadline);
                        *spilled = line.is_none();
                        return line;
                    }
                    Ok(line) => return Some(Ok(line)),
                    Err(ChannelError::Timeout) if !self.has_exited() => {}
                    Err(ChannelError::Timeout) => {
                        // An answer it published before it died is still delivered.
                        let now = Some(Instant::now());
                        if let Ok(line) = receiver.recv_deadline(now).and_then(text) {
                            return Some(Ok(line));
                        }
                        self.end();
                        return Some(Err(self.exited()));
                    }
                    Err(_) => {
                        self.end(); // the worker closed its end, or died
                        return Some(Err(self.exited()));
                    }
                }
            },
        }
    }

    /// One line from the worker's stdout pipe by `deadline` (`None`: timed out).
    fn read_pipe_line(
        &self,
        replies: &mut BufReader<ChildStdout>,
        deadline: Instant,
    ) -> Option<Result<String>> {
        while replies.buffer().is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let slice = (deadline - now).min(LIVENESS_CHECK);
            if sys::wait_readable(replies.get_ref(), slice).unwrap_or(true) {
                break;
            }
            if self.has_exited() {
                // Gone, and yet no end of file: a child of the worker holds its
                // stdout open. Nothing more can come from the worker itself, but
                // what it wrote before it died.
                if sys::wait_readable(replies.get_ref(), Duration::ZERO).unwrap_or(true) {
                    break;
                }
                self.end();
                return Some(Err(self.exited()));
            }
        }
        let mut line = String::new();
        match replies.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => Some(Ok(line)),
            _ => {
                self.end();
                Some(Err(self.exited()))
            }
        }
    }

    /// The reader is leaving: a waiting caller takes over.
    fn hand_over(&self, leaving: u64) {
        let mut calls = lock(&self.calls);
        calls.pending.remove(&leaving);
        // A blocking caller takes over; async callers have their own reader.
        let next = calls.pending.values().find_map(|route| match route {
            Route::Blocking(tx) => Some(tx),
            Route::Async(_) => None,
        });
        if let Some(tx) = next {
            let _ = tx.send(Wake::Lead);
        }
    }

    /// Marks the channel closed and fails every waiting call.
    fn end(&self) {
        // Give the process a moment to exit, so the error can say how it ended.
        self.wait_until(Instant::now() + Duration::from_secs(2));
        let pending: Vec<_> = {
            let mut calls = lock(&self.calls);
            calls.ended = true;
            calls.pending.drain().map(|(_, route)| route).collect()
        };
        for route in pending {
            route.deliver(Err(self.exited()));
        }
        self.async_waiting.notify_all();
    }

    /// Whether the worker's process has ended (it is reaped if so).
    fn has_exited(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(Some(_)))
    }

    /// Polls for the exit until `deadline`.
    fn wait_until(&self, deadline: Instant) -> Option<ExitStatus> {
        let mut pause = Duration::from_micros(100);
        loop {
            if let Ok(Some(status)) = lock(&self.child).try_wait() {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn exited(&self) -> Error {
        let status = lock(&self.child).try_wait().ok().flatten();
        if status.is_some() {
            // The process is gone: its last words are in the pipe; read them all.
            self.wait_for_stderr_end();
        }
        let tail = lock(&self.stderr);
        Error::WorkerExited {
            program: self.program.clone(),
            status,
            stderr_tail: String::from_utf8_lossy(&tail.bytes).trim_end().to_owned(),
        }
    }

    /// Waits (once, up to [`STDERR_GRACE`]) for the exited worker's stderr to reach
    /// its end; whether it did.
    fn wait_for_stderr_end(&self) -> bool {
        let tail = lock(&self.stderr);
        if tail.closed || tail.held_open {
            return tail.closed;
        }
        let (mut tail, _) = self
            .stderr_closed
            .wait_timeout_while(tail, STDERR_GRACE, |t| !t.closed)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tail.held_open = !tail.closed;
        tail.closed
    }

    /// Copies the worker's stderr to ours (if asked) and keeps its tail.
    fn collect_stderr(&self, mut stderr: impl Read, forward: bool) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            if forward {
                let _ = std::io::stderr().write_all(&buf[..n]);
            }
            let mut tail = lock(&self.stderr);
            tail.bytes.extend_from_slice(&buf[..n]);
            let excess = tail.bytes.len().saturating_sub(STDERR_TAIL);
            tail.bytes.drain(..excess);
        }
        lock(&self.stderr).closed = true;
        self.stderr_closed.notify_all();
    }
}

/// `timeout` from now (a timeout too long to represent waits for a century).
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The outcome of a call from its answer (`None`: none came in time).
fn finish_call<T: DeserializeOwned>(
    function: &str,
    timeout: Duration,
    answer: Option<Result<Value>>,
) -> Result<T> {
    match answer {
        Some(Ok(value)) => serde_json::from_value(value).map_err(|e| Error::Protocol {
            reason: format!("the result of {function}() does not deserialize as asked: {e}"),
        }),
        Some(Err(Error::Remote { kind, message, traceback, .. })) => {
            Err(Error::Remote { function: function.to_owned(), kind, message, traceback })
        }
        Some(Err(e)) => Err(e),
        None => Err(Error::Timeout { function: function.to_owned(), after: timeout }),
    }
}

/// An answer line: the call's id and its result or error (`None`: not an answer).
fn parse_answer(line: &str) -> Option<(u64, Result<Value>)> {
    let message = serde_json::from_str::<Value>(line).ok()?;
    let id = message.get("id").and_then(Value::as_u64)?;
    let answer = match message.get("error") {
        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
        Some(error) => Err(remote_error(error)),
    };
    Some((id, answer))
}

/// The server's first line: `{"ready": true, "protocol": 1, "functions": [...]}`.
fn parse_handshake(line: &str) -> Result<Vec<String>> {
    let not_handshake = || Error::Protocol {
        reason: format!(
            "the worker's first line is not the server's handshake (does the script call \
             shmbridge.Server().serve()?): {:.200}",
            line.trim_end()
        ),
    };
    let message: Value = serde_json::from_str(line).map_err(|_| not_handshake())?;
    if message.get("ready") != Some(&Value::Bool(true)) {
        return Err(not_handshake());
    }
    let protocol = message.get("protocol").and_then(Value::as_u64);
    if protocol != Some(PROTOCOL) {
        return Err(Error::Protocol {
            reason: format!(
                "the worker speaks protocol {protocol:?}; this build speaks {PROTOCOL}: use \
                 matching versions of the Rust crate and the Python package"
            ),
        });
    }
    Ok(message
        .get("functions")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default())
}

fn remote_error(error: &Value) -> Error {
    let field = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    Error::Remote {
        function: String::new(),
        kind: field("type"),
        message: field("message"),
        traceback: field("traceback"),
    }
}
