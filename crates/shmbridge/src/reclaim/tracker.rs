//! The tracker: one small process per user that reclaims the segments of dead
//! creators as soon as their last user lets go.
//!
//! It listens on an abstract socket (which also makes it the only one), or, when
//! a stranger holds that name, on a socket file in a directory private to the
//! user (see `listen` and `sys::tracker_socket`). Every
//! process that creates a reclaimable segment connects first, and stays
//! connected; the tracker watches each such creator through a pidfd, and at
//! startup adopts the live creators of the segments `/dev/shm` already holds.
//! While they run it does nothing at all: it sleeps in one `poll`, and creating a
//! segment costs it no work (it never looks at `/dev/shm` then). When a creator
//! exits, the tracker lists `/dev/shm` once for that creator's reclaimable
//! segments; those become candidates, reclaimed when a look at every process shows
//! nobody uses them. While candidates wait, it watches `/dev/shm` (inotify) for a
//! file being let go of (the kernel says so when the last mapping or descriptor of
//! an open goes) and looks again then, and every few seconds in case an event was
//! missed. It exits once no creator is watched and no candidate is left, for a
//! moment.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{TrackerExit, TrackerOptions, reclaim_batch, recorded_of};
use crate::error::{Error, Result};
use crate::record::{CreatorState, OwnershipRecord};
use crate::sys::ProcessWatch;
use crate::sys::accounting::{self, ShmEvent, ShmWatch};
use crate::sys::tracker_socket::{self, Listened, TrackerAddress};

/// The shortest time between two looks at every process (a look costs a few
/// milliseconds of CPU with a hundred processes), however many events arrive.
const MIN_SPACING: Duration = Duration::from_millis(20);
/// How often creators without a pidfd (kernels before 5.3) are polled.
const POLL_WITHOUT_PIDFD: Duration = Duration::from_millis(500);

/// Runs the tracker of this user until it is idle (see the [module docs](super)).
///
/// # Errors
///
/// [`Error::Os`] if the socket, `/dev/shm` or `/proc` cannot be used.
pub fn run_tracker(options: &TrackerOptions) -> Result<TrackerExit> {
    let os = |op: &'static str| move |e: std::io::Error| Error::from_os("(tracker)", op, e);
    if options.detach {
        accounting::detach();
    }
    let Some(listener) = listen().map_err(os("listen"))? else {
        if options.announce {
            accounting::announce("running").map_err(os("announce"))?;
        }
        return Ok(TrackerExit::AlreadyRunning);
    };
    // Ready as soon as it listens: the process that started it connects (its
    // connection waits in the backlog) and goes on creating meanwhile, while the
    // first look at /dev/shm, which takes a while when it holds thousands of files,
    // happens here.
    if options.announce {
        accounting::announce("ready").map_err(os("announce"))?;
    }
    let mut tracker = Tracker::new(options.clone());
    tracker.adopt_all().map_err(os("list"))?;
    tracker.run(&listener)
}

/// Listens where this user's tracker is looked for (see `sys::tracker_socket`):
/// `None` if a tracker of this user already listens there.
///
/// The abstract name first. If a process of another user holds it (any local
/// user may bind any abstract name, to keep this user's segments from being
/// reclaimed), the socket file in this user's private directory, which no
/// stranger can take: creating processes look there too.
fn listen() -> std::io::Result<Option<OwnedFd>> {
    let squatter =
        match tracker_socket::listen_on(&TrackerAddress::Abstract(super::client::socket_name()))? {
            Listened::Listening(listener) => return Ok(Some(listener)),
            Listened::Ours => return Ok(None),
            Listened::Stranger { pid, uid } => (pid, uid),
        };
    let (pid, uid) = squatter;
    let refused = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} holds the tracker's abstract socket, and {what}",
                tracker_socket::holder(pid, uid)
            ),
        )
    };
    let dir = tracker_socket::private_dir(true)?
        .ok_or_else(|| refused("every name for a private directory in /dev/shm is taken"))?;
    match tracker_socket::listen_on(&TrackerAddress::in_dir(&dir))? {
        Listened::Listening(listener) => Ok(Some(listener)),
        Listened::Ours => Ok(None),
        Listened::Stranger { .. } => Err(refused("another user listens in its private directory")),
    }
}

/// A creator, watched until it exits: `(pid, start time)`.
type CreatorKey = (u32, u64);

struct Tracker {
    options: TrackerOptions,
    uid: u32,
    /// Connected creating processes, by connection.
    clients: Vec<OwnedFd>,
    /// Live creators (connected, or adopted from `/dev/shm`).
    creators: HashMap<CreatorKey, ProcessWatch>,
    /// Segments whose creator is dead, waiting for their last user to leave.
    candidates: HashMap<String, OwnershipRecord>,
    /// Present while there are candidates.
    watch: Option<ShmWatch>,
    /// A candidate may have lost its last user: look now.
    dirty: bool,
    last_check: Option<Instant>,
    next_rescan: Option<Instant>,
    idle_since: Option<Instant>,
    reclaimed: u64,
    scans: u64,
}

