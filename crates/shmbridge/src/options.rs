//! Creating and opening segments: the builder, and [`SharedMemory`]'s shortcuts
//! to it.

use crate::error::{Error, Result};
use crate::name::{canonical_name, name_to_create, unique_name};
use crate::reclaim;
use crate::record::{OwnershipRecord, SegmentKind};
use crate::segment::SharedMemory;
use crate::sys;

/// How long a created segment's name lasts: until its creating value goes, until
/// its creating process has died (and nobody maps it), or until someone unlinks it.
///
/// Every segment created here carries an ownership record (`docs/FORMAT.md`) that
/// says which: automatic reclaim and `shmbridge gc` may remove a segment whose
/// lifetime is not [`Persistent`](Self::Persistent) once its creator is dead and no
/// process maps it (Linux; see [`reclaim`](crate::reclaim)). On Windows a
/// segment lives while some process holds it, whatever its lifetime.
///
/// # Example
///
/// ```
/// use shmbridge::{Lifetime, SharedMemory};
///
/// let name = shmbridge::unique_name("doc_lifetime")?;
/// let shm = SharedMemory::options().lifetime(Lifetime::Process).create(&name, 64)?;
/// drop(shm); // the name stays while this process lives...
/// # #[cfg(not(windows))] // (where a segment goes with its last holder)
/// assert!(SharedMemory::open(&name).is_ok());
/// # #[cfg(not(windows))]
/// shmbridge::unlink(&name)?; // ...or until someone unlinks it
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifetime {
    /// The creating value unlinks the name when it is closed or dropped (the
    /// default). If the creator dies first (a kill, an `exit` that skips drops),
    /// automatic reclaim removes it once no process maps it.
    #[default]
    Value,
    /// Closing or dropping the creating value keeps the name; once the creating
    /// process has died and no process maps the segment, automatic reclaim removes
    /// it (what Python's `track=True` asks for).
    Process,
    /// The name stays until someone unlinks it (or the machine restarts); nothing
    /// reclaims it.
    Persistent,
}

/// How to create or open a [`SharedMemory`] segment.
///
/// [`SharedMemory::create`] and [`SharedMemory::open`] cover the common cases; this
/// builder holds the rest.
///
/// # Example
///
/// ```
/// use shmbridge::SharedMemory;
///
/// let name = shmbridge::unique_name("doc_opts")?;
/// let shm = SharedMemory::options().mode(0o640).create(&name, 4096)?;
/// let reader = SharedMemory::options().read_only(true).min_size(4096).open(&name)?;
/// assert_eq!(reader.len(), 4096);
/// assert!(!reader.is_writable());
/// # drop(shm);
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SharedMemoryOptions {
    mode: u32,
    replace: bool,
    lifetime: Lifetime,
    kind: SegmentKind,
    read_only: bool,
    populate: bool,
    reserve: bool,
    min_size: usize,
}

impl Default for SharedMemoryOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedMemoryOptions {
    /// The defaults: mode `0o600`, exclusive create, unlink when the creator drops,
    /// writable, pages reserved at create, no prefault, no size expectation.
    pub fn new() -> Self {
        Self {
            mode: 0o600,
            replace: false,
            lifetime: Lifetime::Value,
            kind: SegmentKind::Raw,
            read_only: false,
            populate: false,
            reserve: true,
            min_size: 0,
        }
    }

    /// Permission bits of a created segment (default `0o600`, owner only).
    ///
    /// Applied exactly on Linux, regardless of the umask. No effect on Windows.
    /// Only the permission bits `0o777` are accepted: create refuses a mode with
    /// setuid, setgid, sticky or file-type bits ([`Error::InvalidMode`]), since
    /// `/dev/shm` is often mounted without `nosuid`.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Whether create may replace an existing segment of the same name (default
    /// `false`: an existing name is [`Error::AlreadyExists`]).
    ///
    /// Replacing unlinks the old name first; processes that have the old segment
    /// mapped keep it. No effect on Windows, where a name cannot be taken from a
    /// segment in use: create fails with [`Error::AlreadyExists`] while any process
    /// holds the old one.
    pub fn replace(&mut self, yes: bool) -> &mut Self {
        self.replace = yes;
        self
    }

