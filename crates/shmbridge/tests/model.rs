//! Property test: any sequence of cursor and positional operations on a segment
//! gives the same results as the same operations on `std::io::Cursor` over a
//! fixed-size buffer, and leaves the same bytes.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use proptest::prelude::*;
use shmbridge::SharedMemory;

#[derive(Debug, Clone)]
enum Op {
    Read(usize),
    Write(Vec<u8>),
    Seek(SeekFrom),
    ReadAt(usize, u64),
    WriteAt(Vec<u8>, u64),
    WriteAllAt(Vec<u8>, u64),
}

fn op(size: u64) -> impl Strategy<Value = Op> {
    let offset = prop_oneof![0..size + 8, Just(u64::MAX), any::<u64>()];
    let delta = prop_oneof![-(size as i64 + 8)..size as i64 + 8, any::<i64>()];
    prop_oneof![
        (0..size as usize + 8).prop_map(Op::Read),
        prop::collection::vec(any::<u8>(), 0..size as usize + 8).prop_map(Op::Write),
        offset.clone().prop_map(|o| Op::Seek(SeekFrom::Start(o))),
        delta.clone().prop_map(|d| Op::Seek(SeekFrom::Current(d))),
        delta.prop_map(|d| Op::Seek(SeekFrom::End(d))),
        (0..size as usize + 8, offset.clone()).prop_map(|(n, o)| Op::ReadAt(n, o)),
        (prop::collection::vec(any::<u8>(), 0..16), offset.clone())
            .prop_map(|(d, o)| Op::WriteAt(d, o)),
        (prop::collection::vec(any::<u8>(), 0..16), offset).prop_map(|(d, o)| Op::WriteAllAt(d, o)),
    ]
}

/// The model's positional ops: what FileExt does on a file that cannot grow.
fn model_read_at(m: &[u8], n: usize, off: u64) -> Vec<u8> {
    let start = (off.min(m.len() as u64)) as usize;
    m[start..(start + n).min(m.len())].to_vec()
}

fn model_write_at(m: &mut [u8], data: &[u8], off: u64) -> usize {
    let start = (off.min(m.len() as u64)) as usize;
    let n = data.len().min(m.len() - start);
    m[start..start + n].copy_from_slice(&data[..n]);
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn segment_behaves_like_a_fixed_cursor(size in 1u64..64, ops in prop::collection::vec(op(64), 1..40)) {
        let mut shm = SharedMemory::create_unique("t_model", size as usize).unwrap();
        let mut model = Cursor::new(vec![0u8; size as usize].into_boxed_slice());
        for op in ops {
            match op {
                Op::Read(n) => {
                    let (mut a, mut b) = (vec![0; n], vec![0; n]);
                    let ra = shm.read(&mut a).unwrap();
                    let rb = model.read(&mut b).unwrap();
                    prop_assert_eq!(ra, rb);
                    prop_assert_eq!(&a[..ra], &b[..rb]);
                }
                Op::Write(data) => {
                    prop_assert_eq!(shm.write(&data).unwrap(), model.write(&data).unwrap());
                }
                Op::Seek(to) => {
                    let a = shm.seek(to).map_err(|e| e.kind());
                    let b = model.seek(to).map_err(|e| e.kind());
                    prop_assert_eq!(a, b);
                }
                Op::ReadAt(n, off) => {
                    let mut a = vec![0; n];
                    let got = shm.read_at(&mut a, off).unwrap();
                    prop_assert_eq!(&a[..got], &model_read_at(model.get_ref(), n, off)[..]);
                }
                Op::WriteAt(data, off) => {
                    let expect = model_write_at(model.get_mut(), &data, off);
                    prop_assert_eq!(shm.write_at(&data, off).unwrap(), expect);
                }
                Op::WriteAllAt(data, off) => {
                    // Writing nothing succeeds anywhere, as with std's write_all.
                    let fits = data.is_empty()
                        || off.checked_add(data.len() as u64).is_some_and(|e| e <= size);
                    prop_assert_eq!(shm.write_all_at(&data, off).is_ok(), fits);
                    if fits {
                        model_write_at(model.get_mut(), &data, off);
                    }
                }
            }
            prop_assert_eq!(shm.stream_position().unwrap(), model.position());
            prop_assert_eq!(shm.slice::<u8>(0, shm.len()).unwrap().to_vec().unwrap(), &model.get_ref()[..]);
        }
    }
}
