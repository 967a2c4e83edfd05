"""Property test: any sequence of seek/read/write/read_at/write_at/readinto on a
segment agrees with the same sequence on a model (a bytearray of the same fixed
size and a cursor), including which calls raise ValueError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shmbridge import SharedMemory, unique_name

SIZE = st.integers(1, 64)
OFFSET = st.one_of(st.integers(0, 80), st.integers(0, 2**63 - 1))
DATA = st.binary(max_size=80)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.integers(-1, 80)),
        st.tuples(st.just("write"), DATA),
        st.tuples(st.just("seek"), st.integers(-90, 90), st.sampled_from([0, 1, 2])),
        st.tuples(st.just("read_at"), st.integers(0, 80), OFFSET),
        st.tuples(st.just("write_at"), DATA, OFFSET),
        st.tuples(st.just("readinto"), st.integers(0, 80)),
    ),
    max_size=40,
)


class Model:
    """What the documentation promises, written as plainly as possible."""

    def __init__(self, size: int) -> None:
        self.mem = bytearray(size)
        self.pos = 0

    def read(self, n: int) -> bytes:
        end = len(self.mem) if n < 0 else min(self.pos + n, len(self.mem))
        data = bytes(self.mem[self.pos : end]) if self.pos < len(self.mem) else b""
        self.pos += len(data)
        return data

    def write(self, data: bytes) -> int:
        self.write_at(data, self.pos)
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int) -> int:
        new = [0, self.pos, len(self.mem)][whence] + offset
        if new < 0:
            raise ValueError("negative")
        self.pos = new
        return new

    def read_at(self, n: int, offset: int) -> bytes:
        return bytes(self.mem[offset : offset + n]) if offset < len(self.mem) else b""

    def write_at(self, data: bytes, offset: int) -> int:
        if data and offset + len(data) > len(self.mem):
            raise ValueError("does not fit")
        self.mem[offset : offset + len(data)] = data
        return len(data)

    def readinto(self, n: int) -> tuple[int, bytes]:
        data = self.read(n)
        return len(data), data


def outcome(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(*args))
    except ValueError:
        return ("ValueError", None)


@settings(max_examples=300, deadline=None)
@given(size=SIZE, ops=OPS)
def test_segment_agrees_with_bytearray_model(size: int, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    model = Model(size)
    with SharedMemory(unique_name("pytest_prop"), size, create=True) as shm:
        for op, *args in ops:
            if op == "readinto":
                buf = bytearray(args[0])
                count = shm.readinto(buf)
                assert (count, bytes(buf[:count])) == model.readinto(args[0])
            else:
                got = outcome(getattr(shm, op), *args)
                assert got == outcome(getattr(model, op), *args), (op, args)
            assert shm.tell() == model.pos
        assert shm.read_at(size, 0) == bytes(model.mem)
