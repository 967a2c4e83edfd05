//! The worker, against real Python processes (tests/workers/*.py): every JSON
//! type, typed results, remote exceptions, timeouts, crashes, concurrency, shared
//! memory in the arguments, startup failures, and clean shutdown.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shmbridge::array::SharedArray;
use shmbridge::sync::Event;
use shmbridge::worker::{Transport, Worker, WorkerBuilder};
use shmbridge::{Error, SharedMemory};

const T: Duration = Duration::from_secs(60);
/// How late past its deadline a call may return: generous, for a loaded machine
/// scheduling 40 threads on 2 cores. A call stuck behind a blocked write took
/// 5-20 s, far beyond it.
const MARGIN: Duration = Duration::from_secs(2);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interpreter with shmbridge installed: $SHMBRIDGE_PYTHON or the repo's .venv.
fn python() -> PathBuf {
    let python = std::env::var_os("SHMBRIDGE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(python.exists(), "{} is missing: run `./dev setup` first", python.display());
    python
}

fn script(name: &str) -> WorkerBuilder {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/workers").join(name);
    let mut builder = Worker::script(path);
    builder.python(python());
    builder
}

/// The test server over the pipe transport (`shared_memory_transport` below runs
/// the same calls over the default, shared-memory one).
fn server() -> Worker {
    script("testserver.py").transport(Transport::Pipe).forward_stderr(false).spawn().unwrap()
}

#[test]
fn every_json_type_round_trips() {
    let worker = server();
    let args = json!({
        "null": null, "yes": true, "no": false,
        "int": -42, "big": 9_007_199_254_740_993u64, "neg": i64::MIN, "float": 1.5e-300,
        "text": "line 1\nline 2 \"quoted\" — ünïcödé ✓", "empty": "",
        "list": [1, "two", [3.0], {"four": 4}], "nested": {"a": {"b": {"c": []}}}, "obj": {},
    });
    let back: Value = worker.call("echo", &args, T).unwrap();
    assert_eq!(back, args);
    let mut functions = worker.functions().to_vec();
    functions.sort();
    assert!(functions.contains(&"add".to_owned()) && functions.contains(&"echo".to_owned()));
}

#[test]
fn typed_results_through_serde() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Done {
        status: String,
        size: u64,
    }
    let worker = server();
    assert_eq!(worker.call::<i64>("add", json!({"a": 2, "b": 40}), T).unwrap(), 42);
    assert_eq!(worker.call::<String>("add", json!({"a": "sh", "b": "m"}), T).unwrap(), "shm");
    let err = worker.call::<i64>("add", json!({"a": "x", "b": "y"}), T).unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason } if reason.contains("does not deserialize")),
        "{err:?}"
    );
    #[derive(serde::Serialize)]
    struct Args {
        a: u32,
        b: u32,
    }
    assert_eq!(worker.call::<u32>("add", Args { a: 1, b: 2 }, T).unwrap(), 3);
    let shm = SharedMemory::create_unique("tw_typed", 16).unwrap();
    let done: Done = worker.call("process_buffer", json!({"shm": &shm, "size": 16}), T).unwrap();
    assert_eq!(done, Done { status: "done".into(), size: 16 });
}

#[test]
fn remote_exceptions_carry_type_message_traceback() {
    let worker = server();
    let err = worker.call::<Value>("fail", json!({"message": "bad input"}), T).unwrap_err();
    let Error::Remote { function, kind, message, traceback } = &err else { panic!("{err:?}") };
    assert_eq!(
        (function.as_str(), kind.as_str(), message.as_str()),
        ("fail", "ValueError", "bad input")
    );
    assert!(traceback.contains("raise ValueError(message)"), "{traceback}");
    assert!(err.to_string().contains("fail() raised ValueError: bad input"), "{err}");
    // Keeps serving.
    assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 1}), T).unwrap(), 2);
    let err = worker.call::<Value>("nope", json!({}), T).unwrap_err();
    assert!(
        matches!(&err, Error::Remote { kind, message, .. } if kind == "LookupError" && message.contains("registered: add")),
        "{err:?}"
    );
    let err = worker.call::<Value>("add", json!({"a": 1}), T).unwrap_err();
    assert!(matches!(&err, Error::Remote { kind, .. } if kind == "TypeError"), "{err:?}");
    let err = worker.call::<Value>("not_json", json!({}), T).unwrap_err();
    assert!(
        matches!(&err, Error::Remote { message, .. } if message.contains("not JSON")),
        "{err:?}"
    );
    let err = worker.call::<Value>("echo", json!([1, 2]), T).unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason } if reason.contains("JSON object")),
        "{err:?}"
    );
}

