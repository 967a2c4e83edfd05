//! Self-describing shared arrays: a small versioned header (dtype, shape, strides,
//! a generation counter) in front of the data, so that the other side opens an
//! array by name alone. The format is specified in `docs/FORMAT.md`.
//!
//! [`SharedArray<T>`] is the typed face for Rust code; [`ArraySegment`] is the
//! untyped one (any supported dtype, any valid strides), for tools and bindings.
//!
//! ```
//! use shmbridge::array::{Order, SharedArray};
//!
//! let name = shmbridge::unique_name("doc_array")?;
//! let frame = SharedArray::<f32>::create(&name, &[480, 640])?;
//! frame.elements().fill(0.5)?; // in place, one value at a time
//! frame.bump_generation()?; // tell readers a new frame is in
//!
//! // Another process, knowing only the name:
//! let seen = SharedArray::<f32>::open(&name)?;
//! assert_eq!(seen.shape(), &[480, 640]);
//! assert_eq!(seen.elements().get(0), Some(0.5));
//! assert!(SharedArray::<f64>::open(&name).is_err()); // wrong dtype: an error, not a misread
//! # Ok::<(), shmbridge::Error>(())
//! ```

mod element;
mod layout;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering, fence};

pub use element::{Bool, Element};
pub use layout::{ArrayLayout, DATA_ALIGN, DType, MAGIC, MAX_NDIM, Order, VERSION};

use crate::error::{Error, Result};
use crate::options::SharedMemoryOptions;
use crate::record::SegmentKind;
use crate::segment::SharedMemory;
use crate::shared_slice::SharedSlice;

/// An array segment of any supported dtype: the segment and its validated layout.
///
/// The header is read once, at open, into a private copy: later changes to the
/// header bytes by another process cannot move the view out of bounds. Only the
/// generation counter is read live.
///
/// # Example
///
/// ```
/// use shmbridge::SharedMemory;
/// use shmbridge::array::{ArraySegment, Order};
///
/// let name = shmbridge::unique_name("doc_untyped")?;
/// let options = SharedMemory::options();
/// let made = ArraySegment::create(&options, &name, "<i2", &[2, 3], Order::F)?;
/// // A tool that knows nothing of the contents reads the header:
/// let seen = ArraySegment::open(&options, &name)?;
/// assert_eq!(seen.layout().dtype().typestr(), "<i2");
/// assert_eq!(seen.layout().shape(), &[2, 3]);
/// assert_eq!(seen.layout().strides(), &[2, 4]); // Fortran order
/// assert_eq!(seen.data_bytes().len(), 12);
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct ArraySegment {
    shm: SharedMemory,
    layout: ArrayLayout,
}

impl ArraySegment {
    /// Creates a segment holding a zero-filled array of `dtype` (a NumPy type
    /// string such as `"<f8"`) and `shape`, laid out in `order`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArray`] for an unsupported dtype or a shape too large, and
    /// the errors of [`SharedMemoryOptions::create`].
    pub fn create(
        options: &SharedMemoryOptions,
        name: &str,
        dtype: &str,
        shape: &[usize],
        order: Order,
    ) -> Result<Self> {
        let invalid = |reason| Error::InvalidArray { name: name.to_owned(), reason };
        let layout = ArrayLayout::new(DType::parse(dtype).map_err(invalid)?, shape, order)
            .map_err(invalid)?;
        let mut shm =
            options.clone().kind(SegmentKind::Array).create(name, layout.segment_size())?;
        shm.write_all_at(&layout.encode(0), 0).map_err(|e| Error::from_os(name, "write", e))?;
        // The magic value goes in last, with release ordering: a reader that sees it
        // (with acquire ordering) sees the whole header.
        fence(Ordering::Release);
        shm.guarded(|| magic(&shm).store(u64::from_ne_bytes(MAGIC), Ordering::Release))
            .map_err(|_| shm.pages_lost_error())?;
        Ok(Self { shm, layout })
    }

    /// Opens an existing array segment, validating its header.
    ///
    /// # Errors
    ///
    /// [`Error::BadHeader`] if the segment holds no valid array header (naming
    /// the field that is wrong), and the errors of [`SharedMemoryOptions::open`].
    pub fn open(options: &SharedMemoryOptions, name: &str) -> Result<Self> {
        Self::from_segment(options.open(name)?)
    }

