"""Type stubs for the native extension ``shmbridge._native``."""

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, final

from typing_extensions import Buffer, Self, disjoint_base

# ``mode`` defaults to OWNER_ONLY, the int 0o600 (an int that prints in octal, so
# that help() shows ``mode=0o600``).
from shmbridge._signature import OWNER_ONLY

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
    "unique_name",
    "unlink",
]

MAX_NAME_LEN: int
"""The longest segment name this platform accepts, in bytes, with its leading "/"."""

def unique_name(prefix: str = "shmbridge") -> str:
    """A fresh segment name of the form ``/<prefix>_<pid>_<random>``.

    Raises ValueError if the prefix holds characters a name cannot, or is too long.
    """

def unlink(name: str) -> None:
    """Remove a segment's name; processes that have it mapped keep their mapping.

    Raises FileNotFoundError if no segment has that name.
    """

def _cli(argv: list[str]) -> int:
    """Run the ``shmbridge`` command line ``argv`` (program name first); its exit status."""

def _wait_gone(name: str, timeout: float) -> bool:
    """Wait until no segment is named ``name``, or ``timeout`` seconds pass; whether it
    is gone (inotify on /dev/shm, the GIL released; Linux)."""

@disjoint_base
class SharedMemory:
    """A named shared-memory segment mapped into this process.

    ``SharedMemory(name, size=None)`` opens an existing segment; ``size``, if given,
    is the least the caller expects (a smaller segment is a ValueError; opening never
    resizes). ``SharedMemory(name, size, create=True)`` creates one, exclusively
    (FileExistsError if the name is taken, unless ``replace=True``), zero-filled,
    with permissions ``mode`` (default 0o600, owner only), its pages reserved.
    ``readonly=True`` maps an opened segment read-only; ``populate=True`` faults all
    pages in up front (Linux).

    The object supports the buffer protocol: ``memoryview(shm)``, ``shm.buf``,
    ``np.frombuffer(shm, dtype=...)`` and ``np.ndarray(shape, dtype, buffer=shm.buf)``
    are zero-copy views that every process mapping the segment sees.

    ``close()`` makes the object unusable and, in the process that created the
    segment, removes its name (unless ``persist=True``); views made from the object
    stay valid: the memory is unmapped only when nothing can reach it. ``unlink()``
    removes the name whoever calls it (a no-op right after this object's own
    ``close()`` removed it). A child made by ``fork`` never removes its parent's name
    implicitly. Objects pickle by name: the receiver opens, never owns.

    The cursor methods (``read``, ``write``, ``seek``, ``tell``, ``readinto``)
    behave like a file of fixed size: reads at the end are short, then empty;
    a write that does not fit raises ValueError and writes nothing; seeking past the
    end is allowed, before the start is a ValueError.

    A peer that shrinks the segment (Linux, ``ftruncate``): the copying methods
    (``read``, ``readinto``, ``write``, ``read_at``, ``write_at``) raise OSError
    (``errno.EIO``) and the object refuses later copies. Zero-copy views cannot be
    guarded: touching a vanished page through ``buffer``, ``view()``, a memoryview
    or a NumPy array kills the process with SIGBUS. Opening refuses a symbolic link,
    FIFO or directory planted under the name (OSError; ``errno.ELOOP`` for a link);
    ``mode`` takes permission bits only (ValueError beyond 0o777).

    ``lifetime`` (when creating) says how long the name lasts: ``"object"`` (the
    default) until this object's ``close()`` or collection; ``"process"`` past
    ``close()``, until this process has died and no process maps the segment;
    ``"persistent"`` (as ``persist=True``) until someone unlinks it. Unless
    persistent, a segment whose creator died before removing it (a kill) is removed
    automatically once no process maps it (Linux: the ``shmbridge`` reclaim tracker).
    """

    def __new__(
        cls,
        name: str,
        size: int | None = None,
        *,
        create: bool = False,
        mode: int = OWNER_ONLY,
        persist: bool = False,
        readonly: bool = False,
        replace: bool = False,
        populate: bool = False,
        lifetime: Literal["object", "process", "persistent"] | None = None,
    ) -> Self: ...
    @classmethod
    def create(
        cls,
        name: str,
        size: int,
        *,
        mode: int = OWNER_ONLY,
        persist: bool = False,
        replace: bool = False,
        populate: bool = False,
        lifetime: Literal["object", "process", "persistent"] | None = None,
    ) -> Self:
        """Create a new segment of ``size`` bytes (same as ``create=True``)."""
    @classmethod
    def open(
        cls, name: str, size: int | None = None, *, readonly: bool = False, populate: bool = False
    ) -> Self:
        """Open an existing segment (same as the constructor without ``create``)."""
    @classmethod
    def from_fd(cls, fd: int, *, readonly: bool = False) -> Self:
        """Map the segment behind a file descriptor handed down by a parent process
        (an anonymous segment shared with a worker; Unix). The name is "(anonymous)"."""
    @property
    def name(self) -> str:
        """The segment's name, with its leading "/"."""
    @property
    def size(self) -> int:
        """The segment's size in bytes."""
    @property
    def closed(self) -> bool:
        """True once close() has been called."""
    @property
    def readonly(self) -> bool:
        """True if the segment was opened read-only."""
    @property
    def unlinks_on_close(self) -> bool:
        """Whether close() will unlink the name (the creator, unless persist=True)."""
    @property
    def buffer(self) -> memoryview:
        """A memoryview of the whole segment (zero-copy; writable unless read-only).

        Unguarded: if a peer shrinks the segment, touching a vanished page through
        it kills the process with SIGBUS (copy with ``read_at`` to be safe)."""
    @property
    def buf(self) -> memoryview:
        """Alias of ``buffer``, as in ``multiprocessing.shared_memory``."""
    def __len__(self) -> int: ...
    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes at the cursor (the rest of the segment if negative)."""
    def readinto(self, b: Buffer) -> int:
        """Read into a writable bytes-like object at the cursor; return the count."""
    def write(self, data: Buffer) -> int:
        """Write all of ``data`` at the cursor, or raise ValueError and write nothing."""
    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the cursor (whence 0: start, 1: cursor, 2: end); return the position."""
    def tell(self) -> int:
        """The cursor's position."""
    def read_at(self, n: int, offset: int) -> bytes:
        """Read up to ``n`` bytes at ``offset`` without moving the cursor."""
    def write_at(self, data: Buffer, offset: int) -> int:
        """Write all of ``data`` at ``offset`` without moving the cursor, or raise ValueError."""
    def view(self, format: str, offset: int = 0, count: int | None = None) -> memoryview:
        """A typed memoryview of ``count`` items of the native struct format ``format``
        (one character that ``memoryview.cast`` accepts: ``"d"``, ``"i"``, ``"B"``...)
        at byte ``offset``; as many as fit if ``count`` is None.

        Raises ValueError if the items do not fit, ``offset`` is misaligned, or the
        format is not one memoryview can cast to. Zero-copy and unguarded, as ``buffer``.
        """
    def close(self) -> None:
        """Make the object unusable and, for its creator (in the creating process,
        unless ``persist=True``), remove the name. Views stay valid; the memory is
        unmapped when nothing can reach it. Idempotent."""
    def unlink(self) -> None:
        """Remove the segment's name now; mappings stay valid. FileNotFoundError if
        the name is gone, except right after this object's own close() removed it."""
    def __reduce__(self) -> tuple[Any, tuple[str, bool]]: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, view: memoryview, /) -> None: ...

