"""shmbridge.shared_memory as a drop-in for multiprocessing.shared_memory: the same
surface and byte format (checked against the stdlib, in both directions, in separate
processes), and our guarantees underneath (0600 exclusive create, pages reserved at
create, no resource tracker, no crash after close() whatever was kept, no child
unlinking its parent's segment). CPython's own tests of the module are in
test_stdlib_suite.py."""

from __future__ import annotations

import errno
import inspect
import json
import os
import pickle
import stat
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DEADLINE, PREFIX, readline, run_isolated
from dropin_support import (  # noqa: F401 (fixtures)
    cleanup,
    describe_exit,
    exists,
    no_leaked_generated_names,
    run_script,
)

import shmbridge
from shmbridge import shared_memory
from shmbridge.shared_memory import ShareableList, SharedMemory

Cleanup = Callable[..., None]
LINUX = sys.platform.startswith("linux")

# ---------------------------------------------------------------------------------
# The surface a stdlib user relies on


def test_signatures_are_the_stdlibs() -> None:
    params = inspect.signature(SharedMemory).parameters
    assert [(p.name, p.default, p.kind) for p in params.values()] == [
        ("name", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("create", False, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("size", 0, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("track", True, inspect.Parameter.KEYWORD_ONLY),  # Python 3.13's
    ]
    params = inspect.signature(ShareableList).parameters
    assert [(p.name, p.default, p.kind) for p in params.values()] == [
        ("sequence", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("name", None, inspect.Parameter.KEYWORD_ONLY),
    ]
    assert shared_memory.__all__ == ["SharedMemory", "ShareableList"]


def test_help_documents_every_public_member() -> None:
    for cls, members in [
        (SharedMemory, ["buf", "name", "size", "close", "unlink"]),
        (ShareableList, ["format", "count", "index"]),
    ]:
        assert inspect.getdoc(cls), cls
        for member in members:
            assert inspect.getdoc(getattr(cls, member)), f"{cls.__name__}.{member}"
    assert inspect.getdoc(shared_memory) and "one import line" in inspect.getdoc(shared_memory)


def test_names_buf_repr_close_and_unlink(cleanup: Cleanup) -> None:
    shm = SharedMemory(create=True, size=100)
    cleanup(shm.close)
    # A generated name looks like the stdlib's, and is reported without its "/".
    assert shm.name.startswith("psm_") and len(shm.name) == 12, shm.name
    assert shm._name == "/" + shm.name
    assert repr(shm) == f"SharedMemory({shm.name!r}, size=100)"
    assert shm.size == 100 and len(shm.buf) == 100
    assert shm.buf is shm.buf, "buf is one cached memoryview, as in the stdlib"
    # With or without the leading "/", one segment.
    for spelling in (shm.name, "/" + shm.name):
        other = SharedMemory(spelling)
        assert other.name == shm.name and other.size == 100
        other.close()
    shm.buf[:3] = b"abc"
    with SharedMemory(shm.name) as other:  # an addition: the stdlib has no `with`
        assert bytes(other.buf[:3]) == b"abc"
    assert other.buf is None, "leaving `with` closes"
    shm.close()
    assert shm.buf is None, "close() drops buf, as in the stdlib"
    shm.close()  # again: nothing
    assert shm.name and shm.size == 100 and repr(shm)
    # close() never unlinks; the stdlib docs' ending `close(); unlink()` works.
    assert exists(shm.name)
    SharedMemory(shm.name).close()
    shm.unlink()
    assert not exists(shm.name)
    with pytest.raises(FileNotFoundError):
        shm.unlink()


def test_unlink_then_close_and_opened_objects_unlink_too(cleanup: Cleanup) -> None:
    shm = SharedMemory(create=True, size=10)
    cleanup(shm.close)
    SharedMemory(shm.name).unlink()  # any handle may unlink, as in the stdlib
    assert not exists(shm.name)
    shm.buf[0] = 1  # the mapping outlives the name
    shm.close()


class Annotated(SharedMemory):
    """A user's subclass: extra state, an extra method, a restricted mode."""

    _mode = 0o640

    def __init__(self, *args: Any, label: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label

    def header(self) -> bytes:
        return bytes(self.buf[:4])


def test_subclassing(cleanup: Cleanup) -> None:
    old_umask = os.umask(0o022)
    try:
        shm = Annotated(create=True, size=64, label="frames")
    finally:
        os.umask(old_umask)
    cleanup(shm.unlink)
    cleanup(shm.close)
    shm.buf[:4] = b"HDR1"
    assert shm.label == "frames" and shm.header() == b"HDR1"
    assert repr(shm).startswith("Annotated(")
    if LINUX:
        assert stat.S_IMODE(os.stat(f"/dev/shm/{shm.name}").st_mode) == 0o640
    copy = pickle.loads(pickle.dumps(shm))
    assert type(copy) is Annotated and copy.header() == b"HDR1"
    copy.close()


def test_track_goes_through_one_hook(monkeypatch: pytest.MonkeyPatch, cleanup: Cleanup) -> None:
    # `track` takes effect in one place, _lifetime, and only for creators.
    asked: list[bool] = []
    real = shared_memory._lifetime
    monkeypatch.setattr(shared_memory, "_lifetime", lambda track: asked.append(track) or real(track))
    created = SharedMemory(create=True, size=8)  # track=True by default
    cleanup(created.unlink)
    cleanup(created.close)
    assert asked == [True]
    SharedMemory(created.name).close()  # openers never track
    SharedMemory(created.name, track=True).close()
    untracked = SharedMemory(create=True, size=8, track=False)
    cleanup(untracked.unlink)
    cleanup(untracked.close)
    assert asked == [True, False]
    if LINUX:
        # What the ownership record says (docs/FORMAT.md: flag bit 0, persistent).
        def flags(shm: SharedMemory) -> int:
            return os.getxattr(f"/dev/shm/{shm.name}", "user.shmbridge")[7]

        assert flags(created) == 0, "track=True: reclaimable once the creator has died"
        assert flags(untracked) == 1, "track=False: persistent"
    # close() never unlinks, tracked or not.
    created.close()
    assert exists(created.name)


def test_shareable_list_beyond_the_stdlib(cleanup: Cleanup) -> None:
    # A generator is read once (the stdlib iterates its argument several times).
    sl = ShareableList(x * 2 for x in range(4))
    cleanup(sl.shm.unlink)
    cleanup(sl.shm.close)
    assert list(sl) == [0, 2, 4, 6]
    # A non-ASCII str is stored whole (the stdlib sizes slots by characters and cuts it).
    word = "ééééé"
    words = ShareableList([word, "ok"])
    cleanup(words.shm.unlink)
    cleanup(words.shm.close)
    assert words[0] == word and words[1] == "ok"
    # Unsupported items are a TypeError; an int beyond 64 bits changes nothing.
    with pytest.raises(TypeError, match="not list"):
        ShareableList([[1]])
    with pytest.raises(struct.error):
        sl[1] = 2**70
    assert sl[1] == 2 and sl.format == "qqqq"
    with pytest.raises(TypeError):
        sl[0:2]  # type: ignore[call-overload]
    assert ShareableList[int].__origin__ is ShareableList  # type: ignore[attr-defined]
    sl.shm.close()
    with pytest.raises(ValueError, match="closed"):
        sl[0]


@pytest.mark.parametrize(
    "content",
    [b"", b"\x01" * 15, (2**62).to_bytes(8, "little") + b"\x00" * 8, os.urandom(4096)],
    ids=["empty", "tiny", "huge-count", "random"],
)
def test_opening_a_segment_that_holds_no_list_is_a_value_error(
    content: bytes, cleanup: Cleanup
) -> None:
    name = f"{PREFIX}_notalist"
    shm = SharedMemory(name, create=True, size=max(len(content), 1))
    cleanup(shm.unlink)
    cleanup(shm.close)
    shm.buf[: len(content)] = content
    try:
        sl: ShareableList[Any] = ShareableList(name=name)
    except ValueError as e:
        assert "holds no ShareableList" in str(e)
        return
    # Random bytes may pass the header checks; the items then fail cleanly or not at all.
    for i in range(len(sl)):
        try:
            sl[i]
        except (ValueError, UnicodeDecodeError, struct.error):
            pass
    sl.shm.close()


# ---------------------------------------------------------------------------------
# Interop with the stdlib, both ways, each side in its own process

# Python 3.11's stdlib registers every segment it opens with its resource tracker,
# which would unlink ours at exit (gh-82300): the stdlib side unregisters.
STDLIB = """
import sys, json
from multiprocessing import resource_tracker, shared_memory
def untrack(shm):
    resource_tracker.unregister(shm._name, "shared_memory")
"""

MIXED = ["howdy", b"HoWdY", -273.154, 100, None, True, 42, "", b"", "x" * 17, False, 0.0]


def test_shared_memory_made_here_opens_in_the_stdlib(cleanup: Cleanup) -> None:
    shm = SharedMemory(create=True, size=4096)
    cleanup(shm.unlink)
    cleanup(shm.close)
    shm.buf[:256] = bytes(range(256))
    result = run_isolated(
        STDLIB
        + f"""
shm = shared_memory.SharedMemory({shm.name!r})
untrack(shm)
assert shm.size == 4096, shm.size
assert bytes(shm.buf[:256]) == bytes(range(256))
shm.buf[256:260] = b"std!"
shm.close()
print("ok")
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert bytes(shm.buf[256:260]) == b"std!"


def test_shared_memory_made_by_the_stdlib_opens_here() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                STDLIB
                + """
shm = shared_memory.SharedMemory(create=True, size=1000)
shm.buf[:5] = b"hello"
print(shm.name, flush=True)
sys.stdin.readline()
assert bytes(shm.buf[5:10]) == b"world", bytes(shm.buf[5:10])
shm.close()
shm.unlink()
print("ok", flush=True)
"""
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout and child.stdin
        name = readline(child.stdout, "the stdlib creator").strip()
        shm = SharedMemory(name)
        assert shm.name == name and shm.size == 1000
        assert bytes(shm.buf[:5]) == b"hello"
        shm.buf[5:10] = b"world"
        shm.close()
        out, _ = child.communicate("go\n", timeout=DEADLINE)
        assert child.returncode == 0 and out.strip() == "ok"
    finally:
        if child.poll() is None:
            child.kill()


def test_shareable_list_bytes_are_the_stdlibs(cleanup: Cleanup) -> None:
    """The same items give the same bytes, whichever module made the list."""
    sl = ShareableList(MIXED)
    cleanup(sl.shm.unlink)
    cleanup(sl.shm.close)
    result = run_isolated(
        STDLIB
        + f"""
sl = shared_memory.ShareableList({MIXED!r})
print(bytes(sl.shm.buf[:sl.shm.size]).hex(), sl.shm.size)
sl.shm.close()
sl.shm.unlink()
"""
    )
    assert result.returncode == 0, result.stderr
    theirs, size = result.stdout.split()
    assert int(size) == sl.shm.size
    assert bytes(sl.shm.buf[: sl.shm.size]).hex() == theirs


def test_shareable_list_made_here_opens_in_the_stdlib(cleanup: Cleanup) -> None:
    sl = ShareableList(MIXED)
    cleanup(sl.shm.unlink)
    cleanup(sl.shm.close)
    result = run_isolated(
        STDLIB
        + f"""
sl = shared_memory.ShareableList(name={sl.shm.name!r})
untrack(sl.shm)
assert list(sl) == {MIXED!r}, list(sl)
assert sl.format == {sl.format!r}
sl[0] = "hi"; sl[2] = "text"; sl[4] = 7; sl[5] = None; sl[9] = b"bytes"
sl.shm.close()
print("ok")
"""
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    expected = list(MIXED)
    expected[0], expected[2], expected[4], expected[5], expected[9] = "hi", "text", 7, None, b"bytes"
    assert list(sl) == expected


def test_shareable_list_made_by_the_stdlib_opens_here() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                STDLIB
                + f"""
sl = shared_memory.ShareableList({MIXED!r})
print(sl.shm.name, flush=True)
sys.stdin.readline()
print(json.dumps([repr(x) for x in sl]), flush=True)
sl.shm.close()
sl.shm.unlink()
"""
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout and child.stdin
        name = readline(child.stdout, "the stdlib creator").strip()
        sl: ShareableList[Any] = ShareableList(name=name)
        assert list(sl) == MIXED
        sl[0] = "hi"
        sl[3] = 3.5
        sl[4] = "none no more"[:8]
        sl[6] = b"b"
        sl.shm.close()
        out, _ = child.communicate("go\n", timeout=DEADLINE)
        assert child.returncode == 0
        expected = list(MIXED)
        expected[0], expected[3], expected[4], expected[6] = "hi", 3.5, "none no ", b"b"
        assert json.loads(out) == [repr(x) for x in expected]
    finally:
        if child.poll() is None:
            child.kill()


def test_non_ascii_items_made_here_read_whole_in_the_stdlib(cleanup: Cleanup) -> None:
    sl = ShareableList(["ééééé", "日本語のテキスト"])
    cleanup(sl.shm.unlink)
    cleanup(sl.shm.close)
    result = run_isolated(
        STDLIB
        + f"""
sl = shared_memory.ShareableList(name={sl.shm.name!r})
untrack(sl.shm)
print(json.dumps(list(sl)))
sl.shm.close()
"""
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["ééééé", "日本語のテキスト"]


# ---------------------------------------------------------------------------------
# Our guarantees underneath


@pytest.mark.skipif(not LINUX, reason="reads /dev/shm")
def test_create_is_exclusive_owner_only_and_reserves_its_pages(cleanup: Cleanup) -> None:
    old_umask = os.umask(0)  # the stdlib's 0600 does not depend on the umask; nor does ours
    try:
        shm = SharedMemory(create=True, size=1 << 20)
    finally:
        os.umask(old_umask)
    cleanup(shm.unlink)
    cleanup(shm.close)
    st = os.stat(f"/dev/shm/{shm.name}")
    assert stat.S_IMODE(st.st_mode) == 0o600
    # Reserved at create (ftruncate alone, as in the stdlib, reserves no block).
    assert st.st_blocks * 512 >= 1 << 20, st.st_blocks
    with pytest.raises(FileExistsError):
        SharedMemory(shm.name, create=True, size=10)


@pytest.mark.skipif(not LINUX, reason="Linux reserves /dev/shm pages at create")
def test_no_room_is_enospc_at_create() -> None:
    name = f"{PREFIX}_enospc"
    with pytest.raises(OSError) as caught:
        SharedMemory(name, create=True, size=1 << 50)
    assert caught.value.errno == errno.ENOSPC
    assert not exists(name)
    with pytest.raises(OSError) as caught:
        SharedMemory(create=True, size=1 << 50)  # a generated name: none is left either
    assert caught.value.errno == errno.ENOSPC


def test_nothing_goes_through_the_resource_tracker(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import pickle
        from multiprocessing import resource_tracker
        calls = []
        for fn in ("register", "unregister", "ensure_running", "getfd"):
            setattr(resource_tracker, fn, lambda *a, fn=fn: calls.append((fn, a)))

        from shmbridge.shared_memory import SharedMemory, ShareableList
        shm = SharedMemory(create=True, size=64)
        other = pickle.loads(pickle.dumps(shm))
        other.close()
        with SharedMemory(shm.name, track=True):
            pass
        untracked = SharedMemory(create=True, size=64, track=False)
        sl = ShareableList([1, "two"])
        ShareableList(name=sl.shm.name).shm.close()
        for s in (shm, untracked, sl.shm):
            s.close()
            s.unlink()
        assert calls == [], calls
        assert resource_tracker._resource_tracker._pid is None, "a tracker was started"
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert "resource_tracker" not in result.stderr


# ---------------------------------------------------------------------------------
# No crash after close(), whatever was kept

# Each idiom takes memory from a SharedMemory and returns (write, read) through what it
# kept, holding no reference to `shm` unless the idiom itself does.
IDIOMS = {
    "ndarray_buffer": """
        a = np.ndarray((512,), np.float64, buffer=shm.buf)   # the stdlib docs' idiom
        return lambda v: a.__setitem__(3, v), lambda: a[3]
    """,
    "ndarray_buffer_offset": """
        a = np.ndarray((8,), np.float64, buffer=shm.buf, offset=64)
        return lambda v: a.__setitem__(0, v), lambda: a[0]
    """,
    "ndarray_buffer_of_cast": """
        a = np.ndarray((512,), np.float64, buffer=shm.buf.cast("d"))
        return lambda v: a.__setitem__(3, v), lambda: a[3]
    """,
    "frombuffer": """
        a = np.frombuffer(shm.buf, np.float64)
        return lambda v: a.__setitem__(3, v), lambda: a[3]
    """,
    "asarray": """
        a = np.asarray(shm.buf).view(np.float64)
        return lambda v: a.__setitem__(3, v), lambda: a[3]
    """,
    "memoryview_cast": """
        m = shm.buf.cast("d")
        return lambda v: m.__setitem__(3, v), lambda: m[3]
    """,
    "memoryview_slice": """
        m = shm.buf[24:32].cast("d")
        return lambda v: m.__setitem__(0, v), lambda: m[0]
    """,
    "memoryview_of_buf": """
        m = memoryview(shm.buf).cast("d")
        return lambda v: m.__setitem__(3, v), lambda: m[3]
    """,
    "buf_itself": """
        b = shm.buf
        return (lambda v: b.cast("d").__setitem__(3, v)), lambda: b.cast("d")[3]
    """,
    "ctypes_array_from_buffer": """
        c = (ctypes.c_double * 512).from_buffer(shm.buf)
        return lambda v: c.__setitem__(3, v), lambda: c[3]
    """,
    "ctypes_scalar_from_buffer": """
        c = ctypes.c_double.from_buffer(shm.buf, 24)
        return lambda v: setattr(c, "value", v), lambda: c.value
    """,
    # pyarrow.foreign_buffer(address, size, base=shm) keeps a raw address and only a
    # reference to the object that owns the memory: the same, without pyarrow.
    "raw_address_and_owner": """
        address = np.frombuffer(shm.buf, np.uint8).ctypes.data   # that array is gone at once
        owner = shm
        cell = lambda: ctypes.c_double.from_address(address + 24)
        return (lambda v: (owner, setattr(cell(), "value", v))), lambda: (owner, cell().value)[1]
    """,
}

NO_CRASH = """
import ctypes, gc, sys
import numpy as np
import shmbridge
from shmbridge.shared_memory import SharedMemory

def take(shm):
{idiom}

def unlink(box):
    box[0].unlink()

def release_buf_then_close(box):
    try:
        box[0].buf.release()   # BufferError while a consumer holds an export from it
    except BufferError:
        pass
    box[0].close()

ENDINGS = {{
    "close": lambda box: box[0].close(),
    "unlink": unlink,
    "close+unlink": lambda box: (box[0].close(), box[0].unlink()),
    "unlink+close": lambda box: (box[0].unlink(), box[0].close()),
    "collect": lambda box: (box.clear(), gc.collect()),
    "close+collect": lambda box: (box[0].close(), box.clear(), gc.collect()),
    "close+unlink+collect": lambda box: (box[0].close(), box[0].unlink(), box.clear(), gc.collect()),
    # Explicit release() of buf: what was taken from that very memoryview may then
    # raise (ValueError: released memoryview), as in the stdlib, but must not crash.
    "release+close+collect": lambda box: (release_buf_then_close(box), box.clear(), gc.collect()),
}}

names = []
for ending, end in ENDINGS.items():
    shm = SharedMemory(create=True, size=4096)
    print("segment", shm.name, flush=True)
    names.append(shm.name)
    write, read = take(shm)
    write(1.5)
    box = [shm]
    del shm
    end(box)
    print(f"touching after {{ending}}", flush=True)
    try:
        write(2.5)
        value = read()
        print(f"{{ending}}: read {{value}}", flush=True)
    except Exception as e:
        print(f"{{ending}}: {{type(e).__name__}}: {{e}}", flush=True)
    del write, read, box
    gc.collect()
for name in names:
    try:
        shmbridge.unlink(name)
    except FileNotFoundError:
        pass
print("done", flush=True)
"""


@pytest.mark.parametrize("idiom", list(IDIOMS))
def test_no_crash_after_close_whatever_was_kept(idiom: str, tmp_path: Path) -> None:
    code = NO_CRASH.format(idiom=textwrap.indent(textwrap.dedent(IDIOMS[idiom]).strip(), "    "))
    result = run_script(tmp_path, code)
    # An exception would be acceptable; a signal is the failure this test exists for.
    assert result.returncode >= 0, (
        f"{idiom}: {describe_exit(result.returncode)}; last output:\n{result.stdout[-500:]}"
    )
    assert result.returncode == 0 and result.stdout.endswith("done\n"), result.stderr
    # Stronger than "no crash": what was kept still works, and sees the memory (unless
    # the program released the very memoryview it kept).
    lines = [line for line in result.stdout.splitlines() if ": " in line]
    assert len(lines) == 8, result.stdout
    assert all(line.endswith(": read 2.5") for line in lines if not line.startswith("release")), (
        result.stdout
    )


def test_the_crash_classifier_sees_a_signal(tmp_path: Path) -> None:
    # The control for the test above: a real segfault is reported as one.
    result = run_script(tmp_path, "import ctypes\nctypes.string_at(0)\n")
    assert result.returncode < 0 and "SIG" in describe_exit(result.returncode)


# ---------------------------------------------------------------------------------
# Processes: pickled by name; no child ever removes its parent's segment

CHILD_EXITS = """
import multiprocessing as mp, os, signal, sys, traceback
from shmbridge.shared_memory import SharedMemory, ShareableList

EXITS = {"return": 0, "sys.exit": 3, "exception": 1, "os._exit": 0, "SIGTERM": -signal.SIGTERM}

def leave(how):
    if how == "sys.exit":
        sys.exit(3)
    if how == "exception":
        raise RuntimeError("the child fails")
    if how == "os._exit":
        os._exit(0)
    if how == "SIGTERM":
        os.kill(os.getpid(), signal.SIGTERM)

def child(shm, sl, index, how, close):
    shm.buf[index] = 1
    sl[index] = index
    if close:
        shm.close()
        sl.shm.close()
    leave(how)

def check(label, shm, sl, index, status, how):
    problems = []
    if status != EXITS[how]:
        problems.append(f"exit status {status}, expected {EXITS[how]}")
    for segment in (shm, sl.shm):
        try:
            SharedMemory(segment.name).close()
        except FileNotFoundError:
            problems.append(f"{segment.name} was unlinked")
    if shm.buf[index] != 1 or sl[index] != index:
        problems.append("the child's writes are missing")
    print(f"{label}: {'; '.join(problems) or 'ok'}", flush=True)

if __name__ == "__main__":
    track = sys.argv[1] == "track"
    shm = SharedMemory(create=True, size=256, track=track)
    sl = ShareableList([-1] * 64)
    for segment in (shm, sl.shm):
        print("segment", segment.name, flush=True)
    index = 0
    for method in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(method)
        for how in EXITS:
            for close in (False, True):
                p = ctx.Process(target=child, args=(shm, sl, index, how, close))
                p.start()
                p.join(60)
                check(f"{method} {how} close={close}", shm, sl, index, p.exitcode, how)
                index += 1
    # A bare os.fork(): the child runs the interpreter's whole shutdown (atexit, GC).
    for how in EXITS:
        for close in (False, True):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                shm.buf[index] = 1
                sl[index] = index
                if close:
                    shm.close()
                    sl.shm.close()
                if how == "return":
                    break        # out of both loops: the child then ends the script
                if how == "exception":
                    sys.stderr = open(os.devnull, "w")
                leave(how)
            _, wait_status = os.waitpid(pid, 0)
            check(f"os.fork {how} close={close}", shm, sl, index,
                  os.waitstatus_to_exitcode(wait_status), how)
            index += 1
        else:
            continue
        break
    else:
        for segment in (shm, sl.shm):
            segment.close()
            segment.unlink()
        print("done", flush=True)
"""


@pytest.mark.parametrize("track", ["track", "untracked"])
def test_no_child_exit_removes_the_parents_segment(track: str, tmp_path: Path) -> None:
    result = run_script(tmp_path, CHILD_EXITS, track, timeout=300)
    assert result.returncode == 0, f"{describe_exit(result.returncode)}\n{result.stderr[-2000:]}"
    lines = result.stdout.splitlines()
    assert lines[-1] == "done", result.stdout
    cases = lines[:-1]
    # 3 start methods x 5 exits x close or not, and 5 exits x 2 for os.fork.
    assert len(cases) == 40, result.stdout
    failed = [line for line in cases if not line.endswith(": ok")]
    assert not failed, "\n".join(failed)


POOL = """
import multiprocessing as mp, sys
from shmbridge.shared_memory import SharedMemory, ShareableList

def fill(job):
    shm, sl, index = job
    shm.buf[index] = index + 1
    sl[index] = f"w{index}"
    shm.close()
    sl.shm.close()
    return index

if __name__ == "__main__":
    shm = SharedMemory(create=True, size=64)
    sl = ShareableList(["--"] * 16)
    for segment in (shm, sl.shm):
        print("segment", segment.name, flush=True)
    for method in ("fork", "spawn", "forkserver"):
        shm.buf[:16] = bytes(16)
        with mp.get_context(method).Pool(2) as pool:
            # chunksize=1: each task unpickles its own objects, so that fill() may close them.
            done = pool.map_async(fill, [(shm, sl, i) for i in range(16)], chunksize=1).get(60)
        # Leaving `with` terminates the workers (SIGTERM): the names survive that too.
        assert done == list(range(16)), done
        assert bytes(shm.buf[:16]) == bytes(range(1, 17)), bytes(shm.buf[:16])
        assert list(sl) == [f"w{i}" for i in range(16)], list(sl)
        SharedMemory(shm.name).close()
        ShareableList(name=sl.shm.name).shm.close()
        print(method, "ok", flush=True)
    for segment in (shm, sl.shm):
        segment.close()
        segment.unlink()
"""


def test_pool_map_with_every_start_method(tmp_path: Path) -> None:
    result = run_script(tmp_path, POOL, timeout=300)
    assert result.returncode == 0, f"{describe_exit(result.returncode)}\n{result.stderr[-2000:]}"
    assert result.stdout.split("\n")[:3] == ["fork ok", "spawn ok", "forkserver ok"]


def test_unpickled_copies_never_unlink(tmp_path: Path) -> None:
    """A receiver that closes, is collected or exits leaves the creator's name."""
    shm = SharedMemory(create=True, size=8)
    try:
        blob = pickle.dumps(shm)
        result = run_isolated(
            f"""
import gc, pickle
shm = pickle.loads({blob!r})
shm.buf[0] = 9
shm.close()
again = pickle.loads({blob!r})
del again
gc.collect()
kept = pickle.loads({blob!r})   # and one alive at exit
print("ok")
"""
        )
        assert result.returncode == 0, result.stderr
        assert exists(shm.name) and shm.buf[0] == 9
    finally:
        shm.close()
        shm.unlink()


def test_a_segment_made_by_the_main_class_opens_here(name: str) -> None:
    with shmbridge.SharedMemory(name, 32, create=True) as native:
        native.write(b"from the main class")
        shm = SharedMemory(name)
        assert bytes(shm.buf[:19]) == b"from the main class"
        assert shm.name == name.lstrip("/")
        shm.close()
