"""Memory lifetimes, the way users actually take memory from our objects.

Every idiom people copy from the stdlib, NumPy and ctypes docs takes memory from a
segment or an array, then the object is closed, unlinked, dropped and collected in
every order, then the memory is touched again. Each idiom runs in its own fresh
interpreter whose exit is classified: an exception is a fine answer, a signal (a
segfault, a bus error) or a hang fails the test.

Also: fork children (inherited objects), pickling by name, and the stdlib's
``close(); unlink()`` ending.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import PREFIX

# Ways to take memory from a SharedMemory `shm` of N bytes, each giving `taken`,
# something indexable whose element 0 can be read and written.
SEGMENT_IDIOMS = {
    "ndarray_buffer_buf": "np.ndarray((N,), np.uint8, buffer=shm.buf)",  # the stdlib docs' idiom
    "ndarray_buffer_obj": "np.ndarray((N // 8,), np.float64, buffer=shm)",
    "ndarray_buffer_view": "np.ndarray((N // 8,), np.float64, buffer=shm.view('d'))",
    "frombuffer_obj": "np.frombuffer(shm, np.uint8)",
    "frombuffer_buf": "np.frombuffer(shm.buf, np.uint8)",
    "memoryview_cast": "memoryview(shm).cast('d')",
    "buf_slice_cast": "shm.buf[8:].cast('i')",
    "typed_view": "shm.view('q', 8, 4)",
    "ctypes_from_buffer": "(ctypes.c_char * N).from_buffer(shm)",
    "ctypes_array_from_buf": "(ctypes.c_double * (N // 8)).from_buffer(shm.buf)",
    "array_interface_addr": "np.asarray(Holder(shm))",
    "pyarrow_py_buffer": "np.frombuffer(pa.py_buffer(shm), np.uint8)",
    "pyarrow_py_buffer_of_buf": "np.frombuffer(pa.py_buffer(shm.buf), np.uint8)",
    "pyarrow_foreign_buffer": "np.frombuffer(pa.foreign_buffer(address_of(shm), N, base=shm), np.uint8)",
}

# Orders of ending. `drop` deletes the script's reference and collects garbage.
ENDINGS = [list(p) for n in range(1, 4) for p in itertools.permutations(["close", "unlink", "drop"], n)]

RUNNER = """
import ctypes, gc, sys
import numpy as np
import pyarrow as pa
import shmbridge
from shmbridge import SharedMemory

N = 4096

class Holder:
    # pyarrow.foreign_buffer's shape: an address and a base object kept alive.
    def __init__(self, shm):
        self.base = shm
        self.__array_interface__ = {"version": 3, "shape": (N,), "typestr": "|u1", "data": (address_of(shm), False)}

def address_of(shm):
    mv = memoryview(shm)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mv))
    mv.release()
    return addr

def touch(taken):
    try:
        value = taken[0]
    except (ValueError, TypeError, BufferError) as e:
        return type(e).__name__
    try:
        taken[0] = value
    except (ValueError, TypeError):
        pass  # a read-only consumer
    return "ok"

for case, (idiom, ending) in enumerate(CASES):
    name = shmbridge.unique_name(PREFIX + "_life")
    print("case", case, idiom, ending, flush=True)
    shm = SharedMemory(name, N, create=True)
    shm.write_at(b"\\x01" * 8, 0)
    taken = eval(idiom)
    dropped = False
    for step in ending:
        if step == "close" and not dropped:
            shm.close()
        elif step == "unlink":
            try:
                shm.unlink() if not dropped else shmbridge.unlink(name)
            except FileNotFoundError:
                pass  # close() or the collection removed it first
        elif step == "drop":
            del shm
            dropped = True
            gc.collect()
    result = touch(taken)
    del taken
    gc.collect()
    if not dropped:
        shm.close()
        del shm
    try:
        shmbridge.unlink(name)
    except FileNotFoundError:
        pass
    print("done", case, result, flush=True)
