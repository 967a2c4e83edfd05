"""Self-describing shared arrays from Python: create/open by name alone, every
dtype, orders, 0-d and empty arrays, DLPack, read-only maps, hostile headers, and
Rust <-> Python in both directions."""

from __future__ import annotations

import gc
import struct
import sys

import numpy as np
import pytest
from conftest import Peer, PeerError, run_isolated
from hypothesis import given, settings
from hypothesis import strategies as st

import shmbridge
from shmbridge import SharedArray, SharedMemory, create_array, open_array

NATIVE = "<" if sys.byteorder == "little" else ">"
DTYPES = ["?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", "c8", "c16"]


@pytest.mark.parametrize("dtype", DTYPES + [">f8", ">i4", "<c16"])
def test_round_trip_every_dtype(name: str, dtype: str) -> None:
    a = create_array(name, (3, 4), dtype)
    a[...] = (np.arange(12).reshape(3, 4) % 2 if dtype == "?" else np.arange(12).reshape(3, 4))
    b = open_array(name)
    assert (b.dtype, b.shape, b.strides) == (np.dtype(dtype), (3, 4), a.strides)
    assert np.array_equal(a, b)
    assert b.base.dtype == np.dtype(dtype).str


def test_shape_forms_orders_and_special_shapes(name: str) -> None:
    a = create_array(name, 5, np.float32)
    assert a.shape == (5,) and a.flags.c_contiguous
    f = create_array(name + "f", [2, 3, 4], np.int32, "F")
    assert f.flags.f_contiguous and f.strides == (4, 8, 24)
    assert open_array(name + "f").strides == (4, 8, 24)
    z = create_array(name + "z", (), np.complex128)
    z[()] = 1 - 2j
    assert open_array(name + "z")[()] == 1 - 2j and open_array(name + "z").shape == ()
    e = create_array(name + "e", (3, 0, 2), np.uint16)
    assert e.size == 0 and open_array(name + "e").shape == (3, 0, 2)
    del a, f, z, e


def test_open_is_zero_copy_and_writable(name: str) -> None:
    a = create_array(name, (100,), np.int64)
    b = open_array(name)
    b[7] = 42
    assert a[7] == 42, "the same pages"
    assert b.flags.writeable and not b.flags.owndata
    assert isinstance(b.base, SharedArray) and b.base.name == name


def test_readonly_open(name: str) -> None:
    a = create_array(name, (4,), np.float64)
    r = open_array(name, readonly=True)
    assert not r.flags.writeable and r.base.readonly
    with pytest.raises(ValueError, match="read-only"):
        r[0] = 1.0
    with pytest.raises(ValueError):
        r.setflags(write=True)
    a[0] = 2.5
    assert r[0] == 2.5
    with pytest.raises(TypeError, match="read-only"):
        r.base.bump_generation()


def test_generation_counter(name: str) -> None:
    a = create_array(name, (4,), np.uint8)
    b = open_array(name)
    assert a.base.generation == b.base.generation == 0
    assert a.base.bump_generation() == 1
    assert b.base.generation == 1


def test_segment_lives_while_any_array_does(name: str) -> None:
    a = create_array(name, (1000,), np.float64)
    view = a[10:20]
    del a
    gc.collect()
    view[:] = 3.0
    assert open_array(name)[15] == 3.0, "the creator's name lives while a view does"
    del view
    gc.collect()
    with pytest.raises(FileNotFoundError):
        open_array(name)


def test_persist_and_unlink(name: str) -> None:
    a = create_array(name, (2,), np.int8, persist=True)
    del a
    gc.collect()
    b = open_array(name)
    b.base.unlink()
    with pytest.raises(FileNotFoundError):
        open_array(name)
    b[0] = 1  # still mapped


