//! `SharedSlice`: typed access to part of a segment that no reference spans, so
//! it stays sound while other handles and processes read and write the same bytes.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::ptr::NonNull;
#[cfg(all(target_has_atomic = "64", target_pointer_width = "64"))]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, Ordering};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::segment::SharedMemory;

/// `len` values of `T` in a segment, read and written one at a time or copied in
/// bulk, never through a Rust reference.
///
/// This is the sound way to work on shared bytes from safe code: another handle in
/// this process, or another process, may write the same values at any moment; a
/// reference (`&[T]`) would promise the compiler that nobody does, while each
/// access here reads or writes memory afresh, exactly once. Values of 1, 2, 4 or 8
/// bytes (every integer and float type) are read and written as one relaxed atomic
/// access, so threads of this process racing on them through any handle are no data
/// race; other types by a volatile access. A value of another type, or a bulk copy,
/// that another process writes meanwhile may come out as a mix of old and new bytes
/// (every bit pattern is a valid `Pod` value, so that is a wrong value, never an
/// invalid one): coordinate with an event, a lock or the channel for whole records.
/// `docs/SAFETY.md` gives the whole model.
///
/// Bulk copies ([`copy_to_slice`](Self::copy_to_slice),
/// [`copy_from_slice`](Self::copy_from_slice), [`to_vec`](Self::to_vec)) are
/// guarded: pages a peer removed by shrinking the segment are
/// [`Error::PagesLost`], never a signal. Element accesses are not (a shrunk
/// segment faults them, as any view).
///
/// # Example
///
/// The spec's `GetFloat64Slice(offset)`, soundly:
///
/// ```
/// use shmbridge::SharedMemory;
///
/// let shm = SharedMemory::create_unique("doc_shared_slice", 4096)?;
/// let floats = shm.slice_from::<f64>(64)?; // 504 values
/// floats.set(0, 3.14159)?;
/// floats.set(1, 2.71828)?;
/// assert_eq!(floats.get(1), Some(2.71828));
/// let mut first = [0.0; 2];
/// floats.subslice(..2).unwrap().copy_to_slice(&mut first)?;
/// assert_eq!(first, [3.14159, 2.71828]);
/// # Ok::<(), shmbridge::Error>(())
/// ```
pub struct SharedSlice<'a, T> {
    shm: &'a SharedMemory,
    /// The first value's byte offset in the segment (aligned for `T`).
    offset: usize,
    len: usize,
    ptr: NonNull<T>,
    _values: PhantomData<&'a [T]>,
}

// SAFETY: a SharedSlice accesses shared memory only through atomic or volatile
// accesses and guarded copies, never references, so using it from several threads is no different from
// several processes using the segment; it borrows the segment, which is Sync.
unsafe impl<T: Pod> Send for SharedSlice<'_, T> {}
// SAFETY: as for Send.
unsafe impl<T: Pod> Sync for SharedSlice<'_, T> {}

impl<'a, T: Pod> SharedSlice<'a, T> {
    /// `len` values at byte `offset` of `shm`; the caller checked bounds and
    /// alignment.
    pub(crate) fn new(shm: &'a SharedMemory, offset: usize, len: usize) -> Self {
        debug_assert!(offset + len * size_of::<T>() <= shm.len());
        let ptr = NonNull::new(shm.as_mut_ptr().wrapping_add(offset).cast::<T>())
            .expect("a mapping is never at address 0");
        debug_assert!(ptr.is_aligned());
        Self { shm, offset, len, ptr, _values: PhantomData }
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The byte offset of the first value in the segment.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Value `index`, read afresh (`None` past the end).
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        // SAFETY: index < len, so the value lies in the live mapping (checked when the
        // slice was made), aligned for T; any bit pattern is a valid Pod T.
        Some(unsafe { load(self.ptr.as_ptr().add(index)) })
    }

