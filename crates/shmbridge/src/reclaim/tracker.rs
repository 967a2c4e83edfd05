//! The tracker: one small process per user that reclaims the segments of dead
//! creators as soon as their last user lets go.
//!
//! It listens on an abstract socket (which also makes it the only one), keeps a
//! table of this user's reclaimable segments (from a first listing of
//! `/dev/shm`, then from inotify events on it), watches each live creator through
//! a pidfd, and sleeps in one `poll` on all of them. When a creator exits, its
//! segments become candidates; a candidate is reclaimed when a look at every
//! process shows nobody uses it, checked again whenever some process lets go of
//! the file (an inotify close event, which the kernel sends when the last mapping
//! or descriptor of an open goes), and every few seconds in case an event was
//! missed. It exits once no creating process is connected and no candidate is
//! left, for a moment.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{TrackerExit, TrackerOptions, reclaim_batch, recorded_of};
use crate::error::{Error, Result};
use crate::record::{CreatorState, OwnershipRecord};
use crate::sys::ProcessWatch;
use crate::sys::accounting::{self, ShmEvent, ShmWatch};

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
    let Some(listener) = accounting::listen(&super::client::socket_name()).map_err(os("listen"))?
    else {
        if options.announce {
            accounting::announce("running").map_err(os("announce"))?;
        }
        return Ok(TrackerExit::AlreadyRunning);
    };
    // The watch comes before the first listing, so nothing created in between is
    // missed.
    let watch = ShmWatch::new().map_err(os("inotify"))?;
    let mut tracker = Tracker::new(options.clone(), watch);
    tracker.list_all().map_err(os("list"))?;
    if options.announce {
        accounting::announce("ready").map_err(os("announce"))?;
    }
    tracker.run(&listener)
}

/// A creator that still runs, and its segments.
struct Creator {
    watch: ProcessWatch,
    names: HashSet<String>,
}

struct Tracker {
    options: TrackerOptions,
    uid: u32,
    watch: ShmWatch,
    clients: Vec<OwnedFd>,
    /// Live creators, by pid and start time.
    creators: HashMap<(u32, u64), Creator>,
    /// Each tracked segment of a live creator, with its record.
    tracked: HashMap<String, OwnershipRecord>,
    /// Segments whose creator is dead, waiting for their last user to leave.
    candidates: HashMap<String, OwnershipRecord>,
    /// A candidate may have lost its last user: look now.
    dirty: bool,
    last_check: Option<Instant>,
    next_rescan: Option<Instant>,
    idle_since: Option<Instant>,
    reclaimed: u64,
    scans: u64,
}

