"""The worker the crash campaign's Rust parent calls (crash role wparent)."""

from shmbridge import Server

server = Server()


@server.register
def work(n: int) -> int:
    # A little work per call, so that kills land mid-call as often as between calls.
    total = 0
    for i in range(2000):
        total += i * n
    return n + 1


server.serve()