@final
class SharedArray:
    """A self-describing shared array: a segment holding a header (dtype, shape,
    strides, generation counter) and the data. ``shmbridge.create_array`` and
    ``open_array`` return NumPy arrays whose ``.base`` is one of these.

    Speaks ``__array_interface__`` (``numpy.asarray(sa)`` is zero-copy) and
    ``__dlpack__`` (``numpy.from_dlpack(sa)``, ``torch.from_dlpack(sa)``); every
    array made from it keeps the mapping alive. The creator's name is unlinked
    when the object is collected, unless ``persist=True``.

    The arrays are zero-copy views, so unguarded: if a peer shrinks the segment,
    touching a vanished element kills the process with SIGBUS.
    """

    @classmethod
    def create(
        cls,
        name: str,
        shape: Sequence[int],
        dtype: str,
        order: str = "C",
        *,
        mode: int = OWNER_ONLY,
        persist: bool = False,
        replace: bool = False,
    ) -> Self:
        """Create a zero-filled array segment; ``dtype`` is a NumPy type string ("<f8")."""
    @classmethod
    def open(cls, name: str, *, readonly: bool = False) -> Self:
        """Open an array segment by name; raises ValueError if its header is not valid."""
    def numpy(self) -> Any:
        """A new NumPy array over the data (zero-copy) whose ``.base`` is this object,
        made through NumPy's C API (faster than ``numpy.asarray(sa)``)."""
    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def strides(self) -> tuple[int, ...]:
        """Bytes between neighbours along each dimension."""
    @property
    def dtype(self) -> str:
        """The NumPy type string of the elements, e.g. "<f8"."""
    @property
    def order(self) -> str:
        """"C" or "F": the order the creator laid the elements out in."""
    @property
    def size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def generation(self) -> int:
        """The generation counter, which writers bump to say the contents changed
        (OSError, ``errno.EIO``, if a peer shrank the segment)."""
    def bump_generation(self) -> int:
        """Add one to the generation counter; return the new value (TypeError if
        read-only; OSError, ``errno.EIO``, if a peer shrank the segment)."""
    def unlink(self) -> None:
        """Remove the segment's name now; arrays made from it stay valid."""
    @property
    def __array_interface__(self) -> dict[str, Any]: ...
    def __dlpack__(
        self,
        *,
        stream: Any = None,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any:
        """A DLPack capsule of the data (versioned if ``max_version >= (1, 0)``)."""
    def __dlpack_device__(self) -> tuple[int, int]: ...

@final
class Event:
    """An event in shared memory: ``set`` wakes the waiters (as ``threading.Event``).

    ``Event(shm, offset=0, *, auto_reset=None)`` uses 16 bytes of ``shm`` at an
    8-aligned ``offset`` (fresh zero memory is an unset event; an existing event
    keeps its mode). An auto-reset event lets one waiter through per ``set``.
    Waiting releases the GIL and is interruptible by Ctrl-C.

    If a peer shrinks the segment under the event (Linux, ``ftruncate``), every
    method raises OSError (``errno.EIO``), never SIGBUS; a wait under way ends so.
    Likewise for Semaphore, Mutex, SeqLock and Channel.
    """

    def __new__(cls, shm: SharedMemory, offset: int = 0, *, auto_reset: bool | None = None) -> Self: ...
    @classmethod
    def create(cls, name: str, *, auto_reset: bool = False) -> Self:
        """Create an unset event in a new segment of its own."""
    @classmethod
    def open(cls, name: str) -> Self:
        """Open an event made by ``Event.create``."""
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def set_spin_limit(self, seconds: float) -> None:
        """Cap how long a waiter spins before sleeping, in seconds (default 20e-6;
        0: sleep at once; at most 1). A spin never outlasts the wait's timeout;
        right after this thread woke a sleeper, one wait may spin up to five limits
        but no more than 100e-6 (or the limit, if longer)."""
    @property
    def auto_reset(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds pass; whether it was set."""

@final
class Semaphore:
    """A counting semaphore in shared memory (as ``threading.Semaphore``).

    ``Semaphore(shm, offset=0, value=0)``: ``value`` applies to fresh memory only.
    OSError (``errno.EIO``) if a peer shrank the segment under it.
    """

    def __new__(cls, shm: SharedMemory, offset: int = 0, value: int = 0) -> Self: ...
    @classmethod
    def create(cls, name: str, value: int = 0) -> Self: ...
    @classmethod
    def open(cls, name: str) -> Self: ...
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take one; wait while the count is 0. Whether one was taken."""
    def release(self, n: int = 1) -> None:
        """Add ``n`` (ValueError if the count would overflow)."""
    @property
    def value(self) -> int: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool: ...

@final
class Mutex:
    """A lock in shared memory that detects an owner that died holding it.

    As ``threading.Lock``; after ``acquire``, ``owner_died`` is true if the lock was
    taken over from a dead process (repair what it may have left half-done).
    OSError (``errno.EIO``) if a peer shrank the segment under it; collecting a
    Mutex that holds the lock then just lets it go.
    """

    def __new__(cls, shm: SharedMemory, offset: int = 0) -> Self: ...
    @classmethod
    def create(cls, name: str) -> Self: ...
    @classmethod
    def open(cls, name: str) -> Self: ...
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool: ...
    def release(self) -> None:
        """Release (RuntimeError if this object does not hold the lock)."""
    def locked(self) -> bool: ...
    @property
    def owner_died(self) -> bool: ...
    def __enter__(self) -> bool: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool: ...

@final
class SeqLock:
    """A fixed-size record that readers copy without ever seeing a torn write.

    ``SeqLock(shm, offset=0, size=None)`` (size required for fresh memory).
    ``read`` raises BrokenPipeError if a writer died mid-write, OSError
    (``errno.EIO``) if a peer shrank the segment under the record.
    """

    def __new__(cls, shm: SharedMemory, offset: int = 0, size: int | None = None) -> Self: ...
    @classmethod
    def create(cls, name: str, size: int) -> Self: ...
    @classmethod
    def open(cls, name: str) -> Self: ...
    @property
    def size(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    def write(self, data: Buffer, timeout: float | None = None) -> int:
        """Replace the record (exactly ``size`` bytes); return the new sequence number.
        Waits (GIL released) while another writer is mid-write, at most ``timeout``
        seconds (TimeoutError)."""
    def read(self, timeout: float | None = None) -> bytes:
        """A consistent copy of the record; waits (GIL released) while a writer is
        mid-write, at most ``timeout`` seconds (TimeoutError); BrokenPipeError if
        that writer died."""

@final
class Channel:
    """A channel of byte messages between two processes (one sender, one receiver).

    ``Channel.create(name, capacity)`` / ``Channel.open(name)``; the first ``send``
    makes this object the sender, the first ``recv`` the receiver (for this
    process). ``recv`` raises TimeoutError on time-out, EOFError once the sender
    closed and everything was received, BrokenPipeError if the other process died.
    Iterating yields messages until the sender closes.

    Threads may share a Channel: sends are serialized (none is lost), each message
    goes to one receiving thread, every wait honours its own timeout, and
    ``close()`` wakes every waiting thread with ValueError. A child made by
    ``fork`` cannot use its parent's ends (RuntimeError). Waits release the GIL and
    are interruptible by Ctrl-C.

    If a peer shrinks the segment (Linux, ``ftruncate``), every call raises OSError
    (``errno.EIO``) instead of dying of SIGBUS, and ``close()``, ``release()`` and
    collecting messages, loans and the channel return quietly. Reading a Message or
    writing a Loan in place (memoryviews, NumPy arrays) is not guarded: a vanished
    page there kills the process, as with any view.
    """

    @classmethod
    def create(cls, name: str, capacity: int) -> Self:
        """Create a channel whose ring holds ``capacity`` bytes (messages up to half)."""
    @classmethod
    def open(cls, name: str) -> Self:
        """Open a channel by name."""
    @property
    def name(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def max_message(self) -> int: ...
    @property
    def closed(self) -> bool:
        """True once close() was called."""
    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Send a copy of ``data``; wait while full (TimeoutError after ``timeout``).

        EOFError if the receiver closed, BrokenPipeError if its process died,
        ValueError if ``data`` is larger than ``max_message`` or the channel was
        closed, BufferError if this thread holds an open Loan of the channel or the
        ring is full only of room held by loan objects still alive."""
    def send_parts(self, parts: Iterable[Buffer], timeout: float | None = None) -> None:
        """Send one message made of ``parts`` laid end to end (a header and a payload),
        copied once, straight into the ring; waits as ``send`` does."""
    def send_many(self, messages: Iterable[Buffer], timeout: float | None = None) -> int:
        """Send each message in order, publishing those that fit together; return
        how many were sent (fewer only if the timeout passed or the channel ended
        part-way; raises as ``send`` if none could be)."""
    def recv(self, timeout: float | None = None) -> bytes:
        """Receive a copy of the next message."""
    def recv_batch(self, max_messages: int = 1024, timeout: float | None = None) -> list[bytes]:
        """Wait for one message, then take what is already there, up to ``max_messages``."""
    def loan(self, size: int, timeout: float | None = None) -> Loan:
        """Reserve room for a ``size``-byte message to write in place (see ``Loan``)."""
    def recv_view(self, timeout: float | None = None) -> Message:
        """Receive the next message as a zero-copy ``Message``; its room stays taken
        while the Message object lives."""
    def close(self) -> None:
        """Close this object's ends: the other side gets EOFError, waiting threads
        ValueError. Messages and loans already taken stay valid."""
    def __iter__(self) -> Self: ...
    def __next__(self) -> bytes: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool: ...

@final
class Message:
    """A received message viewed in place (read-only buffer protocol).

    ``release()`` (or the end of a ``with`` block) says you are done: no new views
    or copies. Its room in the ring is given back at once if nothing but your own
    name for the message can reach it (so ``with rx.recv_view() as m:`` frees it at
    the end of the block), else as soon as nothing can: an array made from the
    message keeps its bytes for as long as it lives. In a ``fork``ed child, the
    parent's messages raise RuntimeError."""

    def __len__(self) -> int: ...
    def tobytes(self) -> bytes: ...
    def readinto(self, buffer: Buffer, offset: int = 0) -> int:
        """Copy the message's bytes from ``offset`` into a writable buffer (as many as
        it holds); return the count. Guarded: a peer shrinking the segment is OSError."""
    @property
    def released(self) -> bool:
        """True once release() was called."""
    def release(self) -> None:
        """Say you are done (BufferError while memoryviews of it are open)."""
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, view: memoryview, /) -> None: ...

@final
class Loan:
    """Room for one message in a channel's ring, written in place (writable buffer
    protocol). ``publish()`` sends it; ``discard()``, an exception in a ``with``
    block, or collection gives it up. Publishing with open memoryviews raises
    BufferError. The room is never reused for another message while something other
    than your own name for the Loan can reach it (even after a refused publish), so
    a view kept by mistake cannot corrupt later messages; ``with tx.loan(n) as
    loan:`` gives it back at the end of the block. A ``fork``ed child cannot use
    its parent's loans (RuntimeError)."""

    def __len__(self) -> int: ...
    @property
    def finished(self) -> bool:
        """True once published or discarded."""
    def publish(self) -> None: ...
    def discard(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, view: memoryview, /) -> None: ...

@final
class _AsyncWaiter:
    """Readiness of shmbridge objects for one event loop (used by ``shmbridge.aio``)."""

    def __new__(cls) -> Self: ...
    def fileno(self) -> int: ...
    def watch(self, obj: object, op: str, size: int = 0) -> int | None: ...
    def unwatch(self, token: int, cancelled: bool = False) -> None: ...
    def drain(self) -> list[int]: ...
