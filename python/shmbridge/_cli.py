"""The ``shmbridge`` command, as installed with the Python package.

``shmbridge ls``, ``info NAME``, ``rm NAME...``, ``gc [--dry-run]`` and
``track`` (the reclaim tracker); ``--json`` on each. The work is done by the Rust
core (the same code as the standalone ``shmbridge`` binary); this module only
hands it the command line. ``python -m shmbridge._cli ...`` does the same as the
console script.
"""

from __future__ import annotations

import signal
import sys

from shmbridge import _native

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Runs the command line ``argv`` (``sys.argv`` by default); returns the exit status."""
    # A command-line tool: Ctrl-C ends it, and a closed pipe (``| head``) is quiet.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = list(sys.argv if argv is None else argv)
    args[0] = "shmbridge"
    sys.stdout.flush()
    return _native._cli(args)


if __name__ == "__main__":
    sys.exit(main())