print("all done", flush=True)
"""


def run_classified(code: str, timeout: float = 120, cwd: str | None = None) -> str:
    """Runs `code` in a fresh interpreter (in `cwd`, if given); fails on a signal or
    a hang, and on any exit other than 0. Returns stdout."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung for {timeout} s; last output: {e.stdout!r:.2000}")
    if result.returncode < 0:
        last = result.stdout.strip().splitlines()[-1:] or ["(nothing)"]
        pytest.fail(f"killed by {signal.Signals(-result.returncode).name} during {last[0]}\n{result.stderr[-2000:]}")
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.parametrize("idiom", sorted(SEGMENT_IDIOMS))
def test_segment_memory_outlives_every_ending(idiom: str) -> None:
    cases = [(SEGMENT_IDIOMS[idiom], ending) for ending in ENDINGS]
    out = run_classified(f"PREFIX = {PREFIX!r}\nCASES = {cases!r}\n" + RUNNER)
    assert out.rstrip().endswith("all done"), out
    results = [line.split()[2] for line in out.splitlines() if line.startswith("done")]
    assert len(results) == len(cases)
    # The memory stays valid while something can reach it: every touch works.
    assert set(results) == {"ok"}, out


ARRAY_IDIOMS = {
    "asarray": "np.asarray(sa)",
    "numpy_method": "sa.numpy()",
    "array_interface": "np.array(sa, copy=False)",
    "dlpack_numpy": "np.from_dlpack(sa)",
    "dlpack_capsule_unconsumed": "[sa.__dlpack__(max_version=(1, 0)), np.zeros(1)][1]",
    "memoryview_of_numpy": "memoryview(np.asarray(sa)).cast('B')",
    "ndarray_buffer_numpy": "np.ndarray((16,), np.uint8, buffer=np.asarray(sa))",
}


@pytest.mark.parametrize("idiom", sorted(ARRAY_IDIOMS))
def test_array_memory_outlives_every_ending(idiom: str) -> None:
    out = run_classified(
        f"""
import gc, itertools
import numpy as np
import shmbridge
from shmbridge import SharedArray
for ending in itertools.permutations(["unlink", "drop"]):
    name = shmbridge.unique_name({PREFIX!r} + "_arr")
    sa = SharedArray.create(name, (16,), "|u1")
    taken = {ARRAY_IDIOMS[idiom]}
    dropped = False
    for step in ending:
        if step == "unlink":
            try:
                shmbridge.unlink(name)
            except FileNotFoundError:
                pass
        else:
            del sa
            dropped = True
            gc.collect()
    taken[0] = 7
    assert taken[0] == 7
    del taken
    gc.collect()
    if not dropped:
        del sa
    gc.collect()
    try:
        shmbridge.unlink(name)
    except FileNotFoundError:
        pass
print("all done")
"""
    )
    assert out.rstrip().endswith("all done")


def test_stdlib_ending_close_then_unlink(name: str) -> None:
    from shmbridge import SharedMemory

    shm = SharedMemory(name, 64, create=True)
    shm.close()
    shm.unlink()  # both stdlib examples end this way
    with pytest.raises(FileNotFoundError):
        SharedMemory(name)
    with pytest.raises(FileNotFoundError):
        shm.unlink()  # an explicit second unlink is an error, as os.unlink twice


def test_pickled_segment_opens_in_the_receiver_and_never_owns(name: str) -> None:
    import pickle

    from shmbridge import SharedMemory

    with SharedMemory(name, 64, create=True) as shm:
        shm.write_at(b"pickled", 0)
        out = run_classified(
            f"""
import pickle
shm = pickle.loads({pickle.dumps(shm)!r})
assert shm.read_at(7, 0) == b"pickled", shm.read_at(7, 0)
assert not shm.unlinks_on_close
shm.write_at(b"answer!", 0)
shm.close()
del shm
print("ok")
"""
        )
        assert out == "ok\n"
        assert SharedMemory(name).read_at(7, 0) == b"answer!", "the receiver's close left the name"
        ro = pickle.loads(pickle.dumps(SharedMemory(name, readonly=True)))
        assert ro.readonly
        shm_copy = pickle.loads(pickle.dumps(shm))
        assert shm_copy.name == shm.name and not shm_copy.unlinks_on_close
    with pytest.raises(ValueError, match="closed"):
        pickle.dumps(shm)


