//! Ownership records: what every segment shmbridge creates says about itself to
//! any other process, without a byte of its own inside the segment.
//!
//! A record names the creating process (its pid, and its start time and pid
//! namespace, which tell that pid apart from a later process given the same
//! number), what the segment holds, when it was made, and whether its creator
//! wants it kept after it dies. On Linux it is the extended attribute
//! `user.shmbridge` of the segment's file in `/dev/shm`, written before the name
//! appears and gone with the file; elsewhere there is no record. The bytes are
//! specified in `docs/FORMAT.md` ("Ownership records").
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! use shmbridge::record::{CreatorState, SegmentKind};
//!
//! let shm = shmbridge::SharedMemory::create_unique("doc_record", 64)?;
//! let record = shm.record().expect("Linux 6.6 or later keeps records on tmpfs");
//! assert_eq!(record.kind(), SegmentKind::Raw);
//! assert_eq!(record.creator_pid(), std::process::id());
//! assert!(!record.is_persistent());
//! assert_eq!(record.creator_state(), CreatorState::Alive);
//! # }
//! # Ok::<(), shmbridge::Error>(())
//! ```

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sys;

/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"SHBR";
/// The record version this build writes (and the only one it interprets).
pub const VERSION: u16 = 1;
/// Bytes of a version-1 record (a longer one is read for its first 40 bytes).
pub const LEN: usize = 40;
/// The extended attribute that holds the record (Linux).
pub const ATTRIBUTE: &str = "user.shmbridge";

/// Flag bit 0: the creator asked for the segment to be kept (never reclaimed).
const PERSISTENT: u8 = 1;

/// What a segment holds, as its creator recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentKind {
    /// Bytes only ([`SharedMemory`](crate::SharedMemory)).
    Raw,
    /// A self-describing array ([`array`](mod@crate::array)).
    Array,
    /// A [`Channel`](crate::channel::Channel).
    Channel,
    /// An [`Event`](crate::sync::Event) in a segment of its own.
    Event,
    /// A [`Semaphore`](crate::sync::Semaphore) in a segment of its own.
    Semaphore,
    /// A [`Mutex`](crate::sync::Mutex) in a segment of its own.
    Mutex,
    /// A [`SeqLock`](crate::sync::SeqLock) in a segment of its own.
    SeqLock,
    /// A kind code this build does not know (from a newer shmbridge).
    Unknown(u8),
}

impl SegmentKind {
    /// The kind's code in a record.
    pub fn code(self) -> u8 {
        match self {
            SegmentKind::Raw => 0,
            SegmentKind::Array => 1,
            SegmentKind::Channel => 2,
            SegmentKind::Event => 3,
            SegmentKind::Semaphore => 4,
            SegmentKind::Mutex => 5,
            SegmentKind::SeqLock => 6,
            SegmentKind::Unknown(code) => code,
        }
    }

    /// The kind of a code in a record.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => SegmentKind::Raw,
            1 => SegmentKind::Array,
            2 => SegmentKind::Channel,
            3 => SegmentKind::Event,
            4 => SegmentKind::Semaphore,
            5 => SegmentKind::Mutex,
            6 => SegmentKind::SeqLock,
            other => SegmentKind::Unknown(other),
        }
    }

    /// The kind's name, as the CLI prints it: `raw`, `array`, `channel`, `event`,
    /// `semaphore`, `mutex`, `seqlock` (`kind-N` for an unknown code).
    pub fn name(self) -> String {
        match self {
            SegmentKind::Raw => "raw".into(),
            SegmentKind::Array => "array".into(),
            SegmentKind::Channel => "channel".into(),
            SegmentKind::Event => "event".into(),
            SegmentKind::Semaphore => "semaphore".into(),
            SegmentKind::Mutex => "mutex".into(),
            SegmentKind::SeqLock => "seqlock".into(),
            SegmentKind::Unknown(code) => format!("kind-{code}"),
        }
    }
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Whether a segment's creator still runs, as far as this process can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatorState {
    /// The process that created the segment runs (a process with its pid, started
    /// at its recorded start time, that is not a zombie).
    Alive,
    /// Provably dead: no process has its pid, or the one that has it started at
    /// another time (the pid was reused), or it is a zombie.
    Dead,
    /// Cannot be told here: the creator ran in another pid namespace (another
    /// container), or `/proc` cannot be read. Treated as alive by every reclaim.
    Unknown,
}

/// A segment's ownership record (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnershipRecord {
    kind: SegmentKind,
    flags: u8,
    creator_pid: u32,
    serial: u32,
    creator_start: u64,
    pid_namespace: u64,
    created_ns: u64,
}

impl OwnershipRecord {
    /// A record for a segment this process creates now.
    pub(crate) fn for_this_process(kind: SegmentKind, persistent: bool) -> Self {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let me = this_process();
        let created_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self {
            kind,
            flags: if persistent { PERSISTENT } else { 0 },
            creator_pid: me.pid,
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            creator_start: me.start,
            pid_namespace: me.namespace,
            created_ns,
        }
    }

