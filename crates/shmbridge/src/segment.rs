//! `SharedMemory`: a named, sized mapping and its lifecycle.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::error::{Error, Result};
use crate::name::canonical_name;
use crate::owner::Owner;
use crate::reclaim;
use crate::record::OwnershipRecord;
use crate::sys;

/// The name reported by segments that have none.
#[cfg(unix)]
pub(crate) const ANONYMOUS: &str = "(anonymous)";

/// A named shared-memory segment mapped into this process.
///
/// Offset 0 is the user's first byte: the segment carries nothing of shmbridge's
/// own, so it opens byte for byte in Python's `multiprocessing.shared_memory`, in C,
/// or in any other language that maps the same name.
///
/// Access comes in three forms:
/// - a cursor, through [`Read`], [`Write`] and [`Seek`], which behave exactly like
///   [`std::io::Cursor`] over a `&mut [u8]` of the segment's size: reads at the end
///   are short, then 0; writes at the end are short, then 0 (so `write_all` fails
///   with [`io::ErrorKind::WriteZero`]); seeking past the end is allowed, before the
///   start is an error;
/// - positional [`read_at`](Self::read_at) / [`write_at`](Self::write_at) (and their
///   `_exact`/`_all` forms), which need no cursor, like
///   `std::os::unix::fs::FileExt`;
/// - typed access in place, over any [`bytemuck::Pod`] type: a
///   [`SharedSlice`](crate::SharedSlice) ([`slice`](Self::slice),
///   [`slice_from`](Self::slice_from)) reads and writes one value at a time,
///   [`read_value`](Self::read_value) / [`write_value`](Self::write_value) copy one,
///   [`atomic_u32_at`](Self::atomic_u32_at) / [`atomic_u64_at`](Self::atomic_u64_at)
///   share a word;
/// - plain slices, `unsafe` since nobody may write the bytes while they live:
///   [`as_slice`](Self::as_slice), [`view`](Self::view),
///   [`view_from`](Self::view_from), ..., and raw pointers for FFI.
///
/// # Lifecycle
///
/// The process that creates a segment owns its name: closing or dropping it unlinks
/// the name (unless told to persist), after which nobody new can open it. Processes
/// that have it mapped keep their mapping until they close it. Opening never
/// resizes; the size is the segment's own.
///
/// Only the creating *process* unlinks implicitly: a child made by `fork` that
/// inherited the value closes or drops it without touching the name (it may still
/// call [`unlink`](Self::unlink) explicitly).
///
/// # Concurrent access
///
/// Any other handle to the same segment, in this process or another, can write to
/// it at any moment, and the borrow checker does not see across handles: opening a
/// segment twice gives two values that share bytes. So safe code reaches the bytes
/// only through copies, [`SharedSlice`](crate::SharedSlice)s and atomics, which
/// read or write memory afresh and promise the compiler nothing; plain slices are
/// `unsafe` ([`view`](Self::view): the caller vouches that nobody writes meanwhile).
/// Every bit pattern is a valid value of a `Pod` type, so a concurrent write never
/// makes a value invalid, but bytes read while someone writes them may be a mix of
/// old and new: coordinate the two sides (the spec's call-and-answer, or the
/// synchronization primitives). `docs/SAFETY.md` gives the whole model.
///
/// # A peer that shrinks the segment
///
/// A process that may write the segment may also shrink it (`ftruncate`, Linux),
/// and the pages past its new end vanish from every mapping: touching one raises
/// SIGBUS. So does writing a page of a sparse segment (created without
/// [`reserve`](crate::SharedMemoryOptions::reserve), as Python's stdlib does) when the
/// system has no memory left for it.
///
/// - The copying methods ([`read_at`](Self::read_at), [`write_at`](Self::write_at)
///   and their `_exact`/`_all`/`_raw` forms, [`Read`], [`Write`]) are guarded: such
///   a fault makes them return [`Error::PagesLost`] instead, and the value refuses
///   every later copy, since parts of its mapping are then private zero pages.
/// - So is every operation of what this crate builds in a segment: the
///   [`channel`](crate::channel)'s sends, receives, loans, releases and closes
///   ([`ChannelError::PagesLost`](crate::channel::ChannelError::PagesLost)), the
///   [`sync`](crate::sync) primitives' state changes, waits and reads (a wait
///   whose page vanishes ends with the error within half a second), a
///   [`SeqLock`](crate::sync::SeqLock)'s reads and writes, an array's generation
///   counter. Calls that cannot return an error (drops, `close`, releasing a
///   message) just stop early.
/// - Zero-copy accesses ([`SharedSlice`](crate::SharedSlice) element accesses,
///   atomics, [`as_slice`](Self::as_slice), [`view`](Self::view), raw pointers, and
///   whatever is built on them) cannot be guarded: a fault through them kills the
///   process, as it would without shmbridge. Use them only with peers you trust not
///   to shrink the segment, or copy instead.
/// - Anonymous segments ([`anonymous`](Self::anonymous)) are sealed against
///   resizing and are safe from this.
///
/// # Example
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// use shmbridge::SharedMemory;
///
/// let name = shmbridge::unique_name("doc_hello")?;
/// let mut shm = SharedMemory::create(&name, 1024 * 1024)?;
/// shm.write_all(b"Hello from Rust!")?;
///
/// let mut other = SharedMemory::open(&name)?; // another process would do the same
/// let mut buf = [0u8; 16];
/// other.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"Hello from Rust!");
///
/// shm.seek(SeekFrom::Start(0))?;
/// shm.read_exact(&mut buf)?;
/// shm.close()?; // unlinks the name: `other` keeps its mapping
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedMemory {
    mapping: sys::Mapping,
    /// Kept for segments reached by descriptor (anonymous ones), so the descriptor
    /// can be handed on; `None` for named segments, whose name does that job.
    handle: Option<sys::Handle>,
    name: String,
    writable: bool,
    /// The creator wants the name gone with this value (not persisting).
    unlink_on_drop: bool,
    /// The process that created the segment, if this value did; only it unlinks
    /// implicitly.
    creator: Option<Owner>,
    /// The segment's ownership record, as written at create or read at open (`None`
    /// if it has none, or the platform keeps none).
    record: Option<OwnershipRecord>,
    pos: u64,
}

