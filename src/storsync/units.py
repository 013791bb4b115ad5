"""Sizes and durations as a person reads them: the command line's summaries and progress,
the dashboard's pages. Binary units, as ``--bwlimit`` reads them (K, M, G: 1024, 1024², 1024³); the
``--json`` outputs keep exact integers."""

from __future__ import annotations

_BINARY = ("KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float) -> str:
    """``512 B``, ``1.2 MiB``: a count under 1 KiB exactly, else one decimal."""
    if n < 1024:
        return f"{int(n)} B"
    value = n / 1024
    for unit in _BINARY[:-1]:
        # Rounded first: 1023.96 KiB would print as "1024.0 KiB", which is 1.0 MiB.
        if round(value, 1) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_BINARY[-1]}"


def duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