def test_dlpack_with_numpy(name: str) -> None:
    a = create_array(name, (3, 5), np.float32, "F")
    d = np.from_dlpack(a.base)
    assert np.shares_memory(d, a) and d.strides == a.strides and d.dtype == np.float32
    d[1, 2] = 7.0
    assert a[1, 2] == 7.0
    assert a.base.__dlpack_device__() == (1, 0)
    assert "dltensor_versioned" in repr(a.base.__dlpack__(max_version=(1, 0)))
    assert "dltensor" in repr(a.base.__dlpack__())
    r = open_array(name, readonly=True)
    rd = np.from_dlpack(r.base)
    assert not rd.flags.writeable, "the read-only flag travels with DLPack 1.x"
    with pytest.raises(BufferError, match="read-only"):
        r.base.__dlpack__()
    with pytest.raises(BufferError, match="zero-copy"):
        a.base.__dlpack__(copy=True)
    with pytest.raises(BufferError, match="CPU"):
        a.base.__dlpack__(dl_device=(2, 0))
    big = create_array(name + "be", (2,), ">f8" if NATIVE == "<" else "<f8")
    with pytest.raises(BufferError, match="byte order"):
        big.base.__dlpack__(max_version=(1, 0))
    del d, rd


def test_unconsumed_capsules_free_their_mapping(name: str) -> None:
    a = create_array(name, (4,), np.int32)
    for _ in range(100):
        a.base.__dlpack__(max_version=(1, 0))
        a.base.__dlpack__()
    del a
    gc.collect()
    with pytest.raises(FileNotFoundError):
        open_array(name)


def test_dlpack_with_torch(name: str) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed here; NumPy covers DLPack")
    a = create_array(name, (4,), np.float32)
    t = torch.from_dlpack(a.base)
    t[0] = 5.0
    assert a[0] == 5.0


def test_errors(name: str) -> None:
    for bad in [object, "U4", "M8[ns]", "f16" if np.dtype("g").itemsize == 16 else "V8", [("a", "i4")]]:
        with pytest.raises(ValueError, match="unsupported dtype"):
            create_array(name, (2,), bad)
    with pytest.raises(ValueError, match="negative"):
        create_array(name, (2, -1), np.int8)
    with pytest.raises(ValueError, match="order"):
        create_array(name, (2,), np.int8, "X")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too large"):
        create_array(name, (2**62, 2**62), np.int8)
    with pytest.raises(ValueError, match="at most 64"):
        create_array(name, (1,) * 65, np.int8)
    with pytest.raises(FileNotFoundError):
        open_array(name)
    with pytest.raises(TypeError):
        create_array(name, (2.5,), np.int8)  # type: ignore[arg-type]
    a = create_array(name, (2,), np.int8)
    with pytest.raises(FileExistsError):
        create_array(name, (2,), np.int8)
    assert create_array(name, (3,), np.int8, replace=True).shape == (3,)
    del a


def test_raw_and_hostile_segments_are_value_errors(name: str) -> None:
    with SharedMemory(name, 4096, create=True) as raw:
        with pytest.raises(ValueError, match="not a shmbridge array"):
            open_array(name)
        good = create_array(name + "g", (4, 2), np.float64)
        header = bytes(SharedMemory(name + "g").read_at(128, 0))
        del good
        corrupt = {
            "version": (8, struct.pack("<I", 9), "version 9"),
            "ndim": (56, struct.pack("<I", 2**31), "exceeds the maximum"),
            "dtype": (40, b"|O8\0", "unsupported dtype"),
            "data size": (32, struct.pack("<Q", 2**63), "runs past the end"),
            "shape": (64, struct.pack("<Q", 2**40), "reaches past"),
            "stride": (80, struct.pack("<q", -8), "negative"),
        }
        for at, value, reason in corrupt.values():
            raw.write_at(header, 0)
            raw.write_at(value, at)
            with pytest.raises(ValueError, match=reason):
                open_array(name)