impl SharedMemory {
    /// A named segment; `creator` is set when this process has just created it.
    pub(crate) fn from_parts(
        mapping: sys::Mapping,
        name: String,
        writable: bool,
        creator: Option<Owner>,
        unlink_on_drop: bool,
        record: Option<OwnershipRecord>,
    ) -> Self {
        let unlink_on_drop = unlink_on_drop && sys::CAN_UNLINK && creator.is_some();
        Self { mapping, handle: None, name, writable, unlink_on_drop, creator, record, pos: 0 }
    }

    /// A segment reached by descriptor: it has no name to unlink.
    #[cfg(unix)]
    pub(crate) fn from_handle(mapping: sys::Mapping, handle: sys::Handle, writable: bool) -> Self {
        let name = ANONYMOUS.to_owned();
        let (unlink_on_drop, creator, record) = (false, None, None);
        Self {
            mapping,
            handle: Some(handle),
            name,
            writable,
            unlink_on_drop,
            creator,
            record,
            pos: 0,
        }
    }

    /// The descriptor of a segment reached by descriptor (anonymous, or opened
    /// with [`SharedMemoryOptions::open_fd`](crate::SharedMemoryOptions::open_fd));
    /// `None` for named segments.
    #[cfg(unix)]
    pub fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.handle.as_ref().map(sys::Handle::as_fd)
    }

    /// The segment's name, in canonical form (with its leading `/`); `"(anonymous)"`
    /// for a segment that has none.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size of the segment in bytes (never 0).
    ///
    /// On macOS and Windows the system keeps segment sizes in whole pages, and an
    /// opener sees the size rounded up to the page (as Python's stdlib does there);
    /// the creator sees the size it asked for.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Always `false`: a segment holds at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this mapping may be written (`false` for a read-only open).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether closing or dropping this value unlinks the segment's name: it
    /// created the segment, in this process (not in a parent before a `fork`), and
    /// was not told to persist.
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_on_drop && self.creator.is_some_and(Owner::is_current)
    }

    /// The id of the process that created the segment through this value (`None`
    /// for a segment that was opened).
    pub fn creator_pid(&self) -> Option<u32> {
        self.creator.map(Owner::pid)
    }

    /// Keeps the name after this value is closed or dropped: another process may
    /// open the segment later, and someone must [`unlink`](Self::unlink) it.
    ///
    /// In the creating process this also marks the segment's ownership record
    /// persistent (one open and two attribute calls), so that automatic reclaim
    /// never removes it after this process dies; elsewhere the record is the
    /// creator's to change.
    ///
    /// No effect on Windows, where a segment lives while some process holds it
    /// (open or mapped) and goes away with the last one.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let name = shmbridge::unique_name("doc_persist")?;
    /// let mut shm = SharedMemory::create(&name, 4096)?;
    /// shm.persist();
    /// shm.close()?; // the name stays: another process may open it later
    /// if cfg!(unix) {
    ///     let mut again = SharedMemory::open(&name)?;
    ///     again.unlink()?; // someone must remove it
    /// }
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn persist(&mut self) {
        self.unlink_on_drop = false;
        if !self.creator.is_some_and(Owner::is_current) {
            return;
        }
        if let Some(record) = self.record.as_ref().filter(|r| !r.is_persistent()) {
            let kept = record.with_persistent(true);
            if let Ok(true) =
                sys::accounting::update_record(&self.name, &record.encode(), &kept.encode())
            {
                self.record = Some(kept);
            }
        }
    }

    /// This value, made never to reclaim the segment when dropped: for looks that
    /// must change nothing (the inspection tools).
    pub(crate) fn without_reclaim(mut self) -> Self {
        self.record = None;
        self
    }

    /// The segment's ownership record: who created it, what it holds, whether it
    /// is kept after its creator dies (see [`record`](crate::record)). As written at
    /// create or read at open; `None` for a segment without one (made by another
    /// program, or on a system that keeps no records: before Linux 6.6, macOS,
    /// Windows) and for anonymous segments.
    pub fn record(&self) -> Option<&OwnershipRecord> {
        self.record.as_ref()
    }

    /// Removes the segment's name now; the mapping stays usable.
    ///
    /// Anyone may unlink a name (the creator does so on close). Afterwards nobody
    /// new can open the segment; processes that have it mapped keep it until they
    /// close it. Removes nothing on Windows, where a name goes away with the last
    /// process that holds the segment.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the name is already gone.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let name = shmbridge::unique_name("doc_unlink")?;
    /// let mut shm = SharedMemory::create(&name, 4096)?;
    /// shm.unlink()?;
    /// // Nobody new can open it (on Windows: once nobody holds it any more).
    /// assert_eq!(SharedMemory::open(&name).is_err(), cfg!(unix));
    /// assert_eq!(shm.len(), 4096); // the mapping is still there
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn unlink(&mut self) -> Result<()> {
        self.unlink_on_drop = false;
        if self.handle.is_some() {
            return Ok(()); // no name to remove
        }
        unlink(&self.name)
    }

    /// Unmaps the segment, and unlinks its name if this value owns it, reporting
    /// what fails (dropping does the same and ignores failures).
    ///
    /// # Errors
    ///
    /// [`Error::Os`] if the unmap fails, or an unlink error as in
    /// [`unlink`](Self::unlink). The segment is unmapped and its name released
    /// as far as possible either way.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let shm = SharedMemory::create_unique("doc_close", 4096)?;
    /// let name = shm.name().to_owned();
    /// shm.close()?; // the creator's close removes the name
    /// assert!(matches!(SharedMemory::open(&name), Err(shmbridge::Error::NotFound { .. })));
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn close(mut self) -> Result<()> {
        let unlinked = if self.unlinks_on_drop() { self.unlink() } else { Ok(()) };
        let unmapped = self.mapping.unmap().map_err(|e| Error::from_os(&self.name, "munmap", e));
        unlinked.and(unmapped)
    }

    /// Reads bytes at `offset` into `buf`, without moving the cursor.
    ///
    /// Returns how many bytes were read: fewer than `buf.len()` near the end of the
    /// segment, 0 at or past it.
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] (as an `io::Error` of kind `UnexpectedEof`) if another
    /// process shrank the segment under the copy, or did so before: the part of
    /// `buf` that the vanished pages would fill holds zeros.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let mut shm = SharedMemory::create_unique("doc_read_at", 64)?;
    /// shm.write_all_at(b"abcd", 60)?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(shm.read_at(&mut buf, 60)?, 4); // short near the end
    /// assert_eq!(&buf[..4], b"abcd");
    /// assert_eq!(shm.read_at(&mut buf, 64)?, 0); // nothing past it
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // SAFETY: buf is a valid, exclusively borrowed destination of buf.len() bytes.
        // It can lie in a mapping only through an unsafe view_mut, whose caller
        // promised that nothing else reads or writes those bytes; safe code holds no
        // reference into the bytes read (views are unsafe).
        unsafe { self.copy_out(buf.as_mut_ptr(), buf.len(), offset) }
            .map_err(|sys::PagesLost| self.pages_lost_io())
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] if the segment ends first, or if pages of it
    /// vanished ([`Error::PagesLost`]); `buf` is then left unspecified, as with
    /// `FileExt::read_exact_at`.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.read_at(buf, offset)? < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                self.out_of_bounds(offset, buf.len()),
            ));
        }
        Ok(())
    }

    /// Writes bytes from `buf` at `offset`, without moving the cursor.
    ///
    /// Returns how many bytes were written: fewer than `buf.len()` near the end of
    /// the segment, 0 at or past it; a segment never grows.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] (as an `io::Error` of kind `PermissionDenied`) on a
    /// read-only segment; [`Error::PagesLost`] (kind `UnexpectedEof`) if another
    /// process shrank the segment under the copy, or did so before (bytes meant for
    /// the vanished pages are lost).
    pub fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let n = buf.len().min(self.remaining_from(offset));
        self.check_write(n, offset).map_err(|failure| self.copy_io_error(failure, offset, n))?;
        // SAFETY: checked above. Safe code holds no reference into the bytes written
        // (plain views are unsafe fns whose callers promise that nobody writes while
        // they live), and buf is only read.
        unsafe { self.copy_in(buf.as_ptr(), n, offset) }.map_err(|_| self.pages_lost_io())?;
        Ok(n)
    }

    /// Writes all of `buf` at `offset`, or nothing.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if `buf` does not fit (nothing is written), or
    /// [`Error::ReadOnly`], or [`Error::PagesLost`] as in
    /// [`write_at`](Self::write_at); all as `io::Error`s.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let mut shm = SharedMemory::create_unique("doc_write_at", 64)?;
    /// shm.write_all_at(&42u64.to_le_bytes(), 8)?;
    /// let mut word = [0u8; 8];
    /// shm.read_exact_at(&mut word, 8)?;
    /// assert_eq!(u64::from_le_bytes(word), 42);
    /// assert!(shm.write_all_at(&[0; 16], 56).is_err()); // would not fit: nothing written
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let len = buf.len();
        self.check_write(len, offset)
            .map_err(|failure| self.copy_io_error(failure, offset, len))?;
        // SAFETY: as in write_at.
        unsafe { self.copy_in(buf.as_ptr(), len, offset) }.map_err(|_| self.pages_lost_io())
    }

    /// Copies up to `len` bytes at `offset` to `dst`, for callers that hold no
    /// Rust reference to either side (the Python binding, the channel). Returns the
    /// count copied, short at the end of the segment. Overlap between `dst` and the
    /// segment is allowed.
    ///
    /// The copy is guarded: a page of the segment that another process removed
    /// (by shrinking it) reads as zeros and makes the result [`Error::PagesLost`],
    /// where touching it through a view would kill the process with SIGBUS.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writes of `len` bytes, and no Rust reference may be
    /// live to those bytes.
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] if pages of the segment vanished, during this copy or
    /// an earlier one; `dst` then holds zeros where they were.
    pub unsafe fn read_at_raw(&self, dst: *mut u8, len: usize, offset: u64) -> Result<usize> {
        // SAFETY: the caller's contract is copy_out's.
        unsafe { self.copy_out(dst, len, offset) }
            .map_err(|sys::PagesLost| self.copy_error(CopyFailure::PagesLost, offset, len))
    }

    /// Copies `len` bytes from `src` to `offset`, all or nothing, through a shared
    /// borrow, for callers that hold no Rust reference into the segment (the Python
    /// binding, the channel). Overlap between `src` and the segment is allowed.
    ///
    /// The copy is guarded as in [`read_at_raw`](Self::read_at_raw): bytes meant
    /// for pages that another process removed are lost, and the result is
    /// [`Error::PagesLost`] instead of a SIGBUS.
    ///
    /// # Safety
    ///
    /// `src` must be valid for reads of `len` bytes, and no Rust reference may be
    /// live to the segment's bytes `offset..offset + len` (views, slices): this
    /// writes through `&self`.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only segment; [`Error::OutOfBounds`] if the
    /// range does not lie inside the segment. Nothing is written then.
    /// [`Error::PagesLost`] if pages of the segment vanished, during this copy
    /// (which is then incomplete) or an earlier one (nothing is written).
    pub unsafe fn write_all_at_raw(&self, src: *const u8, len: usize, offset: u64) -> Result<()> {
        self.check_write(len, offset).map_err(|failure| self.copy_error(failure, offset, len))?;
        // SAFETY: checked above; the caller vouches for src and the references.
        unsafe { self.copy_in(src, len, offset) }
            .map_err(|sys::PagesLost| self.copy_error(CopyFailure::PagesLost, offset, len))
    }

    /// The guarded copy behind every read: up to `len` bytes at `offset` to `dst`.
    /// Its errors carry no data, and the error values are built out of line
    /// ([`copy_error`](Self::copy_error)), so that a small copy stays a few
    /// instructions around `memcpy`.
    ///
    /// # Safety
    ///
    /// As [`read_at_raw`](Self::read_at_raw).
    #[inline]
    unsafe fn copy_out(
        &self,
        dst: *mut u8,
        len: usize,
        offset: u64,
    ) -> Result<usize, sys::PagesLost> {
        let n = len.min(self.remaining_from(offset));
        if n > 0 {
            // SAFETY: offset + n <= self.len() (remaining_from), so the source lies in
            // the live mapping; the caller vouches for dst.
            unsafe { self.mapping.copy_out(offset as usize, dst, n) }?;
        }
        Ok(n)
    }

    /// Whether `len` bytes may be written at `offset`: the segment is writable and
    /// the range lies inside it.
    #[inline]
    fn check_write(&self, len: usize, offset: u64) -> Result<(), CopyFailure> {
        if !self.writable {
            Err(CopyFailure::ReadOnly)
        } else if len > self.remaining_from(offset) {
            Err(CopyFailure::OutOfBounds)
        } else {
            Ok(())
        }
    }

    /// The guarded copy behind every write: `len` bytes from `src` to `offset`
    /// (see [`copy_out`](Self::copy_out)).
    ///
    /// # Safety
    ///
    /// [`check_write`](Self::check_write) passed for `len` and `offset`, and the
    /// contract of [`write_all_at_raw`](Self::write_all_at_raw) holds.
    #[inline]
    unsafe fn copy_in(
        &self,
        src: *const u8,
        len: usize,
        offset: u64,
    ) -> Result<(), sys::PagesLost> {
        if len > 0 {
            // SAFETY: the range is inside the live, writable mapping (check_write);
            // the caller vouches for src and for the absence of references.
            unsafe { self.mapping.copy_in(src, offset as usize, len) }?;
        }
        Ok(())
    }

    /// The error for a failed copy of `len` bytes at `offset`; cold and out of
    /// line, off the copies' fast path.
    #[cold]
    #[inline(never)]
    fn copy_error(&self, failure: CopyFailure, offset: u64, len: usize) -> Error {
        let name = self.name.clone();
        match failure {
            CopyFailure::ReadOnly => Error::ReadOnly { name },
            CopyFailure::OutOfBounds => self.out_of_bounds(offset, len),
            CopyFailure::PagesLost => Error::PagesLost { name },
        }
    }

    /// [`Error::PagesLost`] as an `io::Error`, for [`read_at`](Self::read_at).
    #[cold]
    #[inline(never)]
    fn pages_lost_io(&self) -> io::Error {
        Error::PagesLost { name: self.name.clone() }.into()
    }

    /// [`copy_error`](Self::copy_error) as an `io::Error`, for the `std::io`-style
    /// methods.
    #[cold]
    #[inline(never)]
    fn copy_io_error(&self, failure: CopyFailure, offset: u64, len: usize) -> io::Error {
        self.copy_error(failure, offset, len).into()
    }

    /// Bytes from `offset` to the end of the segment (0 past the end).
    fn remaining_from(&self, offset: u64) -> usize {
        (self.len() as u64).saturating_sub(offset) as usize
    }

    pub(crate) fn out_of_bounds(&self, offset: u64, len: usize) -> Error {
        Error::OutOfBounds {
            name: self.name.clone(),
            offset,
            len: len as u64,
            size: self.len() as u64,
        }
    }

    /// Runs `f`, which touches this segment's memory other than through the
    /// guarded copies (atomic words, waits: the channel's and the primitives'
    /// operations), so that a page another process removed is repaired instead of
    /// killing the process: the result is then `Err(PagesLost)`, whatever `f`
    /// returned, and every later scope or copy of this value fails at once. See
    /// `sys::Mapping::guarded`.
    #[inline]
    pub(crate) fn guarded<R>(&self, f: impl FnOnce() -> R) -> Result<R, sys::PagesLost> {
        self.mapping.guarded(f)
    }

    /// Whether pages of this segment vanished under a copy or a scope of this
    /// process: for wait loops inside [`guarded`](Self::guarded), which must not
    /// sleep on a word that is no longer shared.
    #[inline]
    pub(crate) fn pages_lost(&self) -> bool {
        self.mapping.pages_lost()
    }

    /// [`Error::PagesLost`] for this segment.
    #[cold]
    #[inline(never)]
    pub(crate) fn pages_lost_error(&self) -> Error {
        Error::PagesLost { name: self.name.clone() }
    }

    pub(crate) fn mapping_ptr(&self) -> *mut u8 {
        self.mapping.as_ptr()
    }
}

