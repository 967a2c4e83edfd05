"""The example pairs and the demo run as documented: each Rust side starts its
Python partner, and both report what they saw."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import DEADLINE, cargo_binary


def run_example(binary: str) -> str:
    exe = cargo_binary("shmbridge-examples", binary)
    env = dict(os.environ, SHMBRIDGE_PYTHON=sys.executable)
    result = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=4 * DEADLINE)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("binary", "python_saw", "rust_saw"),
    [
        ("hello", "[python] read b'Hello from Rust!'", "read Python's answer: \"Hello from Python!\""),
        ("typed_slices", "i32 [1, -2, 3, -4]", "i64 sum 22 at 16"),
        ("numpy_array", "arr[999, 999] = 999999.0", "every element doubled: true"),
        ("header_layout", "header says 52 bytes", "A MESSAGE WHOSE LENGTH"),
        ("shared_array", "shape (1000, 1000), dtype float64", "order F, strides [4, 8], memory [1, 4, 2, 5, 3, 6]"),
        ("process_buffer", "[python] process_buffer read 64 MiB", 'answered status "done" and checksum 8556380160'),
        ("channel_frames", "[python] viewed 100 frames in place", "all 100 means came back"),
    ],
)
def test_example_pair(binary: str, python_saw: str, rust_saw: str) -> None:
    out = run_example(binary)
    assert python_saw in out, out
    assert rust_saw in out, out


def test_demo_runs_every_pair() -> None:
    out = run_example("demo")
    assert out.count("\n== ") == 7 and out.rstrip().endswith("all 7 examples passed"), out
