"""Numbers as the reports print them (pure functions: the README test uses them)."""

from __future__ import annotations


def time_ns(ns: float | None) -> str:
    if ns is None:
        return "n/a"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def rate(ns_per_message: float | None) -> str:
    """Messages per second from ns per message."""
    if not ns_per_message:
        return "n/a"
    per_second = 1e9 / ns_per_message
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.3g} {unit}/s"
    return f"{per_second:.3g} /s"


def bandwidth(ns: float | None, size: int) -> str:
    if not ns:
        return "n/a"
    return f"{size / ns:.3g} GB/s"


def ratio(r: float | None) -> str:
    if r is None:
        return "n/a"
    if r >= 10:
        return f"{r:.3g}"
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def percent(fraction: float | None) -> str:
    if fraction is None:
        return "n/a"
    return f"{100 * fraction:.2g} %" if fraction < 0.1 else f"{100 * fraction:.0f} %"


def size(n: int | None) -> str:
    if n is None:
        return ""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"
