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
    # Written straight into the channel's ring: one copy of the data in all.
    with channel.loan(len(header) + a.nbytes, timeout) as loan:
        with memoryview(loan) as room:
            room[: len(header)] = header
            if a.nbytes:
                np.frombuffer(room, dtype=np.uint8, offset=len(header))[:] = a.reshape(-1).view(np.uint8)


def recv_array(channel: Channel, timeout: float | None = None, *, copy: bool = True) -> np.ndarray:
    """Receive an array sent by :func:`send_array`.

    With ``copy=False`` the array is a read-only view of the channel's ring (no
    copy at all); its slot is freed when the array is collected, and the channel
    takes no other message until then.
    """
    np = _numpy()
    message = channel.recv_view(timeout)
    try:
        if len(message) < _FIXED.size:
            raise ValueError("the message is not an array frame (send it with send_array)")
        magic, dtype, ndim = _FIXED.unpack_from(message, 0)
        if magic != MAGIC:
            raise ValueError("the message is not an array frame (send it with send_array)")
        shape = struct.unpack_from(f"<{ndim}Q", message, _FIXED.size)
        dt = np.dtype(dtype.rstrip(b"\0").decode())
        offset = _FIXED.size + 8 * ndim
        count = int(np.prod(shape, dtype=np.int64)) if ndim else 1
        view = np.frombuffer(message, dtype=dt, count=count, offset=offset).reshape(shape)
    except Exception:
        message.release()
        raise
    if not copy:
        return view
    result = view.copy()
    del view
    message.release()
    return result