    /// Whether a created segment keeps its name after the creator closes or drops it
    /// (default `false`: the creator unlinks it): `true` is
    /// [`lifetime(Lifetime::Persistent)`](Self::lifetime), `false`
    /// [`Lifetime::Value`].
    ///
    /// A persisting segment lasts until someone unlinks it or the machine restarts;
    /// automatic reclaim never removes it. No effect on Windows, where a segment
    /// lives while some process holds it (open or mapped) and goes away with the
    /// last one.
    pub fn persist(&mut self, yes: bool) -> &mut Self {
        self.lifetime = if yes { Lifetime::Persistent } else { Lifetime::Value };
        self
    }

    /// How long a created segment's name lasts (default [`Lifetime::Value`]); see
    /// [`Lifetime`]. Ignored by open.
    pub fn lifetime(&mut self, lifetime: Lifetime) -> &mut Self {
        self.lifetime = lifetime;
        self
    }

    /// What the created segment will hold, for its ownership record (the layers
    /// that build on segments set it; raw by default).
    pub(crate) fn kind(&mut self, kind: SegmentKind) -> &mut Self {
        self.kind = kind;
        self
    }

    /// Whether open maps the segment read-only (`PROT_READ`; default `false`).
    ///
    /// Writes through a read-only segment are [`Error::ReadOnly`]; the process cannot
    /// corrupt the segment by accident. Ignored by create.
    pub fn read_only(&mut self, yes: bool) -> &mut Self {
        self.read_only = yes;
        self
    }

    /// Whether to fault all pages in when mapping (default `false`).
    ///
    /// This option corresponds to `MAP_POPULATE` on Linux: mapping then costs time
    /// proportional to the size, and first accesses cost nothing. No effect on other
    /// platforms.
    pub fn populate(&mut self, yes: bool) -> &mut Self {
        self.populate = yes;
        self
    }

    /// Whether create reserves the memory of the whole segment up front (default
    /// `true`).
    ///
    /// On Linux this is `fallocate` on the tmpfs file: a full `/dev/shm` is then an
    /// [`Error::NoSpace`] from create instead of a SIGBUS at the first write of a
    /// page. Turn it off only for sparse segments whose size is mostly never touched.
    /// Windows always commits at create; no effect on macOS.
    pub fn reserve(&mut self, yes: bool) -> &mut Self {
        self.reserve = yes;
        self
    }

    /// The size the opener expects at least (default 0, anything).
    ///
    /// Open fails with [`Error::TooSmall`] if the segment is smaller; it never
    /// resizes. Ignored by create.
    pub fn min_size(&mut self, bytes: usize) -> &mut Self {
        self.min_size = bytes;
        self
    }

