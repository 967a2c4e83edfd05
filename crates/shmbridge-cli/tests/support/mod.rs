//! What the CLI's process tests share: children that are this test binary run
//! again with a role, lines read from them with deadlines, and the CLI binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any single step may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The `shmbridge` binary under test.
pub fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shmbridge"))
}

/// Runs the CLI with `args`, killing it (and failing) if it takes longer than
/// [`DEADLINE`].
pub fn run_cli(args: &[&str]) -> Output {
    let child = cli()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shmbridge binary runs");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("waited for the CLI"),
        Err(_) => {
            kill(pid, 9);
            panic!("shmbridge {args:?} did not finish within {DEADLINE:?}");
        }
    }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid of a child of ours and a valid signal number.
    unsafe { libc::kill(pid as i32, signal) };
}

/// A child process: this test binary run again as `role` with `args`, its
/// standard output read line by line on a thread.
pub struct Peer {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Starts this binary as `role args...` with `env` added.
    pub fn start(role: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg(role).args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("re-run this test binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin, lines }
    }

    /// The next line it prints, within [`DEADLINE`].
    pub fn line(&self) -> String {
        self.lines.recv_timeout(DEADLINE).unwrap_or_else(|e| {
            panic!("child {} said nothing within {DEADLINE:?} ({e})", self.child.id())
        })
    }

    /// Closes its standard input (children wait for that to end).
    pub fn release(&mut self) {
        self.stdin.take();
    }

    /// Writes a line to its standard input.
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for its exit within [`DEADLINE`] (killing it and failing otherwise).
    pub fn wait(mut self) -> ExitStatus {
        self.stdin.take();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("child did not exit within {DEADLINE:?}");
            }
            // Between looks at a child that has been told to exit.
            std::thread::yield_now();
        }
    }

    /// Kills it with `signal` and reaps it.
    pub fn kill(self, signal: i32) -> ExitStatus {
        kill(self.child.id(), signal);
        self.wait()
    }
}

/// Blocks until standard input ends (the parent closed it, or died).
pub fn hold_until_released() {
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
}

/// Whether `/dev/shm` holds `name`.
pub fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{}", name.trim_start_matches('/'))).exists()
}

/// A test of a harness-less binary: runs each, printing as `cargo test` does.
pub fn run_tests(tests: &[(&str, fn())]) {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let mut ran = 0;
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        test();
        println!("test {name} ... ok");
        ran += 1;
    }
    println!("\n{ran} passed, 0 failed");
}