    /// Reads and validates the array header of an open segment.
    ///
    /// # Errors
    ///
    /// [`Error::BadHeader`] if the segment holds no valid array header.
    pub fn from_segment(shm: SharedMemory) -> Result<Self> {
        let bad = |reason: String| Error::BadHeader {
            name: shm.name().to_owned(),
            what: "array",
            reason,
        };
        if shm.len() < layout::FIXED_LEN {
            return Err(bad(format!("{} bytes is too small to hold an array header", shm.len())));
        }
        let found = shm
            .guarded(|| magic(&shm).load(Ordering::Acquire).to_ne_bytes())
            .map_err(|_| shm.pages_lost_error())?;
        if found != MAGIC {
            return Err(bad(format!(
                "not a shmbridge array (magic {found:02x?}); it may be a raw segment, or its \
                 creator has not finished writing the header"
            )));
        }
        // Copy the header out of shared memory before validating it, so another
        // process cannot change it between the check and the use.
        let mut header = vec![0u8; layout::header_len(layout::MAX_NDIM).min(shm.len())];
        shm.read_exact_at(&mut header, 0).map_err(|e| bad(e.to_string()))?;
        let layout = ArrayLayout::parse(&header, shm.len()).map_err(bad)?;
        Ok(Self { shm, layout })
    }

    /// The validated layout: dtype, shape, strides, data offset.
    pub fn layout(&self) -> &ArrayLayout {
        &self.layout
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// Whether the data may be written (`false` for a read-only open).
    pub fn is_writable(&self) -> bool {
        self.shm.is_writable()
    }

    /// The first byte of the data region, for FFI (NumPy, DLPack). Valid for
    /// [`ArrayLayout::data_size`] bytes while `self` lives.
    pub fn data_ptr(&self) -> *mut u8 {
        // The offset was validated against the segment's size.
        self.shm.as_mut_ptr().wrapping_add(self.layout.data_offset())
    }

    /// The data region's bytes, as a [`SharedSlice`] (sound while others write).
    pub fn data_bytes(&self) -> SharedSlice<'_, u8> {
        self.shm
            .slice::<u8>(self.layout.data_offset(), self.layout.data_size())
            .expect("the data region was validated to lie in the segment")
    }

    /// The data region as bytes.
    ///
    /// # Safety
    ///
    /// As [`SharedMemory::view`]: nobody may write the data while the slice lives.
    pub unsafe fn data(&self) -> &[u8] {
        // SAFETY: the caller vouches that nobody writes the data meanwhile.
        unsafe { self.shm.view::<u8>(self.layout.data_offset(), self.layout.data_size()) }
            .expect("the data region was validated to lie in the segment")
    }

    /// The data region as mutable bytes.
    ///
    /// # Safety
    ///
    /// As [`SharedMemory::view_mut`]: nobody else may read or write the data
    /// while the slice lives.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only open.
    pub unsafe fn data_mut(&mut self) -> Result<&mut [u8]> {
        let (start, size) = (self.layout.data_offset(), self.layout.data_size());
        // SAFETY: the caller vouches for other readers and writers.
        match unsafe { self.shm.view_mut::<u8>(start, size) } {
            Err(Error::OutOfBounds { .. }) => unreachable!("the data region was validated"),
            other => other,
        }
    }

    /// The generation counter, which writers bump to say the contents changed.
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] if another process shrank the segment, taking the
    /// header's page (now or before).
    pub fn generation(&self) -> Result<u64> {
        let shm = &self.shm;
        shm.guarded(|| generation(shm).load(Ordering::Acquire)).map_err(|_| shm.pages_lost_error())
    }

    /// Adds one to the generation counter (with release ordering: a reader that
    /// sees the new value sees the writes made before) and returns the new value.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only open; [`Error::PagesLost`] as in
    /// [`generation`](Self::generation) (the bump may not reach other processes).
    pub fn bump_generation(&self) -> Result<u64> {
        if !self.is_writable() {
            return Err(Error::ReadOnly { name: self.name().to_owned() });
        }
        let shm = &self.shm;
        shm.guarded(|| generation(shm).fetch_add(1, Ordering::AcqRel).wrapping_add(1))
            .map_err(|_| shm.pages_lost_error())
    }

    /// The typed array, if its elements are `T`.
    ///
    /// # Errors
    ///
    /// [`Error::DTypeMismatch`] if the dtype is not `T::TYPESTR` (or `T`'s size
    /// or alignment does not fit it), [`Error::BadHeader`] if the elements are not
    /// contiguous (a strided layout can only be opened untyped).
    pub fn typed<T: Element>(self) -> Result<SharedArray<T>> {
        let dtype = self.layout.dtype();
        if dtype.typestr() != T::TYPESTR
            || size_of::<T>() != dtype.itemsize()
            || !dtype.itemsize().is_multiple_of(align_of::<T>())
        {
            return Err(Error::DTypeMismatch {
                name: self.name().to_owned(),
                expected: T::TYPESTR,
                found: dtype.typestr(),
            });
        }
        if !self.layout.is_contiguous() {
            return Err(Error::BadHeader {
                name: self.name().to_owned(),
                what: "array",
                reason: format!(
                    "strides {:?} are not contiguous for shape {:?}; open it untyped",
                    self.layout.strides(),
                    self.layout.shape()
                ),
            });
        }
        Ok(SharedArray { inner: self, _element: PhantomData })
    }

    /// The segment, giving up the array view of it.
    pub fn into_segment(self) -> SharedMemory {
        self.shm
    }
}

