"""A drop-in for :mod:`multiprocessing.shared_memory`, with shmbridge underneath.

Change one import line and keep the rest of the program::

    from shmbridge.shared_memory import SharedMemory, ShareableList

The signatures, names, sizes, ``buf``, ``close()``/``unlink()``, pickling and the
:class:`ShareableList` byte format are the stdlib's, so both sides of a program can
migrate one at a time: a segment or list made by either module opens in the other.
What changes is underneath:

- create is exclusive with permissions 0600, and the pages are reserved at create:
  a full ``/dev/shm`` is an ``OSError`` (``errno.ENOSPC``) from the constructor, not a
  SIGBUS at some later write;
- nothing goes through :mod:`multiprocessing.resource_tracker`, so no tracker
  unlinks a segment that another process still uses (CPython gh-82300), and a
  forked child's ``close()`` or exit never removes its parent's segment; with
  ``track=True`` (the default), a segment whose creator has died is removed once
  no process maps it any more (shmbridge's own reclaim, Linux);
- ``close()`` cannot crash the interpreter, whatever the program kept: NumPy arrays
  (``np.ndarray(buffer=shm.buf)``, ``np.frombuffer``), ``memoryview.cast``, ctypes
  ``from_buffer`` and the like keep working after it, and the memory is unmapped when
  the last of them (and the ``SharedMemory`` object itself) is gone.

>>> from shmbridge.shared_memory import SharedMemory, ShareableList
>>> shm = SharedMemory(create=True, size=16)
>>> shm.buf[:5] = b"hello"
>>> other = SharedMemory(shm.name)        # another process would do the same
>>> bytes(other.buf[:5])
b'hello'
>>> other.close()
>>> shm.close()
>>> shm.unlink()                          # close() never unlinks; unlink() does
>>> sl = ShareableList([1, 2.5, "three", b"four", None, True])
>>> ShareableList(name=sl.shm.name)[2]
'three'
>>> sl.shm.close(); sl.shm.unlink()

The differences that remain are listed in the README, section "Coming from
multiprocessing.shared_memory".
"""

from __future__ import annotations

import os
import secrets
import operator
import struct
from collections.abc import Iterable, Iterator
from functools import partial
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

from shmbridge import _native

__all__ = ["SharedMemory", "ShareableList"]

# Generated names look like the stdlib's: 14 characters at most, which even the BSDs
# accept ("/psm_" and 8 hex digits, or "wnsm_..." on Windows, where the stdlib uses that).
_SHM_NAME_PREFIX = "wnsm_" if os.name == "nt" else "/psm_"
_SHM_SAFE_NAME_LENGTH = 14


def _make_filename() -> str:
    """A random segment name for ``SharedMemory(create=True)`` without a name."""
    nbytes = (_SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)) // 2
    return _SHM_NAME_PREFIX + secrets.token_hex(nbytes)


def _lifetime(track: bool) -> Literal["process", "persistent"]:
    """The native ``lifetime`` of a segment created with ``track``: the one place
    where ``track`` takes effect.

    ``track=True``: ``"process"``. ``close()`` never unlinks (as in the stdlib), and
    once this process has died, the segment is removed as soon as no process maps
    it: shmbridge's reclaim tracker (started by the first such create, one per user)
    or the last process that maps it does it, never while anyone still maps it
    (unlike the stdlib's resource tracker, gh-82300). ``track=False``:
    ``"persistent"``, kept until someone unlinks it. Openers never track: only the
    creator's ``track`` matters.
    """
    return "process" if track else "persistent"