    /// Parses a record's bytes.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: too short, another magic value, another
    /// version. A record this build cannot interpret is never acted on.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < LEN {
            return Err(format!("{} bytes, fewer than a record's {LEN}", bytes.len()));
        }
        if bytes[..4] != MAGIC {
            return Err(format!("magic {:02x?} is not a shmbridge record's", &bytes[..4]));
        }
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let version = u16_at(4);
        if version != VERSION {
            return Err(format!("record version {version}; this build reads {VERSION}"));
        }
        Ok(Self {
            kind: SegmentKind::from_code(bytes[6]),
            flags: bytes[7],
            creator_pid: u32_at(8),
            serial: u32_at(12),
            creator_start: u64_at(16),
            pid_namespace: u64_at(24),
            created_ns: u64_at(32),
        })
    }

    /// The record's bytes (version 1, little-endian; `docs/FORMAT.md`).
    pub fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6] = self.kind.code();
        out[7] = self.flags;
        out[8..12].copy_from_slice(&self.creator_pid.to_le_bytes());
        out[12..16].copy_from_slice(&self.serial.to_le_bytes());
        out[16..24].copy_from_slice(&self.creator_start.to_le_bytes());
        out[24..32].copy_from_slice(&self.pid_namespace.to_le_bytes());
        out[32..40].copy_from_slice(&self.created_ns.to_le_bytes());
        out
    }

    /// The same record with the persistence wish changed.
    pub(crate) fn with_persistent(&self, persistent: bool) -> Self {
        let flags = if persistent { self.flags | PERSISTENT } else { self.flags & !PERSISTENT };
        Self { flags, ..self.clone() }
    }

    /// What the segment holds.
    pub fn kind(&self) -> SegmentKind {
        self.kind
    }

    /// Whether the creator asked for the segment to be kept after it dies:
    /// nothing reclaims it, only an explicit unlink removes it.
    pub fn is_persistent(&self) -> bool {
        self.flags & PERSISTENT != 0
    }

    /// Whether automatic reclaim and `shmbridge gc` may ever remove the segment:
    /// not persistent, and no flag this build does not know (a newer writer's
    /// wish is respected by never acting on it).
    pub fn is_reclaimable(&self) -> bool {
        self.flags == 0
    }

    /// The raw flag bits (bit 0: persistent; others reserved, 0).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The creator's process id, in its own pid namespace.
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid
    }

    /// The creator's start time, in clock ticks after boot (`/proc/<pid>/stat`
    /// field 22); 0 if it could not be read.
    pub fn creator_start(&self) -> u64 {
        self.creator_start
    }

    /// The inode of the creator's pid namespace (`/proc/<pid>/ns/pid`); 0 if
    /// unknown.
    pub fn pid_namespace(&self) -> u64 {
        self.pid_namespace
    }

    /// A number that tells apart the segments one process created (a counter).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// When the segment was created.
    pub fn created(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.created_ns)
    }

    /// Whether `stored` (a file's record attribute) is this record: its first
    /// [`LEN`] bytes, which are all that a version-1 reader parses (a longer record
    /// from a later minor version is the same record).
    pub(crate) fn is_stored_in(&self, stored: Option<&[u8]>) -> bool {
        stored.is_some_and(|stored| stored.starts_with(&self.encode()))
    }

    /// Whether the creator still runs, as far as this process can tell (reads
    /// `/proc/<pid>/stat`: a few system calls).
    pub fn creator_state(&self) -> CreatorState {
        let here = this_process();
        if self.pid_namespace == 0 || here.namespace == 0 || self.pid_namespace != here.namespace {
            return CreatorState::Unknown;
        }
        match sys::accounting::process_stat(self.creator_pid) {
            Ok(None) => CreatorState::Dead,
            Ok(Some(stat)) if stat.exited => CreatorState::Dead,
            Ok(Some(stat)) if self.creator_start != 0 && stat.start != self.creator_start => {
                CreatorState::Dead
            }
            Ok(Some(_)) => CreatorState::Alive,
            Err(_) => CreatorState::Unknown,
        }
    }

    /// A cheap first look for callers on common paths (a segment dropped by a
    /// process that opened it): `true` if no process has the creator's pid any
    /// more. `false` says nothing (the creator may run, or a zombie or a new
    /// process may hold the pid): [`creator_state`](Self::creator_state) tells.
    ///
    /// One `kill(pid, 0)`, and none at all for a creator found running less than
    /// [`SEEN_ALIVE_FOR`] ago (a process that opens and closes segments of one
    /// creator again and again asks once).
    pub(crate) fn creator_surely_gone(&self) -> bool {
        static SEEN_ALIVE: Mutex<Option<(u32, std::time::Instant)>> = Mutex::new(None);
        if self.pid_namespace == 0 || self.pid_namespace != this_process().namespace {
            return false;
        }
        let now = std::time::Instant::now();
        let mut seen = SEEN_ALIVE.try_lock().ok();
        let last = seen.as_deref().copied().flatten();
        if last.is_some_and(|(pid, at)| pid == self.creator_pid && now - at < SEEN_ALIVE_FOR) {
            return false;
        }
        let gone = !sys::process_exists(self.creator_pid);
        if let (Some(seen), false) = (seen.as_mut(), gone) {
            **seen = Some((self.creator_pid, now));
        }
        gone
    }
}

