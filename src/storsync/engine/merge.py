"""The ordered merge of a whole session (SYNC.md "Scale"): the local listing, the remote
listing and the base, each in the byte order of the UTF-8 of its keys, become one triple
per path, so that each path is decided as the merge passes it and then forgotten.

Python compares ``str`` by code point, which is the byte order of their UTF-8 encodings:
keys are compared as they are. Every stream is checked as it goes; a key not after the
one before it raises OutOfOrder, before anything was changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from storsync.errors import OutOfOrder
from storsync.model import BaseEntry, Entry

Triple = tuple[str, Entry | None, Entry | None, BaseEntry | None]


def merged(
    local: Iterable[tuple[str, Entry]],
    remote: Iterable[tuple[str, Entry]],
    base: Iterable[tuple[str, BaseEntry]],
) -> Iterator[Triple]:
    """One (path, local, remote, base) per path any of the three holds, in key order."""
    # Written out for speed: this loop runs once per path of the tree.
    li, ri, bi = iter(local), iter(remote), iter(base)
    lp, le = next(li, _END)
    rp, re = next(ri, _END)
    bp, be = next(bi, _END)
    while True:
        if lp == rp == bp:  # the common case: a path all three hold
            if lp is None:
                return
            path = lp
            yield path, le, re, be
            lp, le = next(li, _END)
            rp, re = next(ri, _END)
            bp, be = next(bi, _END)
        else:
            path = min(p for p in (lp, rp, bp) if p is not None)
            lo = ro = bo = None
            if lp == path:
                lo = le
                lp, le = next(li, _END)
            if rp == path:
                ro = re
                rp, re = next(ri, _END)
            if bp == path:
                bo = be
                bp, be = next(bi, _END)
            yield path, lo, ro, bo
        # Each stream's next key must come after the one it just gave, ``path`` or less.
        if lp is not None and lp <= path:
            _out_of_order("the local listing", lp, path)
        if rp is not None and rp <= path:
            _out_of_order("the remote listing", rp, path)
        if bp is not None and bp <= path:
            _out_of_order("the base", bp, path)


_END: tuple[None, None] = (None, None)


def _out_of_order(what: str, key: str, last: str) -> None:
    raise OutOfOrder(
        f"{what} gave {key!r} after {last!r}, out of the order the session merges in; "
        "nothing was changed"
    )
