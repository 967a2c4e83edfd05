"""The worker the Rust worker tests call: one handler per scenario."""

import os
import signal
import sys
import time

import numpy as np

from shmbridge import Event, Server

server = Server()


@server.register
def echo(**kwargs):
    return kwargs


@server.register("add")
def add_numbers(a, b):
    return a + b


@server.register
def fail(message):
    raise ValueError(message)


@server.register
def repeat(text, times):
    return text * times


@server.register
def noisy():
    print("print() goes to stderr, not into the protocol")
    os.write(1, b"a raw write to fd 1 too\n")
    sys.stdout.write('{"id": 1, "result": "forged"}\n')
    return "quiet"


@server.register
def slow(seconds):
    time.sleep(seconds)  # simulated work, longer than the caller's timeout
    return "late"


@server.register
def hold(started, release, seconds, exit_code=None):
    """Sets the event `started`, then reads no request until the event `release` is
    set (or `seconds` pass); then exits with `exit_code` if one is given."""
    Event.open(started).set()
    released = Event.open(release).wait(seconds)
    if exit_code is not None:
        sys.stderr.write("exiting after the hold\n")
        sys.stderr.flush()
        os._exit(exit_code)
    return released


@server.register
def exit_now(code):
    sys.stderr.write("exiting on purpose\n")
    sys.stderr.flush()
    os._exit(code)


@server.register
def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


@server.register
def process_buffer(shm, size):
    data = np.frombuffer(shm.buffer, dtype=np.uint8, count=size)
    return {"status": "done", "name": shm.name, "size": size, "sum": int(data.sum(dtype=np.uint64))}


@server.register
def double_array(arr):
    arr *= 2
    return {"shape": list(arr.shape), "dtype": arr.dtype.str}


@server.register
def write_anonymous(shm, text):
    shm.write_at(text.encode(), 0)
    return {"name": shm.name, "size": shm.size}


@server.register
def not_json():
    return {1, 2}


@server.register
def env(key):
    return os.environ.get(key)


@server.register
def cwd():
    return os.getcwd()


if __name__ == "__main__":
    server.serve()
