"""As dies_after_handshake.py, but a child of the worker keeps the worker's stdin and
stdout open after it died (until the caller closes the requests pipe): the end of
the pipe cannot tell the caller; the worker's exit must."""

import json
import os
import subprocess
import sys

# Holds stdin and stdout (inherited) and reads stdin to its end; stderr is not its.
subprocess.Popen(
    [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"],
    stderr=subprocess.DEVNULL,
)
ready = {"ready": True, "protocol": 1, "pid": os.getpid(), "functions": ["add"]}
sys.stdout.write(json.dumps(ready) + "\n")
sys.stdout.flush()
sys.stderr.write("dying with my pipes held open\n")
sys.stderr.flush()
os._exit(6)