/// The magic word at offset 0. ArraySegment never hands out a non-atomic reference
/// to the header words, so every access to them is atomic.
fn magic(shm: &SharedMemory) -> &AtomicU64 {
    shm.atomic_u64(0)
}

/// The generation counter.
fn generation(shm: &SharedMemory) -> &AtomicU64 {
    shm.atomic_u64(layout::GENERATION_AT)
}

/// A shared array of `T`, opened or created by name, with a checked dtype.
///
/// The elements are contiguous (C or Fortran order); [`elements`](Self::elements)
/// gives them in memory order as a [`SharedSlice`] (sound while other processes
/// read and write them), [`to_vec`](Self::to_vec) copies them out. With the
/// `ndarray` feature, `to_ndarray` copies the array with its
/// shape, and the `unsafe` `view` gives an `ndarray` view in place.
///
/// # Example
///
/// ```
/// use shmbridge::SharedMemory;
/// use shmbridge::array::{Order, SharedArray};
///
/// let name = shmbridge::unique_name("doc_array")?;
/// let grid = SharedArray::<i32>::create_with(
///     SharedMemory::options().mode(0o600),
///     &name,
///     &[2, 3],
///     Order::C,
/// )?;
/// grid.elements().copy_from_slice(&[1, 2, 3, 4, 5, 6])?;
///
/// let reader = SharedArray::<i32>::open_with(SharedMemory::options().read_only(true), &name)?;
/// assert_eq!(reader.shape(), &[2, 3]);
/// assert_eq!(reader.to_vec()?, [1, 2, 3, 4, 5, 6]);
/// assert!(!reader.is_writable());
/// # Ok::<(), shmbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct SharedArray<T: Element> {
    inner: ArraySegment,
    _element: PhantomData<T>,
}

impl<T: Element> SharedArray<T> {
    /// Creates a zero-filled array of `shape` in C order, owner-only, unlinked
    /// when dropped.
    ///
    /// # Errors
    ///
    /// As [`ArraySegment::create`].
    pub fn create(name: &str, shape: &[usize]) -> Result<Self> {
        Self::create_with(&SharedMemoryOptions::new(), name, shape, Order::C)
    }

    /// Creates a zero-filled array with the given segment options and order.
    ///
    /// # Errors
    ///
    /// As [`ArraySegment::create`].
    pub fn create_with(
        options: &SharedMemoryOptions,
        name: &str,
        shape: &[usize],
        order: Order,
    ) -> Result<Self> {
        ArraySegment::create(options, name, T::TYPESTR, shape, order)?.typed()
    }

