"""What another user's planted file, or a peer process with write access, can do.

On Linux a segment is a file in /dev/shm, where anyone may plant a file under a
name they expect somebody else to open, and any process that may write a segment
may also shrink it. Every risky scenario runs in a fresh interpreter: a SIGBUS or
a hang fails its test instead of taking pytest down.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_isolated

import shmbridge
from shmbridge import SharedMemory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="segments are files in /dev/shm on Linux only"
)

PAGE = 4096

PRELUDE = """
import errno, os, subprocess, sys
import shmbridge
from shmbridge import SharedMemory
def expect(exc, fn, *args, match="", **kwargs):
    try:
        fn(*args, **kwargs)
    except exc as e:
        assert match in str(e), f"{e!r} lacks {match!r}"
        return e
    raise AssertionError(f"{fn}{args} did not raise {exc.__name__}")
def shrink_from_another_process(name, size):
    # A second process truncates the segment's file, as a hostile peer would.
    code = f"import os; os.truncate({'/dev/shm/' + name.lstrip('/')!r}, {size})"
    subprocess.run([sys.executable, "-c", code], check=True)
"""


def shm_path(name: str) -> Path:
    return Path("/dev/shm") / name.lstrip("/")


def isolated(code: str, name: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Runs PRELUDE + code in a fresh interpreter, with `name` defined."""
    return run_isolated(PRELUDE + f"name = {name!r}\n" + textwrap.dedent(code), timeout=timeout)


def survives(code: str, name: str) -> str:
    result = isolated(code + '\nprint("survived")\n', name)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.endswith("survived\n"), result.stdout
    return result.stdout


@pytest.fixture
def planted(name: str) -> Iterator[Path]:
    """The /dev/shm path of `name`, removed afterwards whatever was planted there."""
    path = shm_path(name)
    try:
        yield path
    finally:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        elif path.is_symlink() or path.exists():
            path.unlink()


@pytest.fixture
def dying_name(name: str) -> Iterator[str]:
    """A name whose segment is removed afterwards, even if the process that made
    it died (of SIGBUS, before the fix, or on purpose)."""
    try:
        yield name
    finally:
        try:
            shmbridge.unlink(name)
        except FileNotFoundError:
            pass


@pytest.fixture
def secret() -> Iterator[Path]:
    """A private file (0600) in a temporary directory of its own."""
    with tempfile.TemporaryDirectory(prefix="shmbridge_secret_") as tmp:
        path = Path(tmp) / "secret"
        path.write_bytes(b"private bytes of another file")
        path.chmod(0o600)
        yield path


def test_planted_symlink_is_never_followed(name: str, planted: Path, secret: Path) -> None:
    planted.symlink_to(secret)
    for opener in (
        lambda: SharedMemory(name),
        lambda: SharedMemory(name, readonly=True),
        lambda: SharedMemory.open(name),
        lambda: shmbridge.open_array(name),
    ):
        with pytest.raises(OSError, match="symbolic link") as info:
            opener()
        assert info.value.errno == errno.ELOOP
    with pytest.raises(FileExistsError):
        SharedMemory(name, 64, create=True)
    # The stdlib refuses too (glibc's shm_open adds O_NOFOLLOW): same errno.
    from multiprocessing import shared_memory

    with pytest.raises(OSError) as stdlib:
        shared_memory.SharedMemory(name)
    assert stdlib.value.errno == errno.ELOOP
    assert secret.read_bytes() == b"private bytes of another file"
    # Replacing removes the link, never its target.
    with SharedMemory(name, 64, create=True, replace=True) as shm:
        shm.write_at(b"\xaa" * 64, 0)
    assert secret.read_bytes() == b"private bytes of another file"


def test_planted_fifo_does_not_block_open(name: str, planted: Path) -> None:
    os.mkfifo(planted)
    # Before the fix a read-only open waited for a writer forever: the timeout fails it.
    survives(
        """
for opener in (lambda: SharedMemory(name, readonly=True), lambda: SharedMemory(name),
               lambda: shmbridge.open_array(name, readonly=True)):
    e = expect(OSError, opener, match="FIFO")
    assert e.errno == errno.ENODEV, e.errno
""",
        name,
    )


def test_planted_directory_is_refused(name: str, planted: Path) -> None:
    planted.mkdir()
    with pytest.raises(IsADirectoryError, match="directory"):
        SharedMemory(name)
    with pytest.raises(IsADirectoryError, match="directory"):
        SharedMemory(name, readonly=True)


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1777, 0o7777, 0o10600, -1, 2**40, 2**70], ids=oct)
def test_mode_beyond_permission_bits_is_a_value_error(name: str, mode: int) -> None:
    creators = (
        lambda: SharedMemory(name, 64, create=True, mode=mode),
        lambda: SharedMemory.create(name, 64, mode=mode),
        lambda: shmbridge.create_array(name, (4,), "f8", mode=mode),
    )
    for create in creators:
        try:
            with pytest.raises(ValueError, match="permission bits"):
                create()
        finally:
            made = shm_path(name)
            left = made.stat().st_mode if made.exists() else None
            if left is not None:
                made.unlink()
        assert left is None, f"mode {mode:#o} left a file of mode {left:#o}"


def test_mode_within_permission_bits_is_applied_exactly(name: str) -> None:
    with SharedMemory(name, 64, create=True, mode=0o777):
        assert shm_path(name).stat().st_mode & 0o7777 == 0o777


