//! One trial of the crash campaign: its participants, the kill, the checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a survivor may take to finish once its peer is gone; past it, a hang.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long a trial's segments may outlive its last process; past it, a leftover.
const RECLAIM_DEADLINE: Duration = Duration::from_secs(5);

/// A small xorshift generator: trials are reproducible from the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Which implementation plays a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
        }
    }
}

/// What a trial does, and who is killed.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// The producer of a channel is killed mid-stream; the consumer must get every
    /// message the producer confirmed, in order, each once, then learn it died.
    ChannelProducer { producer: Lang, consumer: Lang },
    /// The consumer is killed mid-stream; a new consumer takes over and, with the
    /// first one's log, must account for every message once (a message the dead
    /// one held unreleased comes again, as documented).
    ChannelConsumer { producer: Lang, consumer: Lang },
    /// A process looping on a mutex is killed, perhaps holding it; the survivor
    /// must take it over and never see its data torn without being told.
    MutexOwner { victim: Lang },
    /// A seqlock writer is killed, perhaps mid-write; a reader must never see a
    /// torn record, and must take the writer's place.
    SeqLockWriter { writer: Lang },
    /// An array writer is killed; a reader must go on (the generation never
    /// going backwards).
    ArrayWriter { writer: Lang },
    /// The Python worker is killed in the middle of calls; the Rust parent must
    /// learn it exited.
    Worker,
    /// The Rust parent is killed in the middle of calls; the worker must exit.
    WorkerParent,
    /// A creator of `kind` is killed at any moment, before or after creating;
    /// another process may be mapping the segment.
    Creator { kind: &'static str, lang: Lang },
}

impl Scenario {
    pub fn label(&self) -> String {
        match self {
            Scenario::ChannelProducer { producer, consumer } => {
                format!("channel producer killed ({} -> {})", producer.name(), consumer.name())
            }
            Scenario::ChannelConsumer { producer, consumer } => {
                format!("channel consumer killed ({} -> {})", producer.name(), consumer.name())
            }
            Scenario::MutexOwner { victim } => {
                format!("mutex owner killed ({})", victim.name())
            }
            Scenario::SeqLockWriter { writer } => {
                format!("seqlock writer killed ({})", writer.name())
            }
            Scenario::ArrayWriter { writer } => {
                format!("array writer killed ({})", writer.name())
            }
            Scenario::Worker => "worker killed mid-call (python)".into(),
            Scenario::WorkerParent => "worker's parent killed mid-call (rust)".into(),
            Scenario::Creator { kind, lang } => {
                format!("creator killed: {kind} ({})", lang.name())
            }
        }
    }
}

/// Every scenario, each language pairing, each kind: a campaign cycles through
/// them.
pub fn scenarios() -> Vec<Scenario> {
    use Lang::{Python, Rust};
    let mut all = vec![
        Scenario::ChannelProducer { producer: Rust, consumer: Rust },
        Scenario::ChannelProducer { producer: Python, consumer: Rust },
        Scenario::ChannelProducer { producer: Rust, consumer: Python },
        Scenario::ChannelProducer { producer: Python, consumer: Python },
        Scenario::ChannelConsumer { producer: Rust, consumer: Rust },
        Scenario::ChannelConsumer { producer: Rust, consumer: Python },
        Scenario::ChannelConsumer { producer: Python, consumer: Rust },
        Scenario::MutexOwner { victim: Rust },
        Scenario::MutexOwner { victim: Python },
        Scenario::SeqLockWriter { writer: Rust },
        Scenario::SeqLockWriter { writer: Python },
        Scenario::ArrayWriter { writer: Rust },
        Scenario::ArrayWriter { writer: Python },
        Scenario::Worker,
        Scenario::WorkerParent,
    ];
    for kind in ["raw", "array", "channel", "event", "semaphore", "mutex", "seqlock"] {
        all.push(Scenario::Creator { kind, lang: Rust });
    }
    for kind in ["dropin", "raw", "array", "channel", "event", "semaphore", "mutex", "seqlock"] {
        all.push(Scenario::Creator { kind, lang: Python });
    }
    all
}

