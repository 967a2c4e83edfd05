//! The operator's view of the segments on this machine (Linux): what `/dev/shm`
//! holds, who made each segment and whether that process still runs, who maps it
//! now, and what is inside (an array's layout, a channel's fill, a primitive's
//! state). The `shmbridge` command-line tool prints this.
//!
//! Looking changes nothing: segments are opened read-only, and a look never
//! reclaims what it opens. Segments that are not shmbridge's (Python's stdlib,
//! C, anything) are listed too, as `raw` (or "not a segment" for a link, FIFO or
//! directory planted in `/dev/shm`).
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! use shmbridge::inspect;
//! use shmbridge::record::SegmentKind;
//!
//! let channel = shmbridge::channel::Channel::create(&shmbridge::unique_name("doc_ls")?, 4096)?;
//! let listing = inspect::list()?;
//! let mine = listing.segments.iter().find(|s| s.name == channel.name()).unwrap();
//! assert_eq!(mine.kind(), Some(SegmentKind::Channel));
//! assert!(mine.users.contains(&std::process::id()));
//! # }
//! # Ok::<(), shmbridge::Error>(())
//! ```

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::array::{ArrayLayout, ArraySegment};
use crate::channel::ChannelState;
use crate::error::{Error, Result};
use crate::name::canonical_name;
use crate::record::{CreatorState, OwnershipRecord, SegmentKind};
use crate::segment::SharedMemory;
use crate::sync::PrimitiveState;
use crate::sys;
use crate::sys::accounting::{ShmFile, Users};

/// One entry of `/dev/shm`.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Its name, with the leading `/`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner's user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// When its contents last changed through a write or resize (not through a
    /// mapping, which does not update it).
    pub modified: SystemTime,
    /// Whether it is a regular file; `false` for anything else planted under a
    /// name (a symbolic link, a FIFO, a directory), which is not a segment.
    pub regular: bool,
    /// Its ownership record, if it carries one that this build reads.
    pub record: Option<OwnershipRecord>,
    /// Why the record it carries could not be read, if so.
    pub record_error: Option<String>,
    /// Whether its creator runs (for a segment with a record).
    pub creator: Option<CreatorState>,
    /// The processes that map it or hold a descriptor of it now.
    pub users: Vec<u32>,
}

impl SegmentInfo {
    /// What it holds: its record's kind, [`SegmentKind::Raw`] for a segment
    /// without one, `None` for what is not a segment.
    pub fn kind(&self) -> Option<SegmentKind> {
        if !self.regular {
            return None;
        }
        Some(self.record.as_ref().map_or(SegmentKind::Raw, OwnershipRecord::kind))
    }

    /// Whether shmbridge made it (it carries a record).
    pub fn is_ours(&self) -> bool {
        self.record.is_some() || self.record_error.is_some()
    }

    fn new(file: ShmFile, users: &Users) -> Self {
        let (record, record_error) = match file.record.as_deref().map(OwnershipRecord::parse) {
            None => (None, None),
            Some(Ok(record)) => (Some(record), None),
            Some(Err(why)) => (None, Some(why)),
        };
        let modified = if file.modified >= 0 {
            UNIX_EPOCH + Duration::from_secs(file.modified as u64)
        } else {
            UNIX_EPOCH
        };
        Self {
            creator: record.as_ref().map(OwnershipRecord::creator_state),
            users: users.by_file.get(&file.id).cloned().unwrap_or_default(),
            name: file.name,
            size: file.size,
            mode: file.mode,
            uid: file.uid,
            gid: file.gid,
            modified,
            regular: file.regular,
            record,
            record_error,
        }
    }
}

/// Every entry of `/dev/shm`, and which processes could not be inspected.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// By name.
    pub segments: Vec<SegmentInfo>,
    /// Processes whose mappings could not be read (other users' processes, when
    /// not run as root): a segment may have more users than listed.
    pub uninspected: Vec<u32>,
}

fn os(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::from_os("/dev/shm", what, e)
}

/// Lists `/dev/shm` with each entry's record, creator and users (one pass over
/// every process's mappings and descriptors).
///
/// # Errors
///
/// [`Error::Os`] if `/dev/shm` or `/proc` cannot be read, and on other platforms
/// than Linux.
pub fn list() -> Result<Listing> {
    let files = sys::accounting::list(false, None).map_err(os("list"))?;
    let users = sys::accounting::scan_users().map_err(os("scan /proc"))?;
    let uninspected = users.uninspected.iter().map(|&(pid, _)| pid).collect();
    let segments = files.into_iter().map(|file| SegmentInfo::new(file, &users)).collect();
    Ok(Listing { segments, uninspected })
}