#[test]
fn timeout_returns_in_time_and_the_worker_stays_usable() {
    let worker = server();
    let start = std::time::Instant::now();
    let err = worker
        .call::<Value>("slow", json!({"seconds": 1.0}), Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(&err, Error::Timeout { function, .. } if function == "slow"), "{err:?}");
    assert!(start.elapsed() < Duration::from_millis(900), "returned after {:?}", start.elapsed());
    // The late answer ("late") is discarded; the next call gets its own answer.
    assert_eq!(worker.call::<i64>("add", json!({"a": 20, "b": 22}), T).unwrap(), 42);
    assert!(worker.is_alive());
}

#[test]
fn a_crash_mid_call_is_an_error_not_a_hang() {
    let worker = server();
    let err = worker.call::<Value>("exit_now", json!({"code": 3}), T).unwrap_err();
    let Error::WorkerExited { status, stderr_tail, .. } = &err else { panic!("{err:?}") };
    assert_eq!(status.and_then(|s| s.code()), Some(3));
    assert!(stderr_tail.contains("exiting on purpose"), "{stderr_tail}");
    assert!(!worker.is_alive());
    assert!(matches!(worker.call::<Value>("echo", json!({}), T), Err(Error::WorkerExited { .. })));

    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        let worker = server();
        let err = worker.call::<Value>("kill_self", json!({}), T).unwrap_err();
        let Error::WorkerExited { status, .. } = &err else { panic!("{err:?}") };
        assert_eq!(status.and_then(|s| s.signal()), Some(9), "{err}");
    }
}

#[test]
fn eight_threads_of_a_thousand_calls() {
    let worker = server();
    std::thread::scope(|scope| {
        for t in 0..8i64 {
            let worker = &worker;
            scope.spawn(move || {
                for i in 0..1000i64 {
                    let sum: i64 =
                        worker.call("add", json!({"a": t * 1_000_000, "b": i}), T).unwrap();
                    assert_eq!(sum, t * 1_000_000 + i);
                }
            });
        }
    });
}

#[test]
fn spec_process_buffer_with_a_64_mib_segment() {
    let worker = server();
    let size = 64 << 20;
    let shm = SharedMemory::create_unique("tw_process_buffer", size).unwrap();
    let pattern: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    shm.slice::<u8>(0, size).unwrap().copy_from_slice(&pattern).unwrap();
    let expected: u64 = pattern.iter().map(|&b| u64::from(b)).sum();
    let reply: Value =
        worker.call("process_buffer", json!({"shm": &shm, "size": size}), T).unwrap();
    assert_eq!(reply, json!({"status": "done", "name": shm.name(), "size": size, "sum": expected}));
}

#[test]
fn shared_arrays_arrive_as_numpy_arrays() {
    let worker = server();
    let name = shmbridge::unique_name("tw_array").unwrap();
    let arr = SharedArray::<f64>::create(&name, &[3, 4]).unwrap();
    let elements = arr.elements();
    (0..elements.len()).for_each(|i| elements.set(i, i as f64).unwrap());
    let reply: Value = worker.call("double_array", json!({"arr": &arr}), T).unwrap();
    assert_eq!(reply, json!({"shape": [3, 4], "dtype": "<f8"}));
    assert!(arr.to_vec().unwrap().iter().enumerate().all(|(i, &x)| x == 2.0 * i as f64));
}

