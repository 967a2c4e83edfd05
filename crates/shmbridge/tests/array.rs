//! Shared arrays: create/open by name, every element type, orders, 0-d and empty
//! arrays, the generation counter, and a corpus of bad headers that must each be
//! refused with a reason.

use num_complex::Complex;
use shmbridge::array::{
    ArrayLayout, ArraySegment, Bool, DType, Element, MAGIC, Order, SharedArray,
};
use shmbridge::{Error, SharedMemory, SharedMemoryOptions, unique_name};

fn name(tag: &str) -> String {
    unique_name(&format!("ta_{tag}")).unwrap()
}

#[test]
fn create_then_open_by_name_alone() {
    let n = name("open");
    let a = SharedArray::<f64>::create(&n, &[1000, 1000]).unwrap();
    let values: Vec<f64> = (0..1_000_000).map(|i| i as f64).collect();
    a.elements().copy_from_slice(&values).unwrap();
    let b = SharedArray::<f64>::open(&n).unwrap();
    assert_eq!(
        (b.shape(), b.strides(), b.order(), b.len()),
        (&[1000, 1000][..], &[8000, 8][..], Order::C, 1_000_000)
    );
    assert_eq!(b.elements().get(999_999), Some(999_999.0));
    assert_eq!(b.to_vec().unwrap(), values);
    assert_eq!(b.name(), n);
}

fn round_trip<T: Element + PartialEq + std::fmt::Debug>(values: &[T]) {
    let n = name("types");
    let a = SharedArray::<T>::create(&n, &[values.len()]).unwrap();
    a.elements().copy_from_slice(values).unwrap();
    let b = SharedArray::<T>::open(&n).unwrap();
    assert_eq!(b.to_vec().unwrap(), values, "{}", T::TYPESTR);
    assert_eq!(b.elements().iter().collect::<Vec<_>>(), values, "{}", T::TYPESTR);
    let untyped = ArraySegment::open(&SharedMemoryOptions::new(), &n).unwrap();
    assert_eq!(untyped.layout().dtype().typestr(), T::TYPESTR);
    assert_eq!(untyped.layout().dtype().itemsize(), size_of::<T>());
}

#[test]
fn every_element_type() {
    round_trip(&[Bool::from(true), Bool(0), Bool(7)]);
    round_trip(&[i8::MIN, -1, i8::MAX]);
    round_trip(&[0u8, 255]);
    round_trip(&[i16::MIN, i16::MAX]);
    round_trip(&[0u16, u16::MAX]);
    round_trip(&[i32::MIN, i32::MAX]);
    round_trip(&[0u32, u32::MAX]);
    round_trip(&[i64::MIN, i64::MAX]);
    round_trip(&[0u64, u64::MAX]);
    round_trip(&[1.5f32, -0.0, f32::INFINITY]);
    round_trip(&[1.5f64, f64::MIN_POSITIVE]);
    round_trip(&[Complex::new(1.0f32, -2.0)]);
    round_trip(&[Complex::new(1.0f64, -2.0), Complex::new(0.5, 0.25)]);
    assert!(Bool(2).get() && !Bool::from(false).get() && bool::from(Bool(1)));
}

#[test]
fn dtype_mismatch_is_an_error_not_a_misread() {
    let n = name("mismatch");
    let _a = SharedArray::<i32>::create(&n, &[4]).unwrap();
    let err = SharedArray::<f32>::open(&n).unwrap_err();
    assert!(
        matches!(err, Error::DTypeMismatch { expected, found, .. } if expected == f32::TYPESTR && found == i32::TYPESTR),
        "{err:?}"
    );
    assert!(err.to_string().contains("matching element type"), "{err}");
    assert!(matches!(SharedArray::<u32>::open(&n), Err(Error::DTypeMismatch { .. })));
}

#[test]
fn fortran_order() {
    let n = name("fortran");
    let a = SharedArray::<i32>::create_with(&SharedMemoryOptions::new(), &n, &[2, 3, 4], Order::F)
        .unwrap();
    assert_eq!((a.strides(), a.order()), (&[4, 8, 24][..], Order::F));
    let b = SharedArray::<i32>::open(&n).unwrap();
    assert_eq!((b.strides(), b.order()), (&[4, 8, 24][..], Order::F));
}

#[test]
fn zero_d_and_empty_arrays() {
    let n = name("scalar");
    let a = SharedArray::<f64>::create(&n, &[]).unwrap();
    a.elements().set(0, 42.0).unwrap();
    let b = SharedArray::<f64>::open(&n).unwrap();
    assert_eq!((b.shape(), b.len(), b.to_vec().unwrap()), (&[][..], 1, vec![42.0]));

    let n = name("empty");
    let _c = SharedArray::<u16>::create(&n, &[3, 0, 5]).unwrap();
    let d = SharedArray::<u16>::open(&n).unwrap();
    assert!(d.is_empty() && d.elements().is_empty() && d.to_vec().unwrap().is_empty());
    assert_eq!(d.shape(), &[3, 0, 5]);
}

