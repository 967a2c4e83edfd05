//! The crash campaign: kills (SIGKILL or SIGTERM) one participant of a
//! shared-memory exchange at a random moment, many times, and checks each trial:
//! nothing published lost or duplicated, no protocol violated (a torn critical
//! section or snapshot), no survivor hung past its deadline or crashed, and once
//! the last process is gone, nothing of the trial left in `/dev/shm` (automatic
//! reclaim, with nothing run by hand).
//!
//! ```text
//! crash [--trials N] [--seed S] [--only TEXT] [--python PATH] [--cli PATH] [--record FILE.md] [--verbose]
//! ```
//!
//! Participants are this binary run again as `crash role ...` (Rust) and
//! `tests/crash_participant.py` (Python). Prints one line per failed trial and a
//! table of the figures (with `--record`, also as Markdown into that file, which
//! the README quotes); exits 1 if any trial failed. `./dev crash N` runs it.

// Linux only: the trials watch and kill participants with pidfds and look at
// /dev/shm. Elsewhere the binary says so.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

#[cfg(target_os = "linux")]
mod roles;
#[cfg(target_os = "linux")]
mod trial;

#[cfg(target_os = "linux")]
use std::path::PathBuf;
#[cfg(target_os = "linux")]
use std::time::Instant;

#[cfg(target_os = "linux")]
use trial::{Campaign, Rng, Tally};

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("crash: the crash campaign runs on Linux only");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("role") {
        roles::run(&args[2], &args[3..]);
        return;
    }
    let mut trials = 40u64;
    let mut seed = None;
    let mut python = None;
    let mut cli = None;
    let mut verbose = false;
    let mut record = None::<PathBuf>;
    let mut only = None::<String>;
    let mut i = 1;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_else(|| usage(&args[i]));
        match args[i].as_str() {
            "--trials" => trials = value().parse().unwrap_or_else(|_| usage("--trials")),
            "--seed" => seed = Some(value().parse().unwrap_or_else(|_| usage("--seed"))),
            "--python" => python = Some(PathBuf::from(value())),
            "--cli" => cli = Some(PathBuf::from(value())),
            "--only" => only = Some(value()),
            "--record" => record = Some(PathBuf::from(value())),
            "--verbose" | "-v" => {
                verbose = true;
                i += 1;
                continue;
            }
            other => usage(other),
        }
        i += 2;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = python.unwrap_or_else(|| root.join(".venv/bin/python"));
    let exe = std::env::current_exe().expect("the running binary");
    let cli = cli.unwrap_or_else(|| exe.with_file_name("shmbridge"));
    if !cli.is_file() {
        eprintln!("crash: no shmbridge binary at {} (build it, or give --cli)", cli.display());
        std::process::exit(2);
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
    });
    let campaign = Campaign {
        exe,
        cli,
        python,
        participant: root.join("tests/crash_participant.py"),
        worker_script: root.join("tests/crash_worker.py"),
        verbose,
    };
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut scenarios = trial::scenarios();
    if let Some(only) = &only {
        scenarios.retain(|s| s.label().contains(only.as_str()));
        if scenarios.is_empty() {
            usage("--only");
        }
    }
    for n in 0..trials {
        let scenario = &scenarios[(n % scenarios.len() as u64) as usize];
        let outcome = campaign.run(scenario, n, &mut rng);
        if !outcome.failed() && verbose {
            eprintln!("trial {n} {}: ok", scenario.label());
        }
        if outcome.failed() {
            eprintln!(
                "trial {n} {} ({}): FAILED {}",
                scenario.label(),
                outcome.signal,
                outcome.describe()
            );
        }
        tally.add(scenario, outcome);
    }
    let took = started.elapsed();
    print!("{}", tally.report(trials, seed, took));
    if let Some(record) = record
        && let Err(e) = std::fs::write(&record, tally.markdown(trials, seed, took))
    {
        eprintln!("crash: cannot write {}: {e}", record.display());
        std::process::exit(2);
    }
    std::process::exit(i32::from(tally.failed()));
}

#[cfg(target_os = "linux")]
fn usage(at: &str) -> ! {
    eprintln!(
        "crash: bad argument {at:?}\nusage: crash [--trials N] [--seed S] [--only TEXT] [--python PATH] \
         [--cli PATH] [--record FILE.md] [--verbose]"
    );
    std::process::exit(2);
}
