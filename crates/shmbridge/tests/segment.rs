//! Lifecycle, positional and cursor I/O, views, and every error path of
//! `SharedMemory`, against the real OS.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};

use shmbridge::{Error, SharedMemory, unique_name};

fn name(tag: &str) -> String {
    unique_name(&format!("t_{tag}")).unwrap()
}

/// A copy of every byte of the segment (through a guarded copy: no reference into
/// shared memory).
fn bytes(shm: &SharedMemory) -> Vec<u8> {
    shm.slice::<u8>(0, shm.len()).unwrap().to_vec().unwrap()
}

#[test]
fn create_open_share_bytes() {
    let n = name("share");
    let mut a = SharedMemory::create(&n, 4096).unwrap();
    assert_eq!(a.len(), 4096);
    assert_eq!(a.name(), n);
    assert!(bytes(&a).iter().all(|&b| b == 0), "fresh segments are zeroed");
    a.write_all_at(b"hello", 100).unwrap();
    let b = SharedMemory::open(&n).unwrap();
    assert_eq!(b.len(), 4096);
    assert_eq!(&bytes(&b)[100..105], b"hello");
}

#[test]
fn name_without_slash_is_same_segment() {
    let n = name("slash");
    let _a = SharedMemory::create(&n, 64).unwrap();
    let b = SharedMemory::open(n.trim_start_matches('/')).unwrap();
    assert_eq!(b.name(), n);
}

#[test]
fn create_is_exclusive_unless_replace() {
    let n = name("excl");
    let mut a = SharedMemory::create(&n, 64).unwrap();
    a.write_all_at(b"old", 0).unwrap();
    let err = SharedMemory::create(&n, 64).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains(&n), "message names the segment: {err}");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    // The failed create did not touch the existing segment.
    assert_eq!(&bytes(&SharedMemory::open(&n).unwrap())[..3], b"old");

    let b = SharedMemory::options().replace(true).create(&n, 128).unwrap();
    assert_eq!(b.len(), 128);
    assert_eq!(&bytes(&SharedMemory::open(&n).unwrap())[..3], &[0, 0, 0]);
    // `a` keeps its own (now nameless) segment.
    assert_eq!(&bytes(&a)[..3], b"old");
}

#[test]
fn creator_unlinks_on_drop_and_close() {
    let n = name("drop");
    drop(SharedMemory::create(&n, 64).unwrap());
    assert!(matches!(SharedMemory::open(&n), Err(Error::NotFound { .. })));

    let shm = SharedMemory::create(&n, 64).unwrap();
    assert!(shm.unlinks_on_drop());
    shm.close().unwrap();
    assert!(matches!(SharedMemory::open(&n), Err(Error::NotFound { .. })));
}

#[test]
fn opener_does_not_unlink() {
    let n = name("opener");
    let _owner = SharedMemory::create(&n, 64).unwrap();
    let opener = SharedMemory::open(&n).unwrap();
    assert!(!opener.unlinks_on_drop());
    opener.close().unwrap();
    assert!(SharedMemory::open(&n).is_ok());
}

#[test]
fn persist_keeps_the_name_until_unlink() {
    let n = name("persist");
    SharedMemory::options().persist(true).create(&n, 64).unwrap().close().unwrap();
    let mut again = SharedMemory::open(&n).unwrap();
    again.unlink().unwrap();
    assert!(matches!(SharedMemory::open(&n), Err(Error::NotFound { .. })));
    // The mapping survives the unlink; a second unlink reports the missing name.
    again.write_all_at(b"still mapped", 0).unwrap();
    assert!(matches!(again.unlink(), Err(Error::NotFound { .. })));

    let n2 = name("persist2");
    let mut shm = SharedMemory::create(&n2, 64).unwrap();
    shm.persist();
    drop(shm);
    SharedMemory::open(&n2).unwrap().unlink().unwrap();
}

#[test]
fn open_missing_is_not_found() {
    let n = name("missing");
    let err = SharedMemory::open(&n).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(&n));
    assert_eq!(std::io::Error::from(err).kind(), ErrorKind::NotFound);
}