/// How long a creator found running by [`OwnershipRecord::creator_surely_gone`] is
/// taken to still run without asking again: reclaim at drop is a fallback (the
/// tracker acts within milliseconds), so a tenth of a second of delay is harmless.
const SEEN_ALIVE_FOR: std::time::Duration = std::time::Duration::from_millis(100);

/// This process as records name it.
#[derive(Debug, Clone, Copy)]
struct ThisProcess {
    pid: u32,
    start: u64,
    namespace: u64,
}

/// This process's identity, read from `/proc` once per process (a child made by
/// `fork` reads its own: it has another pid).
fn this_process() -> ThisProcess {
    static CACHE: Mutex<Option<ThisProcess>> = Mutex::new(None);
    let pid = crate::owner::current_pid();
    // try_lock: in a child made by fork, a parent's thread may have held the lock at
    // the fork; the identity is then read again instead of cached.
    let mut cache = match CACHE.try_lock() {
        Ok(cache) => Some(cache),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    if let Some(me) = cache.as_ref().and_then(|c| c.filter(|me| me.pid == pid)) {
        return me;
    }
    let start = match sys::accounting::process_stat(pid) {
        Ok(Some(stat)) => stat.start,
        _ => 0,
    };
    let me = ThisProcess { pid, start, namespace: sys::accounting::pid_namespace().unwrap_or(0) };
    if let Some(cache) = cache.as_mut() {
        **cache = Some(me);
    }
    me
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OwnershipRecord {
        OwnershipRecord {
            kind: SegmentKind::Channel,
            flags: 0,
            creator_pid: 4321,
            serial: 7,
            creator_start: 123_456,
            pid_namespace: 4_026_531_836,
            created_ns: 1_700_000_000_123_456_789,
        }
    }

    #[test]
    fn encodes_as_specified() {
        let bytes = sample().encode();
        // The example of docs/FORMAT.md, byte for byte.
        let expected: [u8; LEN] = [
            b'S', b'H', b'B', b'R', 1, 0, 2, 0, //
            0xe1, 0x10, 0, 0, 7, 0, 0, 0, //
            0x40, 0xe2, 0x01, 0, 0, 0, 0, 0, //
            0xfc, 0xff, 0xff, 0xef, 0, 0, 0, 0, //
            0x15, 0xcd, 0x85, 0x3d, 0xfe, 0x9c, 0x97, 0x17,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(OwnershipRecord::parse(&bytes).unwrap(), sample());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let bytes = sample().encode();
        assert!(OwnershipRecord::parse(&bytes[..LEN - 1]).unwrap_err().contains("fewer"));
        let mut other = bytes;
        other[0] = b'X';
        assert!(OwnershipRecord::parse(&other).unwrap_err().contains("magic"));
        let mut newer = bytes;
        newer[4] = 2;
        assert!(OwnershipRecord::parse(&newer).unwrap_err().contains("version 2"));
        // Longer records (a later minor addition) parse for their first 40 bytes.
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(&[9; 8]);
        assert_eq!(OwnershipRecord::parse(&longer).unwrap(), sample());
    }

    #[test]
    fn flags_decide_reclaim() {
        let record = sample();
        assert!(record.is_reclaimable() && !record.is_persistent());
        let kept = record.with_persistent(true);
        assert!(kept.is_persistent() && !kept.is_reclaimable());
        assert_eq!(kept.with_persistent(false), record);
        let mut unknown = record.encode();
        unknown[7] = 0b10; // a flag from a newer writer
        let unknown = OwnershipRecord::parse(&unknown).unwrap();
        assert!(!unknown.is_persistent() && !unknown.is_reclaimable());
    }

    #[test]
    fn kinds_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(SegmentKind::from_code(code).code(), code);
        }
        assert_eq!(SegmentKind::SeqLock.name(), "seqlock");
        assert_eq!(SegmentKind::Unknown(99).name(), "kind-99");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_alive_and_a_dead_one_is_not() {
        let me = OwnershipRecord::for_this_process(SegmentKind::Raw, false);
        assert_eq!(me.creator_pid(), std::process::id());
        assert_ne!(me.creator_start(), 0);
        assert_eq!(me.creator_state(), CreatorState::Alive);
        // The same pid, started at another time: a reused pid, so the creator is dead.
        let reused = OwnershipRecord { creator_start: me.creator_start + 1, ..me.clone() };
        assert_eq!(reused.creator_state(), CreatorState::Dead);
        // Another pid namespace: cannot be told.
        let elsewhere = OwnershipRecord { pid_namespace: me.pid_namespace + 1, ..me.clone() };
        assert_eq!(elsewhere.creator_state(), CreatorState::Unknown);
    }
}
