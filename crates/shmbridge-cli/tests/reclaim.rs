//! Automatic reclaim between real processes: a creator of each kind is killed
//! while another process maps its segments; nothing goes while that survivor maps
//! them (for several seconds), everything goes, with nothing run by hand, within
//! moments of the survivor leaving. Persistent and foreign segments stay; a last
//! mapper reclaims where no tracker runs; a receiver waiting on a channel whose
//! creator died before any producer came is told so.
//!
//! `harness = false`: this binary is also every child (`main` reads the role), and
//! the tests run one after the other (they share this user's tracker).

#[cfg(target_os = "linux")]
mod support;

fn main() {
    // Reclaim is Linux only; elsewhere this test has nothing to run.
    #[cfg(target_os = "linux")]
    linux::main();
}

#[cfg(target_os = "linux")]
mod linux {
    use std::any::Any;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::support::{DEADLINE, Peer, exists, hold_until_released, run_cli, run_tests};
    use shmbridge::array::SharedArray;
    use shmbridge::channel::{Channel, ChannelError};
    use shmbridge::inspect;
    use shmbridge::record::{CreatorState, SegmentKind};
    use shmbridge::sync::{Event, Mutex, Semaphore, SeqLock};
    use shmbridge::{Lifetime, SharedMemory};

    const KINDS: [&str; 7] = ["raw", "array", "channel", "event", "semaphore", "mutex", "seqlock"];

    fn tracker_env() -> [(&'static str, &'static str); 1] {
        [("SHMBRIDGE_TRACKER", env!("CARGO_BIN_EXE_shmbridge"))]
    }

    pub(super) fn main() {
        let args: Vec<String> = std::env::args().collect();
        match args.get(1).map(String::as_str) {
            Some("creator") => return creator(&args[2], &args[3..]),
            Some("survivor") => return survivor(&args[2..]),
            Some("channel_creator") => return channel_creator(&args[2]),
            Some("connected") => {
                let _shm = SharedMemory::create_unique("reclaim_connected", 64).unwrap();
                println!("{}", shmbridge::reclaim::tracker_connected());
                return;
            }
            _ => {}
        }
        run_tests(&[
            // First: no tracker of an earlier test may be running yet.
            (
                "last_mapper_reclaims_where_no_tracker_runs",
                last_mapper_reclaims_where_no_tracker_runs,
            ),
            (
                "killed_creator_of_each_kind_is_reclaimed_once_unmapped",
                killed_creator_of_each_kind_is_reclaimed_once_unmapped,
            ),
            ("sigterm_is_a_death_too", sigterm_is_a_death_too),
            ("persistent_and_foreign_segments_stay", persistent_and_foreign_segments_stay),
            (
                "unclaimed_channel_of_a_dead_creator_ends_recv",
                unclaimed_channel_of_a_dead_creator_ends_recv,
            ),
            ("records_follow_persist", records_follow_persist),
            ("reclaim_off_starts_no_tracker", reclaim_off_starts_no_tracker),
        ]);
    }

    // ---- children ----

    /// Creates `prefix_<kind>` for each kind (holding a channel's sender, a mutex's
    /// lock), says `ready`, and holds everything until released or killed.
    fn creator(prefix: &str, kinds: &[String]) {
        let mut keep: Vec<Box<dyn Any>> = Vec::new();
        for kind in kinds {
            let name = format!("{prefix}_{kind}");
            match kind.as_str() {
                "raw" => keep.push(Box::new(SharedMemory::create(&name, 4096).unwrap())),
                "process" => keep.push(Box::new(
                    SharedMemory::options()
                        .lifetime(Lifetime::Process)
                        .create(&name, 4096)
                        .unwrap(),
                )),
                "persistent" => keep.push(Box::new(
                    SharedMemory::options().persist(true).create(&name, 4096).unwrap(),
                )),
                "array" => keep.push(Box::new(SharedArray::<f32>::create(&name, &[4, 4]).unwrap())),
                "channel" => {
                    let channel = Channel::create(&name, 4096).unwrap();
                    let sender = channel.sender().unwrap();
                    sender.send(b"published").unwrap();
                    keep.push(Box::new(sender));
                }
                "event" => keep.push(Box::new(Event::create(&name, false).unwrap())),
                "semaphore" => keep.push(Box::new(Semaphore::create(&name, 2).unwrap())),
                "mutex" => {
                    let mutex = Box::leak(Box::new(Mutex::create(&name).unwrap()));
                    std::mem::forget(mutex.lock().unwrap());
                }
                "seqlock" => keep.push(Box::new(SeqLock::create(&name, 16).unwrap())),
                other => panic!("unknown kind {other}"),
            }
        }
        println!("ready {}", std::process::id());
        hold_until_released();
    }

