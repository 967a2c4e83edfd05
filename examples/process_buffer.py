"""The Python half of the spec's coordination example: a worker that registers
process_buffer; the Rust side starts it and calls it."""

import numpy as np

from shmbridge import Server, SharedMemory

server = Server()


@server.register
def process_buffer(shm_name: str, size: int) -> dict:
    shm = SharedMemory(shm_name, size)
    data = np.frombuffer(shm.buffer, dtype=np.uint8, count=size)  # no copy
    checksum = int(data.sum(dtype=np.uint64))
    # A worker's prints go to its stderr (stdout carries the protocol), so it
    # reports what it saw in its answer.
    saw = f"{size >> 20} MiB from {shm_name} without a copy, checksum {checksum}"
    del data
    shm.close()
    return {"status": "done", "checksum": checksum, "saw": saw}


@server.register
def first_bytes(shm: SharedMemory, n: int) -> list:
    return list(shm.read_at(n, 0))


if __name__ == "__main__":
    server.serve()