/// What one trial found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub signal: &'static str,
    pub lost: u64,
    pub duplicated: u64,
    pub violations: u64,
    pub hangs: u64,
    pub crashes: u64,
    pub leftovers: u64,
    /// Messages a dead consumer held unreleased, delivered again (documented).
    pub redelivered: u64,
    /// Milliseconds from the last process's exit to each segment's removal.
    pub reclaim_ms: Vec<f64>,
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        self.lost + self.duplicated + self.violations + self.hangs + self.crashes + self.leftovers
            > 0
    }

    pub fn describe(&self) -> String {
        format!(
            "lost={} dup={} violations={} hangs={} crashes={} leftovers={}: {}",
            self.lost,
            self.duplicated,
            self.violations,
            self.hangs,
            self.crashes,
            self.leftovers,
            self.notes.join("; ")
        )
    }
}

/// A participant process.
struct Proc {
    pid: u32,
    label: String,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    exit: mpsc::Receiver<std::io::Result<ExitStatus>>,
    status: Option<ExitStatus>,
    seen: Vec<String>,
}

/// Why a step of a trial could not go on: a participant that stopped answering
/// (`crashed`: it exited without saying what it should have).
struct Stop {
    why: String,
    crashed: bool,
}

impl Stop {
    fn hang(why: impl Into<String>) -> Self {
        Self { why: why.into(), crashed: false }
    }
}

impl Proc {
    /// The next line it prints, within the deadline.
    fn line(&mut self) -> Result<String, Stop> {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(line)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(Stop::hang(format!("{} said nothing within {DEADLINE:?}", self.label)))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Stop {
                why: format!("{} exited without a word (after {:?})", self.label, self.seen.last()),
                crashed: true,
            }),
        }
    }

    /// Waits for a line starting with `prefix` (others are kept).
    fn expect(&mut self, prefix: &str) -> Result<String, Stop> {
        loop {
            let line = self.line()?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
            if line.starts_with("hang") || line.starts_with("summary") {
                return Err(Stop::hang(format!("{}: {line} (waiting for {prefix:?})", self.label)));
            }
        }
    }

    fn say(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    fn kill(&self, signal: i32) {
        kill(self.pid, signal);
    }

    /// Waits for its exit (killing it after the deadline: `None`), and collects
    /// what it printed.
    fn finish(&mut self) -> Option<ExitStatus> {
        self.stdin.take();
        if self.status.is_none() {
            match self.exit.recv_timeout(DEADLINE) {
                Ok(Ok(status)) => self.status = Some(status),
                _ => {
                    self.kill(libc::SIGKILL);
                    let _ = self.exit.recv_timeout(DEADLINE);
                    return None;
                }
            }
        }
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        self.status
    }

    /// Its `summary` line as key=value pairs.
    fn summary(&self) -> Option<BTreeMap<String, String>> {
        let line = self.seen.iter().rev().find(|l| l.starts_with("summary"))?;
        Some(
            line.split_whitespace()
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a plain pid and signal number.
    unsafe { libc::kill(pid as i32, signal) };
}

/// Whether process `pid` (not a child of ours) exits within the deadline: waits
/// on its pidfd.
fn exits_in_time(pid: u32) -> bool {
    // SAFETY: pidfd_open(2) takes a pid and flags, returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd < 0 {
        return true; // already gone
    }
    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let deadline = Instant::now() + DEADLINE;
    let mut exited = false;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
        // SAFETY: one pollfd, valid for the call.
        let n = unsafe { libc::poll(&mut poll, 1, left.max(1)) };
        if n > 0 {
            exited = true;
            break;
        }
    }
    // SAFETY: fd is the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    exited
}

/// The campaign's fixed parts.
pub struct Campaign {
    pub exe: PathBuf,
    pub cli: PathBuf,
    pub python: PathBuf,
    pub participant: PathBuf,
    pub worker_script: PathBuf,
    pub verbose: bool,
}

/// One trial as it runs: its processes and names.
struct Trial<'a> {
    campaign: &'a Campaign,
    prefix: String,
    pids: Vec<u32>,
    procs: Vec<Proc>,
    signal: i32,
    outcome: Outcome,
}