#[cfg(unix)]
#[test]
fn anonymous_segments_need_no_name() {
    let mut shm = SharedMemory::anonymous(4096).unwrap();
    let worker =
        script("testserver.py").forward_stderr(false).share(&shm).unwrap().spawn().unwrap();
    let reply: Value = worker
        .call("write_anonymous", json!({"shm": &shm, "text": "via the descriptor"}), T)
        .unwrap();
    assert_eq!(reply, json!({"name": "(anonymous)", "size": 4096}));
    assert_eq!(&shm.read_value::<[u8; 18]>(0).unwrap(), b"via the descriptor");
    assert!(shm.as_fd().is_some());
    shm.unlink().unwrap(); // nothing to unlink: a no-op
    let named = SharedMemory::create_unique("tw_named", 64).unwrap();
    assert!(matches!(script("testserver.py").share(&named), Err(Error::Protocol { .. })));
}

#[test]
fn prints_do_not_corrupt_the_protocol() {
    let worker = server();
    assert_eq!(worker.call::<String>("noisy", json!({}), T).unwrap(), "quiet");
    assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 2}), T).unwrap(), 3);
}

#[test]
fn environment_directory_and_module_form() {
    let dir = std::env::temp_dir();
    let worker = script("testserver.py")
        .env("SHMBRIDGE_TEST_VALUE", "from rust")
        .current_dir(&dir)
        .forward_stderr(false)
        .spawn()
        .unwrap();
    assert_eq!(
        worker.call::<String>("env", json!({"key": "SHMBRIDGE_TEST_VALUE"}), T).unwrap(),
        "from rust"
    );
    let cwd: PathBuf = worker.call::<String>("cwd", json!({}), T).unwrap().into();
    assert_eq!(cwd.canonicalize().unwrap(), dir.canonicalize().unwrap());

    let workers_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/workers");
    let worker = Worker::module("testserver")
        .python(python())
        .env("PYTHONPATH", &workers_dir)
        .forward_stderr(false)
        .spawn()
        .unwrap();
    assert_eq!(worker.call::<i64>("add", json!({"a": 5, "b": 5}), T).unwrap(), 10);
}

#[test]
fn startup_failures_say_why() {
    let err = script("broken.py").forward_stderr(false).spawn().unwrap_err();
    let Error::WorkerExited { stderr_tail, status, .. } = &err else { panic!("{err:?}") };
    assert!(stderr_tail.contains("RuntimeError: broken on purpose"), "{stderr_tail}");
    assert_eq!(status.and_then(|s| s.code()), Some(1));

    let err = script("not_a_server.py").forward_stderr(false).spawn().unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason } if reason.contains("not the server's handshake")),
        "{err:?}"
    );

    let startup = Duration::from_millis(300);
    let err = script("never_ready.py").startup_timeout(startup).spawn().unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { function, after } if function == "(startup)" && *after == startup),
        "the error names the startup timeout: {err:?}"
    );
    assert!(err.to_string().contains("within 300ms"), "{err}");

    let err = Worker::script("x.py").python("/nonexistent/python3").spawn().unwrap_err();
    assert!(matches!(&err, Error::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("is Python installed?"), "{err}");
}

#[test]
fn shutdown_and_drop_reap_the_process() {
    let worker = server();
    let status = worker.shutdown().unwrap();
    assert!(status.success(), "{status}");

    let worker = server();
    let pid = worker.pid();
    drop(worker);
    if cfg!(target_os = "linux") {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} was reaped");
    }

    // A worker stuck in a handler is killed after the shutdown timeout.
    let worker =
        script("testserver.py").shutdown_timeout(Duration::from_millis(100)).spawn().unwrap();
    let _ = worker.call::<Value>("slow", json!({"seconds": 30}), Duration::from_millis(10));
    let status = worker.shutdown().unwrap();
    assert!(!status.success(), "killed: {status}");
}

