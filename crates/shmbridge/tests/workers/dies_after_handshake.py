"""A worker that says it is ready and dies before it receives anything: the caller
must get WorkerExited (status 5, this stderr) at once, whatever the transport."""

import json
import os
import sys

ready = {"ready": True, "protocol": 1, "pid": os.getpid(), "functions": ["add"]}
sys.stdout.write(json.dumps(ready) + "\n")
sys.stdout.flush()
sys.stderr.write("dying before the first request\n")
sys.stderr.flush()
os._exit(5)