#[test]
fn open_never_resizes() {
    let n = name("small");
    let _shm = SharedMemory::create(&n, 100).unwrap();
    let err = SharedMemory::options().min_size(101).open(&n).unwrap_err();
    assert!(matches!(err, Error::TooSmall { expected: 101, actual: 100, .. }), "{err:?}");
    assert_eq!(SharedMemory::options().min_size(100).open(&n).unwrap().len(), 100);
    assert_eq!(SharedMemory::open(&n).unwrap().len(), 100, "still 100 bytes");
}

#[test]
fn bad_sizes_are_refused() {
    let n = name("size");
    for size in [0, usize::MAX, isize::MAX as usize + 1] {
        let err = SharedMemory::create(&n, size).unwrap_err();
        assert!(matches!(err, Error::InvalidSize { .. }), "{size}: {err:?}");
    }
    assert!(matches!(SharedMemory::open(&n), Err(Error::NotFound { .. })), "nothing left");
}

#[cfg(target_os = "linux")]
#[test]
fn size_beyond_memory_is_no_space_at_create() {
    let n = name("huge");
    let err = SharedMemory::create(&n, 1 << 50).unwrap_err();
    assert!(matches!(err, Error::NoSpace { available: Some(_), .. }), "{err:?}");
    assert!(err.to_string().contains("bytes free"), "{err}");
    assert!(matches!(SharedMemory::open(&n), Err(Error::NotFound { .. })), "no name left behind");
}

#[test]
fn bad_names_are_refused() {
    let long = "x".repeat(shmbridge::max_name_len());
    for bad in ["", "/", "a/b", "a\0b", "..", long.as_str()] {
        let err = SharedMemory::create(bad, 64).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err:?}");
        let err = SharedMemory::open(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err:?}");
    }
}