impl Tracker {
    fn new(options: TrackerOptions) -> Self {
        Self {
            options,
            uid: accounting::effective_uid(),
            clients: Vec::new(),
            creators: HashMap::new(),
            candidates: HashMap::new(),
            watch: None,
            dirty: false,
            last_check: None,
            next_rescan: None,
            idle_since: None,
            reclaimed: 0,
            scans: 0,
        }
    }

    fn run(&mut self, listener: &OwnedFd) -> Result<TrackerExit> {
        let mut events = Vec::new();
        accounting::raise_descriptor_limit();
        let mut spare = accounting::spare_descriptor();
        loop {
            let now = Instant::now();
            let spaced = self.last_check.is_none_or(|at| now - at >= MIN_SPACING);
            let rescan_due = self.next_rescan.is_some_and(|at| now >= at);
            if (self.dirty && spaced) || rescan_due {
                self.check_candidates();
            }
            self.poll_creators_without_pidfd();
            self.update_watch();
            if self.creators.is_empty() && self.candidates.is_empty() && self.clients.is_empty() {
                let since = *self.idle_since.get_or_insert(now);
                if now - since >= self.options.idle_exit {
                    return Ok(TrackerExit::Idle { reclaimed: self.reclaimed, scans: self.scans });
                }
            } else {
                self.idle_since = None;
            }
            let timeout = self.timeout(Instant::now());

            let keys: Vec<CreatorKey> = self
                .creators
                .iter()
                .filter(|(_, w)| w.as_fd().is_some())
                .map(|(k, _)| *k)
                .collect();
            let mut fds: Vec<BorrowedFd<'_>> = vec![listener.as_fd()];
            if let Some(watch) = &self.watch {
                fds.push(watch.as_fd());
            }
            let first_client = fds.len();
            fds.extend(self.clients.iter().map(AsFd::as_fd));
            let first_creator = fds.len();
            fds.extend(keys.iter().filter_map(|key| self.creators[key].as_fd()));
            let ready = accounting::wait_readable_any(&fds, timeout)
                .map_err(|e| Error::from_os("(tracker)", "poll", e))?;
            drop(fds);
            let watch_ready = self.watch.is_some() && ready[1];
            let clients_ready: Vec<bool> = ready[first_client..first_creator].to_vec();
            let dead: Vec<CreatorKey> = keys
                .iter()
                .zip(&ready[first_creator..])
                .filter(|(_, r)| **r)
                .map(|(k, _)| *k)
                .collect();

            if ready[0] {
                while let Some((client, pid)) = accounting::accept(listener, &mut spare) {
                    self.clients.push(client);
                    self.adopt(pid, None);
                }
            }
            if clients_ready.iter().any(|r| *r) {
                let mut ready = clients_ready.into_iter();
                self.clients.retain(|c| !(ready.next().unwrap_or(false) && accounting::hung_up(c)));
            }
            if !dead.is_empty() {
                self.creators_exited(&dead).map_err(|e| Error::from_os("/dev/shm", "list", e))?;
            }
            if watch_ready {
                events.clear();
                if let Some(watch) = &mut self.watch {
                    watch
                        .read(&mut events)
                        .map_err(|e| Error::from_os("/dev/shm", "inotify", e))?;
                }
                for event in events.drain(..) {
                    match event {
                        ShmEvent::Released(name) if self.candidates.contains_key(&name) => {
                            self.dirty = true;
                        }
                        ShmEvent::Gone(name) => {
                            self.candidates.remove(&name);
                        }
                        ShmEvent::Overflow => self.dirty = true,
                        ShmEvent::Released(_) => {}
                    }
                }
            }
        }
    }