#[test]
fn generation_counter_is_shared() {
    let n = name("gen");
    let a = SharedArray::<u8>::create(&n, &[16]).unwrap();
    let b = SharedArray::<u8>::open(&n).unwrap();
    assert_eq!((a.generation().unwrap(), b.generation().unwrap()), (0, 0));
    assert_eq!(a.bump_generation().unwrap(), 1);
    assert_eq!(b.bump_generation().unwrap(), 2);
    assert_eq!(a.generation().unwrap(), 2);
}

#[test]
fn read_only_open() {
    let n = name("ro");
    let _a = SharedArray::<f32>::create(&n, &[8]).unwrap();
    let mut ro =
        SharedArray::<f32>::open_with(SharedMemoryOptions::new().read_only(true), &n).unwrap();
    assert_eq!(ro.elements().len(), 8);
    assert!(matches!(ro.elements().set(0, 1.0), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.elements().fill(1.0), Err(Error::ReadOnly { .. })));
    // SAFETY: the call fails (read-only) before it makes a slice.
    assert!(matches!(unsafe { ro.as_mut_slice() }, Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.bump_generation(), Err(Error::ReadOnly { .. })));
}

#[test]
fn creation_errors() {
    let n = name("cerr");
    let opts = SharedMemoryOptions::new();
    let err = ArraySegment::create(&opts, &n, "<V8", &[2], Order::C).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArray { reason, .. } if reason.contains("unsupported dtype")),
        "{err:?}"
    );
    let err = SharedArray::<f64>::create(&n, &[usize::MAX, 2]).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArray { reason, .. } if reason.contains("too large")),
        "{err:?}"
    );
    assert!(matches!(SharedArray::<u8>::create(&n, &[1; 65]), Err(Error::InvalidArray { .. })));
    assert!(matches!(SharedMemory::open(&n), Err(Error::NotFound { .. })), "nothing left behind");
    let _a = SharedArray::<u8>::create(&n, &[1]).unwrap();
    assert!(matches!(SharedArray::<u8>::create(&n, &[1]), Err(Error::AlreadyExists { .. })));
}