impl Tracker {
    fn new(options: TrackerOptions, watch: ShmWatch) -> Self {
        Self {
            options,
            uid: accounting::effective_uid(),
            watch,
            clients: Vec::new(),
            creators: HashMap::new(),
            tracked: HashMap::new(),
            candidates: HashMap::new(),
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
        loop {
            let now = Instant::now();
            let spaced = self.last_check.is_none_or(|at| now - at >= MIN_SPACING);
            let rescan_due = self.next_rescan.is_some_and(|at| now >= at);
            if (self.dirty && spaced) || rescan_due {
                self.check_candidates();
            }
            self.poll_creators_without_pidfd();
            if self.clients.is_empty() && self.candidates.is_empty() {
                let since = *self.idle_since.get_or_insert(now);
                if now - since >= self.options.idle_exit {
                    return Ok(TrackerExit::Idle { reclaimed: self.reclaimed, scans: self.scans });
                }
            } else {
                self.idle_since = None;
            }
            let timeout = self.timeout(Instant::now());

            let creators: Vec<(u32, u64)> = self.creators.keys().copied().collect();
            let mut fds: Vec<BorrowedFd<'_>> = vec![listener.as_fd(), self.watch.as_fd()];
            fds.extend(self.clients.iter().map(AsFd::as_fd));
            let pidfds: Vec<(u32, u64)> = creators
                .iter()
                .filter(|key| self.creators[key].watch.as_fd().is_some())
                .copied()
                .collect();
            fds.extend(pidfds.iter().filter_map(|key| self.creators[key].watch.as_fd()));
            let ready = accounting::wait_readable_any(&fds, timeout)
                .map_err(|e| Error::from_os("(tracker)", "poll", e))?;
            let clients_ready: Vec<bool> = ready[2..2 + self.clients.len()].to_vec();
            let creators_ready: Vec<(u32, u64)> = pidfds
                .iter()
                .zip(&ready[2 + self.clients.len()..])
                .filter(|(_, r)| **r)
                .map(|(key, _)| *key)
                .collect();
            drop(fds);

            if ready[0] {
                while let Some(client) = accounting::accept(listener) {
                    self.clients.push(client);
                }
            }
            if clients_ready.iter().any(|r| *r) {
                let mut index = 0;
                self.clients.retain(|client| {
                    let keep = !clients_ready.get(index).copied().unwrap_or(false)
                        || !accounting::hung_up(client);
                    index += 1;
                    keep
                });
            }
            for key in creators_ready {
                self.creator_died(key);
            }
            if ready[1] {
                events.clear();
                self.watch
                    .read(&mut events)
                    .map_err(|e| Error::from_os("/dev/shm", "inotify", e))?;
                for event in events.drain(..) {
                    self.on_event(event)?;
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
        if self.creators.values().any(|c| c.watch.as_fd().is_none()) {
            at(now + POLL_WITHOUT_PIDFD);
        }
        until.map(|u| u.saturating_duration_since(now))
    }

    /// Takes in every segment of this user that `/dev/shm` holds now.
    fn list_all(&mut self) -> std::io::Result<()> {
        for file in accounting::list(true)? {
            if let Some(record) = recorded_of(self.uid, &file) {
                self.track(file.name, record);
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: ShmEvent) -> Result<()> {
        match event {
            ShmEvent::Appeared(name) | ShmEvent::Changed(name) => {
                self.forget(&name);
                let file = accounting::stat_name(&name);
                if let Some(record) = file.ok().and_then(|f| recorded_of(self.uid, &f)) {
                    self.track(name, record);
                }
            }
            ShmEvent::Gone(name) => self.forget(&name),
            ShmEvent::Released(name) => {
                if self.candidates.contains_key(&name) {
                    self.dirty = true;
                }
            }
            ShmEvent::Overflow => {
                self.creators.clear();
                self.tracked.clear();
                self.candidates.clear();
                self.list_all().map_err(|e| Error::from_os("/dev/shm", "list", e))?;
                self.dirty = true;
            }
        }
        Ok(())
    }

    /// Starts following a segment with a reclaimable record.
    fn track(&mut self, name: String, record: OwnershipRecord) {
        match record.creator_state() {
            CreatorState::Dead => {
                self.candidates.insert(name, record);
                self.dirty = true;
            }
            // A creator that cannot be judged (another pid namespace) is left alone.
            CreatorState::Unknown => {}
            CreatorState::Alive => {
                let key = (record.creator_pid(), record.creator_start());
                if !self.creators.contains_key(&key) {
                    let watch = ProcessWatch::new(record.creator_pid());
                    // The pidfd names whatever process had the pid when it was
                    // opened: check that it is still the creator.
                    if record.creator_state() != CreatorState::Alive || !watch.is_alive() {
                        self.candidates.insert(name, record);
                        self.dirty = true;
                        return;
                    }
                    self.creators.insert(key, Creator { watch, names: HashSet::new() });
                }
                if let Some(creator) = self.creators.get_mut(&key) {
                    creator.names.insert(name.clone());
                }
                self.tracked.insert(name, record);
            }
        }
    }

    /// Stops following a name (gone, or about to be looked at again).
    fn forget(&mut self, name: &str) {
        self.candidates.remove(name);
        if let Some(record) = self.tracked.remove(name) {
            let key = (record.creator_pid(), record.creator_start());
            if let Some(creator) = self.creators.get_mut(&key) {
                creator.names.remove(name);
                if creator.names.is_empty() {
                    self.creators.remove(&key);
                }
            }
        }
    }

    fn creator_died(&mut self, key: (u32, u64)) {
        let Some(creator) = self.creators.remove(&key) else { return };
        for name in creator.names {
            if let Some(record) = self.tracked.remove(&name) {
                self.candidates.insert(name, record);
            }
        }
        self.dirty = true;
    }

    fn poll_creators_without_pidfd(&mut self) {
        let dead: Vec<(u32, u64)> = self
            .creators
            .iter()
            .filter(|(_, c)| c.watch.as_fd().is_none() && !c.watch.is_alive())
            .map(|(key, _)| *key)
            .collect();
        for key in dead {
            self.creator_died(key);
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
                Ok(file)
                    if file.regular && file.record.as_deref() == Some(&record.encode()[..]) =>
                {
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
            Ok((removed, kept)) => {
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