    /// How long the next wait may last.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        let mut until: Option<Instant> = None;
        let mut at = |t: Instant| until = Some(until.map_or(t, |u| u.min(t)));
        if self.dirty {
            at(self.last_check.map_or(now, |l| l + MIN_SPACING));
        }
        if let Some(rescan) = self.next_rescan {
            at(rescan);
        }
        if let Some(since) = self.idle_since {
            at(since + self.options.idle_exit);
        }
        if self.creators.values().any(|w| w.as_fd().is_none()) {
            at(now + POLL_WITHOUT_PIDFD);
        }
        until.map(|u| u.saturating_duration_since(now))
    }

    /// Watches `/dev/shm` while candidates wait, and only then: creating and
    /// closing segments costs the tracker nothing the rest of the time.
    fn update_watch(&mut self) {
        if self.candidates.is_empty() {
            self.watch = None;
        } else if self.watch.is_none() {
            // Without the watch, the periodic look still comes.
            self.watch = ShmWatch::new().ok();
            self.dirty = true; // a user may have left before the watch was in place
        }
    }

    /// Starts watching the creator `pid` (whose start time is `start`, if known),
    /// unless it is already watched. A creator already gone (it connected, then
    /// died before this tracker took the connection) has its segments taken at
    /// once.
    fn adopt(&mut self, pid: u32, start: Option<u64>) {
        let running = match accounting::process_stat(pid) {
            Ok(Some(stat)) if !stat.exited => Some(stat.start),
            _ => None,
        };
        let Some(now_start) = running.filter(|s| start.is_none_or(|want| want == *s)) else {
            let _ = self.take_segments(None, |r| {
                r.creator_pid() == pid && r.creator_state() == CreatorState::Dead
            });
            return;
        };
        let key = (pid, now_start);
        if self.creators.contains_key(&key) {
            return;
        }
        let watch = ProcessWatch::new(pid);
        // The pidfd names whatever process had the pid when it was opened: check
        // that it is still the same one.
        let same =
            matches!(accounting::process_stat(pid), Ok(Some(stat)) if stat.start == now_start);
        if same && watch.is_alive() {
            self.creators.insert(key, watch);
        } else {
            let _ = self.take_segments(None, |r| {
                r.creator_pid() == pid && r.creator_state() == CreatorState::Dead
            });
        }
    }

    /// At startup: every reclaimable segment of this user in `/dev/shm` is a
    /// candidate if its creator is dead, else its creator is watched.
    fn adopt_all(&mut self) -> std::io::Result<()> {
        for file in accounting::list(true, None)? {
            let Some(record) = recorded_of(self.uid, &file) else { continue };
            match record.creator_state() {
                CreatorState::Dead => {
                    self.candidates.insert(file.name, record);
                    self.dirty = true;
                }
                CreatorState::Alive => {
                    self.adopt(record.creator_pid(), Some(record.creator_start()))
                }
                // Another pid namespace: left alone.
                CreatorState::Unknown => {}
            }
        }
        Ok(())
    }

    /// The reclaimable segments of this user whose record passes `chosen` become
    /// candidates (those of creators that just exited).
    fn take_segments(
        &mut self,
        since: Option<i64>,
        chosen: impl Fn(&OwnershipRecord) -> bool,
    ) -> std::io::Result<()> {
        // Files older than the oldest creator cannot be its: their records are not
        // read (a /dev/shm crowded with other programs' files costs a stat each).
        for file in accounting::list(true, since)? {
            let Some(record) = recorded_of(self.uid, &file) else { continue };
            if chosen(&record) {
                self.candidates.insert(file.name, record);
                self.dirty = true;
            }
        }
        Ok(())
    }

    /// Creators that exited: their segments become candidates.
    fn creators_exited(&mut self, dead: &[CreatorKey]) -> std::io::Result<()> {
        for key in dead {
            self.creators.remove(key);
        }
        let since = dead.iter().filter_map(|(_, start)| accounting::started_at(*start)).min();
        // A second of slack for the rounding of start times to ticks and seconds.
        self.take_segments(since.map(|s| s - 1), |r| {
            dead.contains(&(r.creator_pid(), r.creator_start()))
        })
    }

    fn poll_creators_without_pidfd(&mut self) {
        let dead: Vec<CreatorKey> = self
            .creators
            .iter()
            .filter(|(_, w)| w.as_fd().is_none() && !w.is_alive())
            .map(|(key, _)| *key)
            .collect();
        if !dead.is_empty() {
            let _ = self.creators_exited(&dead);
        }
    }

    /// Looks at every candidate once: reclaims those nobody uses.
    fn check_candidates(&mut self) {
        self.dirty = false;
        self.last_check = Some(Instant::now());
        self.next_rescan = None;
        let mut batch = Vec::new();
        let names: Vec<String> = self.candidates.keys().cloned().collect();
        for name in names {
            let record = &self.candidates[&name];
            match accounting::stat_name(&name) {
                Ok(file) if file.regular && record.is_stored_in(file.record.as_deref()) => {
                    batch.push((file, record.clone()));
                }
                _ => {
                    self.candidates.remove(&name); // gone, or another segment now
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        self.scans += 1;
        match reclaim_batch(batch, false) {
            Ok(super::Batch { removed, kept, .. }) => {
                for gone in removed {
                    self.candidates.remove(&gone.name);
                    self.reclaimed += 1;
                    if self.options.log {
                        eprintln!(
                            "shmbridge track: reclaimed {} ({} bytes, {} of process {}, which died)",
                            gone.name,
                            gone.size,
                            gone.record.kind(),
                            gone.record.creator_pid()
                        );
                    }
                }
                if self.options.log {
                    for k in &kept {
                        eprintln!("shmbridge track: keeping {} for now: {}", k.name, k.reason);
                    }
                }
            }
            Err(e) => {
                if self.options.log {
                    eprintln!("shmbridge track: {e}");
                }
            }
        }
        if !self.candidates.is_empty() {
            self.next_rescan = Some(Instant::now() + self.options.rescan);
        }
    }
}
