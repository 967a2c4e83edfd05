"""The Python half of the typed-slices example: memoryviews cast to the same types."""

import sys

from shmbridge import SharedMemory

with SharedMemory(sys.argv[1]) as shm:
    floats = shm.view("d")  # every float64 in the segment, zero-copy
    ints = shm.view("i", 4096, 4)
    shorts = shm.view("H", 6144, 3)
    print(f"[python] read f64 {floats[:2].tolist()}, i32 {ints.tolist()}, u16 {shorts.tolist()}", flush=True)

    shm.view("q", 16, 1)[0] = sum(ints) + sum(shorts)
    scaled = shm.view("f", 8000, 2)
    scaled[0], scaled[1] = floats[0] * 2, floats[1] * 2
    print(f"[python] wrote their sum {sum(ints) + sum(shorts)} as i64 at 16, doubled floats as f32 at 8000", flush=True)
    del floats, ints, shorts, scaled  # views may outlive close(); released here for tidiness
