"""CPython's own shared-memory tests, run against shmbridge.shared_memory.

Origin: the class `_TestSharedMemory` in CPython's `Lib/test/_test_multiprocessing.py`,
as in CPython 3.13.0 (the newest installed here; 3.11 and 3.12 hold a subset of the
same tests, and CPython's main branch adds none). Each test below is a rewrite for
pytest of the CPython test of the same name, making the same checks in the same order;
no CPython code is copied (CPython is under the PSF licence). `shared_memory` below is
`shmbridge.shared_memory`, where CPython's is `multiprocessing.shared_memory`.

Every test is ported, except these, which test CPython internals rather than the
module's API (also listed in the README):

- test_shared_memory_SharedMemoryServer_ignores_sigint: the server process of
  `multiprocessing.managers.SharedMemoryManager`, which is the stdlib's (it makes
  stdlib segments; shmbridge has no manager).
- test_shared_memory_SharedMemoryManager_reuses_resource_tracker: that manager and
  the resource tracker, which shmbridge never uses.
- Parts of two tests: in test_shared_memory_name_with_embedded_null, reassigning the
  private `_name` (read-only here) under the private `_USE_POSIX`; in
  test_shared_memory_basics, a subclass setting the private `_flags` to
  `O_CREAT | O_RDWR` to create-or-attach (shmbridge's create is always exclusive).
- In test_shared_memory_SharedMemoryManager_basics, the checks of the manager alone
  (it is the stdlib's); what it checks of `shared_memory` is ported.

Ported with the opposite expectation, on purpose: test_shared_memory_tracking, where
CPython asserts that a process which merely *opens* a segment with track=True has the
resource tracker unlink it at exit (CPython gh-82300). Here the segment survives.
test_shared_memory_cleaned_after_process_termination is ported with shmbridge's
automatic reclaim in the resource tracker's place: the segment of a creator killed by
SIGTERM goes, and no resource tracker warns of a leak (none is involved).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.managers
import pickle
import subprocess
import sys
import unittest.mock
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from conftest import DEADLINE, PREFIX
from dropin_support import cleanup, no_leaked_generated_names  # noqa: F401 (fixtures)

from shmbridge import shared_memory

Cleanup = Callable[..., None]


def _attach_existing_shmem_then_write(shmem_name_or_obj: Any, binary_data: bytes) -> None:
    if isinstance(shmem_name_or_obj, str):
        local = shared_memory.SharedMemory(shmem_name_or_obj)
    else:
        local = shmem_name_or_obj
    local.buf[: len(binary_data)] = binary_data
    local.close()


def _new_shm_name(prefix: str) -> str:
    # CPython appends the pid; the pytest prefix also lets conftest check for leaks.
    return f"{PREFIX}_{prefix}"


def test_shared_memory_name_with_embedded_null(cleanup: Cleanup) -> None:
    name = _new_shm_name("test01_null")
    sms = shared_memory.SharedMemory(name, create=True, size=512)
    cleanup(sms.unlink)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(name + "\0a", create=False, size=512)
    # Not ported: reassigning the private `_name` to make unlink() fail.


def test_shared_memory_basics(cleanup: Cleanup) -> None:
    name = _new_shm_name("test01_tsmb")
    sms = shared_memory.SharedMemory(name, create=True, size=512)
    cleanup(sms.unlink)

    assert sms.name == name
    assert sms.size >= 512
    assert len(sms.buf) >= sms.size
    assert sms.name in str(sms)
    assert str(sms.size) in str(sms)

    sms.buf[0] = 42
    assert sms.buf[0] == 42

    also_sms = shared_memory.SharedMemory(name)
    assert also_sms.buf[0] == 42
    also_sms.close()

    # A size given when attaching is ignored.
    same_sms = shared_memory.SharedMemory(name, size=20 * sms.size)
    assert same_sms.size < 20 * sms.size
    same_sms.close()

    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=True, size=-2)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=False)

    # A generated name that is taken is skipped, not an error.
    with unittest.mock.patch("shmbridge.shared_memory._make_filename") as make_filename:
        prefix = shared_memory._SHM_NAME_PREFIX
        names = [prefix + _new_shm_name("test01_fn"), prefix + _new_shm_name("test02_fn")]
        make_filename.side_effect = names
        shm1 = shared_memory.SharedMemory(create=True, size=1)
        cleanup(shm1.unlink)
        assert shm1._name == names[0]
        make_filename.side_effect = names
        shm2 = shared_memory.SharedMemory(create=True, size=1)
        cleanup(shm2.unlink)
        assert shm2._name == names[1]

    # A name can be unlinked once only, whichever handle does it.
    name_dblunlink = _new_shm_name("test01_dblunlink")
    sms_uno = shared_memory.SharedMemory(name_dblunlink, create=True, size=5000)
    with pytest.raises(FileNotFoundError):
        try:
            assert sms_uno.size >= 5000
            sms_duo = shared_memory.SharedMemory(name_dblunlink)
            sms_duo.unlink()
            sms_duo.close()
            sms_uno.close()
        finally:
            sms_uno.unlink()

    with pytest.raises(FileExistsError):
        shared_memory.SharedMemory(name, create=True, size=512)

    # Not ported: OptionalAttachSharedMemory, a subclass setting the private `_flags`.

    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory("test01_notthere").unlink()

    sms.close()


def test_shared_memory_recreate(cleanup: Cleanup) -> None:
    with unittest.mock.patch("shmbridge.shared_memory._make_filename") as make_filename:
        prefix = shared_memory._SHM_NAME_PREFIX
        names = [prefix + _new_shm_name("test03_fn"), prefix + _new_shm_name("test04_fn")]
        make_filename.side_effect = names
        shm1 = shared_memory.SharedMemory(create=True, size=1)
        cleanup(shm1.unlink)
        assert shm1._name == names[0]
        make_filename.side_effect = names
        shm2 = shared_memory.SharedMemory(create=True, size=1)
        cleanup(shm2.unlink)
        assert shm2._name == names[1]


def test_invalid_shared_memory_creation() -> None:
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=True, size=-1)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=True, size=0)
    with pytest.raises(ValueError):
        shared_memory.SharedMemory(create=True)


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_shared_memory_pickle_unpickle(proto: int, cleanup: Cleanup) -> None:
    sms = shared_memory.SharedMemory(create=True, size=512)
    cleanup(sms.unlink)
    sms.buf[0:6] = b"pickle"

    sms2 = pickle.loads(pickle.dumps(sms, protocol=proto))
    assert isinstance(sms2, shared_memory.SharedMemory)
    assert sms.name == sms2.name
    assert bytes(sms.buf[0:6]) == b"pickle"
    assert bytes(sms2.buf[0:6]) == b"pickle"

    # Both objects are the same memory.
    sms.buf[0:6] = b"newval"
    assert bytes(sms.buf[0:6]) == b"newval"
    assert bytes(sms2.buf[0:6]) == b"newval"
    sms2.buf[0:6] = b"oldval"
    assert bytes(sms.buf[0:6]) == b"oldval"
    assert bytes(sms2.buf[0:6]) == b"oldval"


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_shared_memory_pickle_unpickle_dead_object(proto: int) -> None:
    sms = shared_memory.SharedMemory(create=True, size=512)
    sms.buf[0:6] = b"pickle"
    pickled = pickle.dumps(sms, protocol=proto)
    sms.close()
    sms.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(pickled)


# CPython runs this under each start method (test_multiprocessing_fork, _spawn, _forkserver).
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_shared_memory_across_processes(method: str, cleanup: Cleanup) -> None:
    ctx = multiprocessing.get_context(method)
    sms = shared_memory.SharedMemory(create=True, size=512)
    cleanup(sms.unlink)

    # Attaching by name in the child.
    p = ctx.Process(target=_attach_existing_shmem_then_write, args=(sms.name, b"howdy"), daemon=True)
    p.start()
    p.join(DEADLINE)
    assert p.exitcode == 0
    assert bytes(sms.buf[:5]) == b"howdy"

    # The object itself as the argument (pickled, except under fork).
    p = ctx.Process(target=_attach_existing_shmem_then_write, args=(sms, b"HELLO"), daemon=True)
    p.start()
    p.join(DEADLINE)
    assert p.exitcode == 0
    assert bytes(sms.buf[:5]) == b"HELLO"

    sms.close()


def test_shared_memory_SharedMemoryManager_basics() -> None:
    # The manager is the stdlib's; what is ported is that our module attaches to the
    # segments it makes, and finds them gone once it has shut down.
    smm1 = multiprocessing.managers.SharedMemoryManager()
    smm1.start()
    lol = [smm1.ShareableList(range(i)) for i in range(5, 10)]
    lom = [smm1.SharedMemory(size=j) for j in range(32, 128, 16)]
    doppleganger_list0 = shared_memory.ShareableList(name=lol[0].shm.name)
    assert len(doppleganger_list0) == 5
    doppleganger_shm0 = shared_memory.SharedMemory(name=lom[0].name)
    assert len(doppleganger_shm0.buf) >= 32
    held_name = lom[0].name
    smm1.shutdown()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=held_name)

    with multiprocessing.managers.SharedMemoryManager() as smm2:
        sl = smm2.ShareableList("howdy")
        smm2.SharedMemory(size=128)
        held_name = sl.shm.name
    with pytest.raises(FileNotFoundError):
        shared_memory.ShareableList(name=held_name)


def test_shared_memory_ShareableList_basics(cleanup: Cleanup) -> None:
    sl = shared_memory.ShareableList(["howdy", b"HoWdY", -273.154, 100, None, True, 42])
    cleanup(sl.shm.unlink)

    assert sl.shm.name in str(sl)
    assert str(list(sl)) in str(sl)

    with pytest.raises(IndexError):
        sl[7]
    with pytest.raises(IndexError):
        sl[7] = 2

    # Storing a str where a str was keeps the format.
    current_format = sl._get_packing_format(0)
    sl[0] = "howdy"
    assert current_format == sl._get_packing_format(0)

    assert sl.format == "8s8sdqxxxxxx?xxxxxxxx?q"
    assert len(sl) == 7

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BytesWarning from comparing with b"HoWdY"
        with pytest.raises(ValueError):
            sl.index("100")
        assert sl.index(100) == 3

    assert sl[0] == "howdy"
    assert sl[-2] is True
    assert tuple(sl) == ("howdy", b"HoWdY", -273.154, 100, None, True, 42)

    sl[3] = 42
    assert sl[3] == 42
    sl[4] = "some"  # another type at that position
    assert sl[4] == "some"
    assert sl.format == "8s8sdq8sxxxxxxx?q"
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[4] = "far too many"
    assert sl[4] == "some"
    sl[0] = "encodés"  # 8 bytes of UTF-8
    assert sl[0] == "encodés"
    assert sl[1] == b"HoWdY"  # nothing spilled over
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[0] = "encodées"  # 9 bytes of UTF-8
    assert sl[1] == b"HoWdY"
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[1] = b"123456789"
    assert sl[1] == b"HoWdY"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sl.count(42) == 2
        assert sl.count(b"HoWdY") == 1
        assert sl.count(b"adios") == 0

    # A copy under a given name.
    name_duplicate = _new_shm_name("test03_duplicate")
    sl_copy = shared_memory.ShareableList(sl, name=name_duplicate)
    try:
        assert sl.shm.name != sl_copy.shm.name
        assert name_duplicate == sl_copy.shm.name
        assert list(sl) == list(sl_copy)
        assert sl.format == sl_copy.format
        sl_copy[-1] = 77
        assert sl_copy[-1] == 77
        assert sl[-1] != 77
        sl_copy.shm.close()
    finally:
        sl_copy.shm.unlink()

    # A second handle on the same list.
    sl_tethered = shared_memory.ShareableList(name=sl.shm.name)
    assert sl.shm.name == sl_tethered.shm.name
    sl_tethered[-1] = 880
    assert sl[-1] == 880
    sl_tethered.shm.close()

    sl.shm.close()

    empty_sl: shared_memory.ShareableList[int] = shared_memory.ShareableList()
    try:
        assert len(empty_sl) == 0
        assert empty_sl.format == ""
        assert empty_sl.count("any") == 0  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            empty_sl.index(None)  # type: ignore[arg-type]
        empty_sl.shm.close()
    finally:
        empty_sl.shm.unlink()


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_shared_memory_ShareableList_pickling(proto: int, cleanup: Cleanup) -> None:
    sl: shared_memory.ShareableList[Any] = shared_memory.ShareableList(range(10))
    cleanup(sl.shm.unlink)

    serialized_sl = pickle.dumps(sl, protocol=proto)
    deserialized_sl = pickle.loads(serialized_sl)
    assert isinstance(deserialized_sl, shared_memory.ShareableList)
    assert deserialized_sl[-1] == 9
    assert sl is not deserialized_sl

    deserialized_sl[4] = "changed"
    assert sl[4] == "changed"
    sl[3] = "newvalue"
    assert deserialized_sl[3] == "newvalue"

    # The pickle carries the name, not the items.
    larger_sl = shared_memory.ShareableList(range(400))
    cleanup(larger_sl.shm.unlink)
    serialized_larger_sl = pickle.dumps(larger_sl, protocol=proto)
    assert len(serialized_sl) == len(serialized_larger_sl)
    larger_sl.shm.close()

    deserialized_sl.shm.close()
    sl.shm.close()


@pytest.mark.parametrize("proto", range(pickle.HIGHEST_PROTOCOL + 1))
def test_shared_memory_ShareableList_pickling_dead_object(proto: int) -> None:
    sl = shared_memory.ShareableList(range(10))
    serialized_sl = pickle.dumps(sl, protocol=proto)
    sl.shm.close()
    sl.shm.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(serialized_sl)


OPEN_THEN_CLOSE = """
import sys
from shmbridge.shared_memory import SharedMemory
mem = SharedMemory(create=False, name=sys.argv[1], track={track})
mem.close()
"""


def test_shared_memory_untracking(cleanup: Cleanup) -> None:
    # gh-82300: a process that opens a segment with track=False and exits leaves it.
    mem = shared_memory.SharedMemory(create=True, size=10)
    cleanup(mem.close)
    cleanup(mem.unlink)
    result = subprocess.run(
        [sys.executable, "-c", OPEN_THEN_CLOSE.format(track=False), mem.name],
        capture_output=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stderr
    assert b"resource_tracker" not in result.stderr
    shared_memory.SharedMemory(create=False, name=mem.name).close()


def test_shared_memory_tracking(cleanup: Cleanup) -> None:
    # The opposite of CPython's expectation (gh-82300): opening with track=True and
    # exiting must not unlink the creator's segment, and no tracker says anything.
    mem = shared_memory.SharedMemory(create=True, size=10)
    cleanup(mem.close)
    cleanup(mem.unlink)
    result = subprocess.run(
        [sys.executable, "-c", OPEN_THEN_CLOSE.format(track=True), mem.name],
        capture_output=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stderr
    assert b"resource_tracker" not in result.stderr
    shared_memory.SharedMemory(create=False, name=mem.name).close()  # still there


CREATE_THEN_WAIT = """
import sys
from shmbridge import shared_memory
sm = shared_memory.SharedMemory(create=True, size=10)
sys.stdout.write(sm.name + "\\n")
sys.stdout.flush()
sys.stdin.read()  # until terminated
"""


def test_shared_memory_cleaned_after_process_termination() -> None:
    from shmbridge import _native

    with subprocess.Popen(
        [sys.executable, "-E", "-c", CREATE_THEN_WAIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as p:
        assert p.stdout is not None and p.stderr is not None
        name = p.stdout.readline().strip().decode()
        # Killing abruptly a process holding a segment must not leak it.
        p.terminate()
        p.wait(timeout=DEADLINE)
        err_msg = "A SharedMemory segment was leaked after a process was abruptly terminated"
        assert _native._wait_gone(name, DEADLINE), err_msg
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name, create=False)
        # CPython checks its resource tracker's warning here; none is involved.
        assert b"resource_tracker" not in p.stderr.read()
