//! The worker, against real Python processes (tests/workers/*.py): every JSON
//! type, typed results, remote exceptions, timeouts, crashes, concurrency, shared
//! memory in the arguments, startup failures, and clean shutdown.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use shmbridge::array::SharedArray;
use shmbridge::worker::{Worker, WorkerBuilder};
use shmbridge::{Error, SharedMemory};

const T: Duration = Duration::from_secs(60);

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

fn server() -> Worker {
    script("testserver.py").forward_stderr(false).spawn().unwrap()
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
    let mut shm = SharedMemory::create_unique("tw_process_buffer", size).unwrap();
    for (i, b) in shm.as_mut_slice().unwrap().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let expected: u64 = shm.as_slice().iter().map(|&b| u64::from(b)).sum();
    let reply: Value =
        worker.call("process_buffer", json!({"shm": &shm, "size": size}), T).unwrap();
    assert_eq!(reply, json!({"status": "done", "name": shm.name(), "size": size, "sum": expected}));
}

#[test]
fn shared_arrays_arrive_as_numpy_arrays() {
    let worker = server();
    let name = shmbridge::unique_name("tw_array").unwrap();
    let mut arr = SharedArray::<f64>::create(&name, &[3, 4]).unwrap();
    arr.as_mut_slice().unwrap().iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
    let reply: Value = worker.call("double_array", json!({"arr": &arr}), T).unwrap();
    assert_eq!(reply, json!({"shape": [3, 4], "dtype": "<f8"}));
    assert!(arr.as_slice().iter().enumerate().all(|(i, &x)| x == 2.0 * i as f64));
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
    assert_eq!(&shm.as_slice()[..18], b"via the descriptor");
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

    let err =
        script("never_ready.py").startup_timeout(Duration::from_millis(300)).spawn().unwrap_err();
    assert!(matches!(&err, Error::Timeout { function, .. } if function == "(startup)"), "{err:?}");

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

/// The same calls over the shared-memory transport.
mod shared_memory_transport {
    use super::*;
    use shmbridge::worker::Transport;

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
        let err = worker.call::<Value>("echo", json!({"big": "x".repeat(1 << 20)}), T).unwrap_err();
        assert!(
            matches!(&err, Error::Protocol { reason } if reason.contains("does not fit")),
            "{err:?}"
        );
        assert_eq!(worker.call::<String>("noisy", json!({}), T).unwrap(), "quiet");
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
    fn shutdown_is_clean() {
        let worker = server();
        assert_eq!(worker.call::<i64>("add", json!({"a": 1, "b": 1}), T).unwrap(), 2);
        assert!(worker.shutdown().unwrap().success());
    }
}
