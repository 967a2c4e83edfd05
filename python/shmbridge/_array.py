"""Shared NumPy arrays that describe themselves: the other side opens them by name
alone, with dtype, shape and strides read from the segment's header."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, SupportsIndex

from shmbridge._native import SharedArray
from shmbridge._signature import OWNER_ONLY

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import DTypeLike


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as e:  # pragma: no cover - numpy is an optional dependency
        raise ImportError("shared arrays need NumPy: pip install 'shmbridge[numpy]'") from e
    return numpy


def create_array(
    name: str,
    shape: SupportsIndex | Sequence[SupportsIndex],
    dtype: DTypeLike,
    order: Literal["C", "F"] = "C",
    *,
    mode: int = OWNER_ONLY,
    persist: bool = False,
    replace: bool = False,
) -> np.ndarray:
    """Create a zero-filled shared array and return a NumPy array backed by it.

    ``dtype`` may be any boolean, integer, float (16 to 64 bits) or complex NumPy
    dtype, in either byte order. ``order`` is "C" (row-major) or "F". The segment is
    created exclusively (FileExistsError if the name is taken, unless
    ``replace=True``) with permissions ``mode``. Its name is unlinked when the last
    array made from it is collected, unless ``persist=True``.

    Raises ValueError for an unsupported dtype, a negative dimension, a shape too
    large, or a ``mode`` beyond the permission bits 0o777; the array's ``.base`` is the :class:`SharedArray`, which also speaks
    ``__dlpack__``.
    """
    np = _numpy()
    dims = (operator.index(shape),) if not isinstance(shape, Sequence) else tuple(map(operator.index, shape))
    typestr = np.dtype(dtype).str
    native = SharedArray.create(name, dims, typestr, order, mode=mode, persist=persist, replace=replace)
    return native.numpy()


def open_array(name: str, *, readonly: bool = False) -> np.ndarray:
    """Open a shared array by name and return a zero-copy NumPy array of it.

    Dtype, shape and strides come from the segment's header, which is validated:
    a segment that holds no valid array header raises ValueError, a missing one
    FileNotFoundError. ``readonly=True`` maps it read-only (the array is then not
    writeable). The segment stays mapped while the array (or any view) lives.

    The array reads and writes shared memory directly: if another process shrinks
    the segment, touching a vanished element kills this process with SIGBUS. Share
    arrays only with processes you trust not to shrink them.
    """
    _numpy()  # a clear ImportError if NumPy is missing
    return SharedArray.open(name, readonly=readonly).numpy()