def test_hostile_header_cannot_crash_the_interpreter() -> None:
    result = run_isolated(
        """
import random, numpy as np, shmbridge
from shmbridge import SharedMemory, create_array, open_array
name = shmbridge.unique_name("hostile_arr")
good = create_array(name + "g", (7, 3), np.complex64)
header = SharedMemory(name + "g").read_at(256, 0)
raw = SharedMemory(name, 512, create=True)
rng = random.Random(1)
accepted = 0
for _ in range(3000):
    h = bytearray(header)
    for _ in range(rng.randint(1, 4)):
        h[rng.randrange(len(h))] = rng.randrange(256)
    raw.write_at(bytes(h), 0)
    try:
        arr = open_array(name)
    except ValueError:
        continue
    accepted += 1
    arr.sum()                        # touches every element the header claims
    np.from_dlpack(arr.base).sum()
print("survived", accepted)
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("survived")


def test_rust_creates_python_doubles_rust_checks(peer: Peer, name: str) -> None:
    peer(f"acreate {NATIVE}f8 {name} 1000,1000 C 1")
    arr = open_array(name)  # by name alone
    assert (arr.shape, arr.dtype, arr.strides) == ((1000, 1000), np.float64, (8000, 8))
    assert arr[999, 999] == 999_999.0
    arr *= 2.0
    arr.base.bump_generation()
    peer("acheck 2")
    assert peer(f"aopen {name}").endswith(" 1"), "Rust sees the generation bump"
    with pytest.raises(PeerError, match="Mismatch"):
        peer("acheck 1")


@pytest.mark.parametrize(
    ("shape", "order"), [((3, 4), "F"), ((), "C"), ((2, 0, 3), "C"), ((5,), "F")]
)
def test_python_creates_rust_checks(peer: Peer, name: str, shape: tuple[int, ...], order: str) -> None:
    arr = create_array(name, shape, np.int32, order)  # type: ignore[arg-type]
    arr[...] = np.arange(arr.size, dtype=np.int32).reshape(shape) * 3
    dims = ",".join(map(str, shape)) or "-"
    strides = ",".join(map(str, arr.strides)) or "-"
    assert peer(f"aopen {name}") == f"{NATIVE}i4 {dims} {strides} {order} 0"
    peer("acheck 3")
    peer("afill 5")  # Rust writes, Python sees
    assert np.array_equal(arr, np.arange(arr.size, dtype=np.int32).reshape(shape) * 5)


SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([d for d in DTYPES if d != "f2"]), shape=SHAPES, order=st.sampled_from("CF"))
def test_cross_language_property(dtype: str, shape: tuple[int, ...], order: str) -> None:
    peer = Peer()
    try:
        dt = np.dtype(dtype)
        # Python creates, Rust opens: same dtype, shape, strides and bytes.
        name = shmbridge.unique_name("pytest_prop_arr")
        arr = create_array(name, shape, dt, order)  # type: ignore[arg-type]
        arr[...] = np.random.default_rng(0).integers(0, 2, size=shape).astype(dt) if dt.kind == "b" else (
            np.random.default_rng(0).integers(-100, 100, size=shape).astype(dt)
        )
        typestr, dims, strides, rust_order, _ = peer(f"aopen {name}").split()
        assert typestr == dt.str and rust_order == order
        assert dims == (",".join(map(str, shape)) or "-")
        assert strides == (",".join(map(str, arr.strides)) or "-")
        assert bytes.fromhex(peer("ahex")) == arr.tobytes(order="A")
        # Rust creates, Python opens: the values Rust computed, element by element.
        other = shmbridge.unique_name("pytest_prop_arr")
        peer(f"acreate {dt.str} {other} {dims} {order} 7")
        got = open_array(other)
        assert (got.dtype, got.shape) == (dt, shape)
        assert got.flags.f_contiguous if order == "F" else got.flags.c_contiguous
        index = np.arange(got.size, dtype=np.int64).reshape(shape)
        if dt.kind == "b":
            want = index % 2 == 1
        elif dt.kind == "c":
            want = (index * 7).astype(dt) * (1 - 1j)
        else:
            want = (index * 7).astype(dt)
        assert np.array_equal(got, want)
        peer("aclose")
        del arr, got
    finally:
        peer.close()


def test_numpy_method_views_the_data_with_the_array_as_base(name: str) -> None:
    sa = shmbridge.SharedArray.create(name, (3, 4), ">i4", "F")
    a = sa.numpy()
    assert a.base is sa and a.flags.f_contiguous and a.flags.writeable
    assert a.dtype == np.dtype(">i4") and a.shape == (3, 4) and a.strides == (4, 12)
    a[1, 2] = 7
    assert np.asarray(sa)[1, 2] == 7, "both views see the same memory"
    ro = shmbridge.SharedArray.open(name, readonly=True).numpy()
    assert not ro.flags.writeable and ro[1, 2] == 7
    del a, sa
    assert ro.base.numpy()[1, 2] == 7
