//! The array header: how shape, strides and dtype are laid out in front of the
//! data (specified byte by byte in `docs/FORMAT.md`), and a parser that trusts
//! nothing it reads.

use std::fmt;

/// The first 8 bytes of every array segment.
pub const MAGIC: [u8; 8] = *b"SHMBARR\0";
/// The header version this build writes and reads.
pub const VERSION: u32 = 1;
/// The most dimensions an array may have (NumPy 2's limit).
pub const MAX_NDIM: usize = 64;
/// The data starts at a multiple of this many bytes from the segment's start.
pub const DATA_ALIGN: usize = 64;

/// Size of the fixed part of the header; shape and strides follow.
pub(crate) const FIXED_LEN: usize = 64;
pub(crate) const GENERATION_AT: usize = 16;
const TYPESTR_AT: usize = 40;
const TYPESTR_LEN: usize = 16;

/// The NumPy type strings shmbridge arrays may hold.
const SUPPORTED: &[&str] = &[
    "|b1", "|i1", "|u1", //
    "<i2", "<i4", "<i8", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16", //
    ">i2", ">i4", ">i8", ">u2", ">u4", ">u8", ">f2", ">f4", ">f8", ">c8", ">c16",
];

/// An element type, as a NumPy type string: byte order (`<`, `>`, or `|` for
/// single bytes), kind (`b`ool, `i`nt, `u`nsigned, `f`loat, `c`omplex) and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DType(&'static str);

impl DType {
    /// The dtype of a NumPy type string, if shmbridge supports it.
    ///
    /// # Errors
    ///
    /// A reason, if the string is not one of the supported type strings (booleans,
    /// integers of 1 to 8 bytes, floats of 2, 4 and 8 bytes, complex of 8 and 16
    /// bytes, in either byte order).
    pub fn parse(typestr: &str) -> Result<Self, String> {
        SUPPORTED.iter().find(|s| **s == typestr).map(|s| DType(s)).ok_or_else(|| {
            format!(
                "unsupported dtype {typestr:?}: shmbridge arrays hold booleans, integers, \
                 floats and complex numbers ({})",
                SUPPORTED.join(" ")
            )
        })
    }

    /// The NumPy type string, e.g. `"<f8"`.
    pub fn typestr(&self) -> &'static str {
        self.0
    }

    /// Bytes per element.
    pub fn itemsize(&self) -> usize {
        self.0[2..].parse().expect("SUPPORTED entries end in their size")
    }

    /// The kind: `'b'`, `'i'`, `'u'`, `'f'` or `'c'`.
    pub fn kind(&self) -> char {
        self.0.as_bytes()[1] as char
    }

    /// Whether the elements are in this machine's byte order.
    pub fn is_native(&self) -> bool {
        match self.0.as_bytes()[0] {
            b'<' => cfg!(target_endian = "little"),
            b'>' => cfg!(target_endian = "big"),
            _ => true,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// How a new array's elements are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Order {
    /// Row-major: the last index varies fastest (NumPy's default).
    #[default]
    C,
    /// Column-major: the first index varies fastest.
    F,
}

impl Order {
    fn byte(self) -> u8 {
        match self {
            Order::C => b'C',
            Order::F => b'F',
        }
    }
}

/// Where everything of an array lies in its segment: a validated header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrayLayout {
    dtype: DType,
    shape: Vec<usize>,
    strides: Vec<usize>,
    order: Order,
    data_offset: usize,
    data_size: usize,
}