def test_copies_from_a_shrunk_segment_raise_oserror(dying_name: str) -> None:
    survives(
        """
shm = SharedMemory(name, 16 * 4096, create=True)
shm.write_at(b"payload", 0)
handles = [SharedMemory(name) for _ in range(7)]
shrink_from_another_process(name, 4096)
far = 8 * 4096

e = expect(OSError, handles[0].read_at, 64, far, match="lost pages")
assert e.errno == errno.EIO, e.errno
expect(OSError, handles[0].read_at, 7, 0, match="lost pages")   # the handle refuses from now on

h = handles[1]; h.seek(far)
expect(OSError, h.read, 64, match="lost pages")
h = handles[2]; h.seek(far)
expect(OSError, h.readinto, bytearray(64), match="lost pages")
buf = bytearray(b"\\7" * 2 * 4096)                                   # across the end
expect(OSError, handles[3].readinto, buf, match="lost pages")
assert buf[:7] == b"payload" and not any(buf[4096:]), "vanished pages read as zeros"
expect(OSError, handles[4].write_at, b"lost", far, match="lost pages")
h = handles[5]; h.seek(far)
expect(OSError, h.write, b"lost", match="lost pages")

assert handles[6].read_at(7, 0) == b"payload"                      # a handle that touched nothing
assert SharedMemory(name).size == 4096                              # a fresh open sees the new size
for h in handles:
    h.close()
shm.close()

# Large copies run without the GIL: the same guard applies.
big = SharedMemory(name, 4 << 20, create=True)
reader, writer = SharedMemory(name), SharedMemory(name)
shrink_from_another_process(name, 4096)
expect(OSError, reader.read_at, 2 << 20, 0, match="lost pages")
expect(OSError, writer.write_at, bytes(2 << 20), 0, match="lost pages")
big.close()
""",
        dying_name,
    )


FAULT_AFTER_COPY = """
shm = SharedMemory(name, 16 * 4096, create=True)
copier, viewer = SharedMemory(name), SharedMemory(name)
view = viewer.buffer
{enable_after}
shrink_from_another_process(name, 4096)
try:
    copier.read_at(64, 8 * 4096)
except OSError as e:
    assert e.errno == errno.EIO, e
    print("copy raised OSError", flush=True)
view[8 * 4096]   # zero-copy: not ours to repair, so the fault goes on down the chain
print("survived a fault through a view (wrong)", flush=True)
"""


def test_faulthandler_enabled_first_still_reports_other_faults(dying_name: str) -> None:
    """faulthandler in place before shmbridge's handler (pytest, python -X
    faulthandler): our copies recover, and a fault that is not ours reaches
    faulthandler, which reports it, and the process dies of SIGBUS."""
    code = "import faulthandler; faulthandler.enable()\n" + FAULT_AFTER_COPY.format(enable_after="")
    result = isolated(code, dying_name)
    assert result.stdout == "copy raised OSError\n", (result.stdout, result.stderr)
    assert result.returncode == -signal.SIGBUS, (result.returncode, result.stderr)
    assert result.stderr.count("Fatal Python error: Bus error") == 1, result.stderr
    assert 'File "<string>"' in result.stderr, result.stderr  # its traceback of the fault


def test_faulthandler_enabled_after_our_handler(dying_name: str) -> None:
    """faulthandler installed in front of ours (enabled after the first segment was
    mapped) sees our fault first: it reports it and passes it back, and the copy
    still raises OSError; a fault that is not ours then kills the process."""
    code = FAULT_AFTER_COPY.format(enable_after="import faulthandler; faulthandler.enable()")
    result = isolated(code, dying_name)
    assert result.stdout == "copy raised OSError\n", (result.stdout, result.stderr)
    assert result.returncode == -signal.SIGBUS, (result.returncode, result.stderr)
    # faulthandler reported the fault it saw first (ours), then stepped aside.
    assert "Fatal Python error: Bus error" in result.stderr, result.stderr


def unshare_allowed() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.skipif(not unshare_allowed(), reason="needs unshare --user --mount (a private tmpfs)")
def test_writing_a_sparse_stdlib_segment_on_a_full_tmpfs_raises_oserror() -> None:
    """The stdlib makes sparse segments (ftruncate only): writing their pages when
    /dev/shm is full raises SIGBUS in the writer. Runs with a private 1 MiB tmpfs
    over /dev/shm (user and mount namespaces), so nothing real fills up."""
    code = PRELUDE + textwrap.dedent(
        """
        from multiprocessing import shared_memory
        size = 4 << 20                                   # four times the tmpfs
        stdlib = shared_memory.SharedMemory(name="/sparse", create=True, size=size)
        shm = SharedMemory("/sparse")
        e = expect(OSError, shm.write_at, b"\\1" * size, 0, match="lost pages")
        assert e.errno == errno.EIO
        e = expect(OSError, SharedMemory, "/reserved", size, create=True, match="no space")
        assert e.errno == errno.ENOSPC
        shm.close()
        stdlib.close()
        stdlib.unlink()
        print("survived")
        """
    )
    mount = 'mount -t tmpfs -o size=1m shmbridge_full /dev/shm && exec "$0" "$@"'
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount]
    result = subprocess.run(
        [*command, sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.endswith("survived\n"), result.stdout