/// Why a copy failed; [`SharedMemory::copy_error`] makes the [`Error`].
#[derive(Debug, Clone, Copy)]
enum CopyFailure {
    ReadOnly,
    OutOfBounds,
    PagesLost,
}

/// Removes the name of a segment; processes that have it mapped keep it until they
/// close it.
///
/// For cleaning up segments left by others (a crashed creator, a persisting
/// segment). Removes nothing on Windows, where a name goes away with the last
/// process that holds the segment; it only reports a name that does not exist.
///
/// # Errors
///
/// [`Error::InvalidName`] for a malformed name, [`Error::NotFound`] if no segment
/// has it, [`Error::PermissionDenied`] if it belongs to someone else.
///
/// # Example
///
/// ```
/// let name = shmbridge::unique_name("doc_unlink")?;
/// let shm = shmbridge::SharedMemory::options().persist(true).create(&name, 64)?;
/// shmbridge::unlink(&name)?;
/// assert_eq!(shmbridge::SharedMemory::open(&name).is_err(), cfg!(unix)); // Windows: `shm` holds it
/// # drop(shm);
/// # Ok::<(), shmbridge::Error>(())
/// ```
pub fn unlink(name: &str) -> Result<()> {
    let name = canonical_name(name)?;
    sys::unlink(&name).map_err(|e| Error::from_os(&name, "shm_unlink", e))
}

