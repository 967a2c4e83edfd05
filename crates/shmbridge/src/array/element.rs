//! Element types of shared arrays and their NumPy type strings.

use bytemuck::{Pod, Zeroable};
use num_complex::Complex;

/// A type that can be the element of a [`SharedArray`](super::SharedArray): plain
/// old data with a NumPy type string.
///
/// Implemented for `u8`..`u64`, `i8`..`i64`, `f32`, `f64`, [`Bool`], and
/// `num_complex::Complex<f32>` / `Complex<f64>` (NumPy's `complex64` /
/// `complex128`). Opening an array checks the header's type string against
/// `TYPESTR`, and its item size and alignment against the type's, so a wrong
/// implementation gives an error, never a misread.
pub trait Element: Pod {
    /// The NumPy type string (`numpy.dtype(...).str`) of this type in this
    /// machine's byte order, e.g. `"<f8"`.
    const TYPESTR: &'static str;
}

/// NumPy's `bool`: one byte, 0 for false and anything else for true.
///
/// Rust's `bool` cannot be read from shared memory (any byte but 0 or 1 would be
/// undefined behaviour), so arrays of NumPy booleans use this instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
#[repr(transparent)]
pub struct Bool(pub u8);

impl Bool {
    /// The truth value: any non-zero byte is true, as in NumPy.
    pub fn get(self) -> bool {
        self.0 != 0
    }
}

impl From<bool> for Bool {
    fn from(b: bool) -> Self {
        Bool(u8::from(b))
    }
}

impl From<Bool> for bool {
    fn from(b: Bool) -> Self {
        b.get()
    }
}

macro_rules! elements {
    ($($t:ty => $kind_size:literal),* $(,)?) => {$(
        impl Element for $t {
            const TYPESTR: &'static str = if cfg!(target_endian = "little") {
                concat!("<", $kind_size)
            } else {
                concat!(">", $kind_size)
            };
        }
    )*};
}

elements!(
    u16 => "u2", u32 => "u4", u64 => "u8",
    i16 => "i2", i32 => "i4", i64 => "i8",
    f32 => "f4", f64 => "f8",
    Complex<f32> => "c8", Complex<f64> => "c16",
);

impl Element for u8 {
    const TYPESTR: &'static str = "|u1";
}
impl Element for i8 {
    const TYPESTR: &'static str = "|i1";
}
impl Element for Bool {
    const TYPESTR: &'static str = "|b1";
}
