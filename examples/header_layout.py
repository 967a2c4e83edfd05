"""The Python half of the header-layout example: size-prefixed messages."""

import struct
import sys

from shmbridge import SharedMemory

shm = SharedMemory(sys.argv[1])
answer_at = int(sys.argv[2])

size = struct.unpack(">Q", shm.read(8))[0]
data = shm.read(size)
print(f"[python] header says {size} bytes; read {data.decode()!r}", flush=True)

answer = data.upper()
shm.write_at(struct.pack(">Q", len(answer)) + answer, answer_at)
print(f"[python] answered {len(answer)} bytes at {answer_at}, same layout", flush=True)
shm.close()
