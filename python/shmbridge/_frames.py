"""NumPy arrays as channel messages: a small self-describing frame (dtype, shape)
in front of the C-ordered data, so the receiver needs no agreement on either."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from shmbridge._native import Channel

MAGIC = b"SHMBNDA1"
_FIXED = struct.Struct("<8s16sI4x")  # magic, dtype.str (NUL-padded), ndim, padding to 32


def _numpy() -> Any:
    import numpy

    return numpy


def frame_size(array: Any) -> int:
    """The bytes :func:`send_array` puts in the ring for ``array``."""
    a = _numpy().asarray(array)
    return _FIXED.size + 8 * a.ndim + a.nbytes


def send_array(channel: Channel, array: Any, timeout: float | None = None) -> None:
    """Send a NumPy array (any shape, C order) as one message, copied once, straight
    into the channel's ring.

    The frame: 32 bytes (``SHMBNDA1``, the dtype string, ndim), ``ndim`` u64
    dimensions, then the data, 8-aligned. Raises ValueError if it is larger than
    the channel's ``max_message``.
    """
    np = _numpy()
    a = np.asarray(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
    if a.dtype.hasobject:
        raise ValueError("arrays of Python objects cannot be sent")
    if a.dtype.fields is not None or a.dtype.kind == "V" or len(a.dtype.str) > 16:
        # The frame names the dtype by its type string, which loses a structured
        # dtype's fields ("|V12"): refuse rather than deliver anonymous bytes.
        raise ValueError(
            f"dtype {a.dtype} cannot be sent as an array frame (structured and void dtypes "
            "lose their fields): send a plain dtype, or the raw bytes with a description"
        )
    header = _FIXED.pack(MAGIC, a.dtype.str.encode(), a.ndim) + struct.pack(f"<{a.ndim}Q", *a.shape)
    # Header and data go straight into the channel's ring: one copy in all, guarded
    # against a peer that shrinks the segment.
    data = a.reshape(-1).view(np.uint8) if a.nbytes else b""
    channel.send_parts([header, data], timeout)


def recv_array(channel: Channel, timeout: float | None = None, *, copy: bool = True) -> np.ndarray:
    """Receive an array sent by :func:`send_array`.

    With ``copy=True`` (the default) the data is copied out of the ring into a new
    array, with a guarded copy. With ``copy=False`` the array is a read-only view of
    the channel's ring (no copy at all); its room is freed when the array is
    collected. A view cannot be guarded: if a peer shrinks the segment, touching it
    faults.
    """
    np = _numpy()
    message = channel.recv_view(timeout)
    try:
        fixed = bytearray(_FIXED.size)
        if len(message) < _FIXED.size or message.readinto(fixed) != _FIXED.size:
            raise ValueError("the message is not an array frame (send it with send_array)")
        magic, dtype, ndim = _FIXED.unpack_from(fixed, 0)
        if magic != MAGIC or ndim > 64 or len(message) < _FIXED.size + 8 * ndim:
            raise ValueError("the message is not an array frame (send it with send_array)")
        dims = bytearray(8 * ndim)
        message.readinto(dims, _FIXED.size)
        shape = struct.unpack(f"<{ndim}Q", dims)
        dt = np.dtype(dtype.rstrip(b"\0").decode())
        offset = _FIXED.size + 8 * ndim
        count = int(np.prod(shape, dtype=np.int64)) if ndim else 1
        if offset + count * dt.itemsize > len(message):
            raise ValueError("the array frame is shorter than its shape says")
        if not copy:
            return np.frombuffer(message, dtype=dt, count=count, offset=offset).reshape(shape)
        result = np.empty(shape, dtype=dt)
        if result.nbytes:
            message.readinto(result.reshape(-1).view(np.uint8), offset)
        return result
    finally:
        if copy:
            message.release()