class SharedMemory:
    """A named block of shared memory, as :class:`multiprocessing.shared_memory.SharedMemory`.

    ``SharedMemory(name)`` attaches to an existing block (``size`` is ignored, as in
    the stdlib); ``SharedMemory(name, create=True, size=n)`` creates one of ``n``
    bytes, zero-filled, exclusively (``FileExistsError`` if the name is taken) and
    accessible to its owner only (0600). Without a name, ``create=True`` picks a fresh
    one (``psm_`` and 8 hex digits, like the stdlib's).

    ``buf`` is a memoryview of the whole block, the same object on every access.
    ``close()`` ends this object's access and never destroys the block; ``unlink()``
    removes its name (once, from any process). Views taken from ``buf`` stay valid
    after ``close()``: the memory is unmapped when nothing can reach it any more.

    ``track`` (keyword only) only matters to the creator. ``track=True`` (the
    default): the segment is removed once its creator has died and no process maps
    it any more (Linux; as the stdlib's resource tracker does at exit, except that
    a segment another process still uses is never removed, gh-82300).
    ``track=False``: the segment stays until someone unlinks it. Opening with
    ``track=True`` never unlinks anybody's segment.

    A pickled ``SharedMemory`` carries its name: unpickling (in a ``multiprocessing``
    child, for instance) attaches to the block and never owns or unlinks it. The class
    is a plain Python class and may be subclassed, as the stdlib's.
    """

    # Defaults, so that close(), unlink() and repr() work on an object whose
    # __init__ failed part way (as in the stdlib).
    _segment: _native.SharedMemory | None = None
    _buf: memoryview | None = None
    _track: bool = True
    # Permissions of a created segment. Private, as in the stdlib, where a subclass
    # may set it to share with other users (the umask still applies).
    _mode: int = 0o600

    def __init__(
        self, name: str | None = None, create: bool = False, size: int = 0, *, track: bool = True
    ) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        self._track = track
        if not create:
            if name is None:
                raise ValueError("'name' can only be None if create=True")
            # The stdlib ignores `size` when attaching; the segment says how big it is.
            segment = _native.SharedMemory(name)
        elif name is not None:
            segment = self._create(name, size)
        else:
            while True:
                try:
                    segment = self._create(_make_filename(), size)
                    break
                except FileExistsError:
                    continue
        self._segment = segment
        self._buf = memoryview(segment)

    def _create(self, name: str, size: int) -> _native.SharedMemory:
        # The native object never unlinks by itself with either lifetime: in this
        # module only unlink() does (and, for track=True, automatic reclaim after this
        # process has died), so a close(), a collection or a forked child's exit never
        # removes the name.
        return _native.SharedMemory.create(name, size, mode=self._mode, lifetime=_lifetime(self._track))

    @property
    def buf(self) -> memoryview:
        """A memoryview of the whole block (the same object each time); None after close()."""
        return self._buf  # type: ignore[return-value]  # None only once closed, as in the stdlib

    @property
    def name(self) -> str:
        """The block's name, without the leading "/" (pass it to ``SharedMemory(name)``)."""
        return self._name.removeprefix("/")

    @property
    def _name(self) -> str:
        # The stdlib's private attribute: the name with its leading "/", as shm_open
        # takes it. Kept for code that reads it; it cannot be reassigned here.
        if self._segment is None:
            raise AttributeError("this SharedMemory was never opened")
        return self._segment.name

    @property
    def size(self) -> int:
        """The block's size in bytes (taken from the segment when attaching)."""
        if self._segment is None:
            raise AttributeError("this SharedMemory was never opened")
        return self._segment.size

    def close(self) -> None:
        """End this object's access to the block; never destroys the block.

        ``buf`` becomes None. Unlike the stdlib, close() never raises BufferError and
        never invalidates what was taken from ``buf``: memoryviews, NumPy arrays and
        ctypes objects made from it keep working, and the memory is unmapped once
        nothing can reach it. Calling close() again does nothing.
        """
        # Dropping our reference (instead of release(), as the stdlib does) frees the
        # view at once if nobody else holds it, and leaves it working if somebody does.
        self._buf = None
        if self._segment is not None:
            self._segment.close()

    def unlink(self) -> None:
        """Remove the block's name, so that it goes once nobody maps it.

        Call it once, from any one process (a second call raises FileNotFoundError);
        before or after close(). Processes that have the block mapped keep using it.
        """
        if self._segment is not None:
            self._segment.unlink()

    def __reduce__(self) -> tuple[type[SharedMemory], tuple[str, bool, int]]:
        """Pickle by name: unpickling attaches to the block (never creates or owns it)."""
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self) -> str:
        if self._segment is None:
            return f"<{self.__class__.__name__} (not opened)>"
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    def __enter__(self) -> Self:
        """This object, closed at the end of the ``with`` block."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close (never unlink) on leaving a ``with`` block (the stdlib has no ``with``)."""
        self.close()


_ENCODING = "utf8"

# The item types a ShareableList holds, and the struct format of each fixed-size one.
_FIXED_FORMATS: dict[type, str] = {
    int: "q",
    float: "d",
    bool: "xxxxxxx?",
    type(None): "xxxxxx?x",
}
# Codes stored per item that say how to turn the unpacked value back into Python.
_AS_IS, _STR, _BYTES, _NONE = 0, 1, 2, 3
_ALIGNMENT = 8