    /// Writes `value` at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] past the end, [`Error::ReadOnly`] on a read-only
    /// segment.
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        self.check_writable()?;
        if index >= self.len {
            return Err(self.out_of_bounds(index, 1));
        }
        // SAFETY: as in get, and the mapping is writable (checked).
        unsafe { store(self.ptr.as_ptr().add(index), value) };
        Ok(())
    }

    /// Writes `value` into every element.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only segment.
    pub fn fill(&self, value: T) -> Result<()> {
        self.check_writable()?;
        for i in 0..self.len {
            // SAFETY: as in set (i < len, writable).
            unsafe { store(self.ptr.as_ptr().add(i), value) };
        }
        Ok(())
    }

    /// The values in order, each read afresh.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        (0..self.len).map(|i| self.get(i).expect("i < len"))
    }

    /// Copies all the values into `dst`, which must be as long; a guarded copy.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if the lengths differ, [`Error::PagesLost`] if a
    /// peer shrank the segment.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<()> {
        if dst.len() != self.len {
            return Err(self.out_of_bounds(0, dst.len()));
        }
        // SAFETY: dst is our own buffer of len values; the source range was checked to
        // lie in the segment; the copy takes no reference into shared memory.
        unsafe {
            self.shm.read_at_raw(dst.as_mut_ptr().cast(), size_of_val(dst), self.offset as u64)
        }?;
        Ok(())
    }

    /// Copies `src`, which must be as long, over all the values; a guarded copy.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] if the lengths differ, [`Error::ReadOnly`],
    /// [`Error::PagesLost`].
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        if src.len() != self.len {
            return Err(self.out_of_bounds(0, src.len()));
        }
        // SAFETY: src is valid for reads (it is a slice) and only read; safe code holds
        // no reference into the destination (views are unsafe, and promise that
        // nobody writes meanwhile), which was checked to lie in the segment.
        unsafe {
            self.shm.write_all_at_raw(src.as_ptr().cast(), size_of_val(src), self.offset as u64)
        }
    }

    /// A copy of all the values (a guarded copy).
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] if a peer shrank the segment.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut values = vec![T::zeroed(); self.len];
        self.copy_to_slice(&mut values)?;
        Ok(values)
    }

    /// The values in `range` (`None` if it does not lie in this slice).
    pub fn subslice(&self, range: impl RangeBounds<usize>) -> Option<SharedSlice<'a, T>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1)?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        (start <= end && end <= self.len)
            .then(|| SharedSlice::new(self.shm, self.offset + start * size_of::<T>(), end - start))
    }

    /// The same bytes as values of `U`: typed access in place to, say, a channel
    /// message or loan (`SharedSlice<u8>`). `None` unless the bytes start aligned
    /// for `U` and hold a whole number of `U`s (a zero-sized `U` never fits).
    ///
    /// # Example
    ///
    /// ```
    /// let shm = shmbridge::SharedMemory::create_unique("doc_cast", 64)?;
    /// let bytes = shm.slice::<u8>(8, 16)?;
    /// let words = bytes.cast::<u64>().expect("8-aligned, 16 bytes");
    /// words.set(1, u64::MAX)?;
    /// assert_eq!(bytes.get(15), Some(0xff));
    /// assert!(bytes.subslice(1..9).unwrap().cast::<u64>().is_none()); // misaligned
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn cast<U: Pod>(&self) -> Option<SharedSlice<'a, U>> {
        let bytes = self.len * size_of::<T>();
        let fits = size_of::<U>() > 0
            && bytes.is_multiple_of(size_of::<U>())
            && (self.ptr.as_ptr() as usize).is_multiple_of(align_of::<U>());
        fits.then(|| SharedSlice::new(self.shm, self.offset, bytes / size_of::<U>()))
    }

    /// The first value's address, for FFI.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }

    /// The values as a plain slice.
    ///
    /// # Safety
    ///
    /// See [`SharedMemory::view`]: while the slice lives, nobody (no other handle in
    /// this process, no other process) may write these bytes.
    pub unsafe fn as_slice(&self) -> &'a [T] {
        // SAFETY: the range lies in the mapping, which 'a keeps alive, aligned for T;
        // the caller vouches that nobody writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn check_writable(&self) -> Result<()> {
        if self.shm.is_writable() {
            Ok(())
        } else {
            Err(Error::ReadOnly { name: self.shm.name().to_owned() })
        }
    }

    fn out_of_bounds(&self, index: usize, count: usize) -> Error {
        Error::OutOfBounds {
            name: self.shm.name().to_owned(),
            offset: (self.offset + index * size_of::<T>()) as u64,
            len: (count * size_of::<T>()) as u64,
            size: (self.len * size_of::<T>()) as u64,
        }
    }
}

/// Reads the value at `ptr` in one access: a relaxed atomic load when `T` has the
/// size of an atomic integer and at least its alignment, else a volatile read.
/// Either way the compiler reads memory exactly once, and assumes nothing about
/// what other threads or processes do there. (The branch is chosen at compile
/// time.)
///
/// # Safety
///
/// `ptr` is aligned for `T` and valid for reads of it, in a live mapping; nothing
/// holds a Rust reference to those bytes.
#[inline(always)]
unsafe fn load<T: Pod>(ptr: *const T) -> T {
    let ptr = ptr.cast_mut();
    // SAFETY: (every arm) the caller's contract; each atomic arm runs only when T has
    // exactly that integer's size and at least its alignment, so the atomic covers
    // the value and is aligned. Relaxed loads no wider than a register are allowed on
    // read-only memory too (std::sync::atomic, "Atomic accesses to read-only
    // memory"), hence 8-byte atomics only on 64-bit targets.
    unsafe {
        match (size_of::<T>(), align_of::<T>()) {
            (1, _) => from_bits(AtomicU8::from_ptr(ptr.cast()).load(Ordering::Relaxed)),
            (2, 2..) => from_bits(AtomicU16::from_ptr(ptr.cast()).load(Ordering::Relaxed)),
            (4, 4..) => from_bits(AtomicU32::from_ptr(ptr.cast()).load(Ordering::Relaxed)),
            #[cfg(all(target_has_atomic = "64", target_pointer_width = "64"))]
            (8, 8..) => from_bits(AtomicU64::from_ptr(ptr.cast()).load(Ordering::Relaxed)),
            _ => ptr.read_volatile(),
        }
    }
}