    /// Creates a new segment of `size` bytes, filled with zeros.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidName`] for a name the platform cannot hold;
    /// - [`Error::InvalidSize`] for a size of 0 or more than this process can map;
    /// - [`Error::InvalidMode`] for a [`mode`](Self::mode) beyond `0o777`;
    /// - [`Error::AlreadyExists`] if the name is taken (and `replace` is off), by a
    ///   segment or by anything else (a planted link is never followed);
    /// - [`Error::NoSpace`] if the machine cannot back the segment;
    /// - [`Error::PermissionDenied`] or [`Error::Os`] for what else the OS refuses.
    ///
    /// A failed create leaves no name behind.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let name = shmbridge::unique_name("doc_options")?;
    /// let first = SharedMemory::options().mode(0o640).create(&name, 4096)?;
    /// assert!(SharedMemory::create(&name, 4096).is_err()); // create is exclusive
    /// if cfg!(unix) { // Windows cannot take the name of a segment in use
    ///     let second = SharedMemory::options().replace(true).create(&name, 8192)?; // unless asked
    ///     assert_eq!(SharedMemory::open(&name)?.len(), 8192);
    /// }
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn create(&self, name: &str, size: usize) -> Result<SharedMemory> {
        let name = name_to_create(name)?;
        check_mappable(&name, size as u64)?;
        if self.mode & !0o777 != 0 {
            return Err(Error::InvalidMode { name, mode: self.mode });
        }
        if self.replace {
            match sys::unlink(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::from_os(&name, "shm_unlink", e)),
            }
        }
        let persistent = self.lifetime == Lifetime::Persistent;
        if !persistent {
            // Before the name exists, so that a creator killed right after create
            // has a tracker to clean up after it.
            reclaim::on_create();
        }
        let record = OwnershipRecord::for_this_process(self.kind, persistent);
        let handle = sys::create(&name, size, self.mode, self.reserve, &record.encode())
            .map_err(|e| create_error(&name, size, e))?;
        let record = sys::accounting::SUPPORTED.then_some(record);
        let mapping = match sys::map(&handle, size, true, self.populate) {
            Ok(mapping) => mapping,
            Err(e) => {
                let _ = sys::unlink(&name);
                return Err(map_error(&name, size as u64, e));
            }
        };
        let creator = Some(crate::owner::Owner::current());
        let unlink_on_drop = self.lifetime == Lifetime::Value;
        Ok(SharedMemory::from_parts(mapping, name, true, creator, unlink_on_drop, record))
    }

    /// Creates a segment with no name (see [`SharedMemory::anonymous`]); `mode`,
    /// `replace` and `persist` do not apply.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for a size of 0 or more than this process can map,
    /// [`Error::NoSpace`] if the machine cannot back it, [`Error::Os`] otherwise.
    #[cfg(unix)]
    pub fn create_anonymous(&self, size: usize) -> Result<SharedMemory> {
        let name = crate::segment::ANONYMOUS;
        check_mappable(name, size as u64)?;
        let handle =
            sys::create_anonymous(size, self.reserve).map_err(|e| create_error(name, size, e))?;
        let mapping = sys::map(&handle, size, true, self.populate)
            .map_err(|e| map_error(name, size as u64, e))?;
        Ok(SharedMemory::from_handle(mapping, handle, true))
    }

    /// Maps the segment behind a descriptor handed down by another process (an
    /// anonymous segment); the descriptor is duplicated, so the caller keeps its
    /// own. `read_only` and `populate` apply.
    ///
    /// # Errors
    ///
    /// [`Error::NotASegment`] if the descriptor is not a file (a pipe, a socket),
    /// [`Error::Os`] if it is not otherwise mappable, [`Error::InvalidSize`] if it is
    /// empty.
    #[cfg(unix)]
    pub fn open_fd(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<SharedMemory> {
        let name = crate::segment::ANONYMOUS;
        let (handle, size) = sys::open_fd(fd).map_err(|e| Error::from_os(name, "dup", e))?;
        check_mappable(name, size)?;
        let writable = !self.read_only;
        let mapping = sys::map(&handle, size as usize, writable, self.populate)
            .map_err(|e| map_error(name, size, e))?;
        Ok(SharedMemory::from_handle(mapping, handle, writable))
    }

    /// Opens an existing segment; its size is the segment's own.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidName`] for a name the platform cannot hold;
    /// - [`Error::NotFound`] if no segment has that name;
    /// - [`Error::NotASegment`] if the name is a symbolic link (never followed), a
    ///   FIFO, a directory or anything else that is not a regular file (Linux);
    /// - [`Error::TooSmall`] if the segment holds fewer than `min_size` bytes;
    /// - [`Error::InvalidSize`] if the segment is empty (size 0: nothing to map);
    /// - [`Error::PermissionDenied`] or [`Error::Os`] for what else the OS refuses.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let shm = SharedMemory::create_unique("doc_open", 4096)?;
    /// let reader = SharedMemory::options().read_only(true).min_size(1024).open(shm.name())?;
    /// assert!(!reader.is_writable());
    /// let too_small = SharedMemory::options().min_size(1 << 20).open(shm.name());
    /// assert!(matches!(too_small, Err(shmbridge::Error::TooSmall { .. }))); // never resized
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn open(&self, name: &str) -> Result<SharedMemory> {
        let name = canonical_name(name)?;
        let writable = !self.read_only;
        let (handle, size) =
            sys::open(&name, writable).map_err(|e| Error::from_os(&name, "open", e))?;
        if size == 0 {
            return Err(Error::InvalidSize {
                name,
                size,
                reason: "the segment is empty, so there is nothing to map; its creator has \
                         not sized it yet",
            });
        }
        if size < self.min_size as u64 {
            return Err(Error::TooSmall { name, expected: self.min_size as u64, actual: size });
        }
        check_mappable(&name, size)?;
        let mapping = sys::map(&handle, size as usize, writable, self.populate)
            .map_err(|e| map_error(&name, size, e))?;
        let record = sys::accounting::read_record(&handle)
            .and_then(|bytes| OwnershipRecord::parse(&bytes).ok());
        Ok(SharedMemory::from_parts(mapping, name, writable, None, false, record))
    }
}