    /// Maps each name, says `mapped`, holds them until released.
    fn survivor(names: &[String]) {
        let held: Vec<SharedMemory> = names
            .iter()
            .map(|n| SharedMemory::options().read_only(true).open(n).unwrap())
            .collect();
        println!("mapped");
        hold_until_released();
        drop(held);
    }

    /// Creates a channel and claims no end; holds it until killed.
    fn channel_creator(name: &str) {
        let channel = Channel::create(name, 4096).unwrap();
        println!("ready");
        hold_until_released();
        drop(channel);
    }

    // ---- tests ----

    fn prefix(test: &str) -> String {
        shmbridge::unique_name(&format!("reclaim_{test}")).unwrap()
    }

    /// Waits for each name to go; returns the longest wait.
    fn all_gone(names: &[String], within: Duration) -> Duration {
        let start = Instant::now();
        for name in names {
            let left = within.saturating_sub(start.elapsed());
            assert!(
                shmbridge::reclaim::wait_gone(name, left).unwrap(),
                "{name} is still there {within:?} after its last user left"
            );
        }
        start.elapsed()
    }

    fn last_mapper_reclaims_where_no_tracker_runs() {
        let prefix = prefix("last");
        let no_tracker = [("SHMBRIDGE_TRACKER", "/nonexistent/shmbridge")];
        let creator = Peer::start("creator", &[&prefix, "raw", "array"], &no_tracker);
        assert!(creator.line().starts_with("ready"));
        let names = [format!("{prefix}_raw"), format!("{prefix}_array")];
        let opened: Vec<SharedMemory> =
            names.iter().map(|n| SharedMemory::open(n).unwrap()).collect();
        creator.kill(9);
        for (name, shm) in names.iter().zip(opened) {
            assert!(exists(name), "{name} went while this process maps it");
            assert_eq!(shm.record().unwrap().creator_state(), CreatorState::Dead);
            drop(shm); // the last mapper: removes it before returning
            assert!(!exists(name), "{name} outlived its last mapper, its creator being dead");
        }
    }

    fn killed_creator_of_each_kind_is_reclaimed_once_unmapped() {
        let prefix = prefix("kinds");
        let creator =
            Peer::start("creator", &[&[prefix.as_str()][..], &KINDS[..]].concat(), &tracker_env());
        let ready = creator.line();
        let creator_pid: u32 = ready.strip_prefix("ready ").unwrap().parse().unwrap();
        let names: Vec<String> = KINDS.iter().map(|k| format!("{prefix}_{k}")).collect();
        for (name, kind) in names.iter().zip(KINDS) {
            let info = inspect::segment(name).unwrap();
            let record = info.record.as_ref().unwrap_or_else(|| panic!("{name} has no record"));
            assert_eq!(record.kind().name(), kind);
            assert_eq!(record.creator_pid(), creator_pid);
            assert!(!record.is_persistent());
            assert_eq!(info.creator, Some(CreatorState::Alive));
            assert!(info.users.contains(&creator_pid), "{name}: users {:?}", info.users);
        }
        // The survivor does not reclaim by itself: what removes the segments is the
        // tracker the creator started.
        let survivor_args: Vec<&str> = names.iter().map(String::as_str).collect();
        let survivor = Peer::start("survivor", &survivor_args, &[("SHMBRIDGE_RECLAIM", "off")]);
        assert_eq!(survivor.line(), "mapped");
        let survivor_pid = survivor.child.id();
        creator.kill(9);

        // Several seconds with the creator dead and the survivor mapping everything:
        // nothing may go.
        assert!(
            !shmbridge::reclaim::wait_gone(&names[0], Duration::from_secs(3)).unwrap(),
            "a segment went while a live process mapped it"
        );
        for name in &names {
            let info = inspect::segment(name).unwrap();
            assert_eq!(info.creator, Some(CreatorState::Dead), "{name}");
            assert_eq!(info.users, vec![survivor_pid], "{name}");
        }
        assert!(survivor.wait().success());
        let latency = all_gone(&names, Duration::from_secs(5));
        println!(
            "    all 7 kinds gone {:.1} ms after the survivor exited",
            latency.as_secs_f64() * 1e3
        );
    }

