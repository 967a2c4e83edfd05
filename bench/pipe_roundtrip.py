"""The reference for the worker bench: a round trip over multiprocessing.Pipe
between two Python processes (an empty request, an empty answer, pickled).
Prints the round-trip times in nanoseconds as a JSON list.

Usage: pipe_roundtrip.py CALLS
"""

import json
import sys
import time
from multiprocessing import Pipe, Process


def echo(conn) -> None:  # the child: answers every request with None
    while (request := conn.recv()) is not None:
        conn.send(None)


if __name__ == "__main__":
    calls = int(sys.argv[1])
    parent, child = Pipe()
    proc = Process(target=echo, args=(child,))
    proc.start()
    for _ in range(100):  # warm up
        parent.send(("empty", {}))
        parent.recv()
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        parent.send(("empty", {}))
        parent.recv()
        times.append(time.perf_counter_ns() - start)
    parent.send(None)
    proc.join()
    print(json.dumps(times))
