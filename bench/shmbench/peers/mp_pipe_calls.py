"""The Python reference for a worker call: a request/response over
multiprocessing.Pipe between two Python processes (an empty request, an empty
answer, pickled). For each line N on stdin, makes N calls (after a few warm-up
ones) and prints their round-trip times in ns as a JSON list; ends at EOF.
"""

import json
import os
import sys
import time
from multiprocessing import Pipe, Process


def serve(conn) -> None:  # type: ignore[no-untyped-def]
    if cpu := os.environ.get("SHMBENCH_PEER_CPU"):  # the bench pins each pair's ends apart
        os.sched_setaffinity(0, {int(cpu)})
    while conn.recv() is not None:
        conn.send(None)


if __name__ == "__main__":
    here, there = Pipe()
    server = Process(target=serve, args=(there,))
    server.start()
    clock = time.perf_counter_ns
    for line in sys.stdin:
        for _ in range(50):
            here.send(("empty", {}))
            here.recv()
        times = []
        for _ in range(int(line)):
            start = clock()
            here.send(("empty", {}))
            here.recv()
            times.append(clock() - start)
        print(json.dumps(times), flush=True)
    here.send(None)
    server.join()