/// One segment, as [`list`] shows it.
///
/// # Errors
///
/// [`Error::InvalidName`] for a malformed name, [`Error::NotFound`] if `/dev/shm`
/// holds no such name, [`Error::Os`] if it or `/proc` cannot be read.
pub fn segment(name: &str) -> Result<SegmentInfo> {
    let name = canonical_name(name)?;
    let file = sys::accounting::stat_name(&name).map_err(|e| Error::from_os(&name, "stat", e))?;
    let users = sys::accounting::scan_users().map_err(os("scan /proc"))?;
    Ok(SegmentInfo::new(file, &users))
}

/// An array's header, as [`info`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayState {
    /// dtype, shape, strides, order, data offset and size.
    pub layout: ArrayLayout,
    /// The generation counter now.
    pub generation: u64,
}

/// What a segment holds, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Contents {
    /// Bytes with no header of ours.
    Raw,
    /// An array's header.
    Array(ArrayState),
    /// A channel's header.
    Channel(ChannelState),
    /// A primitive's words (a segment made by `Event::create` and the like).
    Primitive(PrimitiveState),
    /// The segment could not be opened or its header is damaged: why.
    Unreadable(String),
}

/// A segment's entry and parsed contents.
#[derive(Debug, Clone)]
pub struct Details {
    /// As [`list`] shows it.
    pub info: SegmentInfo,
    /// What is inside.
    pub contents: Contents,
    /// Whether `contents` comes from looking at the first bytes of a segment
    /// without a record (an array or channel made by a shmbridge that kept no
    /// records, or the same bytes by chance).
    pub sniffed: bool,
}

/// A segment's entry and what it holds: an array's dtype, shape, strides and
/// generation; a channel's capacity, fill and ends; a primitive's state. The
/// segment is mapped read-only for the look; one without a record is shown as
/// an array or channel if its first bytes say so.
///
/// # Errors
///
/// As [`segment`].
pub fn info(name: &str) -> Result<Details> {
    let info = segment(name)?;
    if !info.regular {
        let contents = Contents::Unreadable("not a segment (not a regular file)".into());
        return Ok(Details { info, contents, sniffed: false });
    }
    let shm = match SharedMemory::options().read_only(true).open(&info.name) {
        Ok(shm) => shm.without_reclaim(),
        Err(e) => {
            let contents = Contents::Unreadable(e.to_string());
            return Ok(Details { info, contents, sniffed: false });
        }
    };
    let (kind, sniffed) = match info.kind() {
        Some(SegmentKind::Raw) | None if info.record.is_none() => {
            (shm.guarded(|| sniff(&shm)).unwrap_or(SegmentKind::Raw), true)
        }
        other => (other.unwrap_or(SegmentKind::Raw), false),
    };
    let contents = match kind {
        SegmentKind::Array => match ArraySegment::from_segment(shm) {
            Ok(array) => match array.generation() {
                Ok(generation) => {
                    Contents::Array(ArrayState { layout: array.layout().clone(), generation })
                }
                Err(e) => Contents::Unreadable(e.to_string()),
            },
            Err(e) => Contents::Unreadable(e.to_string()),
        },
        SegmentKind::Channel => match guarded_read(&shm, || ChannelState::read(&shm)) {
            Ok(state) => Contents::Channel(state),
            Err(e) => Contents::Unreadable(e.to_string()),
        },
        SegmentKind::Event | SegmentKind::Semaphore | SegmentKind::Mutex | SegmentKind::SeqLock => {
            match guarded_read(&shm, || PrimitiveState::read(&shm, 0)) {
                Ok(state) => Contents::Primitive(state),
                Err(e) => Contents::Unreadable(e.to_string()),
            }
        }
        _ => Contents::Raw,
    };
    let sniffed = sniffed && !matches!(contents, Contents::Raw);
    Ok(Details { info, contents, sniffed })
}

/// `read()` of `shm`'s words, in a guarded scope: a segment shrunk under the
/// reading (by its owner, at any moment) is unreadable, not a SIGBUS.
fn guarded_read<T>(shm: &SharedMemory, read: impl FnOnce() -> Result<T>) -> Result<T> {
    shm.guarded(read).map_err(|_| shm.pages_lost_error())?
}

/// The kind a segment's first eight bytes announce: an array's or a channel's
/// magic value, else raw.
fn sniff(shm: &SharedMemory) -> SegmentKind {
    if shm.len() < 8 {
        return SegmentKind::Raw;
    }
    let magic = shm.atomic_u64(0).load(Ordering::Acquire).to_ne_bytes();
    if magic == crate::array::MAGIC {
        SegmentKind::Array
    } else if magic == crate::channel::MAGIC {
        SegmentKind::Channel
    } else {
        SegmentKind::Raw
    }
}