    fn sigterm_is_a_death_too() {
        let prefix = prefix("term");
        let creator = Peer::start("creator", &[&prefix, "channel", "mutex"], &tracker_env());
        assert!(creator.line().starts_with("ready"));
        creator.kill(15);
        all_gone(&[format!("{prefix}_channel"), format!("{prefix}_mutex")], Duration::from_secs(5));
    }

    fn persistent_and_foreign_segments_stay() {
        let prefix = prefix("keep");
        // A segment another program made: no record.
        let foreign = format!("{prefix}_foreign");
        std::fs::write(format!("/dev/shm/{}", foreign.trim_start_matches('/')), [0u8; 64]).unwrap();
        let creator =
            Peer::start("creator", &[&prefix, "persistent", "process", "raw"], &tracker_env());
        assert!(creator.line().starts_with("ready"));
        creator.kill(9);
        // The tracker removes what is reclaimable...
        all_gone(&[format!("{prefix}_process"), format!("{prefix}_raw")], Duration::from_secs(5));
        // ...and nothing else, as gc confirms.
        let persistent = format!("{prefix}_persistent");
        assert!(exists(&persistent) && exists(&foreign));
        let report = shmbridge::reclaim::gc(false).unwrap();
        assert!(
            report.removed.iter().all(|r| !r.name.starts_with(&prefix)),
            "{:?}",
            report.removed
        );
        let kept = report.kept.iter().find(|k| k.name == persistent).expect("listed as kept");
        assert_eq!(kept.reason, shmbridge::reclaim::KeptReason::Persistent);
        assert!(exists(&persistent) && exists(&foreign));
        let out = run_cli(&["rm", &persistent, &foreign]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!exists(&persistent) && !exists(&foreign));
    }

    fn unclaimed_channel_of_a_dead_creator_ends_recv() {
        // The creator is this process: a producer may still come, so a wait times out.
        let name = prefix("chan_alive");
        let channel = Channel::create(&name, 4096).unwrap();
        let rx = channel.receiver().unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_millis(300)).err(), Some(ChannelError::Timeout));
        drop(rx);
        drop(channel);

        // The creator is another process that dies before any producer claims the end.
        let name = prefix("chan_dead");
        let creator = Peer::start("channel_creator", &[&name], &tracker_env());
        assert_eq!(creator.line(), "ready");
        let creator_pid = creator.child.id();
        let rx = Arc::new(Channel::open(&name).unwrap().receiver().unwrap());
        creator.kill(9);
        // recv() with no timeout: it must end by itself (a thread keeps the test's own
        // deadline).
        let (tx, done) = mpsc::channel();
        let waiting = Arc::clone(&rx);
        std::thread::spawn(move || {
            let _ = tx.send(waiting.recv().map(|m| m.to_vec()).err());
        });
        let got = done.recv_timeout(DEADLINE).expect("recv() without timeout never returned");
        assert_eq!(got, Some(ChannelError::PeerDied { pid: creator_pid }));
    }

    fn records_follow_persist() {
        let name = prefix("persist");
        let mut shm = SharedMemory::create(&name, 64).unwrap();
        assert!(!shm.record().unwrap().is_persistent());
        shm.persist();
        assert!(shm.record().unwrap().is_persistent());
        let seen = inspect::segment(&name).unwrap();
        assert!(seen.record.unwrap().is_persistent(), "the file's record says persistent too");
        assert_eq!(seen.record_error, None);
        drop(shm);
        assert!(exists(&name));
        shmbridge::unlink(&name).unwrap();
        // Kinds as recorded by each layer.
        let array = SharedArray::<u8>::create(&prefix("kind_array"), &[3]).unwrap();
        let info = inspect::segment(array.name()).unwrap();
        assert_eq!(info.kind(), Some(SegmentKind::Array));
    }

    fn reclaim_off_starts_no_tracker() {
        let on = Peer::start("connected", &[], &tracker_env());
        assert_eq!(on.line(), "true", "a creating process joins (or starts) the tracker");
        on.wait();
        let off = Peer::start("connected", &[], &[tracker_env()[0], ("SHMBRIDGE_RECLAIM", "off")]);
        assert_eq!(off.line(), "false", "SHMBRIDGE_RECLAIM=off: no tracker");
        off.wait();
    }
}