impl Read for SharedMemory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SharedMemory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Nothing to flush: writes land in shared memory directly.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SharedMemory {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match pos {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::End(d) => (self.len() as u64, d),
            SeekFrom::Current(d) => (self.pos, d),
        };
        match base.checked_add_signed(delta) {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "invalid seek in segment {:?}: to a negative or overflowing position",
                    self.name
                ),
            )),
        }
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("writable", &self.writable)
            .field("unlink_on_drop", &self.unlinks_on_drop())
            .field("pos", &self.pos)
            .finish()
    }
}

impl Drop for SharedMemory {
    /// Unmaps (by dropping the mapping) and unlinks the name if owned; never panics.
    ///
    /// A value that did not create the segment (in this process) and whose record
    /// shows that the creator is gone without persisting it reclaims the segment
    /// if, once unmapped here, no process uses it any more (see
    /// [`reclaim`](crate::reclaim)). Checking costs one `kill(pid, 0)`; the rest
    /// happens only when the creator is gone.
    fn drop(&mut self) {
        if self.unlinks_on_drop() {
            let _ = sys::unlink(&self.name);
            return;
        }
        if self.creator.is_some_and(Owner::is_current) {
            return;
        }
        let Some(record) = &self.record else { return };
        if record.is_reclaimable() && record.creator_surely_gone() && reclaim::enabled() {
            let _ = self.mapping.unmap();
            reclaim::reclaim_if_unused(&self.name, record);
        }
    }
}
