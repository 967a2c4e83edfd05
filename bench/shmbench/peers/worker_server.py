"""The worker the worker-call bench calls: one empty function."""

import os

from shmbridge import Server

if cpu := os.environ.get("SHMBENCH_PEER_CPU"):  # the bench pins each pair's ends apart
    os.sched_setaffinity(0, {int(cpu)})

server = Server()


@server.register
def empty() -> None:
    return None


server.serve()