/// The error of a failed create: a lack of memory says how much is left.
fn create_error(name: &str, size: usize, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::OutOfMemory => Error::NoSpace {
            name: name.to_owned(),
            size: size as u64,
            available: sys::free_space(),
        },
        std::io::ErrorKind::FileTooLarge => Error::InvalidSize {
            name: name.to_owned(),
            size: size as u64,
            reason: "larger than this platform allows for a segment",
        },
        _ => Error::from_os(name, "create", e),
    }
}

/// Refuses sizes no mapping can have: zero, or more than a slice may span (`isize::MAX`,
/// the limit Rust places on any object).
fn check_mappable(name: &str, size: u64) -> Result<()> {
    let reason = if size == 0 {
        "a segment needs at least one byte"
    } else if size > isize::MAX as u64 {
        "larger than this process can address"
    } else {
        return Ok(());
    };
    Err(Error::InvalidSize { name: name.to_owned(), size, reason })
}

fn map_error(name: &str, size: u64, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::OutOfMemory {
        Error::NoSpace { name: name.to_owned(), size, available: None }
    } else {
        Error::from_os(name, "mmap", e)
    }
}

/// The shortcuts for the common cases; the builder holds the rest.
impl SharedMemory {
    /// The options builder, for what [`create`](Self::create) and
    /// [`open`](Self::open) do not cover.
    pub fn options() -> SharedMemoryOptions {
        SharedMemoryOptions::new()
    }

    /// Creates a new segment of `size` bytes, filled with zeros, readable and
    /// writable by this user only (mode `0o600`).
    ///
    /// The name is unlinked when the returned value is closed or dropped.
    ///
    /// # Errors
    ///
    /// See [`SharedMemoryOptions::create`]; an existing name is
    /// [`Error::AlreadyExists`].
    pub fn create(name: &str, size: usize) -> Result<Self> {
        Self::options().create(name, size)
    }

    /// Creates a new segment under a fresh [`unique_name`] with `prefix`.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create); a name collision is retried, not reported.
    ///
    /// # Example
    ///
    /// ```
    /// let shm = shmbridge::SharedMemory::create_unique("doc_unique", 64)?;
    /// assert!(shm.name().starts_with("/doc_unique_"));
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn create_unique(prefix: &str, size: usize) -> Result<Self> {
        let mut attempts = 0;
        loop {
            match Self::create(&unique_name(prefix)?, size) {
                Err(Error::AlreadyExists { .. }) if attempts < 8 => attempts += 1,
                other => return other,
            }
        }
    }

    /// Opens an existing segment, writable; its size is the segment's own.
    ///
    /// # Errors
    ///
    /// See [`SharedMemoryOptions::open`]; a missing name is [`Error::NotFound`].
    pub fn open(name: &str) -> Result<Self> {
        Self::options().open(name)
    }

    /// Creates a segment with no name at all (a memfd on Linux), zero-filled.
    ///
    /// On Linux it is sealed: processes given its descriptor can read and write
    /// it, but not resize it (a shrink would make pages vanish under every
    /// mapping), nor add seals of their own.
    ///
    /// Nobody can open it by name; a child process reaches it through its
    /// descriptor ([`as_fd`](Self::as_fd)), for instance by the worker's
    /// `WorkerBuilder::share`. It goes away when the last process unmaps it, so it
    /// can never leak.
    ///
    /// # Errors
    ///
    /// As [`SharedMemoryOptions::create_anonymous`].
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// let mut shm = shmbridge::SharedMemory::anonymous(4096)?;
    /// shm.write_all_at(b"no name", 0)?;
    /// assert_eq!(shm.name(), "(anonymous)");
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(unix)]
    pub fn anonymous(size: usize) -> Result<Self> {
        Self::options().create_anonymous(size)
    }
}