# Ways a forked child can end; every one must leave the parent's state alone.
CHILD_EXITS = {
    "falls_off_the_end": "",
    "sys_exit": "sys.exit(0)",
    "exception": "raise RuntimeError('child fails')",
    "os_exit": "os._exit(0)",
    "sigterm": "os.kill(os.getpid(), signal.SIGTERM)",
    "close_then_exit": "shm.close(); arr.base.unlink() if False else None; sys.exit(0)",
}


@pytest.mark.parametrize("how", sorted(CHILD_EXITS))
def test_forked_child_never_undoes_the_parents_state(how: str) -> None:
    out = run_classified(
        f"""
import gc, os, signal, sys
import numpy as np
import shmbridge
from shmbridge import Mutex, SharedMemory

name = shmbridge.unique_name({PREFIX!r} + "_fork")
shm = SharedMemory(name, 4096, create=True)
arr = shmbridge.create_array(name + "_a", (8,), np.int64)
lock = Mutex.create(name + "_m")
assert lock.acquire(timeout=5)
parent = os.getpid()
pid = os.fork()
if pid == 0:
    # The child uses what it inherited, then ends its own way.
    shm.write_at(b"child", 0)
    arr[0] = 42
    try:
        lock.release()
        raise AssertionError("a child released its parent's lock")
    except RuntimeError:
        pass
    {CHILD_EXITS[how]}
else:
    _, status = os.waitpid(pid, 0)
    # The parent's names, lock and data survive every child exit path.
    assert SharedMemory(name).read_at(5, 0) == b"child"
    assert shmbridge.open_array(name + "_a")[0] == 42
    assert lock.locked()
    other = Mutex.open(name + "_m")
    assert not other.acquire(timeout=0.05), "the parent's lock was released by the child"
    lock.release()
    assert other.acquire(timeout=5)
    other.release()
    shm.close()
    SharedMemory(name + "_m").close()
    shmbridge.unlink(name + "_m")
    del arr
    gc.collect()
    for n in (name, name + "_a"):
        try:
            SharedMemory(n)
            raise AssertionError(f"{{n}} outlived its creator's close")
        except FileNotFoundError:
            pass
    print("parent ok", flush=True)
"""
    )
    assert "parent ok" in out


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_with_inherited_and_pickled_segments(
    method: str, name: str, tmp_path: pytest.TempPathFactory
) -> None:
    script = tmp_path / "mp_children.py"  # type: ignore[operator]
    script.write_text(
        textwrap.dedent(
            f"""
            import multiprocessing as mp
            from shmbridge import SharedMemory

            def child(shm, data):
                shm.write_at(data, 0)
                shm.close()              # a child's close never removes the parent's name

            if __name__ == "__main__":
                ctx = mp.get_context({method!r})
                shm = SharedMemory({name!r}, 64, create=True)
                p = ctx.Process(target=child, args=(shm, b"from child"))
                p.start()
                p.join(60)
                assert p.exitcode == 0, p.exitcode
                assert SharedMemory({name!r}).read_at(10, 0) == b"from child"
                with ctx.Pool(2) as pool:
                    pool.starmap(child, [(shm, b"from pool!")] * 4)
                assert SharedMemory({name!r}).read_at(10, 0) == b"from pool!"
                shm.close()
                print("ok")
            """
        )
    )
    out = run_classified(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')")
    assert out == "ok\n"