impl Campaign {
    /// Runs trial `n` of `scenario`.
    pub fn run(&self, scenario: &Scenario, n: u64, rng: &mut Rng) -> Outcome {
        let signal = if rng.below(2) == 0 { libc::SIGKILL } else { libc::SIGTERM };
        let prefix = format!("crash_{}_{n}", std::process::id());
        let mut trial = Trial {
            campaign: self,
            prefix,
            pids: Vec::new(),
            procs: Vec::new(),
            signal,
            outcome: Outcome {
                signal: if signal == libc::SIGKILL { "SIGKILL" } else { "SIGTERM" },
                ..Outcome::default()
            },
        };
        if let Err(stop) = trial.play(scenario, rng) {
            if stop.crashed {
                trial.outcome.crashes += 1;
            } else {
                trial.outcome.hangs += 1;
            }
            trial.outcome.notes.push(stop.why);
        }
        // Whatever is still running is a hang (a participant past its deadline).
        for proc in &mut trial.procs {
            if proc.finish().is_none() {
                trial.outcome.hangs += 1;
                trial.outcome.notes.push(format!("{} did not exit", proc.label));
            }
        }
        trial.check_leftovers();
        trial.outcome
    }
}

impl Trial<'_> {
    fn name(&self, what: &str) -> String {
        format!("/{}_{what}", self.prefix)
    }

    fn spawn(&mut self, lang: Lang, role: &str, args: &[&str]) -> usize {
        let campaign = self.campaign;
        let mut command = match lang {
            Lang::Rust => {
                let mut c = Command::new(&campaign.exe);
                c.arg("role").arg(role);
                c
            }
            Lang::Python => {
                let mut c = Command::new(&campaign.python);
                c.arg(&campaign.participant).arg(role);
                c
            }
        };
        command
            .args(args)
            .env("SHMBRIDGE_TRACKER", &campaign.cli)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if campaign.verbose { Stdio::inherit() } else { Stdio::null() });
        let mut child = command.spawn().expect("start a participant");
        let pid = child.id();
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (exit_tx, exit) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = exit_tx.send(child.wait());
        });
        self.pids.push(pid);
        self.procs.push(Proc {
            pid,
            label: format!("{} {role}", lang.name()),
            stdin,
            lines,
            exit,
            status: None,
            seen: Vec::new(),
        });
        self.procs.len() - 1
    }

    /// A pause before the kill: anywhere in the first `max_ms` milliseconds.
    fn pause(rng: &mut Rng, max_ms: u64) {
        // Choosing the moment of the kill, not waiting for another process.
        std::thread::sleep(Duration::from_micros(rng.below(max_ms * 1000)));
    }

    /// Kills `victim` with the trial's signal and reaps it.
    fn kill(&mut self, victim: usize) {
        self.procs[victim].kill(self.signal);
        if self.procs[victim].finish().is_none() {
            self.outcome.hangs += 1;
            self.outcome.notes.push(format!("{} survived its kill", self.procs[victim].label));
        }
    }

    /// Waits for a survivor's exit: a hang past the deadline, a crash unless it
    /// exited with status 0 (status 3: it gave up waiting, a hang).
    fn survivor(&mut self, index: usize) -> Option<BTreeMap<String, String>> {
        let proc = &mut self.procs[index];
        match proc.finish() {
            None => {
                self.outcome.hangs += 1;
                self.outcome.notes.push(format!("{} hung", proc.label));
                None
            }
            Some(status) if status.code() == Some(3) => {
                self.outcome.hangs += 1;
                let why = proc.seen.iter().rev().find(|l| l.starts_with("hang")).cloned();
                self.outcome.notes.push(format!("{}: {}", proc.label, why.unwrap_or_default()));
                None
            }
            Some(status) if !status.success() => {
                self.outcome.crashes += 1;
                self.outcome.notes.push(format!("{} exited with {status}", proc.label));
                None
            }
            Some(_) => {
                let summary = proc.summary();
                if summary.is_none() {
                    self.outcome.crashes += 1;
                    self.outcome.notes.push(format!("{} gave no summary", proc.label));
                }
                summary
            }
        }
    }

    fn play(&mut self, scenario: &Scenario, rng: &mut Rng) -> Result<(), Stop> {
        match *scenario {
            Scenario::ChannelProducer { producer, consumer } => {
                self.producer_killed(producer, consumer, rng)
            }
            Scenario::ChannelConsumer { producer, consumer } => {
                self.consumer_killed(producer, consumer, rng)
            }
            Scenario::MutexOwner { victim } => self.mutex_owner_killed(victim, rng),
            Scenario::SeqLockWriter { writer } => self.seqlock_writer_killed(writer, rng),
            Scenario::ArrayWriter { writer } => self.array_writer_killed(writer, rng),
            Scenario::Worker => self.worker_killed(false, rng),
            Scenario::WorkerParent => self.worker_killed(true, rng),
            Scenario::Creator { kind, lang } => self.creator_killed(kind, lang, rng),
        }
    }

    fn producer_killed(
        &mut self,
        producer: Lang,
        consumer: Lang,
        rng: &mut Rng,
    ) -> Result<(), Stop> {
        let name = self.name("chan");
        let p = self.spawn(producer, "producer", &[&name]);
        self.procs[p].expect("ready")?;
        let c = self.spawn(consumer, "consumer", &[&name]);
        self.procs[c].expect("ready")?;
        self.procs[p].say("go");
        Self::pause(rng, 40);
        self.kill(p);
        let confirmed = last_number(&self.procs[p].seen, "sent ").map_or(0, |i| i + 1);
        let Some(s) = self.survivor(c) else { return Ok(()) };
        let got = number(&s, "got");
        self.outcome.lost += number(&s, "gaps") + confirmed.saturating_sub(got);
        self.outcome.duplicated += number(&s, "dups");
        if got > 0 && s.get("first").map(String::as_str) != Some("0") {
            self.outcome.lost += 1;
            self.outcome.notes.push(format!("the first message was {:?}", s.get("first")));
        }
        if s.get("end").map(String::as_str) != Some("died") {
            self.outcome.violations += 1;
            self.outcome
                .notes
                .push(format!("the consumer ended with {:?}, not died", s.get("end")));
        }
        Ok(())
    }

    fn consumer_killed(
        &mut self,
        producer: Lang,
        consumer: Lang,
        rng: &mut Rng,
    ) -> Result<(), Stop> {
        // Enough that the kill lands mid-stream: the first consumer logs two lines
        // a message.
        const TOTAL: u64 = 20_000;
        let name = self.name("chan");
        let p = self.spawn(producer, "producer", &[&name, &TOTAL.to_string()]);
        self.procs[p].expect("ready")?;
        let q1 = self.spawn(consumer, "consumer", &[&name, "log"]);
        self.procs[q1].expect("ready")?;
        self.procs[p].say("go");
        Self::pause(rng, 40);
        self.kill(q1);
        if self.procs[q1].summary().is_some() {
            // It received everything and the channel closed before the kill: a
            // trial with nothing to check (the stream must still have been whole).
            let s = self.procs[q1].summary().unwrap_or_default();
            self.outcome.lost += number(&s, "gaps") + TOTAL.saturating_sub(number(&s, "got"));
            self.outcome.duplicated += number(&s, "dups");
            self.outcome.notes.push("the stream ended before the kill".into());
            self.survivor(p);
            return Ok(());
        }
        let q2 = self.spawn(consumer, "consumer", &[&name]);
        self.procs[q2].expect("ready")?;
        self.procs[p].say("resume");
        let log = &self.procs[q1].seen;
        let got: Vec<u64> =
            log.iter().filter_map(|l| l.strip_prefix("got ")?.parse().ok()).collect();
        let last = got.last().copied();
        let released_last = last.is_some_and(|l| log.iter().any(|x| *x == format!("rel {l}")));
        // The first consumer's log must itself be 0, 1, 2, ...
        for (expected, i) in got.iter().enumerate() {
            if *i != expected as u64 {
                self.outcome.lost += 1;
                self.outcome
                    .notes
                    .push(format!("the first consumer got {i} as message {expected}"));
                break;
            }
        }
        let p_summary = self.survivor(p);
        let Some(s) = self.survivor(q2) else { return Ok(()) };
        let sent = p_summary.as_ref().map_or(TOTAL, |p| number(p, "sent"));
        let q2_got = number(&s, "got");
        let first = s.get("first").and_then(|f| f.parse::<u64>().ok());
        let resume = last.map_or(0, |l| l + 1);
        let start = match (first, last) {
            (None, _) => resume.min(sent),
            (Some(f), Some(l)) if f == l && !released_last => {
                self.outcome.redelivered += 1; // held when it died: delivered again
                f
            }
            (Some(f), _) => f,
        };
        if start > resume {
            self.outcome.lost += start - resume;
            self.outcome.notes.push(format!("messages {resume}..{start} never arrived"));
        } else if start < resume && (released_last || Some(start) != last) {
            self.outcome.duplicated += resume - start;
            self.outcome.notes.push(format!("messages {start}..{resume} arrived twice"));
        }
        self.outcome.lost += number(&s, "gaps");
        self.outcome.duplicated += number(&s, "dups");
        let end = start + q2_got;
        if end < sent {
            self.outcome.lost += sent - end;
            self.outcome.notes.push(format!("the new consumer stopped at {end} of {sent}"));
        }
        if s.get("end").map(String::as_str) != Some("closed") || sent != TOTAL {
            self.outcome.violations += 1;
            self.outcome.notes.push(format!("ended {:?} after {sent} sent", s.get("end")));
        }
        Ok(())
    }

    fn mutex_owner_killed(&mut self, victim: Lang, rng: &mut Rng) -> Result<(), Stop> {
        let name = self.name("mutex");
        let victim_creates = rng.below(2) == 0;
        let (first_lang, second_lang) =
            if victim_creates { (victim, Lang::Rust) } else { (Lang::Rust, victim) };
        let a = self.spawn(
            first_lang,
            "locker",
            &[&name, "create", if victim_creates { "" } else { "3000" }],
        );
        self.procs[a].expect("ready")?;
        let b = self.spawn(
            second_lang,
            "locker",
            &[&name, "open", if victim_creates { "3000" } else { "" }],
        );
        self.procs[b].expect("ready")?;
        let (v, s) = if victim_creates { (a, b) } else { (b, a) };
        self.procs[a].say("go");
        self.procs[b].say("go");
        Self::pause(rng, 30);
        self.kill(v);
        if let Some(summary) = self.survivor(s) {
            self.outcome.violations += number(&summary, "torn");
            if number(&summary, "ops") != 3000 {
                self.outcome.lost += 1;
                self.outcome
                    .notes
                    .push(format!("the survivor did {:?} of 3000", summary.get("ops")));
            }
        }
        Ok(())
    }

    fn seqlock_writer_killed(&mut self, writer: Lang, rng: &mut Rng) -> Result<(), Stop> {
        let name = self.name("seqlock");
        let w = self.spawn(writer, "swriter", &[&name]);
        self.procs[w].expect("ready")?;
        let r = self.spawn(Lang::Rust, "sreader", &[&name, "20000"]);
        self.procs[r].expect("ready")?;
        self.procs[w].say("go");
        Self::pause(rng, 30);
        self.kill(w);
        if let Some(s) = self.survivor(r) {
            self.outcome.violations += number(&s, "torn");
            self.outcome.lost += number(&s, "backwards");
        }
        Ok(())
    }

    fn array_writer_killed(&mut self, writer: Lang, rng: &mut Rng) -> Result<(), Stop> {
        let name = self.name("array");
        let w = self.spawn(writer, "awriter", &[&name]);
        self.procs[w].expect("ready")?;
        let r = self.spawn(Lang::Rust, "areader", &[&name, "20000"]);
        self.procs[r].expect("ready")?;
        self.procs[w].say("go");
        Self::pause(rng, 30);
        self.kill(w);
        if let Some(s) = self.survivor(r) {
            self.outcome.lost += number(&s, "backwards");
        }
        Ok(())
    }

    fn worker_killed(&mut self, kill_parent: bool, rng: &mut Rng) -> Result<(), Stop> {
        let python = self.campaign.python.to_string_lossy().into_owned();
        let script = self.campaign.worker_script.to_string_lossy().into_owned();
        let p = self.spawn(Lang::Rust, "wparent", &[&python, &script]);
        let worker: u32 = self.procs[p]
            .expect("worker ")?
            .strip_prefix("worker ")
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| Stop::hang("no worker pid"))?;
        self.pids.push(worker);
        self.procs[p].expect("ready")?;
        self.procs[p].say("go");
        Self::pause(rng, 40);
        if kill_parent {
            self.kill(p);
            if !exits_in_time(worker) {
                self.outcome.hangs += 1;
                self.outcome.notes.push("the worker outlived its parent".into());
                kill(worker, libc::SIGKILL);
            }
        } else {
            kill(worker, self.signal);
            let summary = self.survivor(p);
            if let Some(s) = summary.filter(|s| s.get("end").map(String::as_str) != Some("exited"))
            {
                self.outcome.violations += 1;
                self.outcome.notes.push(format!("the parent ended with {:?}", s.get("end")));
            }
        }
        Ok(())
    }

    fn creator_killed(
        &mut self,
        kind: &'static str,
        lang: Lang,
        rng: &mut Rng,
    ) -> Result<(), Stop> {
        let name = self.name(kind);
        let c = self.spawn(lang, "creator", &[kind, &name]);
        // Sometimes before the segment exists (during start-up or create), mostly
        // after; then another process maps it across the creator's death.
        let before = rng.below(4) == 0;
        if before {
            let startup_ms = if lang == Lang::Python { 400 } else { 5 };
            Self::pause(rng, startup_ms);
            self.kill(c);
            return Ok(());
        }
        self.procs[c].expect("ready")?;
        let hold_ms = rng.below(300).to_string();
        let o = self.spawn(Lang::Rust, "opener", &[&name, &hold_ms]);
        self.procs[o].expect("mapped")?;
        Self::pause(rng, 20);
        self.kill(c);
        let summary = self.survivor(o);
        if summary.is_some_and(|s| number(&s, "mapped") != 1) {
            self.outcome.violations += 1;
            self.outcome.notes.push("the opener found nothing to map".into());
        }
        Ok(())
    }

    /// Once every process of the trial is gone: every segment of the trial
    /// (named with its prefix, or a worker's channels, named with its parent's pid)
    /// must go within the reclaim deadline.
    fn check_leftovers(&mut self) {
        let ended = Instant::now();
        let mine = |name: &str| {
            name.starts_with(&self.prefix)
                || self.pids.iter().any(|pid| {
                    name.starts_with(&format!("worker_req_{pid}_"))
                        || name.starts_with(&format!("worker_ans_{pid}_"))
                })
        };
        let names: Vec<String> = std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .filter(|n| mine(n))
                    .collect()
            })
            .unwrap_or_default();
        for name in names {
            match shmbridge::reclaim::wait_gone(
                &name,
                RECLAIM_DEADLINE.saturating_sub(ended.elapsed()),
            ) {
                Ok(true) => self.outcome.reclaim_ms.push(ended.elapsed().as_secs_f64() * 1e3),
                _ => {
                    self.outcome.leftovers += 1;
                    let seen = shmbridge::inspect::segment(&name)
                        .map(|s| {
                            format!("{:?} creator {:?} users {:?}", s.kind(), s.creator, s.users)
                        })
                        .unwrap_or_default();
                    self.outcome.notes.push(format!("left behind: {name} ({seen})"));
                    let _ = shmbridge::unlink(&name);
                }
            }
        }
    }
}