/// Runs `f` on a thread; panics if it does not finish within `limit` (a hang).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(f()));
    finished.recv_timeout(limit).unwrap_or_else(|_| panic!("{what} hung for {limit:?}"))
}

#[test]
fn a_process_holding_the_workers_stderr_delays_nothing() {
    // Issue: a process the worker started, holding its stderr, made shutdown wait
    // for that process's end, and every call after the worker died wait 1 s.
    let hold_name = shmbridge::unique_name("t_hold").unwrap();
    let hold = Event::create(&hold_name, false).unwrap();
    let spawn = || {
        script("holds_stderr_open.py")
            .env("HOLD_UNTIL", &hold_name)
            .forward_stderr(false)
            .spawn()
            .unwrap()
    };
    let worker = spawn();
    assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 2}), T).unwrap(), 3);
    let status = within(Duration::from_secs(60), "shutdown", move || worker.shutdown());
    assert!(status.unwrap().success());

    let worker = spawn();
    let err = worker.call::<Value>("die", json!({"code": 7}), T).unwrap_err();
    let Error::WorkerExited { status, stderr_tail, .. } = &err else { panic!("{err:?}") };
    assert_eq!(status.and_then(|s| s.code()), Some(7), "{err}");
    assert!(stderr_tail.contains("dying, my stderr held open"), "{stderr_tail}");
    let calls = within(Duration::from_secs(60), "calls after the exit", move || {
        // 100 calls: at a second each (the old wait for the pipe's end), well past
        // the limit.
        let errors: Vec<_> = (0..100)
            .map(|_| worker.call::<Value>("add", json!({"a": 1, "b": 2}), T).unwrap_err())
            .collect();
        drop(worker);
        errors
    });
    assert!(calls.iter().all(|e| matches!(e, Error::WorkerExited { .. })), "{calls:?}");
    hold.set().unwrap();
}

#[test]
fn readers_that_time_out_hand_over_to_the_others() {
    let worker = server();
    std::thread::scope(|scope| {
        for t in 0..2 {
            let worker = &worker;
            scope.spawn(move || {
                for _ in 0..5 {
                    let err = worker
                        .call::<Value>("slow", json!({"seconds": 0.02}), Duration::from_millis(5))
                        .unwrap_err();
                    assert!(matches!(err, Error::Timeout { .. }), "thread {t}: {err:?}");
                }
            });
        }
        for t in 0..4i64 {
            let worker = &worker;
            scope.spawn(move || {
                for i in 0..200i64 {
                    let sum: i64 = worker.call("add", json!({"a": t, "b": i}), T).unwrap();
                    assert_eq!(sum, t + i, "every fast call gets its own answer");
                }
            });
        }
    });
    assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 2}), T).unwrap(), 3);
}

/// A worker that dies right after its handshake, before it reads a request (also
/// with a child of its own holding its pipes open): every call gets WorkerExited
/// with the status and the last words, not a timeout.
fn death_before_the_first_request(transport: Transport) {
    let cases = [
        ("dies_after_handshake.py", 5, "dying before the first request"),
        ("dies_leaving_pipes_open.py", 6, "dying with my pipes held open"),
    ];
    for (name, code, last_words) in cases {
        let worker = script(name).transport(transport).forward_stderr(false).spawn().unwrap();
        for _ in 0..2 {
            let err = worker
                .call::<Value>("add", json!({"a": 1, "b": 2}), Duration::from_secs(30))
                .unwrap_err();
            let Error::WorkerExited { status, stderr_tail, .. } = &err else {
                panic!("{name}: {err:?}")
            };
            assert_eq!(status.and_then(|s| s.code()), Some(code), "{name}: {err}");
            assert!(stderr_tail.contains(last_words), "{name}: {stderr_tail}");
        }
        assert!(!worker.is_alive());
    }
}

#[test]
fn death_before_the_first_request_is_worker_exited() {
    death_before_the_first_request(Transport::Pipe);
}