impl ArrayLayout {
    /// The layout of a new contiguous array.
    ///
    /// # Errors
    ///
    /// A reason, if there are more than [`MAX_NDIM`] dimensions or the sizes
    /// overflow what a process can address.
    pub fn new(dtype: DType, shape: &[usize], order: Order) -> Result<Self, String> {
        if shape.len() > MAX_NDIM {
            return Err(format!("{} dimensions; at most {MAX_NDIM} are supported", shape.len()));
        }
        let too_large = || format!("shape {shape:?} of {dtype} is too large to address");
        let mut strides = vec![0; shape.len()];
        let mut step = dtype.itemsize();
        let mut place = |i: usize| -> Result<(), String> {
            strides[i] = step;
            // Zero-length dimensions step like length-1 ones, as in NumPy.
            step = step.checked_mul(shape[i].max(1)).ok_or_else(too_large)?;
            Ok(())
        };
        match order {
            Order::C => (0..shape.len()).rev().try_for_each(&mut place)?,
            Order::F => (0..shape.len()).try_for_each(&mut place)?,
        }
        let count =
            shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(too_large)?;
        let data_size = count.checked_mul(dtype.itemsize()).ok_or_else(too_large)?;
        let data_offset = header_len(shape.len()).next_multiple_of(DATA_ALIGN);
        match data_offset.checked_add(data_size) {
            Some(end) if end <= isize::MAX as usize => {}
            _ => return Err(too_large()),
        }
        Ok(Self { dtype, shape: shape.to_vec(), strides, order, data_offset, data_size })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Length of each dimension; empty for a 0-d array.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Bytes from one element to the next along each dimension.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The order the creator laid the elements out in.
    pub fn order(&self) -> Order {
        self.order
    }

    /// The number of elements (1 for a 0-d array, 0 if any dimension is 0).
    pub fn len(&self) -> usize {
        // Validated at construction: the product fits.
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Byte offset of the data from the segment's start (a multiple of 64).
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Bytes of the data region.
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    /// The segment size that holds header and data.
    pub fn segment_size(&self) -> usize {
        self.data_offset + self.data_size
    }

    /// Whether the elements fill the data region without gaps, in C or F order,
    /// so that it can be viewed as one slice.
    pub fn is_contiguous(&self) -> bool {
        let strides_for = |order| Self::new(self.dtype, &self.shape, order).map(|l| l.strides);
        self.len() <= 1
            || strides_for(Order::C).as_ref() == Ok(&self.strides)
            || strides_for(Order::F).as_ref() == Ok(&self.strides)
    }

    /// The header bytes (`data_offset` of them, padding included) with the magic
    /// value left zero: the writer stores it last, so a reader never sees a magic
    /// value in front of a half-written header.
    pub(crate) fn encode(&self, generation: u64) -> Vec<u8> {
        let mut h = vec![0u8; self.data_offset];
        let ndim = self.shape.len();
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(header_len(ndim) as u32).to_le_bytes());
        h[16..24].copy_from_slice(&generation.to_le_bytes());
        h[24..32].copy_from_slice(&(self.data_offset as u64).to_le_bytes());
        h[32..40].copy_from_slice(&(self.data_size as u64).to_le_bytes());
        let t = self.dtype.typestr().as_bytes();
        h[TYPESTR_AT..TYPESTR_AT + t.len()].copy_from_slice(t);
        h[56..60].copy_from_slice(&(ndim as u32).to_le_bytes());
        h[60] = self.order.byte();
        for (i, (&dim, &stride)) in self.shape.iter().zip(&self.strides).enumerate() {
            let at = FIXED_LEN + 8 * i;
            h[at..at + 8].copy_from_slice(&(dim as u64).to_le_bytes());
            let at = FIXED_LEN + 8 * (ndim + i);
            h[at..at + 8].copy_from_slice(&(stride as i64).to_le_bytes());
        }
        h
    }

    /// The header bytes with the magic value in place, as a creator leaves them;
    /// for tests and fuzzers that build headers by hand.
    #[doc(hidden)]
    pub fn encode_for_tests(&self) -> Vec<u8> {
        let mut h = self.encode(0);
        h[..8].copy_from_slice(&MAGIC);
        h
    }

    /// Parses and validates a header read from a segment of `segment_len` bytes.
    ///
    /// `header` holds (a copy of) the segment's first bytes: at least the fixed
    /// part, and the shape and strides if the fixed part says there are any. The
    /// magic value is not checked here (the caller reads it with the right memory
    /// ordering).
    ///
    /// # Errors
    ///
    /// A reason naming the first field that is wrong. Nothing in `header` is
    /// trusted: every size is checked against the others and against the segment,
    /// with overflow-checked arithmetic, so an accepted layout addresses only bytes
    /// of the data region.
    pub fn parse(header: &[u8], segment_len: usize) -> Result<Self, String> {
        let fixed = header.get(..FIXED_LEN).ok_or_else(|| {
            format!("{} bytes is too short for the {FIXED_LEN}-byte array header", header.len())
        })?;
        let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!("header version {version}; this build reads version {VERSION}"));
        }
        let ndim = u32_at(56) as usize;
        if ndim > MAX_NDIM {
            return Err(format!("ndim {ndim} exceeds the maximum of {MAX_NDIM}"));
        }
        let header_size = u32_at(12) as usize;
        if header_size != header_len(ndim) {
            return Err(format!(
                "header size {header_size} does not match {ndim} dimensions ({} expected)",
                header_len(ndim)
            ));
        }
        let typestr = &fixed[TYPESTR_AT..TYPESTR_AT + TYPESTR_LEN];
        let typestr_len = typestr.iter().position(|&b| b == 0).unwrap_or(TYPESTR_LEN);
        if typestr[typestr_len..].iter().any(|&b| b != 0) {
            return Err("dtype field is not NUL-padded".into());
        }
        let typestr = std::str::from_utf8(&typestr[..typestr_len])
            .map_err(|_| "dtype field is not ASCII".to_string())?;
        let dtype = DType::parse(typestr)?;
        let order = match fixed[60] {
            b'C' => Order::C,
            b'F' => Order::F,
            other => return Err(format!("order byte {other:#04x} is neither 'C' nor 'F'")),
        };
        let data_offset = usize::try_from(u64_at(24)).map_err(|_| "data offset overflows")?;
        let data_size = usize::try_from(u64_at(32)).map_err(|_| "data size overflows")?;
        if !data_offset.is_multiple_of(DATA_ALIGN) || data_offset < header_size {
            return Err(format!(
                "data offset {data_offset} is not a multiple of {DATA_ALIGN} at or past the \
                 {header_size}-byte header"
            ));
        }
        match data_offset.checked_add(data_size) {
            Some(end) if end <= segment_len => {}
            _ => {
                return Err(format!(
                    "data of {data_size} bytes at offset {data_offset} runs past the end of the \
                     {segment_len}-byte segment"
                ));
            }
        }
        let dims = header
            .get(FIXED_LEN..header_size)
            .ok_or_else(|| format!("header of {ndim} dimensions is cut short"))?;
        let word =
            |i: usize| u64::from_le_bytes(dims[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        let mut shape = Vec::with_capacity(ndim);
        let mut strides = Vec::with_capacity(ndim);
        for i in 0..ndim {
            shape.push(usize::try_from(word(i)).map_err(|_| format!("dimension {i} overflows"))?);
            let stride = word(ndim + i) as i64;
            let stride = usize::try_from(stride)
                .map_err(|_| format!("stride {stride} of dimension {i} is negative"))?;
            if !stride.is_multiple_of(dtype.itemsize()) {
                return Err(format!(
                    "stride {stride} of dimension {i} is not a multiple of the item size {}",
                    dtype.itemsize()
                ));
            }
            strides.push(stride);
        }
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let count = count.ok_or_else(|| format!("shape {shape:?} overflows"))?;
        // The last byte any element touches, relative to the data start.
        let extent = if count == 0 {
            Some(0)
        } else {
            shape.iter().zip(&strides).try_fold(dtype.itemsize(), |end, (&dim, &stride)| {
                stride.checked_mul(dim - 1).and_then(|span| end.checked_add(span))
            })
        };
        match extent {
            Some(extent) if extent <= data_size => {}
            _ => {
                return Err(format!(
                    "shape {shape:?} with strides {strides:?} reaches past the {data_size}-byte \
                     data region"
                ));
            }
        }
        Ok(Self { dtype, shape, strides, order, data_offset, data_size })
    }
}

/// Bytes of a header with `ndim` dimensions, before padding.
pub(crate) fn header_len(ndim: usize) -> usize {
    FIXED_LEN + 16 * ndim
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f8() -> DType {
        DType::parse("<f8").unwrap()
    }

    #[test]
    fn c_and_f_strides() {
        let c = ArrayLayout::new(f8(), &[2, 3, 4], Order::C).unwrap();
        assert_eq!(c.strides(), &[96, 32, 8]);
        let f = ArrayLayout::new(f8(), &[2, 3, 4], Order::F).unwrap();
        assert_eq!(f.strides(), &[8, 16, 48]);
        assert_eq!((c.len(), c.data_size(), c.data_offset()), (24, 192, 128));
        assert!(c.is_contiguous() && f.is_contiguous());
    }

    #[test]
    fn zero_d_and_empty() {
        let scalar = ArrayLayout::new(f8(), &[], Order::C).unwrap();
        assert_eq!((scalar.len(), scalar.data_size(), scalar.data_offset()), (1, 8, 64));
        let empty = ArrayLayout::new(f8(), &[3, 0, 2], Order::C).unwrap();
        assert_eq!((empty.len(), empty.data_size()), (0, 0));
        assert_eq!(empty.strides(), &[16, 16, 8]);
    }

    #[test]
    fn round_trip() {
        for order in [Order::C, Order::F] {
            for shape in [&[][..], &[0], &[5], &[2, 3], &[4, 1, 0, 2]] {
                let layout = ArrayLayout::new(DType::parse(">c16").unwrap(), shape, order).unwrap();
                let h = layout.encode_for_tests();
                assert_eq!(ArrayLayout::parse(&h, layout.segment_size()).unwrap(), layout);
            }
        }
    }

    #[test]
    fn refuses_too_large_requests() {
        assert!(ArrayLayout::new(f8(), &[usize::MAX, 2], Order::C).is_err());
        assert!(ArrayLayout::new(f8(), &[1 << 62], Order::C).is_err());
        assert!(ArrayLayout::new(f8(), &[0, usize::MAX, usize::MAX], Order::C).is_err());
        assert!(ArrayLayout::new(f8(), &[1; MAX_NDIM + 1], Order::C).is_err());
        assert!(ArrayLayout::new(f8(), &[1; MAX_NDIM], Order::C).is_ok());
    }

    #[test]
    fn dtypes() {
        assert_eq!(DType::parse("<c16").unwrap().itemsize(), 16);
        assert_eq!(DType::parse("|b1").unwrap().kind(), 'b');
        assert!(DType::parse("<f8").unwrap().is_native() == cfg!(target_endian = "little"));
        for bad in ["", "f8", "<f16", "|f8", "<V8", "<U4", "<M8[ns]", "<i1", "=f8"] {
            assert!(DType::parse(bad).is_err(), "{bad:?}");
        }
    }
}