_T = TypeVar("_T", int, float, bool, str, bytes, None)


def _code_of(value: object) -> int:
    if isinstance(value, str):
        return _STR
    if isinstance(value, bytes):
        return _BYTES
    if value is None:
        return _NONE
    return _AS_IS


def _decode(code: int, raw: Any) -> Any:
    if code == _AS_IS:
        return raw
    if code == _STR:
        return raw.rstrip(b"\x00").decode(_ENCODING)
    if code == _BYTES:
        return raw.rstrip(b"\x00")
    if code == _NONE:
        return None
    raise ValueError(f"unknown ShareableList item code {code}: the segment holds no ShareableList")


def _encode(value: object) -> tuple[str, Any]:
    """The struct format and packable value for one item (strings: as encoded bytes)."""
    if isinstance(value, (str, bytes)):
        data = value.encode(_ENCODING) if isinstance(value, str) else value
        # The stdlib's slot: a multiple of 8 above the length in characters. Where the
        # encoded bytes need more (a non-ASCII str), the stdlib silently cuts the string
        # short; here the slot grows to the next multiple of 8 that holds them.
        slot = _ALIGNMENT * (len(value) // _ALIGNMENT + 1)
        if len(data) > slot:
            slot = -(-len(data) // _ALIGNMENT) * _ALIGNMENT
        return f"{slot}s", data
    fmt = _FIXED_FORMATS.get(type(value))
    if fmt is None:
        raise TypeError(
            f"a ShareableList holds int, float, bool, str, bytes and None, not {type(value).__name__}"
        )
    return fmt, value


class ShareableList(Generic[_T]):
    """A fixed-length list in shared memory, as :class:`multiprocessing.shared_memory.ShareableList`.

    ``ShareableList(sequence)`` stores the items (int, float, bool, str, bytes, None)
    in a new block (named ``name`` if given); ``ShareableList(name=name)`` attaches to
    an existing list. The byte format is the stdlib's, so a list made by either module
    opens in the other. Items may be replaced, by a value of any of those types (a
    str or bytes no longer than its slot), but the length is fixed.

    ``shm`` is the :class:`SharedMemory` behind the list: ``sl.shm.close()`` and
    ``sl.shm.unlink()`` end it. Pickling carries the name only. There is no locking:
    as with the stdlib, coordinate writers yourself.
    """

    # Layout (the stdlib's, all native byte order):
    #   q            number of items N
    #   (N + 1) q    offset of each item's slot from the start of the data area, and the end
    #   data area    each item in its slot (8 bytes, or a multiple of 8 for str and bytes)
    #   N * 8s       each item's struct format, NUL-padded
    #   N b          each item's decode code (_AS_IS, _STR, _BYTES, _NONE)

    shm: SharedMemory

    def __init__(self, sequence: Iterable[_T] | None = None, *, name: str | None = None) -> None:
        if name is None or sequence is not None:
            items = list(sequence) if sequence is not None else []
            encoded = [_encode(item) for item in items]
            self._list_len = len(items)
            self._allocated_offsets = [0]
            for fmt, _ in encoded:
                slot = int(fmt[:-1]) if fmt.endswith("s") else _ALIGNMENT
                self._allocated_offsets.append(self._allocated_offsets[-1] + slot)
            size = self._offset_back_transform_codes + self._list_len
            self.shm = SharedMemory(name, create=True, size=size)
            buf = self.shm.buf
            struct.pack_into(f"{self._list_len + 2}q", buf, 0, self._list_len, *self._allocated_offsets)
            struct.pack_into(
                "".join(fmt for fmt, _ in encoded), buf, self._offset_data_start, *(v for _, v in encoded)
            )
            struct.pack_into(
                "8s" * self._list_len,
                buf,
                self._offset_packing_formats,
                *(fmt.encode(_ENCODING) for fmt, _ in encoded),
            )
            struct.pack_into(
                f"{self._list_len}b", buf, self._offset_back_transform_codes, *map(_code_of, items)
            )
        else:
            self.shm = SharedMemory(name)
            self._read_header()

    def _read_header(self) -> None:
        """Read and check the item count and slot offsets of an existing list."""
        buf = self._buf()
        size = len(buf)

        def invalid(why: str) -> ValueError:
            return ValueError(f"segment {self.shm.name!r} holds no ShareableList: {why}")

        if size < 16:
            raise invalid(f"{size} bytes are too few for a header")
        (count,) = struct.unpack_from("q", buf, 0)
        # Each item needs 8 bytes of offset, 8 of slot, 8 of format and 1 of code.
        if not 0 <= count <= (size - 16) // 25:
            raise invalid(f"an item count of {count} does not fit in {size} bytes")
        offsets = list(struct.unpack_from(f"{count + 1}q", buf, 8))
        self._list_len = count
        self._allocated_offsets = offsets
        if offsets[0] != 0 or any(b - a < _ALIGNMENT for a, b in zip(offsets, offsets[1:])):
            raise invalid("the slot offsets are not increasing")
        if self._offset_back_transform_codes + count > size:
            raise invalid(f"{count} items do not fit in {size} bytes")

    def _buf(self) -> memoryview:
        buf = self.shm.buf
        if buf is None:
            raise ValueError(f"ShareableList {self.shm.name!r} is closed (its shm was closed)")
        return buf

    def _position(self, position: int, what: str) -> int:
        index = operator.index(position)
        if index < 0:
            index += self._list_len
        if not 0 <= index < self._list_len:
            raise IndexError(f"{what} index out of range")
        return index

    def _get_packing_format(self, position: int) -> str:
        """The struct format of the item at ``position`` (as the stdlib's helper)."""
        index = self._position(position, "list")
        (raw,) = struct.unpack_from("8s", self._buf(), self._offset_packing_formats + index * 8)
        return bytes(raw).rstrip(b"\x00").decode(_ENCODING)

    def _get_code(self, index: int) -> int:
        (code,) = struct.unpack_from("b", self._buf(), self._offset_back_transform_codes + index)
        return int(code)

    def __getitem__(self, position: int) -> _T:
        index = self._position(position, "list")
        fmt = self._get_packing_format(index)
        (raw,) = struct.unpack_from(fmt, self._buf(), self._offset_data_start + self._allocated_offsets[index])
        value: _T = _decode(self._get_code(index), raw)
        return value

    def __setitem__(self, position: int, value: _T) -> None:
        index = self._position(position, "list assignment")
        slot = self._allocated_offsets[index + 1] - self._allocated_offsets[index]
        fmt, packable = _encode(value)
        if fmt.endswith("s"):
            if len(packable) > slot:
                raise ValueError("bytes/str item exceeds available storage")
            # A string fills its whole slot, whatever it held before.
            fmt = f"{slot}s"
        # Pack first: a value struct rejects (an int beyond 64 bits) changes nothing.
        data = struct.pack(fmt, packable)
        buf = self._buf()
        struct.pack_into("8s", buf, self._offset_packing_formats + index * 8, fmt.encode(_ENCODING))
        struct.pack_into("b", buf, self._offset_back_transform_codes + index, _code_of(value))
        start = self._offset_data_start + self._allocated_offsets[index]
        buf[start : start + len(data)] = data

    def __len__(self) -> int:
        (count,) = struct.unpack_from("q", self._buf(), 0)
        return int(count)

    def __iter__(self) -> Iterator[_T]:
        for index in range(self._list_len):
            yield self[index]

    def __reduce__(self) -> tuple[partial[ShareableList[_T]], tuple[()]]:
        """Pickle by name: unpickling attaches to the same list."""
        return partial(self.__class__, name=self.shm.name), ()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({list(self)}, name={self.shm.name!r})"

    @property
    def format(self) -> str:
        """The struct format of all the items, concatenated."""
        return "".join(self._get_packing_format(i) for i in range(self._list_len))

    def count(self, value: _T) -> int:
        """The number of items equal to ``value``."""
        return sum(value == item for item in self)

    def index(self, value: _T) -> int:
        """The position of the first item equal to ``value``; ValueError if none is."""
        for position, item in enumerate(self):
            if value == item:
                return position
        raise ValueError(f"{value!r} not in this container")

    @property
    def _offset_data_start(self) -> int:
        return (self._list_len + 2) * 8

    @property
    def _offset_packing_formats(self) -> int:
        return self._offset_data_start + self._allocated_offsets[-1]

    @property
    def _offset_back_transform_codes(self) -> int:
        return self._offset_packing_formats + self._list_len * 8
