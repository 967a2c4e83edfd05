"""A worker that never says it is ready: it waits for its stdin to close."""

import sys

sys.stdin.buffer.read()
