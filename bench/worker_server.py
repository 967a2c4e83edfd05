"""The worker the round-trip bench calls: one empty function."""

from shmbridge import Server

server = Server()


@server.register
def empty() -> None:
    return None


server.serve()
