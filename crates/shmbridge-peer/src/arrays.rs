//! The peer's array commands (see main.rs): create and open shared arrays of any
//! dtype, fill and check them by logical (C-order) index, dump their bytes.
//!
//! The value at logical index `i` is `i * scale` converted as Rust's `as` does
//! (NumPy's `astype` for integers wraps the same way); booleans are `i % 2 == 1`;
//! complex numbers are `i * scale - i * scale j`.

use num_complex::Complex;
use shmbridge::SharedMemoryOptions;
use shmbridge::array::{ArraySegment, Bool, Element, Order};

use crate::Reply;

/// An element type the peer can compute values of.
trait Value: Element + PartialEq + std::fmt::Debug {
    fn at(i: u64, scale: i64) -> Self;
}

macro_rules! values {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn at(i: u64, scale: i64) -> Self {
                (i as i64).wrapping_mul(scale) as $t
            }
        }
    )*};
}
values!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

impl Value for Bool {
    fn at(i: u64, _scale: i64) -> Self {
        Bool::from(i % 2 == 1)
    }
}

impl<F: Value + std::ops::Neg<Output = F>> Value for Complex<F>
where
    Complex<F>: Element,
{
    fn at(i: u64, scale: i64) -> Self {
        let x = F::at(i, scale);
        Complex::new(x, -x)
    }
}

/// Runs `$body` with `$t` bound to the element type of typestr `$ts`.
macro_rules! with_type {
    ($ts:expr, $t:ident => $body:expr) => {
        match $ts {
            "|b1" => {
                type $t = Bool;
                $body
            }
            "|i1" => {
                type $t = i8;
                $body
            }
            "|u1" => {
                type $t = u8;
                $body
            }
            s if s == i16::TYPESTR => {
                type $t = i16;
                $body
            }
            s if s == i32::TYPESTR => {
                type $t = i32;
                $body
            }
            s if s == i64::TYPESTR => {
                type $t = i64;
                $body
            }
            s if s == u16::TYPESTR => {
                type $t = u16;
                $body
            }
            s if s == u32::TYPESTR => {
                type $t = u32;
                $body
            }
            s if s == u64::TYPESTR => {
                type $t = u64;
                $body
            }
            s if s == f32::TYPESTR => {
                type $t = f32;
                $body
            }
            s if s == f64::TYPESTR => {
                type $t = f64;
                $body
            }
            s if s == <Complex<f32>>::TYPESTR => {
                type $t = Complex<f32>;
                $body
            }
            s if s == <Complex<f64>>::TYPESTR => {
                type $t = Complex<f64>;
                $body
            }
            other => {
                Err(("Unsupported".to_owned(), format!("the peer computes no values of {other}")))
            }
        }
    };
}

/// Byte offsets of the elements, in logical C order.
fn offsets(array: &ArraySegment) -> impl Iterator<Item = usize> + '_ {
    let layout = array.layout();
    (0..layout.len()).map(move |mut i| {
        let mut offset = 0;
        for (&dim, &stride) in layout.shape().iter().zip(layout.strides()).rev() {
            offset += (i % dim) * stride;
            i /= dim;
        }
        offset
    })
}

fn fill<T: Value>(array: &mut ArraySegment, scale: i64) -> Reply {
    let at: Vec<usize> = offsets(array).collect();
    let data = array.data_bytes();
    for (i, offset) in at.into_iter().enumerate() {
        let value = T::at(i as u64, scale);
        let place =
            data.subslice(offset..offset + size_of::<T>()).expect("offsets lie in the data");
        place.copy_from_slice(bytemuck_bytes(&value)).map_err(crate::core_err)?;
    }
    Ok(String::new())
}

fn check<T: Value>(array: &ArraySegment, scale: i64) -> Reply {
    let data = array.data_bytes().to_vec().map_err(crate::core_err)?;
    for (i, offset) in offsets(array).enumerate() {
        let got: T =
            shmbridge::bytemuck::pod_read_unaligned(&data[offset..offset + size_of::<T>()]);
        let want = T::at(i as u64, scale);
        if got != want {
            return Err(("Mismatch".into(), format!("element {i}: {got:?}, not {want:?}")));
        }
    }
    Ok(String::new())
}

fn bytemuck_bytes<T: Element>(value: &T) -> &[u8] {
    shmbridge::bytemuck::bytes_of(value)
}

fn dims(text: &str) -> Result<Vec<usize>, (String, String)> {
    if text == "-" {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|d| d.parse().map_err(|_| crate::bad(format!("bad dimension {d:?}"))))
        .collect()
}

fn join(values: &[usize]) -> String {
    if values.is_empty() {
        "-".to_owned()
    } else {
        values.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
    }
}

/// `acreate TYPESTR NAME SHAPE ORDER SCALE`, `aopen NAME`, `afill SCALE`,
/// `acheck SCALE`, `ahex`, `abump`, `aclose`.
pub(crate) fn run(current: &mut Option<ArraySegment>, words: &[&str]) -> Reply {
    match words[0] {
        "acreate" => {
            let (typestr, name, shape) = (
                crate::arg::<String>(words, 1)?,
                crate::arg::<String>(words, 2)?,
                dims(words.get(3).copied().unwrap_or("-"))?,
            );
            let order = if words.get(4) == Some(&"F") { Order::F } else { Order::C };
            let mut array =
                ArraySegment::create(&SharedMemoryOptions::new(), &name, &typestr, &shape, order)
                    .map_err(crate::core_err)?;
            let scale: i64 = crate::arg(words, 5)?;
            with_type!(typestr.as_str(), T => fill::<T>(&mut array, scale))?;
            *current = Some(array);
            Ok(String::new())
        }
        "aopen" => {
            let array =
                ArraySegment::open(&SharedMemoryOptions::new(), &crate::arg::<String>(words, 1)?)
                    .map_err(crate::core_err)?;
            let layout = array.layout();
            let order = if layout.order() == Order::C { "C" } else { "F" };
            let reply = format!(
                "{} {} {} {order} {}",
                layout.dtype(),
                join(layout.shape()),
                join(layout.strides()),
                array.generation().map_err(crate::core_err)?
            );
            *current = Some(array);
            Ok(reply)
        }
        "aclose" => {
            current.take();
            Ok(String::new())
        }
        cmd => {
            let array = current
                .as_mut()
                .ok_or_else(|| crate::bad("no array: acreate or aopen one first"))?;
            let typestr = array.layout().dtype().typestr();
            match cmd {
                "afill" => with_type!(typestr, T => fill::<T>(array, crate::arg(words, 1)?)),
                "acheck" => with_type!(typestr, T => check::<T>(array, crate::arg(words, 1)?)),
                "ahex" => {
                    let data = array.data_bytes().to_vec().map_err(crate::core_err)?;
                    Ok(data.iter().map(|b| format!("{b:02x}")).collect())
                }
                "abump" => array.bump_generation().map(|g| g.to_string()).map_err(crate::core_err),
                other => Err(crate::bad(format!("unknown command {other}"))),
            }
        }
    }
}
