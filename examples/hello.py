"""The Python half of the spec's basic usage (run by `--bin hello` or the demo)."""

import sys

from shmbridge import SharedMemory

shm = SharedMemory(sys.argv[1], 1024 * 1024)  # open the existing segment

data = shm.read(16)
print(f"[python] read {data!r}", flush=True)
assert data == b"Hello from Rust!", data

shm.seek(0)
shm.write(b"Hello from Python!")
print("[python] wrote b'Hello from Python!' at offset 0", flush=True)

shm.close()