#[test]
fn raw_segment_is_not_an_array() {
    let raw = SharedMemory::create_unique("ta_raw", 4096).unwrap();
    let err = SharedArray::<u8>::open(raw.name()).unwrap_err();
    assert!(
        matches!(&err, Error::BadHeader { reason, .. } if reason.contains("not a shmbridge array")),
        "{err:?}"
    );
    let tiny = SharedMemory::create_unique("ta_tiny", 10).unwrap();
    let err = ArraySegment::from_segment(SharedMemory::open(tiny.name()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("too small"), "{err}");
}

/// A valid f64 header for shape [4, 2] (C order) as bytes, and its segment size.
fn good_header() -> (Vec<u8>, usize) {
    let layout = ArrayLayout::new(DType::parse("<f8").unwrap(), &[4, 2], Order::C).unwrap();
    let n = name("good");
    let shm =
        ArraySegment::create(&SharedMemoryOptions::new(), &n, "<f8", &[4, 2], Order::C).unwrap();
    let mut bytes = vec![0; layout.data_offset()];
    shm.into_segment().read_exact_at(&mut bytes, 0).unwrap();
    assert_eq!(&bytes[..8], &MAGIC);
    (bytes, layout.segment_size())
}

fn put(h: &mut [u8], at: usize, bytes: &[u8]) {
    h[at..at + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn bad_header_corpus_is_refused_with_reasons() {
    let (good, size) = good_header();
    type Corrupt = fn(&mut Vec<u8>);
    let corpus: &[(&str, Corrupt, &str)] = &[
        ("bad magic", |h| h[0] = b'X', "not a shmbridge array"),
        ("zero magic", |h| put(h, 0, &[0; 8]), "not finished"),
        ("future version", |h| put(h, 8, &2u32.to_le_bytes()), "version 2"),
        ("huge ndim", |h| put(h, 56, &u32::MAX.to_le_bytes()), "exceeds the maximum"),
        ("ndim 65", |h| put(h, 56, &65u32.to_le_bytes()), "exceeds the maximum"),
        ("header size lies", |h| put(h, 12, &64u32.to_le_bytes()), "does not match"),
        ("unknown dtype", |h| put(h, 40, b"<V8\0"), "unsupported dtype"),
        ("dtype not padded", |h| put(h, 44, b"x"), "NUL-padded"),
        ("dtype not ascii", |h| put(h, 40, &[0xff, 0xfe]), "not ASCII"),
        ("order byte", |h| h[60] = b'X', "neither 'C' nor 'F'"),
        ("misaligned data", |h| put(h, 24, &100u64.to_le_bytes()), "not a multiple of 64"),
        ("data inside header", |h| put(h, 24, &64u64.to_le_bytes()), "at or past"),
        ("data past the end", |h| put(h, 32, &1_000_000u64.to_le_bytes()), "runs past the end"),
        (
            "data offset overflow",
            |h| put(h, 24, &(u64::MAX - 63).to_le_bytes()),
            "runs past the end",
        ),
        ("data size overflow", |h| put(h, 32, &u64::MAX.to_le_bytes()), "runs past the end"),
        (
            "shape overflow",
            |h| {
                put(h, 64, &u64::MAX.to_le_bytes());
                put(h, 72, &u64::MAX.to_le_bytes())
            },
            "overflows",
        ),
        ("shape beyond data", |h| put(h, 64, &5u64.to_le_bytes()), "reaches past"),
        ("negative stride", |h| put(h, 80, &(-16i64).to_le_bytes()), "negative"),
        ("stride beyond data", |h| put(h, 80, &(1i64 << 40).to_le_bytes()), "reaches past"),
        ("stride overflow", |h| put(h, 80, &(i64::MAX - 7).to_le_bytes()), "reaches past"),
        (
            "stride not itemsize",
            |h| put(h, 88, &4i64.to_le_bytes()),
            "not a multiple of the item size",
        ),
    ];
    for (what, corrupt, reason) in corpus {
        let mut h = good.clone();
        corrupt(&mut h);
        let mut raw = SharedMemory::create_unique("ta_bad", size).unwrap();
        raw.write_all_at(&h, 0).unwrap();
        let err = ArraySegment::from_segment(SharedMemory::open(raw.name()).unwrap()).unwrap_err();
        assert!(matches!(err, Error::BadHeader { .. }), "{what}: {err:?}");
        assert!(err.to_string().contains(reason), "{what}: {err}");
    }
    // A segment cut short after a valid fixed part.
    let mut raw = SharedMemory::create_unique("ta_cut", 70).unwrap();
    raw.write_all_at(&good[..70], 0).unwrap();
    let err = ArraySegment::from_segment(SharedMemory::open(raw.name()).unwrap()).unwrap_err();
    assert!(err.to_string().contains("runs past the end"), "{err}");
    assert!(ArrayLayout::parse(&good[..63], size).unwrap_err().contains("too short"));
    assert!(ArrayLayout::parse(&good[..70], size).unwrap_err().contains("cut short"));
}

#[test]
fn strided_layout_opens_untyped_only() {
    let (mut h, size) = good_header();
    put(&mut h, 72, &1u64.to_le_bytes()); // shape [4, 1] with strides [16, 8]: every other f64
    let mut raw = SharedMemory::create_unique("ta_strided", size).unwrap();
    raw.write_all_at(&h, 0).unwrap();
    let untyped = ArraySegment::open(&SharedMemoryOptions::new(), raw.name()).unwrap();
    assert!(!untyped.layout().is_contiguous());
    assert_eq!(untyped.layout().strides(), &[16, 8]);
    let err = untyped.typed::<f64>().unwrap_err();
    assert!(err.to_string().contains("not contiguous"), "{err}");
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_views_follow_shape_and_order() {
    let n = name("nd");
    let mut a = SharedArray::<i32>::create_with(&SharedMemoryOptions::new(), &n, &[2, 3], Order::F)
        .unwrap();
    {
        // SAFETY: this test's handles are the only ones to a uniquely named segment,
        // on one thread, and nothing else touches the array while `v` lives.
        let mut v = unsafe { a.view_mut() }.unwrap();
        v[[1, 2]] = 12;
        v[[0, 1]] = 1;
    }
    assert_eq!(a.to_vec().unwrap(), [0, 0, 1, 0, 0, 12], "column-major memory");
    let b = SharedArray::<i32>::open(&n).unwrap();
    // SAFETY: as above; nothing writes the array while `v` lives.
    let v = unsafe { b.view() };
    assert_eq!((v.shape(), v[[1, 2]], v[[0, 1]]), (&[2, 3][..], 12, 1));
    let copy = b.to_ndarray().unwrap();
    assert_eq!(copy, v, "the owned copy has the view's shape and values");
    assert_eq!((copy.shape(), copy[[1, 2]]), (&[2, 3][..], 12));
}
