"""What a scan gives the plan: the entries of both sides and the base it decides over,
the totals the deletion guard measures against, and what every scan takes out of it.

A large ordered scan (runner.stream) gives them in windows, in key order: each window is
decided alone, and all but the last are spilled to the session's scratch file, so that
what a session holds grows with a window, not with what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from storsync.model import BaseEntry, Entry, Side, Skipped
from storsync.paths import normalize, parents
from storsync.runner.spill import Handle, Spill


@dataclass
class Scanned:
    local: dict[str, Entry]
    remote: dict[str, Entry]
    base: dict[str, BaseEntry]
    # What the deletion guard measures against: how many files each side and the base
    # hold in all. A session of a few paths takes a side it did not list whole as the
    # whole base (None: the map's own size).
    local_total: int | None = None
    remote_total: int | None = None
    base_total: int | None = None
    # Paths of conflict copies the maps may lack (left out as unchanged): a new copy's
    # name must not be one of them.
    conflict_names: set[str] = field(default_factory=set)
    # The windows before the one above, in key order, in ``spill``.
    spilled: list[Handle] = field(default_factory=list)
    spill: Spill = field(default_factory=Spill)

    def windows(self, skipped: list[Skipped]) -> Iterator[Scanned]:
        """Each window in key order (the maps above last), with what the scan skipped
        taken out of it and of the totals."""
        for handle in self.spilled:
            yield self._settled(_window(self.spill.get(handle)), skipped)
        yield self._settled(self, skipped)

    def spill_window(self) -> None:
        """Move the maps above to the spill: a new window starts."""
        self.spilled.append(self.spill.put(_record(self.local, self.remote, self.base)))
        self.local, self.remote, self.base = {}, {}, {}

    def _settled(self, window: Scanned, skipped: list[Skipped]) -> Scanned:
        gone = leave_skipped_alone(skipped, window.local, window.remote, window.base)
        if any(gone) and self.local_total is not None:  # else the maps' sizes are the totals
            local, remote, base = self.totals()
            self.local_total, self.remote_total, self.base_total = (
                local - gone[0],
                remote - gone[1],
                base - gone[2],
            )
        return window

    def side(self, side: Side) -> dict[str, Entry]:
        return self.local if side is Side.LOCAL else self.remote

    def totals(self) -> tuple[int, int, int]:
        """The local, remote and base totals."""
        return (
            len(self.local) if self.local_total is None else self.local_total,
            len(self.remote) if self.remote_total is None else self.remote_total,
            len(self.base) if self.base_total is None else self.base_total,
        )


def _record(
    local: dict[str, Entry], remote: dict[str, Entry], base: dict[str, BaseEntry]
) -> tuple[Any, ...]:
    """A window as plain tuples, which marshal writes (a named tuple it refuses)."""
    return tuple([(p, tuple(e)) for p, e in side.items()] for side in (local, remote, base))


def _window(record: tuple[Any, ...]) -> Scanned:
    local, remote, base = record
    return Scanned(_entries(Entry, local), _entries(Entry, remote), _entries(BaseEntry, base))


def _entries(kind: type[Any], items: list[tuple[str, tuple[Any, ...]]]) -> dict[str, Any]:
    if not items:
        return {}
    paths, fields = zip(*items, strict=True)
    # tuple's own constructor makes the named tuples: a third of the time of ``_make``.
    return dict(zip(paths, map(tuple.__new__, repeat(kind), fields), strict=True))


def leave_skipped_alone(
    skipped_items: list[Skipped], *maps: dict[str, Entry] | dict[str, BaseEntry]
) -> list[int]:
    """Take every path a scan skipped, and what lies under it, out of this session.

    A skipped path (a link, a special file, an unreadable folder, a refused name) is
    not a deletion: its base row and the other side's file stay as they are. Names are
    compared in NFC: a refused spelling also holds back its normalized twin. How many
    paths each map lost.
    """
    skipped = {normalize(s.path) for s in skipped_items}
    if not skipped:
        return [0] * len(maps)
    everything = "." in skipped
    removed = []
    for mapping in maps:
        gone = [
            p
            for p in mapping
            if everything or p in skipped or any(d in skipped for d in parents(p))
        ]
        for path in gone:
            del mapping[path]
        removed.append(len(gone))
    return removed


def filled(side: Side, entry: Entry, known: BaseEntry) -> Entry:
    """An object whose ETag is the base's, with the mtime and bit its listing lacks."""
    if entry.size != known.size:
        return entry
    then = known.stamp(side)
    if entry.etag is not None and entry.etag == then.etag:
        return entry._replace(mtime_ns=then.mtime_ns, executable=then.executable)
    return entry
