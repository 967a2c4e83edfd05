//! Zero-copy views of a segment: bytes, typed slices over `bytemuck::Pod` types,
//! and raw pointers for FFI.

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::segment::SharedMemory;

/// The spec's typed-slice helpers map onto the generic views:
///
/// | spec (Go)                  | shmbridge                          |
/// |----------------------------|------------------------------------|
/// | `GetFloat32Slice(offset)`  | `shm.view_from::<f32>(offset)`     |
/// | `GetFloat64Slice(offset)`  | `shm.view_from::<f64>(offset)`     |
/// | `GetInt16Slice(offset)`    | `shm.view_from::<i16>(offset)`     |
/// | `GetInt32Slice(offset)`    | `shm.view_from::<i32>(offset)`     |
/// | `GetInt64Slice(offset)`    | `shm.view_from::<i64>(offset)`     |
/// | `GetUint16Slice(offset)`   | `shm.view_from::<u16>(offset)`     |
/// | `GetUint32Slice(offset)`   | `shm.view_from::<u32>(offset)`     |
/// | `GetUint64Slice(offset)`   | `shm.view_from::<u64>(offset)`     |
/// | `GetByteSlice(offset)`     | `shm.view_from::<u8>(offset)`      |
/// | `GetTypedSlice[T](shm, o)` | `shm.view_from::<T>(o)`, any `Pod` |
///
/// with `_mut` forms for writing. Where the Go helpers return a slice that may run
/// past the segment or start misaligned, these check offset, length and alignment
/// and return an error instead.
impl SharedMemory {
    /// The whole segment as bytes.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let mut shm = SharedMemory::create_unique("doc_as_slice", 4096)?;
    /// shm.as_mut_slice()?[..5].copy_from_slice(b"hello");
    /// let peer = SharedMemory::open(shm.name())?;
    /// assert_eq!(&peer.as_slice()[..5], b"hello");
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live for as long as &self, holds len() bytes, and is
        // readable; any byte pattern is a valid u8.
        unsafe { std::slice::from_raw_parts(self.mapping_ptr(), self.len()) }
    }

    /// The whole segment as mutable bytes.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only segment.
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        self.check_writable()?;
        // SAFETY: as in as_slice, and the mapping is writable (checked above); &mut self
        // makes this the only reference into it in this process.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.mapping_ptr(), self.len()) })
    }

    /// The first byte of the mapping, for FFI. Valid for [`len`](Self::len) bytes
    /// while `self` lives; reading through it is the caller's `unsafe`.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    pub fn as_ptr(&self) -> *const u8 {
        self.mapping_ptr()
    }

    /// The first byte of the mapping, for FFI writes. Valid for
    /// [`len`](Self::len) bytes while `self` lives, writable only if
    /// [`is_writable`](Self::is_writable); writing through it is the caller's
    /// `unsafe`, and must not overlap a live view.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.mapping_ptr()
    }

    /// `count` values of `T` starting at byte `offset`.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if they do not fit in the segment,
    /// [`Error::Misaligned`] if `offset` is not a multiple of `T`'s alignment.
    ///
    /// # Example
    ///
    /// ```
    /// let mut shm = shmbridge::SharedMemory::create_unique("doc_view", 1024 * 8)?;
    /// let floats = shm.view_mut::<f64>(0, 2)?;
    /// floats[0] = 3.14159;
    /// floats[1] = 2.71828;
    /// assert_eq!(shm.view::<f64>(8, 1)?, &[2.71828]);
    /// assert!(shm.view::<f64>(4, 1).is_err()); // misaligned
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn view<T: Pod>(&self, offset: usize, count: usize) -> Result<&[T]> {
        let range = self.typed_range::<T>(offset, Some(count))?;
        bytemuck::try_cast_slice(self.bytes(range)).map_err(|_| self.misaligned::<T>(offset))
    }

    /// `count` values of `T` starting at byte `offset`, writable.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    ///
    /// # Errors
    ///
    /// As [`view`](Self::view), and [`Error::ReadOnly`] on a read-only segment.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::SharedMemory;
    ///
    /// let mut shm = SharedMemory::create_unique("doc_view_mut", 4096)?;
    /// shm.view_mut::<i32>(16, 4)?.copy_from_slice(&[1, -2, 3, -4]);
    /// assert_eq!(shm.view::<i32>(16, 4)?, &[1, -2, 3, -4]);
    /// assert!(shm.view_mut::<i32>(18, 1).is_err()); // misaligned
    /// assert!(shm.view_mut::<u64>(4090, 1).is_err()); // out of bounds
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn view_mut<T: Pod>(&mut self, offset: usize, count: usize) -> Result<&mut [T]> {
        let range = self.typed_range::<T>(offset, Some(count))?;
        self.cast_mut(offset, range)
    }

    /// As many whole values of `T` as fit from byte `offset` to the end.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if `offset` is past the end, [`Error::Misaligned`] if
    /// it is not a multiple of `T`'s alignment.
    pub fn view_from<T: Pod>(&self, offset: usize) -> Result<&[T]> {
        let range = self.typed_range::<T>(offset, None)?;
        bytemuck::try_cast_slice(self.bytes(range)).map_err(|_| self.misaligned::<T>(offset))
    }

    /// As many whole values of `T` as fit from byte `offset` to the end, writable.
    ///
    /// Zero-copy, so unguarded: if another process shrinks the segment, touching a
    /// vanished page through it raises SIGBUS (see [`SharedMemory`]'s "A peer that
    /// shrinks the segment").
    ///
    /// # Errors
    ///
    /// As [`view_from`](Self::view_from), and [`Error::ReadOnly`] on a read-only
    /// segment.
    pub fn view_from_mut<T: Pod>(&mut self, offset: usize) -> Result<&mut [T]> {
        let range = self.typed_range::<T>(offset, None)?;
        self.cast_mut(offset, range)
    }

    fn cast_mut<T: Pod>(
        &mut self,
        offset: usize,
        range: std::ops::Range<usize>,
    ) -> Result<&mut [T]> {
        self.check_writable()?;
        let misaligned = self.misaligned::<T>(offset);
        // SAFETY: the range lies in the segment (typed_range), the mapping is writable
        // (checked above), and &mut self makes this the only reference into it.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.mapping_ptr().add(range.start), range.len())
        };
        bytemuck::try_cast_slice_mut(bytes).map_err(|_| misaligned)
    }

    /// The bytes of `range` alone: a reference covers exactly what the caller asked
    /// for, so it never overlaps words that other code updates atomically (such as
    /// an array header's generation counter).
    fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        debug_assert!(range.end <= self.len());
        // SAFETY: callers pass ranges checked by typed_range to lie in the live
        // mapping, which &self keeps alive; any byte is a valid u8.
        unsafe { std::slice::from_raw_parts(self.mapping_ptr().add(range.start), range.len()) }
    }

    /// The byte range of `count` (or as many as fit) values of `T` at `offset`,
    /// checked against the segment's bounds and `T`'s alignment.
    fn typed_range<T: Pod>(
        &self,
        offset: usize,
        count: Option<usize>,
    ) -> Result<std::ops::Range<usize>> {
        const { assert!(size_of::<T>() > 0, "views of zero-sized types are meaningless") };
        let size = size_of::<T>();
        let available = self.len().checked_sub(offset);
        let count = match (count, available) {
            (Some(count), _) => count,
            (None, Some(available)) => available / size,
            (None, None) => 0,
        };
        let len = count.checked_mul(size);
        let end = len.and_then(|len| offset.checked_add(len));
        match end {
            Some(end) if end <= self.len() => {}
            _ => return Err(self.out_of_bounds(offset as u64, len.unwrap_or(usize::MAX))),
        }
        // The mapping starts on a page boundary, so the address is aligned exactly
        // when the offset is.
        if !offset.is_multiple_of(align_of::<T>()) {
            return Err(self.misaligned::<T>(offset));
        }
        Ok(offset..offset + count * size)
    }

    fn misaligned<T>(&self, offset: usize) -> Error {
        Error::Misaligned {
            name: self.name().to_owned(),
            offset: offset as u64,
            type_name: std::any::type_name::<T>(),
            align: align_of::<T>(),
        }
    }

    /// The 4-byte word at `offset` as an atomic, for structures that live in the
    /// segment (synchronization words, counters). The caller checked that the word
    /// lies in the segment and is aligned; this asserts it.
    pub(crate) fn atomic_u32(&self, offset: usize) -> &std::sync::atomic::AtomicU32 {
        assert!(offset + 4 <= self.len() && offset.is_multiple_of(4), "word {offset} out of place");
        // SAFETY: the word lies inside the live mapping and is 4-aligned (asserted; the
        // mapping starts on a page); AtomicU32 has u32's layout and every bit pattern is
        // valid. Structures that use these words never hand out non-atomic references
        // to them, so all access in this process is atomic, and &self keeps the mapping.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.mapping_ptr().add(offset).cast()) }
    }

    /// The 8-byte word at `offset` as an atomic (see [`atomic_u32`](Self::atomic_u32)).
    pub(crate) fn atomic_u64(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(offset + 8 <= self.len() && offset.is_multiple_of(8), "word {offset} out of place");
        // SAFETY: as in atomic_u32, with 8-byte alignment.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.mapping_ptr().add(offset).cast()) }
    }

    /// A counter in the segment for tests of the synchronization primitives.
    #[doc(hidden)]
    pub fn atomic_counter_for_tests(&self, offset: usize) -> &std::sync::atomic::AtomicU64 {
        self.atomic_u64(offset)
    }

    fn check_writable(&self) -> Result<()> {
        if self.is_writable() {
            Ok(())
        } else {
            Err(Error::ReadOnly { name: self.name().to_owned() })
        }
    }
}