/// Two events and the arguments of `hold`: the worker signals `started`, then reads
/// nothing until `release` (or `seconds`), then exits with `exit_code` if given.
struct Hold {
    started: Event,
    release: Event,
    args: Value,
}

impl Hold {
    fn new(exit_code: Option<i32>) -> Self {
        let started_name = shmbridge::unique_name("tw_started").unwrap();
        let release_name = shmbridge::unique_name("tw_release").unwrap();
        let started = Event::create(&started_name, false).unwrap();
        let release = Event::create(&release_name, false).unwrap();
        let args = json!({"started": started_name, "release": release_name, "seconds": 20,
                          "exit_code": exit_code});
        Self { started, release, args }
    }
}

type Outcome = (Duration, Duration, Result<Value, Error>);

/// Calls `echo(**args)` from one thread per timeout, all at once; runs `meanwhile`
/// once every thread is about to call. Returns each call's timeout, how long it
/// took, and its result.
fn call_from_threads(
    worker: &Worker,
    args: &Value,
    timeouts: &[Duration],
    meanwhile: impl FnOnce(),
) -> Vec<Outcome> {
    let ready = std::sync::Barrier::new(timeouts.len() + 1);
    std::thread::scope(|scope| {
        let callers: Vec<_> = timeouts
            .iter()
            .map(|&timeout| {
                let ready = &ready;
                scope.spawn(move || {
                    ready.wait();
                    let start = Instant::now();
                    let result = worker.call::<Value>("echo", args, timeout);
                    (timeout, start.elapsed(), result)
                })
            })
            .collect();
        ready.wait();
        meanwhile();
        callers.into_iter().map(|caller| caller.join().unwrap()).collect()
    })
}

fn describe(outcomes: &[&Outcome]) -> String {
    let lines: Vec<_> = outcomes
        .iter()
        .map(|(timeout, took, result)| {
            let result = result.as_ref().map(|_| "an answer");
            format!("timeout {timeout:?}: took {took:?}, {result:?}")
        })
        .collect();
    lines.join("\n")
}

fn holding_server(transport: Transport) -> Worker {
    script("testserver.py")
        .transport(transport)
        .forward_stderr(false)
        .shutdown_timeout(Duration::from_millis(100))
        .spawn()
        .unwrap()
}

/// While the worker reads nothing, 40 callers whose requests (of `request_bytes`)
/// fill the pipe or ring, each with its own timeout, all return Timeout within
/// their deadline; afterwards a request cut short does not corrupt the stream.
fn blocked_requests_keep_their_deadlines(transport: Transport, request_bytes: usize) {
    let worker = holding_server(transport);
    let big = json!({"blob": "x".repeat(request_bytes)});
    let timeouts: Vec<_> = (0..40).map(|i| Duration::from_millis(200 + 25 * i)).collect();
    let hold = Hold::new(None);
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| worker.call::<Value>("hold", &hold.args, T));
        assert!(hold.started.wait_timeout(T).unwrap(), "the worker never started holding");
        let outcomes = call_from_threads(&worker, &big, &timeouts, || {});
        hold.release.set().unwrap();
        let wrong: Vec<_> = outcomes
            .iter()
            .filter(|(timeout, took, result)| {
                !matches!(result, Err(Error::Timeout { .. })) || *took > *timeout + MARGIN
            })
            .collect();
        assert!(wrong.is_empty(), "calls not back by their deadline:\n{}", describe(&wrong));
        assert_eq!(holder.join().unwrap().unwrap(), json!(true), "the held call's own answer");
    });
    // The worker now reads what was written, a request cut short included (its
    // remainder goes first), and every later call gets its own answer.
    for i in 0..3i64 {
        assert_eq!(worker.call::<i64>("add", json!({"a": i, "b": 1}), T).unwrap(), i + 1);
    }
    let other = json!({"blob": "y".repeat(request_bytes)});
    assert_eq!(worker.call::<Value>("echo", &other, T).unwrap(), other);
}

#[test]
fn blocked_requests_keep_their_deadlines_on_the_pipe() {
    blocked_requests_keep_their_deadlines(Transport::Pipe, 256 << 10);
}

