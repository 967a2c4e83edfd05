"""The Python half of the NumPy example: a zero-copy array over the segment."""

import sys

import numpy as np

from shmbridge import SharedMemory

shm = SharedMemory(sys.argv[1], 1000 * 1000 * 8)

# Create NumPy array backed by shared memory
arr = np.frombuffer(shm.buffer, dtype=np.float64).reshape(1000, 1000)
print(f"[python] array {arr.shape} {arr.dtype}, arr[999, 999] = {arr[999, 999]}", flush=True)

arr *= 2.0  # Rust can now see the doubled values
result = np.sum(arr)
print(f"[python] doubled in place; sum = {result:.1f}", flush=True)

shm.close()  # arr stays valid: the mapping goes when arr does
assert arr[1, 0] == 2000.0
