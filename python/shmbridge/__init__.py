"""Zero-copy shared memory between Rust and Python processes.

A :class:`SharedMemory` is a named segment of memory that several processes map at
once: what one writes, the others see, with no copy. The Rust crate ``shmbridge``
opens the same segments through the same code, and segments are raw bytes, so
Python's own :mod:`multiprocessing.shared_memory` interoperates too (a name given
without its leading ``/`` means the same segment).

>>> from shmbridge import SharedMemory, unique_name
>>> with SharedMemory(unique_name("doc"), 1024, create=True) as shm:
...     shm.write(b"Hello from Python!")
...     peer = SharedMemory(shm.name)      # another process would do the same
...     peer.read(18)
18
b'Hello from Python!'

Errors are the built-in exceptions: ``FileNotFoundError`` (no such segment),
``FileExistsError`` (create of a taken name), ``PermissionError``, ``ValueError``
(bad name, size, offset, or use after ``close()``), ``TypeError`` (writing a
read-only segment), ``OSError`` with ``errno.ENOSPC`` (not enough shared memory).
Opening refuses a symbolic link, FIFO or directory planted under the name
(``OSError``; ``errno.ELOOP`` for a link, as the stdlib), and ``mode=`` takes
permission bits only (``ValueError`` for setuid/setgid/sticky bits).

A process that may write a segment may also shrink it (Linux). The copying methods
(``read``, ``readinto``, ``write``, ``read_at``, ``write_at``) then raise ``OSError``
with ``errno.EIO`` and the object refuses later copies; zero-copy views
(memoryviews, ``view()``, NumPy arrays, DLPack) cannot be guarded, and touching a
vanished page through them kills the process with SIGBUS, as with the stdlib. Share
segments you view zero-copy only with processes you trust not to shrink them.

Shared arrays describe themselves: ``create_array(name, shape, dtype)`` on one
side, ``open_array(name)`` on the other, with no shape or dtype agreed by hand.

Synchronization lives in shared memory too: ``Event``, ``Semaphore``, ``Mutex``
(which detects an owner that died) and ``SeqLock``, each in a segment of its own
(``Event.create(name)``, ``Event.open(name)``) or at an offset of any segment
(``Event(shm, offset)``), with the conventions of the ``threading`` module; and
``Channel``, a ring of messages between two processes with zero-copy receive.

``close()`` never invalidates views: memoryviews and NumPy arrays made from the
segment keep working after it, and the memory is unmapped when the last of them is
released. The creator's ``close()`` unlinks the name (unless ``persist=True``).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from shmbridge._array import create_array, open_array
from shmbridge._frames import recv_array, send_array
from shmbridge._native import (
    MAX_NAME_LEN,
    Channel,
    Event,
    Loan,
    Message,
    Mutex,
    Semaphore,
    SeqLock,
    SharedArray,
    SharedMemory,
    unique_name,
    unlink,
)
from shmbridge._server import Server
from shmbridge import aio

try:
    __version__: str = _version("shmbridge")
    """The installed distribution's version, which is the Rust crates' version."""
except _PackageNotFoundError:  # pragma: no cover - imported from a source tree, not installed
    __version__ = "0+unknown"

__all__ = [
    "MAX_NAME_LEN",
    "Channel",
    "Event",
    "Loan",
    "Message",
    "Mutex",
    "Semaphore",
    "SeqLock",
    "SharedArray",
    "SharedMemory",
    "Server",
    "aio",
    "create_array",
    "recv_array",
    "send_array",
    "open_array",
    "unique_name",
    "unlink",
]