/// A worker that dies while 40 callers (with a minute each) wait to write their
/// requests into a full pipe or ring: each gets WorkerExited, none waits its minute.
fn death_while_requests_wait(transport: Transport, request_bytes: usize) {
    let worker = holding_server(transport);
    let big = json!({"blob": "x".repeat(request_bytes)});
    let hold = Hold::new(Some(7));
    std::thread::scope(|scope| {
        let holder = scope.spawn(|| worker.call::<Value>("hold", &hold.args, T));
        assert!(hold.started.wait_timeout(T).unwrap(), "the worker never started holding");
        // Fill the pipe or ring: these time out, and what they wrote stays unread.
        let fill = [Duration::from_millis(300); 8];
        let filled = call_from_threads(&worker, &big, &fill, || {});
        let wrong: Vec<_> =
            filled.iter().filter(|(.., r)| !matches!(r, Err(Error::Timeout { .. }))).collect();
        assert!(
            wrong.is_empty(),
            "calls that filled the way did not time out:\n{}",
            describe(&wrong)
        );
        // The worker exits as soon as these are on their way.
        let mut outcomes =
            call_from_threads(&worker, &big, &[T; 40], || hold.release.set().unwrap());
        outcomes.push((T, Duration::ZERO, holder.join().unwrap())); // the held call too
        let wrong: Vec<_> = outcomes
            .iter()
            .filter(|(.., result)| {
                !matches!(result, Err(Error::WorkerExited { status, .. })
                    if status.and_then(|s| s.code()) == Some(7))
            })
            .collect();
        assert!(wrong.is_empty(), "not WorkerExited:\n{}", describe(&wrong));
    });
}

#[test]
fn death_while_requests_wait_on_the_pipe() {
    death_while_requests_wait(Transport::Pipe, 256 << 10);
}

/// The same calls over the shared-memory transport (the default).
mod shared_memory_transport {
    use super::*;

    fn server() -> Worker {
        script("testserver.py")
            .transport(Transport::SharedMemory { capacity: 1 << 20 })
            .forward_stderr(false)
            .spawn()
            .unwrap()
    }

    #[test]
    fn calls_round_trip() {
        let worker = server();
        let args = json!({"text": "line 1\nline 2", "list": [1, 2.5, null, {"a": true}]});
        assert_eq!(worker.call::<Value>("echo", &args, T).unwrap(), args);
        let err = worker.call::<Value>("fail", json!({"message": "bad"}), T).unwrap_err();
        assert!(matches!(&err, Error::Remote { kind, .. } if kind == "ValueError"), "{err:?}");
        assert_eq!(worker.call::<String>("noisy", json!({}), T).unwrap(), "quiet");
        // Requests and answers too long for a channel (half of its 1 MiB) go down
        // the pipe, in their turn. Issue: an answer too long killed serve(), and a
        // request too long was refused.
        let big = json!({"big": "x".repeat(1 << 20)});
        assert_eq!(worker.call::<Value>("echo", &big, T).unwrap(), big);
        let long = worker.call::<String>("repeat", json!({"text": "y", "times": 700_000}), T);
        assert_eq!(long.unwrap().len(), 700_000);
        std::thread::scope(|s| {
            for t in 0..4usize {
                let worker = &worker;
                s.spawn(move || {
                    for i in 0..20usize {
                        let times = if (t + i) % 3 == 0 { 600_000 + i } else { i };
                        let text = worker.call::<String>(
                            "repeat",
                            json!({"text": "z", "times": times}),
                            T,
                        );
                        assert_eq!(text.unwrap().len(), times);
                    }
                });
            }
        });
        assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 2}), T).unwrap(), 3);
    }

    #[test]
    fn threads_timeouts_and_a_crash() {
        let worker = server();
        std::thread::scope(|scope| {
            for t in 0..4i64 {
                let worker = &worker;
                scope.spawn(move || {
                    for i in 0..500i64 {
                        assert_eq!(
                            worker.call::<i64>("add", json!({"a": t, "b": i}), T).unwrap(),
                            t + i
                        );
                    }
                });
            }
        });
        let err = worker
            .call::<Value>("slow", json!({"seconds": 0.5}), Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 2}), T).unwrap(), 3);
        let err = worker.call::<Value>("exit_now", json!({"code": 4}), T).unwrap_err();
        let Error::WorkerExited { status, .. } = &err else { panic!("{err:?}") };
        assert_eq!(status.and_then(|s| s.code()), Some(4));
    }

    #[test]
    fn death_before_the_first_request_is_worker_exited() {
        super::death_before_the_first_request(Transport::SharedMemory { capacity: 1 << 16 });
        // A real server that dies in its very first call.
        let worker = server();
        let err = worker.call::<Value>("exit_now", json!({"code": 3}), T).unwrap_err();
        let Error::WorkerExited { status, stderr_tail, .. } = &err else { panic!("{err:?}") };
        assert_eq!(status.and_then(|s| s.code()), Some(3));
        assert!(stderr_tail.contains("exiting on purpose"), "{stderr_tail}");
    }

    /// A ring of 64 KiB holds three requests of 16 KiB.
    const SMALL_RING: Transport = Transport::SharedMemory { capacity: 64 << 10 };

    #[test]
    fn blocked_requests_keep_their_deadlines() {
        super::blocked_requests_keep_their_deadlines(SMALL_RING, 16 << 10);
    }

    #[test]
    fn death_while_requests_wait() {
        super::death_while_requests_wait(SMALL_RING, 16 << 10);
    }

    #[test]
    fn shutdown_is_clean() {
        let worker = server();
        assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 1}), T).unwrap(), 2);
        assert!(worker.shutdown().unwrap().success());
    }
}

