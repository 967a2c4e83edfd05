"""A worker that starts a process of its own which inherits its stderr and outlives
it (until the Event named in $HOLD_UNTIL is set): the worker's stderr pipe stays
open after the worker exits."""

import os
import subprocess
import sys

from shmbridge import Server

subprocess.Popen(
    [
        sys.executable,
        "-c",
        "import shmbridge, sys; shmbridge.Event.open(sys.argv[1]).wait(120)",
        os.environ["HOLD_UNTIL"],
    ],
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    start_new_session=True,
)

server = Server()


@server.register
def add(a, b):
    return a + b


@server.register
def die(code):
    sys.stderr.write("dying, my stderr held open\n")
    sys.stderr.flush()
    os._exit(code)


server.serve()