/// Writes `value` at `ptr` in one access, as [`load`] reads.
///
/// # Safety
///
/// As [`load`], and the mapping is writable.
#[inline(always)]
unsafe fn store<T: Pod>(ptr: *mut T, value: T) {
    // SAFETY: as in load.
    unsafe {
        match (size_of::<T>(), align_of::<T>()) {
            (1, _) => AtomicU8::from_ptr(ptr.cast()).store(to_bits(value), Ordering::Relaxed),
            (2, 2..) => AtomicU16::from_ptr(ptr.cast()).store(to_bits(value), Ordering::Relaxed),
            (4, 4..) => AtomicU32::from_ptr(ptr.cast()).store(to_bits(value), Ordering::Relaxed),
            #[cfg(all(target_has_atomic = "64", target_pointer_width = "64"))]
            (8, 8..) => AtomicU64::from_ptr(ptr.cast()).store(to_bits(value), Ordering::Relaxed),
            _ => ptr.write_volatile(value),
        }
    }
}

/// `bits` as a `T` of the same size (the callers' arms guarantee it).
#[inline(always)]
fn from_bits<B: Pod, T: Pod>(bits: B) -> T {
    bytemuck::pod_read_unaligned(bytemuck::bytes_of(&bits))
}

/// `value` as the integer `B` of the same size.
#[inline(always)]
fn to_bits<T: Pod, B: Pod>(value: T) -> B {
    bytemuck::pod_read_unaligned(bytemuck::bytes_of(&value))
}

impl<T> fmt::Debug for SharedSlice<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSlice")
            .field("segment", &self.shm.name())
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{load, store};

    /// A buffer's address, handed to threads (raw pointers are not `Send`).
    #[derive(Clone, Copy)]
    struct Base(*mut u8);
    // SAFETY: only an address; the test says who touches what behind it.
    unsafe impl Send for Base {}

    impl Base {
        fn at<T>(self, offset: usize) -> *mut T {
            self.0.wrapping_add(offset).cast()
        }
    }

    /// Sixteen-aligned room for the values below.
    #[repr(C, align(16))]
    struct Buffer([u64; 4]);

    /// Element accesses of 1, 2, 4 and 8 bytes are atomic: threads racing on them
    /// are no data race. Miri, which reports data races (and mixed or misaligned
    /// atomics) as undefined behaviour, runs this (`./dev miri`); volatile accesses
    /// there would fail it.
    #[test]
    fn racing_element_accesses_are_atomic() {
        let mut buffer = Buffer([0; 4]);
        let base = Base(buffer.0.as_mut_ptr().cast());
        std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..20u8 {
                    // SAFETY: every pointer lies in `buffer`, aligned for its type, one
                    // type per location; nothing else touches `buffer` until both
                    // threads end.
                    unsafe {
                        store(base.at::<u8>(0), i);
                        store(base.at::<i16>(2), -i16::from(i));
                        store(base.at::<f32>(4), f32::from(i));
                        store(base.at::<u64>(8), u64::from(i) << 40);
                        store(base.at::<f64>(16), f64::from(i) / 4.0);
                    }
                }
            });
            s.spawn(move || {
                for _ in 0..20 {
                    // SAFETY: as in the writer.
                    let (a, b, c, d, e) = unsafe {
                        (
                            load(base.at::<u8>(0)),
                            load(base.at::<i16>(2)),
                            load(base.at::<f32>(4)),
                            load(base.at::<u64>(8)),
                            load(base.at::<f64>(16)),
                        )
                    };
                    // Each value is one the writer wrote whole (or the initial 0).
                    assert!(a < 20 && (-19..=0).contains(&b) && c < 20.0);
                    assert!(d.trailing_zeros() >= 40 && e < 5.0);
                }
            });
        });
        assert_eq!(buffer.0[1], 19 << 40);
        assert_eq!(f64::from_bits(buffer.0[2]), 19.0 / 4.0);
    }

    /// Values of other sizes round-trip through the volatile path, bit for bit.
    #[test]
    fn other_sizes_round_trip() {
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(C)]
        struct Pair(f32, u32);
        let mut buffer = Buffer([0; 4]);
        let base = Base(buffer.0.as_mut_ptr().cast());
        // SAFETY: each pointer lies in `buffer`, aligned for its type; one thread.
        unsafe {
            store(base.at::<[u8; 3]>(0), [1, 2, 3]);
            assert_eq!(load(base.at::<[u8; 3]>(0)), [1, 2, 3]);
            store(base.at::<Pair>(8), Pair(-0.5, 7));
            assert_eq!(load(base.at::<Pair>(8)), Pair(-0.5, 7));
            store(base.at::<u128>(16), u128::MAX - 1);
            assert_eq!(load(base.at::<u128>(16)), u128::MAX - 1);
            let nan = f32::from_bits(0x7fc0_1234); // a NaN payload survives the integer path
            store(base.at::<f32>(4), nan);
            assert_eq!(load(base.at::<f32>(4)).to_bits(), 0x7fc0_1234);
        }
    }
}
