"""Defaults as ``help()`` should print them.

``inspect.signature`` turns the text signature of a native function into Python
values, so a default written ``0o600`` comes back as ``384``, and ``help()`` shows
``mode=384``. The native signatures name :data:`OWNER_ONLY` instead, an int that
prints itself in octal, so that help shows ``mode=0o600``, as the docs write it.
"""

from __future__ import annotations


class Octal(int):
    """An ``int`` whose ``repr`` is octal (``0o600``): for permission bits."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"0o{int(self):o}"


OWNER_ONLY = Octal(0o600)
"""The default ``mode`` of created segments: read and write for the owner only."""