#[cfg(unix)]
#[test]
fn mode_defaults_to_owner_only_and_is_configurable() {
    use std::os::unix::fs::PermissionsExt;
    let n = name("mode");
    let _a = SharedMemory::create(&n, 64).unwrap();
    let path = format!("/dev/shm{n}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let n2 = name("mode2");
    let _b = SharedMemory::options().mode(0o644).create(&n2, 64).unwrap();
    let path = format!("/dev/shm{n2}");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
}

#[test]
fn read_only_open_refuses_writes() {
    let n = name("ro");
    let mut owner = SharedMemory::create(&n, 64).unwrap();
    owner.write_all_at(b"abc", 0).unwrap();
    let mut ro = SharedMemory::options().read_only(true).open(&n).unwrap();
    assert!(!ro.is_writable());
    assert_eq!(&bytes(&ro)[..3], b"abc");
    let err = ro.write_at(b"x", 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(matches!(ro.write_value(0, &1u32), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.slice::<u32>(0, 1).unwrap().set(0, 1), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.slice_from::<u8>(0).unwrap().fill(1), Err(Error::ReadOnly { .. })));
    assert!(matches!(
        ro.slice::<u8>(0, 3).unwrap().copy_from_slice(b"xyz"),
        Err(Error::ReadOnly { .. })
    ));
    // SAFETY: each call fails (read-only) before it makes a slice, so no reference
    // into the segment exists.
    unsafe {
        assert!(matches!(ro.as_mut_slice(), Err(Error::ReadOnly { .. })));
        assert!(matches!(ro.view_mut::<u32>(0, 1), Err(Error::ReadOnly { .. })));
        assert!(matches!(ro.view_from_mut::<u8>(0), Err(Error::ReadOnly { .. })));
    }
    assert!(ro.write_all(b"x").is_err());
    assert_eq!(&bytes(&owner)[..3], b"abc", "nothing written");
}

#[test]
fn positional_io_follows_file_ext() {
    let mut shm = SharedMemory::create_unique("t_pos", 10).unwrap();
    assert_eq!(shm.write_at(b"abcdef", 6).unwrap(), 4, "short at the end");
    assert_eq!(shm.write_at(b"x", 10).unwrap(), 0, "0 at the end");
    assert_eq!(shm.write_at(b"x", u64::MAX).unwrap(), 0, "0 far past the end");
    let mut buf = [0u8; 8];
    assert_eq!(shm.read_at(&mut buf, 6).unwrap(), 4);
    assert_eq!(&buf[..4], b"abcd");
    assert_eq!(shm.read_at(&mut buf, 10).unwrap(), 0);
    assert_eq!(shm.read_at(&mut buf, u64::MAX).unwrap(), 0);
    assert_eq!(shm.read_exact_at(&mut buf, 6).unwrap_err().kind(), ErrorKind::UnexpectedEof);
    let err = shm.write_all_at(b"abcdef", 6).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("outside segment"), "{err}");
    assert_eq!(&bytes(&shm)[6..], b"abcd", "all-or-nothing wrote nothing");
    shm.read_exact_at(&mut buf[..4], 6).unwrap();
}

#[test]
fn cursor_io_follows_std_cursor() {
    let mut shm = SharedMemory::create_unique("t_cur", 8).unwrap();
    shm.write_all(b"12345").unwrap();
    assert_eq!(shm.stream_position().unwrap(), 5);
    assert_eq!(shm.write(b"6789").unwrap(), 3);
    assert_eq!(shm.write(b"x").unwrap(), 0);
    assert_eq!(shm.write_all(b"x").unwrap_err().kind(), ErrorKind::WriteZero);
    shm.flush().unwrap();
    assert_eq!(shm.seek(SeekFrom::End(-3)).unwrap(), 5);
    let mut s = String::new();
    shm.read_to_string(&mut s).unwrap();
    assert_eq!(s, "678");
    assert_eq!(shm.seek(SeekFrom::Current(-8)).unwrap(), 0);
    assert_eq!(shm.seek(SeekFrom::Start(100)).unwrap(), 100, "past the end is allowed");
    assert_eq!(shm.read(&mut [0u8; 4]).unwrap(), 0);
    let err = shm.seek(SeekFrom::Current(-101)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(shm.stream_position().unwrap(), 100, "a failed seek does not move");
    assert!(shm.seek(SeekFrom::End(i64::MIN)).is_err());
}

#[test]
fn typed_slices_check_bounds_and_alignment() {
    let shm = SharedMemory::create_unique("t_slice", 64).unwrap();
    shm.slice::<u32>(4, 3).unwrap().copy_from_slice(&[1, 2, 3]).unwrap();
    assert_eq!(shm.slice::<u32>(4, 3).unwrap().to_vec().unwrap(), [1, 2, 3]);
    assert_eq!(&bytes(&shm)[4..8], &1u32.to_ne_bytes());
    assert_eq!(shm.slice_from::<u64>(8).unwrap().len(), 7);
    assert_eq!(shm.slice_from::<f32>(60).unwrap().len(), 1);
    assert_eq!(shm.slice_from::<u8>(64).unwrap().len(), 0, "an empty slice at the very end");
    assert_eq!(shm.slice::<u16>(0, 0).unwrap().len(), 0);

    let err = shm.slice::<f64>(4, 1).unwrap_err();
    assert!(matches!(err, Error::Misaligned { align: 8, offset: 4, .. }), "{err:?}");
    assert!(err.to_string().contains("f64"), "{err}");
    assert!(matches!(shm.slice::<u8>(0, 65), Err(Error::OutOfBounds { .. })));
    assert!(matches!(shm.slice::<u64>(8, 8), Err(Error::OutOfBounds { .. })));
    assert!(matches!(shm.slice::<u64>(0, usize::MAX), Err(Error::OutOfBounds { .. })));
    assert!(matches!(shm.slice::<u8>(usize::MAX, 1), Err(Error::OutOfBounds { .. })));
    assert!(matches!(shm.slice_from::<u8>(65), Err(Error::OutOfBounds { .. })));
    assert!(matches!(shm.slice_from::<i16>(3), Err(Error::Misaligned { .. })));
    assert!(matches!(shm.slice::<i64>(64, 1), Err(Error::OutOfBounds { .. })));
}

#[test]
fn shared_slices_read_and_write_in_place() {
    let shm = SharedMemory::create_unique("t_shared_slice", 64).unwrap();
    let other = SharedMemory::open(shm.name()).unwrap(); // a second handle, same bytes
    let words = shm.slice::<u64>(0, 4).unwrap();
    let seen = other.slice::<u64>(0, 4).unwrap();
    words.set(1, 7).unwrap();
    assert_eq!(seen.get(1), Some(7), "each access reads memory afresh");
    seen.fill(3).unwrap();
    assert_eq!(words.iter().collect::<Vec<_>>(), [3, 3, 3, 3]);
    assert_eq!(words.get(4), None);
    assert!(matches!(words.set(4, 0), Err(Error::OutOfBounds { .. })));
    let tail = words.subslice(2..).unwrap();
    assert_eq!((tail.len(), tail.offset()), (2, 16));
    tail.copy_from_slice(&[8, 9]).unwrap();
    assert_eq!(seen.to_vec().unwrap(), [3, 3, 8, 9]);
    assert!(words.subslice(3..5).is_none());
    assert!(matches!(tail.copy_to_slice(&mut [0; 3]), Err(Error::OutOfBounds { .. })));

    // Types of other sizes go through volatile accesses; values of a Pod struct.
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Rgb([u8; 3]);
    let pixels = shm.slice::<Rgb>(40, 3).unwrap();
    pixels.set(2, Rgb([1, 2, 3])).unwrap();
    assert_eq!(other.slice::<Rgb>(40, 3).unwrap().get(2), Some(Rgb([1, 2, 3])));
    assert_eq!(other.read_value::<[u8; 3]>(46).unwrap(), [1, 2, 3]);
    other.write_value(47, &[9u8, 9]).unwrap(); // any alignment
    assert_eq!(pixels.get(2), Some(Rgb([1, 9, 9])));
    assert!(matches!(shm.read_value::<u64>(60), Err(Error::OutOfBounds { .. })));
}

#[test]
fn typed_views_check_bounds_and_alignment() {
    let mut shm = SharedMemory::create_unique("t_view", 64).unwrap();
    // SAFETY: this test holds the only handle to a uniquely named segment, on one
    // thread, and never writes through one view while another is alive.
    unsafe {
        shm.view_mut::<u32>(4, 3).unwrap().copy_from_slice(&[1, 2, 3]);
        assert_eq!(shm.view::<u32>(4, 3).unwrap(), &[1, 2, 3]);
        assert_eq!(&shm.as_slice()[4..8], &1u32.to_ne_bytes());
        assert_eq!(shm.view_from::<u64>(8).unwrap().len(), 7);
        assert_eq!(shm.view_from::<f32>(60).unwrap().len(), 1);
        assert_eq!(shm.view_from::<u8>(64).unwrap().len(), 0, "an empty view at the very end");
        assert_eq!(shm.view::<u16>(0, 0).unwrap().len(), 0);

        let err = shm.view::<f64>(4, 1).unwrap_err();
        assert!(matches!(err, Error::Misaligned { align: 8, offset: 4, .. }), "{err:?}");
        assert!(err.to_string().contains("f64"), "{err}");
        assert!(matches!(shm.view::<u8>(0, 65), Err(Error::OutOfBounds { .. })));
        assert!(matches!(shm.view::<u64>(8, 8), Err(Error::OutOfBounds { .. })));
        assert!(matches!(shm.view::<u64>(0, usize::MAX), Err(Error::OutOfBounds { .. })));
        assert!(matches!(shm.view::<u8>(usize::MAX, 1), Err(Error::OutOfBounds { .. })));
        assert!(matches!(shm.view_from::<u8>(65), Err(Error::OutOfBounds { .. })));
        assert!(matches!(shm.view_from_mut::<i16>(3), Err(Error::Misaligned { .. })));
        assert!(matches!(shm.view_mut::<i64>(64, 1), Err(Error::OutOfBounds { .. })));
        shm.as_mut_slice().unwrap()[63] = 5;
    }
    assert_eq!(shm.read_value::<u8>(63).unwrap(), 5);
}

#[test]
fn every_spec_type_has_a_slice() {
    let shm = SharedMemory::create_unique("t_types", 1024 * 8).unwrap();
    shm.slice_from::<f64>(0)
        .unwrap()
        .subslice(..2)
        .unwrap()
        .copy_from_slice(&[1.5, -2.25])
        .unwrap();
    assert_eq!(shm.slice_from::<f64>(0).unwrap().len(), 1024);
    assert_eq!(shm.slice_from::<f32>(0).unwrap().len(), 2048);
    assert_eq!(shm.slice_from::<i16>(0).unwrap().len(), 4096);
    assert_eq!(shm.slice_from::<u16>(0).unwrap().len(), 4096);
    assert_eq!(shm.slice_from::<i32>(0).unwrap().len(), 2048);
    assert_eq!(shm.slice_from::<u32>(0).unwrap().len(), 2048);
    assert_eq!(shm.slice_from::<i64>(0).unwrap().len(), 1024);
    assert_eq!(shm.slice_from::<u64>(0).unwrap().get(0), Some(1.5f64.to_bits()));
    assert_eq!(shm.slice_from::<u8>(0).unwrap().len(), 8192);

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Point {
        x: f32,
        y: f32,
    }
    shm.slice::<Point>(16, 1).unwrap().set(0, Point { x: 1.0, y: -1.0 }).unwrap();
    assert_eq!(shm.slice::<f32>(16, 2).unwrap().to_vec().unwrap(), [1.0, -1.0]);
}

#[test]
fn raw_pointer_for_ffi() {
    let shm = SharedMemory::create_unique("t_ptr", 16).unwrap();
    assert_eq!(shm.as_ptr(), shm.slice::<u8>(0, 16).unwrap().as_ptr().cast_const());
    // SAFETY: the pointer is valid for len() bytes while shm lives, writable, and no
    // reference into the mapping is live across this write.
    unsafe { shm.as_mut_ptr().add(3).write(7) };
    assert_eq!(shm.read_value::<u8>(3).unwrap(), 7);
    assert_eq!(shm.as_ptr() as usize % 4096, 0, "mappings start on a page");
}

#[test]
fn debug_shows_name_and_size() {
    let shm = SharedMemory::create_unique("t_dbg", 16).unwrap();
    let dbg = format!("{shm:?}");
    assert!(dbg.contains(shm.name()) && dbg.contains("len: 16"), "{dbg}");
}

#[test]
fn errors_convert_to_io_errors_with_their_kind() {
    let n = name("conv");
    fn open(n: &str) -> std::io::Result<SharedMemory> {
        Ok(SharedMemory::open(n)?)
    }
    let err = open(&n).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains(&n));
    let inner = err.into_inner().unwrap().downcast::<Error>().unwrap();
    assert!(matches!(*inner, Error::NotFound { .. }));
}

#[test]
fn unlink_by_name() {
    let n = name("unlink_fn");
    let shm = SharedMemory::options().persist(true).create(&n, 64).unwrap();
    shmbridge::unlink(n.trim_start_matches('/')).unwrap();
    assert!(matches!(SharedMemory::open(&n), Err(Error::NotFound { .. })));
    assert!(matches!(shmbridge::unlink(&n), Err(Error::NotFound { .. })));
    assert!(matches!(shmbridge::unlink("a/b"), Err(Error::InvalidName { .. })));
    drop(shm);
}

#[test]
fn populate_and_unreserved_segments_work_alike() {
    let n = name("populate");
    let mut a = SharedMemory::options().populate(true).reserve(false).create(&n, 1 << 20).unwrap();
    let b = SharedMemory::options().populate(true).open(&n).unwrap();
    a.write_all_at(b"z", (1 << 20) - 1).unwrap();
    assert_eq!(b.read_value::<u8>((1 << 20) - 1).unwrap(), b'z');
    assert!(!a.is_empty() && !b.is_empty());
}

#[test]
fn error_kinds_and_os_codes() {
    let n = name("kinds");
    let not_found = SharedMemory::open(&n).unwrap_err();
    assert_eq!((not_found.kind(), not_found.raw_os_error()), (ErrorKind::NotFound, None));
    let invalid = SharedMemory::create("", 1).unwrap_err();
    assert_eq!(invalid.kind(), ErrorKind::InvalidInput);
    let _shm = SharedMemory::create(&n, 1).unwrap();
    assert_eq!(SharedMemory::create(&n, 1).unwrap_err().kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        SharedMemory::options().min_size(2).open(&n).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[cfg(unix)]
#[test]
fn other_users_segment_is_permission_denied() {
    // Root (CAP_DAC_OVERRIDE) bypasses file permissions, and then only the open's
    // success can be checked.
    if bypasses_permissions() {
        let n = name("perm");
        let _shm = SharedMemory::options().mode(0o000).create(&n, 64).unwrap();
        assert!(SharedMemory::open(&n).is_ok(), "root opens anything");
        return;
    }
    let n = name("perm");
    let _shm = SharedMemory::options().mode(0o000).create(&n, 64).unwrap();
    let err = SharedMemory::open(&n).unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert_eq!(err.raw_os_error(), Some(13));
}

/// Whether this process can read a file whose mode forbids everyone.
#[cfg(unix)]
fn bypasses_permissions() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("shmbridge_perm_probe_{}", std::process::id()));
    std::fs::write(&path, b"x").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&path).is_ok();
    std::fs::remove_file(&path).unwrap();
    readable
}
