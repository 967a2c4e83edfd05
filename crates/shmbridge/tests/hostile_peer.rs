//! What another user's planted file, or a peer process with write access, can do
//! to us (Linux, where segments are files in `/dev/shm`).
//!
//! Every scenario runs in a child process (this test binary run again, `harness =
//! false`, so `main` decides which side it is): a signal (SIGBUS) or a hang (an open
//! waiting on a FIFO) fails the test instead of taking the test run down. The child
//! prints `ready`, waits for a line on its stdin while the parent does the hostile
//! part (truncates the segment, plants a file), then prints one line per check.

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("hostile_peer: Linux only (segments as files in /dev/shm); nothing to run");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, Command, Stdio};
    use std::sync::{Arc, mpsc};
    use std::time::{Duration, Instant};

    use shmbridge::channel::{Channel, ChannelError};
    use shmbridge::sync::{Event, Mutex, Semaphore, SeqLock};
    use shmbridge::{Error, SharedMemory, unique_name};

    const DEADLINE: Duration = Duration::from_secs(30);
    const PAGE: usize = 4096;
    /// The size a peer shrinks a 16-page segment to: one page.
    const SHRUNK: u64 = PAGE as u64;

    pub(super) fn main() {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("child") {
            child(&args[2], &args[3]);
            return;
        }
        let tests: &[(&str, fn())] = &[
            ("planted_symlink_is_never_followed", planted_symlink_is_never_followed),
            ("planted_fifo_does_not_block_open", planted_fifo_does_not_block_open),
            ("planted_directory_is_refused", planted_directory_is_refused),
            ("mode_beyond_permission_bits_is_refused", mode_beyond_permission_bits_is_refused),
            (
                "copies_from_a_shrunk_segment_fail_cleanly",
                copies_from_a_shrunk_segment_fail_cleanly,
            ),
            ("views_of_a_shrunk_segment_still_crash", views_of_a_shrunk_segment_still_crash),
            (
                "channel_on_a_vanished_segment_fails_cleanly",
                channel_on_a_vanished_segment_fails_cleanly,
            ),
            (
                "seqlock_on_a_shrunk_segment_fails_cleanly",
                seqlock_on_a_shrunk_segment_fails_cleanly,
            ),
            (
                "waits_on_a_vanished_page_end_with_an_error",
                waits_on_a_vanished_page_end_with_an_error,
            ),
            ("anonymous_segments_cannot_be_resized", anonymous_segments_cannot_be_resized),
            (
                "sparse_segment_on_a_full_tmpfs_fails_cleanly",
                sparse_segment_on_a_full_tmpfs_fails_cleanly,
            ),
        ];
        // An optional argument (not a flag) picks the tests whose name contains it.
        let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
        let chosen: Vec<_> = tests
            .iter()
            .filter(|(name, _)| filter.is_none_or(|f| name.contains(f.as_str())))
            .collect();
        for (name, test) in &chosen {
            test();
            println!("test {name} ... ok");
        }
        println!("\n{} passed, 0 failed", chosen.len());
    }

    fn name(tag: &str) -> String {
        unique_name(&format!("t_hostile_{tag}")).unwrap()
    }

    fn shm_path(name: &str) -> PathBuf {
        Path::new("/dev/shm").join(name.trim_start_matches('/'))
    }

    /// A child running `scenario` on `name`, started and waiting for "go".
    struct Scenario {
        child: Child,
        stdin: ChildStdin,
        lines: mpsc::Receiver<String>,
    }

    impl Scenario {
        /// Starts the child and waits until it prints `ready`.
        fn start(scenario: &str, name: &str) -> Self {
            Self::start_with(Command::new(std::env::current_exe().unwrap()), scenario, name)
        }

        fn start_with(mut command: Command, scenario: &str, name: &str) -> Self {
            let mut child = command
                .args(["child", scenario, name])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("re-run this test binary as the child");
            let stdin = child.stdin.take().unwrap();
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
            let mut this = Self { child, stdin, lines };
            let first = this.line();
            assert_eq!(first.as_deref(), Some("ready"), "{scenario}: the child did not start");
            this
        }

        /// The child's next line, or `None` once it closed stdout; a child silent
        /// for DEADLINE is killed and fails the test.
        fn line(&mut self) -> Option<String> {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) => Some(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("the child hung: no output within {DEADLINE:?}");
                }
            }
        }

        /// Lets the child go on, collects its lines until it exits, and checks that
        /// it exited by itself with status 0 (a signal fails the test).
        fn finish(mut self) -> Vec<String> {
            writeln!(self.stdin, "go").unwrap();
            let mut lines = Vec::new();
            while let Some(line) = self.line() {
                lines.push(line);
            }
            let status = wait(&mut self.child);
            if let Some(signal) = status.signal() {
                panic!("the child was killed by signal {signal}; it printed {lines:?}");
            }
            assert!(status.success(), "the child failed ({status}); it printed {lines:?}");
            lines
        }
    }

    fn wait(child: &mut Child) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!("the child did not exit within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A private directory for the files a planted link points at; removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("shmbridge_{tag}_{}", std::process::id()));
            std::fs::create_dir(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Removes a planted file (or a persisting segment), whatever it is, on drop.
    struct Planted(PathBuf);

    impl Drop for Planted {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0).or_else(|_| std::fs::remove_dir(&self.0));
        }
    }

    /// Another user plants `/dev/shm/NAME -> a private file`: whoever opens NAME must
    /// not read or overwrite that file. (`fs.protected_symlinks` would stop this only
    /// in sticky world-writable directories, and only where it is enabled.)
    fn planted_symlink_is_never_followed() {
        let dir = TempDir::new("symlink");
        let secret = dir.0.join("secret");
        std::fs::write(&secret, b"private bytes of another file").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let n = name("symlink");
        let link = Planted(shm_path(&n));
        std::os::unix::fs::symlink(&secret, &link.0).unwrap();

        let lines = Scenario::start("symlink", &n).finish();
        assert_eq!(
            lines,
            [
                "open: NotASegment a symbolic link, errno ELOOP",
                "open read-only: NotASegment a symbolic link, errno ELOOP",
                "create: AlreadyExists",
                "create replacing: ok",
            ]
        );
        assert_eq!(std::fs::read(&secret).unwrap(), b"private bytes of another file");
        assert_eq!(std::fs::metadata(&secret).unwrap().len(), 29);
        assert!(
            !std::fs::symlink_metadata(&link.0).unwrap().file_type().is_symlink(),
            "replace: the link itself was replaced by a segment"
        );
    }

    /// Another user plants a FIFO under the name: opening it must not wait for a
    /// writer forever (the parent's deadline catches a hang).
    fn planted_fifo_does_not_block_open() {
        let n = name("fifo");
        let fifo = Planted(shm_path(&n));
        // A second process plants it.
        let made = Command::new("mkfifo").arg(&fifo.0).status().unwrap();
        assert!(made.success(), "mkfifo failed");
        let lines = Scenario::start("fifo", &n).finish();
        assert_eq!(
            lines,
            [
                "open: NotASegment a FIFO (named pipe), errno ENODEV",
                "open read-only: NotASegment a FIFO (named pipe), errno ENODEV",
            ]
        );
    }

    fn planted_directory_is_refused() {
        let n = name("dir");
        let dir = Planted(shm_path(&n));
        std::fs::create_dir(&dir.0).unwrap();
        let lines = Scenario::start("dir", &n).finish();
        assert_eq!(
            lines,
            [
                "open: NotASegment a directory, errno EISDIR",
                "open read-only: NotASegment a directory, errno EISDIR",
            ]
        );
    }

    /// A mode with setuid/setgid/sticky bits would make such a file in /dev/shm
    /// (often mounted without nosuid); only permission bits are accepted.
    fn mode_beyond_permission_bits_is_refused() {
        for mode in [0o4755, 0o2755, 0o1777, 0o7777, 0o10600] {
            let n = name("mode");
            let result = SharedMemory::options().mode(mode).create(&n, 64);
            let made = std::fs::symlink_metadata(shm_path(&n)).ok();
            let _ = std::fs::remove_file(shm_path(&n));
            match result {
                Err(Error::InvalidMode { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("mode {mode:#o} gave {other:?}; the file had {made:?}"),
            }
            assert!(made.is_none(), "mode {mode:#o}: a refused create left {:?}", shm_path(&n));
            let err = SharedMemory::options().mode(mode).create(&n, 64).unwrap_err();
            assert!(err.to_string().contains("permission bits"), "{err}");
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
        let n = name("mode_ok");
        let shm = SharedMemory::options().mode(0o777).create(&n, 64).unwrap();
        let mode = std::fs::metadata(shm_path(&n)).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o777);
        drop(shm);
    }

    /// A peer shrinks the segment under us: every copying API returns
    /// `Error::PagesLost` instead of the process dying of SIGBUS, and the handle
    /// refuses further copies.
    fn copies_from_a_shrunk_segment_fail_cleanly() {
        let n = name("shrunk");
        let _cleanup = Planted(shm_path(&n));
        let mut owner = SharedMemory::options().persist(true).create(&n, 16 * PAGE).unwrap();
        owner.write_all_at(b"payload", 0).unwrap();
        let scenario = Scenario::start("shrunk", &n);
        // The hostile peer: truncate the file to one page.
        std::fs::OpenOptions::new()
            .write(true)
            .open(shm_path(&n))
            .unwrap()
            .set_len(SHRUNK)
            .unwrap();
        let lines = scenario.finish();
        drop(owner);
        assert_eq!(
            lines,
            [
                "read_at past the end: PagesLost, kind UnexpectedEof",
                "read_at the first page later: PagesLost",
                "read_at across the end: PagesLost, starts with payload, zeros after",
                "write_at past the end: PagesLost, kind UnexpectedEof",
                "write_all_at past the end: PagesLost",
                "Read::read past the end: PagesLost",
                "Write::write past the end: PagesLost",
                "read_at_raw past the end: PagesLost",
                "write_all_at_raw past the end: PagesLost",
                "read_at of the first page (untouched handle): Ok(\"payload\")",
                "fresh open: 4096 bytes",
            ]
        );
    }

    /// A zero-copy access is not a copy: touching a vanished page through one (here
    /// a `SharedSlice` element, safe code; a plain view alike) still raises SIGBUS
    /// (the handler passes the fault on, to the default action), as the docs say,
    /// instead of silently reading zeros.
    fn views_of_a_shrunk_segment_still_crash() {
        let n = name("view");
        let _cleanup = Planted(shm_path(&n));
        let owner = SharedMemory::options().persist(true).create(&n, 16 * PAGE).unwrap();
        let mut scenario = Scenario::start("view", &n);
        std::fs::OpenOptions::new()
            .write(true)
            .open(shm_path(&n))
            .unwrap()
            .set_len(SHRUNK)
            .unwrap();
        writeln!(scenario.stdin, "go").unwrap();
        let mut lines = Vec::new();
        while let Some(line) = scenario.line() {
            lines.push(line);
        }
        let status = wait(&mut scenario.child);
        drop(owner);
        assert_eq!(lines, ["guarded copy: PagesLost"]);
        assert_eq!(status.signal(), Some(7), "expected death by SIGBUS, got {status}");
    }

    /// Shrinks the segment `name` to `size` bytes, as a hostile peer would.
    fn shrink(name: &str, size: u64) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(shm_path(name))
            .unwrap()
            .set_len(size)
            .unwrap();
    }

    /// What the channel scenario does after the shrink, in this order, except that
    /// the step a run names goes first (the first touch of a vanished page is a
    /// fault in that step, later ones are refused at once). A loan is open only in
    /// the run that publishes it first: sends would wait for its turn. Closing
    /// comes last: after it, a closed end may answer `ClosedHere` first.
    const CHANNEL_STEPS: [&str; 15] = [
        "loan publish",
        "held message to_vec",
        "send",
        "try_send",
        "send_batch",
        "loan",
        "send_readiness",
        "recv_timeout",
        "try_recv",
        "drain_with",
        "recv_readiness",
        "recv_async",
        "send_async",
        "drop a held message",
        "close both ends",
    ];

    /// The steps a run does after `first`: the others in order (closing last, so
    /// none after it), without the loan's publish, which needs a loan opened for
    /// it.
    fn steps_after(first: &str) -> impl Iterator<Item = &str> {
        let steps = if first == "close both ends" { &[][..] } else { &CHANNEL_STEPS[..] };
        steps.iter().copied().filter(move |s| *s != first && *s != "loan publish")
    }

    /// A peer shrinks a channel's segment to nothing (header and ring) under both
    /// ends, a held message, an open loan and a receiver blocked with no deadline:
    /// every operation is `ChannelError::PagesLost` (or `Error::PagesLost`), drops
    /// and closes return, and nothing dies of SIGBUS or hangs. Each operation gets a
    /// run of its own in which it touches the vanished pages first.
    fn channel_on_a_vanished_segment_fails_cleanly() {
        for first in CHANNEL_STEPS {
            let n = name("channel");
            let channel = Channel::create(&n, 1 << 16).unwrap();
            let idle = Channel::create(&format!("{n}_idle"), 4096).unwrap();
            let scenario = Scenario::start(&format!("channel:{first}"), &n);
            shrink(&n, 0);
            shrink(idle.name(), 0);
            let lines = scenario.finish();
            drop((channel, idle)); // never touched here after the shrink: only unmapped
            let rest = steps_after(first);
            let outcome = |step: &str| match step {
                "send_readiness" | "recv_readiness" => "None",
                "drop a held message" | "close both ends" => "returned",
                _ => "PagesLost",
            };
            let mut expected: Vec<String> = std::iter::once(first)
                .chain(rest)
                .map(|s| format!("{s}: {}", outcome(s)))
                .collect();
            expected.extend(
                [
                    "drop both ends: returned",
                    "receiver blocked with no deadline: PagesLost",
                    "claiming an end again: PagesLost",
                ]
                .map(String::from),
            );
            assert_eq!(lines, expected, "{first} first");
        }
    }

    /// A peer cuts a seqlock's record off (the header page stays): reads and writes
    /// copy through atomic words, and a vanished page is `Error::PagesLost`.
    fn seqlock_on_a_shrunk_segment_fails_cleanly() {
        let n = name("seqlock");
        let owner = SeqLock::create(&n, 16384).unwrap();
        owner.write(&[7; 16384]).unwrap();
        let scenario = Scenario::start("seqlock", &n);
        shrink(&n, SHRUNK);
        let lines = scenario.finish();
        drop(owner);
        assert_eq!(
            lines,
            [
                "read: PagesLost",
                "read_timeout after: PagesLost",
                "sequence after: PagesLost",
                "write (another handle): PagesLost",
                "write_value after: PagesLost",
            ]
        );
    }

    /// Threads asleep with no deadline in `Event::wait`, `Semaphore::acquire` and
    /// `Mutex::lock` when a peer takes their page: nobody will ever wake them
    /// through it, and they return `Error::PagesLost` (within half a second)
    /// instead of sleeping forever; the lock guard held meanwhile drops quietly.
    fn waits_on_a_vanished_page_end_with_an_error() {
        let n = name("waits");
        let _cleanup = Planted(shm_path(&n));
        drop(SharedMemory::options().persist(true).create(&n, 3 * PAGE).unwrap());
        let scenario = Scenario::start("waits", &n);
        shrink(&n, 0);
        let lines = scenario.finish();
        assert_eq!(
            lines,
            [
                "event wait: PagesLost",
                "semaphore acquire: PagesLost",
                "mutex lock: PagesLost",
                "dropped the guard held meanwhile",
                "event set after: PagesLost",
            ]
        );
    }

    /// An anonymous segment (memfd) is sealed: whoever gets its descriptor can
    /// write it but not shrink (nor grow) it.
    fn anonymous_segments_cannot_be_resized() {
        let mut shm = SharedMemory::anonymous(4 * PAGE).unwrap();
        let fd = shm.as_fd().unwrap().try_clone_to_owned().unwrap();
        let file = std::fs::File::from(fd);
        let shrink = file.set_len(PAGE as u64).unwrap_err();
        assert_eq!(shrink.raw_os_error(), Some(1), "EPERM expected, got {shrink}");
        let grow = file.set_len(8 * PAGE as u64).unwrap_err();
        assert_eq!(grow.raw_os_error(), Some(1), "EPERM expected, got {grow}");
        shm.write_all_at(b"still whole", 3 * PAGE as u64).unwrap();
        let mut buf = [0u8; 11];
        shm.read_exact_at(&mut buf, 3 * PAGE as u64).unwrap();
        assert_eq!(&buf, b"still whole");
    }

    /// Writing a page of a sparse segment (made without reserving its memory, as
    /// Python's stdlib does) when /dev/shm is full raises SIGBUS in the writer: here
    /// a copy reports it. Runs in a user and mount namespace with a 1 MiB tmpfs
    /// over /dev/shm, so that nothing real fills up; skipped where unprivileged
    /// namespaces are not allowed.
    fn sparse_segment_on_a_full_tmpfs_fails_cleanly() {
        let probe = Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "true"])
            .stderr(Stdio::null())
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            println!("(skipped: unshare --user --mount is not allowed here)");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let mut command = Command::new("unshare");
        command.args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m shmbridge_full /dev/shm && exec \"$0\" \"$@\"",
        ]);
        command.arg(exe);
        let lines = Scenario::start_with(command, "full", "/sparse").finish();
        assert_eq!(
            lines,
            [
                "reserved create: NoSpace",
                "sparse create: ok",
                "write_all_at through the end: PagesLost",
            ]
        );
    }

    fn child(scenario: &str, name: &str) {
        if let Some(first) = scenario.strip_prefix("channel:") {
            return channel(name, first);
        }
        match scenario {
            "seqlock" => return seqlock(name),
            "waits" => return waits(name),
            _ => {}
        }
        // Handles opened before the parent's hostile act, which happens while we
        // wait for "go".
        let before: Vec<SharedMemory> = match scenario {
            "shrunk" => (0..8).map(|_| SharedMemory::open(name).unwrap()).collect(),
            "view" => vec![SharedMemory::open(name).unwrap(), SharedMemory::open(name).unwrap()],
            _ => Vec::new(),
        };
        println!("ready");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        match scenario {
            "symlink" | "fifo" | "dir" => planted(name),
            "shrunk" => shrunk(name, before),
            "view" => view(before),
            "full" => full(name),
            other => panic!("unknown scenario {other}"),
        }
    }

    /// Tells the parent this child is set up, and waits for its hostile act.
    fn ready_then_wait_for_go() {
        println!("ready");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
    }

    fn channel_lost<T>(result: Result<T, ChannelError>) -> &'static str {
        match result {
            Err(ChannelError::PagesLost) => "PagesLost",
            Err(_) => "another error",
            Ok(_) => "ok (wrong)",
        }
    }

    fn error_lost<T>(result: shmbridge::Result<T>) -> &'static str {
        match result {
            Err(Error::PagesLost { .. }) => "PagesLost",
            Err(_) => "another error",
            Ok(_) => "ok (wrong)",
        }
    }

    /// Polls `f` once (an async operation that must be ready at once).
    fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(f).poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }

    fn channel(name: &str, first: &str) {
        let channel = Channel::open(name).unwrap();
        let (tx, rx) = (channel.sender().unwrap(), channel.receiver().unwrap());
        for byte in 1..=3 {
            tx.send(&[byte; 100]).unwrap();
        }
        // The oldest message held: dropping it moves the tail (a header word).
        let mut dropped = Some(rx.recv().unwrap());
        let kept = rx.recv().unwrap(); // copied after the shrink
        // Holds the sender's turn across the shrink.
        let mut loan = (first == "loan publish").then(|| tx.loan(16).unwrap());
        let idle_rx = Channel::open(&format!("{name}_idle")).unwrap().receiver().unwrap();
        let (blocked_tx, blocked) = mpsc::channel();
        std::thread::spawn(move || {
            blocked_tx.send(channel_lost(idle_rx.recv().map(drop))).unwrap();
        });
        ready_then_wait_for_go();
        let none = |r: Option<_>| if r.is_none() { "None" } else { "Some (wrong)" };
        let mut step = |what: &str| match what {
            "loan publish" => channel_lost(loan.take().expect("opened for this run").publish()),
            "held message to_vec" => channel_lost(kept.to_vec()),
            "send" => channel_lost(tx.send(b"x")),
            "try_send" => channel_lost(tx.try_send(b"x")),
            "send_batch" => channel_lost(tx.send_batch([&b"a"[..], b"b"], None)),
            "loan" => channel_lost(tx.loan(8).map(drop)),
            "send_readiness" => none(tx.send_readiness(8)),
            "recv_timeout" => channel_lost(rx.recv_timeout(Duration::from_secs(1)).map(drop)),
            "try_recv" => channel_lost(rx.try_recv().map(drop)),
            "drain_with" => channel_lost(rx.drain_with(8, |m| m.len())),
            "recv_readiness" => none(rx.recv_readiness()),
            "recv_async" => {
                poll_once(rx.recv_async()).map_or("pending (wrong)", |r| channel_lost(r.map(drop)))
            }
            "send_async" => poll_once(tx.send_async(b"x")).map_or("pending (wrong)", channel_lost),
            "drop a held message" => {
                drop(dropped.take()); // gives its room back: stores the tail
                "returned"
            }
            "close both ends" => {
                tx.close();
                rx.close();
                "returned"
            }
            other => panic!("unknown step {other}"),
        };
        for what in std::iter::once(first).chain(steps_after(first)) {
            println!("{what}: {}", step(what));
        }
        drop((kept, dropped, loan));
        drop((tx, rx));
        println!("drop both ends: returned");
        let blocked = blocked.recv_timeout(DEADLINE).unwrap_or("still blocked (wrong)");
        println!("receiver blocked with no deadline: {blocked}");
        println!("claiming an end again: {}", error_lost(channel.sender()));
    }

    fn seqlock(name: &str) {
        let (reader, writer) = (SeqLock::open(name).unwrap(), SeqLock::open(name).unwrap());
        let mut buf = vec![0u8; reader.record_size()];
        reader.read(&mut buf).unwrap();
        ready_then_wait_for_go();
        println!("read: {}", error_lost(reader.read(&mut buf)));
        let timed = reader.read_timeout(&mut buf, Duration::from_secs(1));
        println!("read_timeout after: {}", error_lost(timed));
        println!("sequence after: {}", error_lost(reader.sequence()));
        println!("write (another handle): {}", error_lost(writer.write(&[9; 16384])));
        println!("write_value after: {}", error_lost(writer.write_value(&[1u64; 2048])));
    }

    fn waits(name: &str) {
        let shm = Arc::new(SharedMemory::open(name).unwrap());
        // All three on the segment's third page, which the peer takes.
        let event = Arc::new(Event::in_segment(Arc::clone(&shm), 2 * PAGE, Some(false)).unwrap());
        let sem = Arc::new(Semaphore::in_segment(Arc::clone(&shm), 2 * PAGE + 16, 0).unwrap());
        let mutex = Arc::new(Mutex::in_segment(Arc::clone(&shm), 2 * PAGE + 32).unwrap());
        let guard = mutex.lock().unwrap().unwrap(); // another thread of ours waits for it
        let (tx, outcomes) = mpsc::channel();
        let waiter = |what: &'static str, wait: Box<dyn FnOnce() -> &'static str + Send>| {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send((what, wait())).unwrap());
        };
        let e = Arc::clone(&event);
        waiter("event wait", Box::new(move || error_lost(e.wait())));
        let s = Arc::clone(&sem);
        waiter("semaphore acquire", Box::new(move || error_lost(s.acquire())));
        let m = Arc::clone(&mutex);
        waiter("mutex lock", Box::new(move || error_lost(m.lock().map(drop))));
        // Each waiter counts itself as a sleeper on its word just before it sleeps.
        let start = Instant::now();
        for sleepers in [2 * PAGE + 4, 2 * PAGE + 20, 2 * PAGE + 36] {
            let mut word = [0u8; 4];
            while u32::from_ne_bytes(word) == 0 {
                assert!(start.elapsed() < DEADLINE, "a waiter never went to sleep");
                std::thread::yield_now();
                shm.read_exact_at(&mut word, sleepers as u64).unwrap();
            }
        }
        ready_then_wait_for_go();
        let mut lines: Vec<String> = (0..3)
            .map(|_| match outcomes.recv_timeout(DEADLINE) {
                Ok((what, outcome)) => format!("{what}: {outcome}"),
                Err(_) => "a waiter still sleeps (wrong)".to_owned(),
            })
            .collect();
        let order = ["event", "semaphore", "mutex"];
        lines.sort_by_key(|l| order.iter().position(|o| l.starts_with(o)));
        for line in lines {
            println!("{line}");
        }
        drop(guard);
        println!("dropped the guard held meanwhile");
        println!("event set after: {}", error_lost(event.set()));
    }

    fn describe(result: shmbridge::Result<SharedMemory>) -> String {
        match result {
            Ok(_) => "ok".to_owned(),
            Err(Error::NotASegment { found, source, .. }) => {
                let errno = match source.raw_os_error() {
                    Some(40) => "ELOOP",
                    Some(21) => "EISDIR",
                    Some(19) => "ENODEV",
                    _ => "other",
                };
                format!("NotASegment {found}, errno {errno}")
            }
            Err(Error::AlreadyExists { .. }) => "AlreadyExists".to_owned(),
            Err(e) => format!("{e:?}"),
        }
    }

    fn planted(name: &str) {
        println!("open: {}", describe(SharedMemory::open(name)));
        println!(
            "open read-only: {}",
            describe(SharedMemory::options().read_only(true).open(name))
        );
        if std::fs::symlink_metadata(shm_path(name)).unwrap().file_type().is_symlink() {
            println!("create: {}", describe(SharedMemory::create(name, 64)));
            // Replacing unlinks the link (never its target) and creates a segment.
            match SharedMemory::options().replace(true).persist(true).create(name, 64) {
                Ok(mut shm) => {
                    shm.write_all_at(&[0xAA; 64], 0).unwrap();
                    println!("create replacing: ok");
                }
                Err(e) => println!("create replacing: {e:?}"),
            }
        }
    }

    fn is_pages_lost(err: &std::io::Error) -> bool {
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
        inner.is_some_and(|e| matches!(e, Error::PagesLost { .. }))
    }

    fn lost<T, E: std::borrow::Borrow<std::io::Error>>(result: Result<T, E>) -> &'static str {
        match result {
            Err(e) if is_pages_lost(e.borrow()) => "PagesLost",
            Err(_) => "another error",
            Ok(_) => "ok (wrong)",
        }
    }

    fn shrunk(name: &str, handles: Vec<SharedMemory>) {
        let mut h = handles.into_iter();
        let end = 8 * PAGE as u64; // well past the one page left

        let a = h.next().unwrap();
        let mut buf = [7u8; 64];
        let err = a.read_at(&mut buf, end).unwrap_err();
        println!("read_at past the end: {}, kind {:?}", lost(Err::<(), _>(&err)), err.kind());
        println!("read_at the first page later: {}", lost(a.read_at(&mut buf, 0)));

        let b = h.next().unwrap();
        // The page that is left starts with the creator's "payload"; the vanished
        // pages after it read as zeros.
        let mut across = vec![7u8; 2 * PAGE];
        let result = b.read_at(&mut across, 0);
        println!(
            "read_at across the end: {}, starts with {}, {}",
            lost(result),
            String::from_utf8_lossy(&across[..7]),
            if across[PAGE..].iter().all(|&x| x == 0) { "zeros after" } else { "not zeros after" }
        );

        let mut c = h.next().unwrap();
        let err = c.write_at(b"lost", end).unwrap_err();
        println!("write_at past the end: {}, kind {:?}", lost(Err::<(), _>(&err)), err.kind());

        let mut d = h.next().unwrap();
        println!("write_all_at past the end: {}", lost(d.write_all_at(b"lost", end)));

        let mut e = h.next().unwrap();
        e.seek(SeekFrom::Start(end)).unwrap();
        println!("Read::read past the end: {}", lost(e.read(&mut buf)));

        let mut f = h.next().unwrap();
        f.seek(SeekFrom::Start(end)).unwrap();
        println!("Write::write past the end: {}", lost(f.write(b"lost")));

        let g = h.next().unwrap();
        // SAFETY: buf is a valid local buffer of 64 bytes, borrowed by nothing else.
        let raw = unsafe { g.read_at_raw(buf.as_mut_ptr(), 64, end) };
        println!("read_at_raw past the end: {}", lost(raw.map_err(std::io::Error::from)));
        // SAFETY: as above, read only.
        let raw = unsafe { g.write_all_at_raw(buf.as_ptr(), 64, end + 64) };
        println!("write_all_at_raw past the end: {}", lost(raw.map_err(std::io::Error::from)));

        let untouched = h.next().unwrap();
        let mut first = [0u8; 7];
        let result = untouched.read_at(&mut first, 0).map(|_| String::from_utf8_lossy(&first));
        println!("read_at of the first page (untouched handle): {result:?}");
        println!("fresh open: {} bytes", SharedMemory::open(name).unwrap().len());
    }

    fn view(handles: Vec<SharedMemory>) {
        let mut buf = [0u8; 64];
        println!("guarded copy: {}", lost(handles[0].read_at(&mut buf, 8 * PAGE as u64)));
        std::io::stdout().flush().unwrap();
        // The second handle's pages are still gone: a zero-copy read of them faults,
        // and that fault is not ours to repair.
        let slice = handles[1].slice_from::<u8>(0).unwrap();
        let byte = std::hint::black_box(slice.get(8 * PAGE));
        println!("view read {byte:?} (wrong: should have died)");
    }

    fn full(name: &str) {
        let size = 4 << 20; // four times the tmpfs
        let reserved = SharedMemory::create(name, size);
        println!(
            "reserved create: {}",
            match reserved {
                Err(Error::NoSpace { .. }) => "NoSpace".to_owned(),
                other => format!("{other:?}"),
            }
        );
        let mut sparse = SharedMemory::options().reserve(false).create(name, size).unwrap();
        println!("sparse create: ok");
        let data = vec![1u8; size];
        println!("write_all_at through the end: {}", lost(sparse.write_all_at(&data, 0)));
    }
}
