//! Fuzzes `ArrayLayout::parse`, the code that reads array headers written by other
//! processes: for random bytes, and for valid headers with random fields and bytes
//! overwritten, parsing must never panic, and every layout it accepts must address
//! only bytes of its segment's data region.
//!
//! `cargo run --release -p shmbridge-fuzz -- [CASES]` (default 1 000 000). Not run
//! by `./dev test`; the regular tests keep a corpus of bad headers instead.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use shmbridge::array::{ArrayLayout, DATA_ALIGN, DType, MAX_NDIM, Order};

const DTYPES: &[&str] = &["|b1", "|u1", "<i2", ">u4", "<f8", ">c16", "<c8", "<f2"];

/// A header to parse and the segment length it claims to come from.
fn header() -> impl Strategy<Value = (Vec<u8>, usize)> {
    let random = (prop::collection::vec(any::<u8>(), 0..1200), 0usize..4096);
    let mutated = (
        prop::sample::select(DTYPES),
        prop::collection::vec(0usize..6, 0..6),
        any::<bool>(),
        prop::collection::vec((0usize..1200, any::<u8>()), 0..6),
        prop::collection::vec((0usize..20, any::<u64>()), 0..3),
        0usize..300,
    )
        .prop_map(|(dtype, shape, fortran, bytes, words, slack)| {
            let order = if fortran { Order::F } else { Order::C };
            let layout = ArrayLayout::new(DType::parse(dtype).unwrap(), &shape, order).unwrap();
            let mut h = layout.encode_for_tests();
            h.resize(h.len().max(64 + 16 * MAX_NDIM), 0);
            for (word, value) in words {
                let at = 8 * word;
                h[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
            for (at, byte) in bytes {
                if let Some(b) = h.get_mut(at) {
                    *b = byte;
                }
            }
            // The segment may be shorter or longer than the layout needs.
            let segment_len = layout.segment_size().saturating_sub(150) + slack;
            (h, segment_len)
        });
    prop_oneof![1 => random, 4 => mutated]
}

fn check(header: &[u8], segment_len: usize) -> Result<(), TestCaseError> {
    let Ok(layout) = ArrayLayout::parse(header, segment_len) else { return Ok(()) };
    let itemsize = layout.dtype().itemsize();
    prop_assert!(layout.shape().len() <= MAX_NDIM);
    prop_assert_eq!(layout.shape().len(), layout.strides().len());
    prop_assert!(layout.data_offset().is_multiple_of(DATA_ALIGN));
    prop_assert!(layout.data_offset() >= 64 + 16 * layout.shape().len());
    prop_assert!(layout.data_offset() + layout.data_size() <= segment_len);
    if !layout.is_empty() {
        // The farthest byte any element touches lies inside the data region.
        let last =
            layout.shape().iter().zip(layout.strides()).map(|(d, s)| (d - 1) * s).sum::<usize>();
        prop_assert!(last + itemsize <= layout.data_size());
    }
    prop_assert!(layout.strides().iter().all(|s| s.is_multiple_of(itemsize)));
    Ok(())
}

fn main() {
    let cases =
        std::env::args().nth(1).map_or(1_000_000, |n| n.parse().expect("CASES is a number"));
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    match runner.run(&header(), |(h, len)| check(&h, len)) {
        Ok(()) => println!("fuzz_header: {cases} cases passed, 0 failed"),
        Err(e) => {
            eprintln!("fuzz_header: {e}");
            std::process::exit(1);
        }
    }
}