/// Async calls: many at once from a multi-threaded tokio runtime (the futures are
/// `Send`), on both transports, with time-outs, dropped futures, and blocking
/// callers mixed in; no thread per call.
#[test]
fn async_calls_on_both_transports() {
    for transport in [Transport::Pipe, Transport::SharedMemory { capacity: 1 << 16 }] {
        let worker = std::sync::Arc::new(
            script("testserver.py").forward_stderr(false).transport(transport).spawn().unwrap(),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sums: Vec<i64> = runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..50i64 {
                let worker = std::sync::Arc::clone(&worker);
                tasks.spawn(async move {
                    let sum: i64 =
                        worker.call_async("add", json!({"a": i, "b": 1}), T).await.unwrap();
                    sum
                });
            }
            // A blocking caller at the same time.
            let blocking = std::sync::Arc::clone(&worker);
            let blocking = std::thread::spawn(move || {
                (0..20)
                    .map(|i| blocking.call::<i64>("add", json!({"a": i, "b": 2}), T).unwrap())
                    .sum::<i64>()
            });
            let mut sums = Vec::new();
            while let Some(r) = tasks.join_next().await {
                sums.push(r.unwrap());
            }
            assert_eq!(blocking.join().unwrap(), (0..20).map(|i| i + 2).sum::<i64>());
            sums
        });
        let mut sums = sums;
        sums.sort();
        assert_eq!(sums, (1..=50).collect::<Vec<_>>(), "{transport:?}");

        // A time-out, and a dropped call: the worker stays usable, and late answers
        // go nowhere.
        let start = Instant::now();
        let late = futures::executor::block_on(worker.call_async::<Value>(
            "slow",
            json!({"seconds": 1}),
            Duration::from_millis(200),
        ));
        assert!(matches!(late, Err(Error::Timeout { .. })), "{late:?}");
        assert!(start.elapsed() < Duration::from_millis(200) + MARGIN);
        drop(worker.call_async::<Value>("slow", json!({"seconds": 0.1}), T));
        let back: Value =
            futures::executor::block_on(worker.call_async("echo", json!({"x": 1}), T)).unwrap();
        assert_eq!(back, json!({"x": 1}));
    }
}
