"""The Python half of the shared-array example: open by name alone, then create one."""

import sys

import numpy as np

import shmbridge

frame = shmbridge.open_array(sys.argv[1])  # dtype, shape and strides come from the segment
print(f"[python] opened {sys.argv[1]}: shape {frame.shape}, dtype {frame.dtype}, generation {frame.base.generation}", flush=True)
frame *= 2.0
frame.base.bump_generation()
print(f"[python] doubled it in place and bumped the generation to {frame.base.generation}", flush=True)

answer = shmbridge.create_array(sys.argv[2], (2, 3), np.int32, order="F", persist=True)
answer[...] = [[1, 2, 3], [4, 5, 6]]
print(f"[python] created {sys.argv[2]}: {answer.tolist()} in Fortran order", flush=True)
