//! Typed access to a segment: `SharedSlice`s and copies (sound from safe code),
//! atomic words, and, for callers who can vouch for exclusive access, plain
//! references (`unsafe`) and raw pointers.

use std::sync::atomic::{AtomicU32, AtomicU64};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::segment::SharedMemory;
use crate::shared_slice::SharedSlice;

/// The spec's typed-slice helpers map onto [`SharedSlice`]s:
///
/// | spec (Go)                  | shmbridge                           |
/// |----------------------------|-------------------------------------|
/// | `GetFloat32Slice(offset)`  | `shm.slice_from::<f32>(offset)`     |
/// | `GetFloat64Slice(offset)`  | `shm.slice_from::<f64>(offset)`     |
/// | `GetInt16Slice(offset)`    | `shm.slice_from::<i16>(offset)`     |
/// | `GetInt32Slice(offset)`    | `shm.slice_from::<i32>(offset)`     |
/// | `GetInt64Slice(offset)`    | `shm.slice_from::<i64>(offset)`     |
/// | `GetUint16Slice(offset)`   | `shm.slice_from::<u16>(offset)`     |
/// | `GetUint32Slice(offset)`   | `shm.slice_from::<u32>(offset)`     |
/// | `GetUint64Slice(offset)`   | `shm.slice_from::<u64>(offset)`     |
/// | `GetByteSlice(offset)`     | `shm.slice_from::<u8>(offset)`      |
/// | `GetTypedSlice[T](shm, o)` | `shm.slice_from::<T>(o)`, any `Pod` |
///
/// Where the Go helpers return a slice that may run past the segment or start
/// misaligned, these check offset, length and alignment and return an error
/// instead. Where Go hands out a plain slice of memory other processes write,
/// these hand out no reference: each value is read or written afresh (see
/// [`SharedSlice`]). Plain slices (`&[T]`, `&mut [T]`) exist too, as `unsafe`
/// views ([`view`](Self::view) and its siblings), for code that can vouch that
/// nobody writes the bytes meanwhile (docs/SAFETY.md).
impl SharedMemory {
    /// `count` values of `T` starting at byte `offset`, as a [`SharedSlice`].
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if they do not fit in the segment,
    /// [`Error::Misaligned`] if `offset` is not a multiple of `T`'s alignment.
    ///
    /// # Example
    ///
    /// ```
    /// let shm = shmbridge::SharedMemory::create_unique("doc_slice", 1024 * 8)?;
    /// let floats = shm.slice::<f64>(0, 2)?;
    /// floats.copy_from_slice(&[3.14159, 2.71828])?;
    /// assert_eq!(shm.slice::<f64>(8, 1)?.get(0), Some(2.71828));
    /// assert!(shm.slice::<f64>(4, 1).is_err()); // misaligned
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn slice<T: Pod>(&self, offset: usize, count: usize) -> Result<SharedSlice<'_, T>> {
        let range = self.typed_range::<T>(offset, Some(count))?;
        Ok(SharedSlice::new(self, range.start, count))
    }

    /// As many whole values of `T` as fit from byte `offset` to the end, as a
    /// [`SharedSlice`].
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if `offset` is past the end, [`Error::Misaligned`] if
    /// it is not a multiple of `T`'s alignment.
    pub fn slice_from<T: Pod>(&self, offset: usize) -> Result<SharedSlice<'_, T>> {
        let range = self.typed_range::<T>(offset, None)?;
        Ok(SharedSlice::new(self, range.start, range.len() / size_of::<T>()))
    }

    /// A copy of the value of `T` at byte `offset` (a guarded copy; any
    /// alignment).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if it does not fit, [`Error::PagesLost`] if a peer
    /// shrank the segment.
    ///
    /// # Example
    ///
    /// ```
    /// let shm = shmbridge::SharedMemory::create_unique("doc_value", 64)?;
    /// shm.write_value(8, &42u64)?;
    /// assert_eq!(shm.read_value::<u64>(8)?, 42);
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn read_value<T: Pod>(&self, offset: usize) -> Result<T> {
        let mut value = T::zeroed();
        let len = size_of::<T>();
        if len > self.len().saturating_sub(offset) {
            return Err(self.out_of_bounds(offset as u64, len));
        }
        // SAFETY: `value` is our own, `len` bytes; the source was checked to lie in
        // the segment; the copy takes no reference into shared memory.
        unsafe {
            self.read_at_raw(bytemuck::bytes_of_mut(&mut value).as_mut_ptr(), len, offset as u64)
        }?;
        Ok(value)
    }

    /// Writes `value` at byte `offset` (a guarded copy; any alignment; all or
    /// nothing).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`], [`Error::ReadOnly`], [`Error::PagesLost`].
    pub fn write_value<T: Pod>(&self, offset: usize, value: &T) -> Result<()> {
        let bytes = bytemuck::bytes_of(value);
        // SAFETY: `bytes` is valid for reads and only read; safe code holds no
        // reference into the destination (views are unsafe, and promise that nobody
        // writes meanwhile); bounds are checked by the callee.
        unsafe { self.write_all_at_raw(bytes.as_ptr(), bytes.len(), offset as u64) }
    }

    /// The 32-bit word at byte `offset` as an atomic: the sound way to share a
    /// counter or a flag with other processes.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`], [`Error::Misaligned`] (4-byte alignment).
    pub fn atomic_u32_at(&self, offset: usize) -> Result<&AtomicU32> {
        self.typed_range::<u32>(offset, Some(1))?;
        Ok(self.atomic_u32(offset))
    }

    /// The 64-bit word at byte `offset` as an atomic (see
    /// [`atomic_u32_at`](Self::atomic_u32_at)).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`], [`Error::Misaligned`] (8-byte alignment).
    pub fn atomic_u64_at(&self, offset: usize) -> Result<&AtomicU64> {
        self.typed_range::<u64>(offset, Some(1))?;
        Ok(self.atomic_u64(offset))
    }

    /// The whole segment as bytes.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody may write these bytes: no other handle of
    /// this process (and no other slice through this one), and no other process
    /// (which only a protocol can promise: the spec's call-and-answer, a lock, an
    /// event). See docs/SAFETY.md. A [`SharedSlice`] or a copy needs no promise.
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
    /// let shm = SharedMemory::create_unique("doc_as_slice", 4096)?;
    /// shm.write_value(0, b"hello")?;
    /// // SAFETY: no other handle or process has this segment, and nothing writes it
    /// // while the slice lives.
    /// assert_eq!(&unsafe { shm.as_slice() }[..5], b"hello");
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live for as long as &self, holds len() bytes, and is
        // readable; any byte pattern is a valid u8; the caller vouches for writers.
        unsafe { std::slice::from_raw_parts(self.mapping_ptr(), self.len()) }
    }

    /// The whole segment as mutable bytes.
    ///
    /// # Safety
    ///
    /// While the slice lives, nobody else may read or write these bytes: no other
    /// handle of this process, and no other process. See docs/SAFETY.md.
    ///
    /// Zero-copy, so unguarded (see [`as_slice`](Self::as_slice)).
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only segment.
    pub unsafe fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        self.check_writable()?;
        // SAFETY: as in as_slice, and the mapping is writable (checked above); &mut
        // self rules out other references through this handle, and the caller vouches
        // for everyone else.
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

    /// `count` values of `T` starting at byte `offset`, as a plain slice.
    ///
    /// # Safety
    ///
    /// As [`as_slice`](Self::as_slice): nobody may write these bytes while the
    /// slice lives.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if they do not fit in the segment,
    /// [`Error::Misaligned`] if `offset` is not a multiple of `T`'s alignment.
    ///
    /// # Example
    ///
    /// ```
    /// let shm = shmbridge::SharedMemory::create_unique("doc_view", 1024 * 8)?;
    /// shm.slice::<f64>(0, 2)?.copy_from_slice(&[3.14159, 2.71828])?;
    /// // SAFETY: no other handle or process writes the segment meanwhile.
    /// assert_eq!(unsafe { shm.view::<f64>(8, 1) }?, &[2.71828]);
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub unsafe fn view<T: Pod>(&self, offset: usize, count: usize) -> Result<&[T]> {
        let range = self.typed_range::<T>(offset, Some(count))?;
        // SAFETY: the caller vouches for writers (see # Safety).
        let bytes = unsafe { self.bytes(range) };
        bytemuck::try_cast_slice(bytes).map_err(|_| self.misaligned::<T>(offset))
    }

    /// `count` values of `T` starting at byte `offset`, as a plain mutable slice.
    ///
    /// # Safety
    ///
    /// As [`as_mut_slice`](Self::as_mut_slice): nobody else may read or write these
    /// bytes while the slice lives.
    ///
    /// # Errors
    ///
    /// As [`view`](Self::view), and [`Error::ReadOnly`] on a read-only segment.
    pub unsafe fn view_mut<T: Pod>(&mut self, offset: usize, count: usize) -> Result<&mut [T]> {
        let range = self.typed_range::<T>(offset, Some(count))?;
        // SAFETY: the caller vouches for other readers and writers.
        unsafe { self.cast_mut(offset, range) }
    }

    /// As many whole values of `T` as fit from byte `offset` to the end, as a
    /// plain slice.
    ///
    /// # Safety
    ///
    /// As [`view`](Self::view).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if `offset` is past the end, [`Error::Misaligned`] if
    /// it is not a multiple of `T`'s alignment.
    pub unsafe fn view_from<T: Pod>(&self, offset: usize) -> Result<&[T]> {
        let range = self.typed_range::<T>(offset, None)?;
        // SAFETY: the caller vouches for writers.
        let bytes = unsafe { self.bytes(range) };
        bytemuck::try_cast_slice(bytes).map_err(|_| self.misaligned::<T>(offset))
    }

    /// As many whole values of `T` as fit from byte `offset` to the end, as a
    /// plain mutable slice.
    ///
    /// # Safety
    ///
    /// As [`view_mut`](Self::view_mut).
    ///
    /// # Errors
    ///
    /// As [`view_from`](Self::view_from), and [`Error::ReadOnly`] on a read-only
    /// segment.
    pub unsafe fn view_from_mut<T: Pod>(&mut self, offset: usize) -> Result<&mut [T]> {
        let range = self.typed_range::<T>(offset, None)?;
        // SAFETY: the caller vouches for other readers and writers.
        unsafe { self.cast_mut(offset, range) }
    }

    /// The bytes of `range` as a mutable typed slice.
    ///
    /// # Safety
    ///
    /// As [`view_mut`](Self::view_mut).
    unsafe fn cast_mut<T: Pod>(
        &mut self,
        offset: usize,
        range: std::ops::Range<usize>,
    ) -> Result<&mut [T]> {
        self.check_writable()?;
        let misaligned = self.misaligned::<T>(offset);
        // SAFETY: the range lies in the segment (typed_range), the mapping is writable
        // (checked above); &mut self rules out references through this handle, and the
        // caller vouches for everyone else.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(self.mapping_ptr().add(range.start), range.len())
        };
        bytemuck::try_cast_slice_mut(bytes).map_err(|_| misaligned)
    }

    /// The bytes of `range` alone: a reference covers exactly what the caller asked
    /// for, so it never overlaps words that other code updates atomically (such as
    /// an array header's generation counter).
    ///
    /// # Safety
    ///
    /// `range` lies in the segment, and nobody writes it while the slice lives.
    unsafe fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        debug_assert!(range.end <= self.len());
        // SAFETY: the range lies in the live mapping, which &self keeps alive; any
        // byte is a valid u8; the caller vouches for writers.
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
        // The address, not just the offset: the mapping starts on a page boundary,
        // but a type may ask for more.
        if !(self.mapping_ptr() as usize).wrapping_add(offset).is_multiple_of(align_of::<T>()) {
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
        // valid. Safe code reaches shared bytes only through atomics, volatile accesses
        // and copies (plain references are unsafe views whose callers promise nobody
        // writes meanwhile), so no non-atomic reference aliases the word; &self keeps
        // the mapping.
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
