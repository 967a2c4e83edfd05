"""A seeded random walk over the whole Python API with hostile arguments.

Each seed runs in a fresh interpreter: it creates segments, arrays, channels and
synchronization objects, then calls random methods on random objects with random
arguments (negative, huge, NaN, wrong types, closed objects, views kept across
closes), dropping and collecting objects as it goes. Every call may raise an
``Exception`` (that is a clear error); what must never happen is a signal (a
crash), a hang, or a Rust panic reaching Python (PyO3's PanicException is not an
``Exception``, so it ends the run and fails the test).

``SHMBRIDGE_FUZZ_SEEDS`` / ``SHMBRIDGE_FUZZ_CALLS`` make a run longer.
"""

from __future__ import annotations

import os

import pytest
from conftest import PREFIX
from test_lifetimes import run_classified

SEEDS = int(os.environ.get("SHMBRIDGE_FUZZ_SEEDS", "4"))
CALLS = int(os.environ.get("SHMBRIDGE_FUZZ_CALLS", "3000"))

WALK = r"""
import gc, math, random, sys
import numpy as np
import shmbridge
from shmbridge import (Channel, Event, Mutex, Semaphore, SeqLock, SharedArray, SharedMemory,
                       shared_memory)

rng = random.Random(SEED)
names = []

def fresh():
    n = shmbridge.unique_name(PREFIX + "_fz")
    names.append(n)
    return n

INTS = [0, 1, -1, 2, 3, 7, 8, 9, 15, 16, 63, 64, 65, 4095, 4096, 4097, 2**31 - 1, 2**31, 2**32,
        2**62, 2**63 - 1, 2**63, 2**64, -2**63, -2**64, 10**30]
FLOATS = [0.0, 0.001, -0.5, -1.0, float("nan"), 1e-9, 1e300, -1e300]
TIMEOUTS = [0, 0.0, 0.001, -1, float("nan"), "1", -float("inf")]  # never None or +inf: no hang
FORMATS = ["B", "b", "d", "f", "i", "I", "q", "Q", "e", "?", "c", "P", "@d", "", "0i", "0s", "2i",
           "x", "<d", "!", "dd", "\x00", "é"]
DTYPES = ["|u1", "<f8", ">i4", "<c16", "|b1", "<f2", "<M8[s]", "|V4", "O", "<U3", "bogus", ""]

def anything():
    kind = rng.randrange(9)
    if kind == 0: return rng.choice(INTS)
    if kind == 1: return rng.choice(FLOATS)
    if kind == 2: return None
    if kind == 3: return bytes(rng.randrange(0, 300))
    if kind == 4: return bytearray(rng.randrange(0, 300))
    if kind == 5: return memoryview(bytes(rng.randrange(0, 64)))
    if kind == 6: return rng.choice(["", "x", "/x", "a/b", "\x00", "y" * 300])
    if kind == 7: return np.zeros(rng.randrange(0, 64), dtype=rng.choice(["u1", "f8", "i4"]))[::rng.choice([1, 2])]
    return rng.choice(pool) if pool else 0

def arg_for(param):
    if param in ("timeout",):
        return rng.choice(TIMEOUTS)
    if param in ("format",):
        return rng.choice(FORMATS)
    if param in ("dtype",):
        return rng.choice(DTYPES)
    if param in ("offset", "n", "count", "size", "whence", "value", "capacity", "max_messages"):
        return rng.choice(INTS) if rng.random() < 0.8 else anything()
    return anything()

def make():
    k = rng.randrange(12)
    size = rng.choice([1, 8, 64, 4096, 65536])
    if k == 0: return SharedMemory(fresh(), size, create=True, persist=rng.random() < 0.2)
    if k == 1 and names: return SharedMemory(rng.choice(names), readonly=rng.random() < 0.3)
    if k == 2: return shmbridge.create_array(fresh(), tuple(rng.randrange(0, 5) for _ in range(rng.randrange(0, 4))), rng.choice(["f8", "u1", "i4", "c8"]))
    if k == 3: return Channel.create(fresh(), rng.choice([64, 256, 4096]))
    if k == 4 and names: return Channel.open(rng.choice(names))
    if k == 5: return Event.create(fresh(), auto_reset=rng.random() < 0.5)
    if k == 6: return Semaphore.create(fresh(), rng.choice([0, 1, 5, 2**32 - 1]))
    if k == 7: return Mutex.create(fresh())
    if k == 8: return SeqLock.create(fresh(), rng.choice([1, 8, 13, 64]))
    if k == 9: return shared_memory.SharedMemory(create=True, size=size)
    if k == 10: return shared_memory.ShareableList([1, 2.5, b"x", "y", None, True][: rng.randrange(0, 6)])
    if k == 11 and pool:
        base = rng.choice(pool)
        for how in (memoryview, lambda o: np.frombuffer(o, np.uint8), lambda o: np.ndarray((1,), np.uint8, buffer=o)):
            try:
                return how(base)
            except Exception:
                pass
    return SharedMemory(fresh(), 64, create=True)

# Methods that may block: always called with a finite timeout argument.
BLOCKING = {"recv", "recv_view", "recv_batch", "send", "send_many", "loan", "wait", "acquire",
            "read", "write", "__next__", "__enter__"}
SKIP = {"__init__", "__new__", "__init_subclass__", "__subclasshook__", "__reduce_ex__",
        "__getattribute__", "__setattr__", "__delattr__", "__dir__", "__class__",
        "__format__", "__sizeof__", "serve", "__iter__", "__del__",
        # NumPy's methods that write files (the run happens in a scratch folder anyway)
        "tofile", "dump"}

pool = []
calls = errors = 0
for step in range(CALLS):
    r = rng.random()
    try:
        if r < 0.12 or not pool:
            pool.append(make())
            continue
        if r < 0.17:
            pool.pop(rng.randrange(len(pool)))
            if rng.random() < 0.3:
                gc.collect()
            continue
        obj = rng.choice(pool)
        methods = [m for m in dir(obj) if m not in SKIP and not m.startswith("_abc")]
        if not methods:
            continue
        name = rng.choice(methods)
        attr = getattr(obj, name)
        calls += 1
        if not callable(attr):
            continue
        if name in ("__next__", "__enter__") and isinstance(obj, (Channel, Mutex, Semaphore)):
            continue  # they wait without a timeout by design; covered by the timed forms
        if name in ("acquire",) and isinstance(obj, (Mutex, Semaphore)):
            attr(blocking=rng.random() < 0.5, timeout=rng.choice([0, 0.001])) if rng.random() < 0.5 else attr(False)
            continue
        if name == "wait":
            attr(timeout=rng.choice(TIMEOUTS))
            continue
        if name == "read" and isinstance(obj, SeqLock):
            attr(timeout=rng.choice(TIMEOUTS))
            continue
        if name == "write" and isinstance(obj, SeqLock):
            attr(arg_for("data"), timeout=rng.choice(TIMEOUTS))
            continue
        if name in BLOCKING and isinstance(obj, Channel):
            if name in ("recv", "recv_view"):
                attr(timeout=rng.choice(TIMEOUTS))
            elif name == "recv_batch":
                attr(rng.choice(INTS[:12]), timeout=rng.choice(TIMEOUTS))
            elif name == "send":
                attr(arg_for("data"), timeout=rng.choice(TIMEOUTS))
            elif name == "send_many":
                attr([arg_for("data") for _ in range(rng.randrange(0, 5))], timeout=rng.choice(TIMEOUTS))
            elif name == "loan":
                loan = attr(rng.choice(INTS[:14]), timeout=rng.choice(TIMEOUTS))
                pool.append(loan)
            continue
        nargs = rng.randrange(0, 4)
        args = [arg_for(p) for p in rng.sample(["offset", "n", "count", "size", "format", "data",
                                                  "whence", "value", "dtype"], nargs)]
        result = attr(*args)
        if result is not None and rng.random() < 0.3 and not isinstance(result, (int, float, str, bool)):
            pool.append(result)
    except Exception:
        errors += 1
    except KeyboardInterrupt:
        raise
    # PanicException (a BaseException) and SystemExit end the run: a failure.
    if len(pool) > 60:
        pool.pop(0)

del pool
gc.collect()
for n in names:
    try:
        shmbridge.unlink(n)
    except Exception:
        pass
print(f"seed {SEED}: {CALLS} steps, {calls} calls, {errors} clear errors, 0 signals", flush=True)
"""


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_api_walk_never_crashes_hangs_or_panics(seed: int, tmp_path: pytest.TempPathFactory) -> None:
    # In a scratch folder: random string arguments may name files.
    code = f"SEED = {seed}\nCALLS = {CALLS}\nPREFIX = {PREFIX!r}\n" + WALK
    out = run_classified(code, timeout=300, cwd=str(tmp_path))
    assert "0 signals" in out, out
