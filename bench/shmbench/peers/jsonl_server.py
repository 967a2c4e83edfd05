"""A hand-written JSON-lines server, the reference for the worker's pipe transport:
each request line `{"id": N, "function": ..., "args": ...}` on stdin is answered
with `{"id": N, "result": null}` on stdout."""

import json
import os
import sys

if cpu := os.environ.get("SHMBENCH_PEER_CPU"):  # the bench pins each pair's ends apart
    os.sched_setaffinity(0, {int(cpu)})

for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.write(json.dumps({"id": request["id"], "result": None}) + "\n")
    sys.stdout.flush()
