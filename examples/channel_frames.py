"""The Python half of the channel example: frames viewed in place, means sent back."""

import struct
import sys

import numpy as np

from shmbridge import Channel, Event

name, count = sys.argv[1], int(sys.argv[2])
frames, means = Channel.open(name), Channel.open(name + "_means")
Event.open(name + "_ready").set()

received = 0
first_seen = None
while True:
    try:
        message = frames.recv_view(timeout=60)
    except EOFError:  # Rust closed the channel: all frames are in
        break
    with message:
        frame = np.frombuffer(message, dtype=np.float32).reshape(480, 640)  # no copy
        if first_seen is None:
            first_seen = f"frame 0: shape {frame.shape}, mean {frame.mean():.1f}"
        mean = float(frame.mean(dtype=np.float64))
        del frame
    means.send(struct.pack("=d", mean))
    received += 1

print(f"[python] viewed {received} frames in place ({first_seen}); sent each mean back", flush=True)
assert received == count