    /// Opens an existing array by name; shape and order come from its header.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::BadHeader`], or [`Error::DTypeMismatch`] if
    /// its elements are not `T`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(&SharedMemoryOptions::new(), name)
    }

    /// Opens an existing array with the given options (e.g. read-only).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(options: &SharedMemoryOptions, name: &str) -> Result<Self> {
        ArraySegment::open(options, name)?.typed()
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Whether the elements may be written (`false` for a read-only open).
    pub fn is_writable(&self) -> bool {
        self.inner.is_writable()
    }

    /// Length of each dimension; empty for a 0-d array.
    pub fn shape(&self) -> &[usize] {
        self.inner.layout.shape()
    }

    /// Bytes between neighbours along each dimension.
    pub fn strides(&self) -> &[usize] {
        self.inner.layout.strides()
    }

    /// The order the creator laid the elements out in.
    pub fn order(&self) -> Order {
        self.inner.layout.order()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.inner.layout.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.inner.layout.is_empty()
    }

    /// The elements, in memory order, as a [`SharedSlice`]: read and written one
    /// at a time or copied in bulk, sound while other processes use the array.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::array::SharedArray;
    ///
    /// let frame = SharedArray::<f32>::create(&shmbridge::unique_name("doc_elements")?, &[2, 3])?;
    /// frame.elements().copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])?;
    /// assert_eq!(frame.elements().get(4), Some(5.0));
    /// assert_eq!(frame.to_vec()?.iter().sum::<f32>(), 21.0);
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn elements(&self) -> SharedSlice<'_, T> {
        // Checked by `typed`: contiguous, dtype of T's size; the data offset is a
        // multiple of 64 and so aligned for T.
        self.inner
            .shm
            .slice::<T>(self.inner.layout.data_offset(), self.len())
            .expect("the data region was validated to lie in the segment")
    }

    /// A copy of the elements, in memory order (a guarded copy).
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] if a peer shrank the segment.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.elements().to_vec()
    }

    /// The elements, in memory order, as a plain slice.
    ///
    /// # Safety
    ///
    /// As [`SharedMemory::view`]: nobody (no other handle of this process, no
    /// other process) may write the elements while the slice lives.
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: the caller vouches for writers; `elements` checked the range.
        unsafe { self.elements().as_slice() }
    }

    /// The elements, in memory order, as a plain mutable slice.
    ///
    /// # Safety
    ///
    /// As [`SharedMemory::view_mut`]: nobody else may read or write the elements
    /// while the slice lives.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only open.
    pub unsafe fn as_mut_slice(&mut self) -> Result<&mut [T]> {
        let len = self.len() * size_of::<T>();
        // SAFETY: the caller vouches for other readers and writers.
        let bytes = unsafe { self.inner.data_mut() }?;
        Ok(bytemuck::cast_slice_mut(&mut bytes[..len]))
    }

    /// The generation counter (see [`ArraySegment::generation`]).
    ///
    /// # Errors
    ///
    /// As [`ArraySegment::generation`].
    pub fn generation(&self) -> Result<u64> {
        self.inner.generation()
    }

    /// Bumps the generation counter; returns the new value.
    ///
    /// # Errors
    ///
    /// As [`ArraySegment::bump_generation`].
    pub fn bump_generation(&self) -> Result<u64> {
        self.inner.bump_generation()
    }

    /// The untyped array.
    pub fn into_untyped(self) -> ArraySegment {
        self.inner
    }
}

#[cfg(feature = "ndarray")]
#[cfg_attr(docsrs, doc(cfg(feature = "ndarray")))]
impl<T: Element> SharedArray<T> {
    fn nd_shape(&self) -> ndarray::StrideShape<ndarray::IxDyn> {
        use ndarray::ShapeBuilder;
        let strides: Vec<usize> = self.strides().iter().map(|s| s / size_of::<T>()).collect();
        ndarray::IxDyn(self.shape()).strides(ndarray::IxDyn(&strides))
    }

    /// A copy of the array as an owned `ndarray`, with its shape (a guarded copy).
    ///
    /// # Errors
    ///
    /// [`Error::PagesLost`] if a peer shrank the segment.
    ///
    /// # Example
    ///
    /// ```
    /// use shmbridge::array::SharedArray;
    ///
    /// let grid = SharedArray::<f32>::create(&shmbridge::unique_name("doc_ndarray")?, &[2, 3])?;
    /// grid.elements().fill(1.5)?;
    /// let copy = grid.to_ndarray()?;
    /// assert_eq!(copy.shape(), &[2, 3]);
    /// assert_eq!(copy.sum(), 9.0);
    /// # Ok::<(), shmbridge::Error>(())
    /// ```
    pub fn to_ndarray(&self) -> Result<ndarray::ArrayD<T>> {
        let values = self.to_vec()?;
        Ok(ndarray::ArrayD::from_shape_vec(self.nd_shape(), values)
            .expect("a validated contiguous layout is a valid ndarray shape"))
    }

    /// An `ndarray` view with the array's shape and strides.
    ///
    /// # Safety
    ///
    /// As [`as_slice`](Self::as_slice): nobody may write the elements while the
    /// view lives.
    pub unsafe fn view(&self) -> ndarray::ArrayViewD<'_, T> {
        // SAFETY: the caller vouches for writers.
        let data = unsafe { self.as_slice() };
        ndarray::ArrayViewD::from_shape(self.nd_shape(), data)
            .expect("a validated contiguous layout is a valid ndarray shape")
    }

    /// A mutable `ndarray` view with the array's shape and strides.
    ///
    /// # Safety
    ///
    /// As [`as_mut_slice`](Self::as_mut_slice): nobody else may read or write the
    /// elements while the view lives.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only open.
    pub unsafe fn view_mut(&mut self) -> Result<ndarray::ArrayViewMutD<'_, T>> {
        let shape = self.nd_shape();
        // SAFETY: the caller vouches for other readers and writers.
        let data = unsafe { self.as_mut_slice() }?;
        Ok(ndarray::ArrayViewMutD::from_shape(shape, data)
            .expect("a validated contiguous layout is a valid ndarray shape"))
    }
}