fn number(summary: &BTreeMap<String, String>, key: &str) -> u64 {
    summary.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn last_number(lines: &[String], prefix: &str) -> Option<u64> {
    lines.iter().rev().find_map(|l| l.strip_prefix(prefix)?.parse().ok())
}

/// The campaign's figures, per scenario and in all.
#[derive(Default)]
pub struct Tally {
    rows: BTreeMap<String, Row>,
    reclaim_ms: Vec<f64>,
    redelivered: u64,
    kills: BTreeMap<&'static str, u64>,
}

#[derive(Default, Clone, Copy)]
struct Row {
    trials: u64,
    lost: u64,
    duplicated: u64,
    violations: u64,
    hangs: u64,
    crashes: u64,
    leftovers: u64,
}

impl Tally {
    pub fn add(&mut self, scenario: &Scenario, outcome: Outcome) {
        let group = match scenario {
            Scenario::Creator { lang, .. } => {
                format!("creator killed, each kind ({})", lang.name())
            }
            other => other.label(),
        };
        let row = self.rows.entry(group).or_default();
        row.trials += 1;
        row.lost += outcome.lost;
        row.duplicated += outcome.duplicated;
        row.violations += outcome.violations;
        row.hangs += outcome.hangs;
        row.crashes += outcome.crashes;
        row.leftovers += outcome.leftovers;
        self.reclaim_ms.extend(outcome.reclaim_ms);
        self.redelivered += outcome.redelivered;
        *self.kills.entry(outcome.signal).or_default() += 1;
    }

    fn total(&self) -> Row {
        self.rows.values().fold(Row::default(), |a, r| Row {
            trials: a.trials + r.trials,
            lost: a.lost + r.lost,
            duplicated: a.duplicated + r.duplicated,
            violations: a.violations + r.violations,
            hangs: a.hangs + r.hangs,
            crashes: a.crashes + r.crashes,
            leftovers: a.leftovers + r.leftovers,
        })
    }

    pub fn failed(&self) -> bool {
        let t = self.total();
        t.lost + t.duplicated + t.violations + t.hangs + t.crashes + t.leftovers > 0
    }

    /// Killed participants by signal: `1003 SIGKILL, 997 SIGTERM`.
    fn kills_text(&self) -> String {
        let kills: Vec<String> = self.kills.iter().map(|(s, n)| format!("{n} {s}")).collect();
        kills.join(", ")
    }

    /// Every scenario's row, then the total's (named `total`).
    fn rows_and_total(&self, total: &'static str) -> impl Iterator<Item = (&str, Row)> + '_ {
        let rows = self.rows.iter().map(|(name, row)| (name.as_str(), *row));
        rows.chain(std::iter::once((total, self.total())))
    }

    /// How many segments reclaim removed, and how long after their last process
    /// exited: median, p99 and max milliseconds.
    fn reclaim_times(&self) -> Option<(usize, f64, f64, f64)> {
        let mut ms = self.reclaim_ms.clone();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        (!ms.is_empty()).then(|| (ms.len(), at(0.5), at(0.99), ms[ms.len() - 1]))
    }

    /// The figures as the Markdown the README quotes (between its `crash:` markers):
    /// what `./dev crash N` writes to `docs/crash.md`.
    pub fn markdown(&self, trials: u64, seed: u64, took: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "`./dev crash {trials}`: {trials} trials in {:.0} s (seed {seed}; {}).\n",
            took.as_secs_f64(),
            self.kills_text()
        );
        let _ = writeln!(
            out,
            "| scenario | trials | lost | duplicated | violations | hangs | crashes | leftovers |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|");
        for (name, r) in self.rows_and_total("**total**") {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                r.trials, r.lost, r.duplicated, r.violations, r.hangs, r.crashes, r.leftovers
            );
        }
        if let Some((n, median, p99, max)) = self.reclaim_times() {
            let _ = writeln!(
                out,
                "\nReclaim: {n} segments were removed after their last process exited, in median \
                 {median:.1} ms, p99 {p99:.1} ms, max {max:.1} ms."
            );
        }
        let _ = writeln!(
            out,
            "{} messages a killed consumer held unreleased came again to its successor \
             (documented: at least once after a crash).",
            self.redelivered
        );
        out
    }

    pub fn report(&self, trials: u64, seed: u64, took: Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "crash campaign: {trials} trials in {:.0} s (seed {seed}; {})",
            took.as_secs_f64(),
            self.kills_text()
        );
        let _ = writeln!(
            out,
            "{:<46} {:>6} {:>5} {:>4} {:>10} {:>5} {:>7} {:>9}",
            "scenario", "trials", "lost", "dup", "violations", "hangs", "crashes", "leftovers"
        );
        for (name, r) in self.rows_and_total("total") {
            let _ = writeln!(
                out,
                "{name:<46} {:>6} {:>5} {:>4} {:>10} {:>5} {:>7} {:>9}",
                r.trials, r.lost, r.duplicated, r.violations, r.hangs, r.crashes, r.leftovers
            );
        }
        if let Some((n, median, p99, max)) = self.reclaim_times() {
            let _ = writeln!(
                out,
                "reclaim: {n} segments removed after their last process exited, in median \
                 {median:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
            );
        }
        let _ = writeln!(
            out,
            "redelivered: {} messages a killed consumer held unreleased came again to its successor \
             (documented: at least once after a crash)",
            self.redelivered
        );
        out
    }
}
