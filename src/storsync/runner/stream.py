"""The scan of a whole session as one ordered pass (SYNC.md "Scale"): both sides walked in
key order (the remote's read ahead in a thread), merged with the base read in the same
order, each path looked at once. A path both sides still hold as the base recorded it is
counted and forgotten; what the plan must decide over is kept, a window of it in memory:
memory grows with the largest directory, not with the tree nor with what changed.

Kept beside the changes: a file whose name is a directory's on the way to a later path
(a file against a directory is decided over both), and the names of conflict copies (a
new copy's name must not be taken).

What is kept is cut into windows of about ``WINDOW_PATHS`` paths, each spilled to the
session's scratch file as the next begins (runner.scanned): a first sync of ten million
files holds a window, not ten million entries. A window ends only where no path kept
in it can be a directory of a later one (a file against a directory is decided within
one window).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

from storsync.engine.compare import stamp_matches, untouched
from storsync.engine.filters import PathFilter
from storsync.engine.merge import Triple, merged
from storsync.errors import ListingOutOfOrder
from storsync.model import BaseEntry, Entry, Side, Skipped
from storsync.paths import within
from storsync.runner.ahead import read_ahead
from storsync.runner.context import SessionContext
from storsync.runner.scanned import Scanned, filled
from storsync.storage.base import StoredKeys

CONFLICT_MARK = ".conflict-"
# Paths a window keeps before it may end. What a session holds of what changed is about
# 1.2 KB a path while it is decided; windows of 1,024 plan 200,000 new files in 25 MiB
# (all held: 256 MiB) and as fast (docs/benchmarks.md "The plan in windows").
WINDOW_PATHS = 1024


@dataclass
class _Pass:
    """What one pass of the merge kept and counted."""

    excluded: PathFilter
    keep_all: bool
    fill: tuple[Side, ...]  # sides whose listings lack what the base fills in
    window: int  # paths a window keeps before it may end
    kept: Scanned = field(default_factory=lambda: Scanned({}, {}, {}))
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    merged: int = 0
    # The paths on the way to the current one: each a string prefix of the next, so a
    # file against a directory is found as the directory's paths pass.
    _files: list[Triple] = field(default_factory=list)
    _in_window: int = 0

    def take(self, triples: Iterator[Triple]) -> None:
        # Written out for speed: this loop runs once per path of the tree.
        keep_all, fill, files = self.keep_all, self.fill, self._files
        excluded = self.excluded.excluded if self.excluded else None  # asked once, not per path
        merged = local = remote = base = 0
        for listed in triples:
            merged += 1
            path, lo, re, known = triple = listed
            if excluded is not None and excluded(path):
                continue
            if known is not None:
                base += 1
                if fill:
                    path, lo, re, known = triple = self._filled(listed)
            if lo is not None:
                local += 1
            if re is not None:
                remote += 1
            if CONFLICT_MARK in path:
                self.kept.conflict_names.add(path)
            while files and not path.startswith(files[-1][0]):
                files.pop()
            if not files and self._in_window >= self.window:
                # No kept path is a prefix of this one, so none is a directory of it or
                # of any later one (those between a path and its children start with it).
                self.kept.spill_window()
                self._in_window = 0
            under_a_file = bool(files) and self._under(path)
            files.append(triple)
            if under_a_file or keep_all or not untouched(lo, re, known):
                self._keep(triple)
        self.merged, self.counts = merged, [local, remote, base]

    def _under(self, path: str) -> bool:
        """Whether a file lies on the way to ``path``: then both are kept."""
        clash = False
        for file in self._files:
            if path[len(file[0])] == "/":
                self._keep(file)
                clash = True
        return clash

    def _keep(self, triple: Triple) -> None:
        path, lo, re, known = triple
        kept = self.kept
        if lo is not None:
            kept.local[path] = lo
        if re is not None:
            kept.remote[path] = re
        if known is not None:
            kept.base[path] = known
        self._in_window += 1

    def _filled(self, triple: Triple) -> Triple:
        path, lo, re, known = triple
        assert known is not None
        if Side.LOCAL in self.fill and lo is not None:
            lo = filled(Side.LOCAL, lo, known)
        if Side.REMOTE in self.fill and re is not None:
            re = filled(Side.REMOTE, re, known)
        return path, lo, re, known


def stream_scan(ctx: SessionContext, excluded: PathFilter, expected: int) -> Scanned:
    """The changes of the whole pair, with the totals the deletion guard needs
    (``expected``: the base's count, which a storage may walk a large tree by). A side
    whose listing turns out not to be in key order is listed again, whole, and sorted."""
    try:
        return ctx.retry(_one_pass, ctx, excluded, expected, sorted_sides=())
    except _Unordered as unordered:
        return ctx.retry(_one_pass, ctx, excluded, expected, sorted_sides=(unordered.side,))


def _in_order(listing: Iterator[tuple[str, Entry]], side: Side) -> Iterator[tuple[str, Entry]]:
    try:
        yield from listing
    except ListingOutOfOrder:
        raise _Unordered(side) from None


def _skipped(skipped: list[Skipped], side: Side, path: str, reason: str) -> None:
    skipped.append(Skipped(side, path, reason))


class _Unordered(Exception):
    def __init__(self, side: Side) -> None:
        self.side = side


def _one_pass(
    ctx: SessionContext, excluded: PathFilter, expected: int, sorted_sides: tuple[Side, ...]
) -> Scanned:
    skipped: list[Skipped] = []
    fill = tuple(side for side in Side if not ctx.storage(side).caps.listing_metadata)
    taken = _Pass(excluded, ctx.settings.checksum, fill, WINDOW_PATHS)

    def walk(side: Side) -> Iterator[tuple[str, Entry]]:
        storage = ctx.storage(side)
        skip = functools.partial(_skipped, skipped, side)
        if side in sorted_sides:
            return _in_order(storage.sorted_walk(skip, ctx.stop), side)

        return _in_order(storage.walk(skip, ctx.stop, expected, stored_keys(ctx)), side)

    # Both walks started before either is read: a large local tree's walking process
    # starts at once, not when the merge first asks it (50 ms later for 100,000 files).
    # A remote over the network is read ahead, its round trips beside the merge; a
    # local walk is not: two walks in two threads take longer than one after the other
    # under the interpreter's lock (1.8 s against 1.5 s for 100,000 files each). A large
    # local tree is walked by a process of its own (storage.local_walk).
    local, remote = walk(Side.LOCAL), walk(Side.REMOTE)
    ahead = read_ahead if ctx.remote.caps.network else contextlib.nullcontext
    with ahead(remote) as remote_ahead:
        base = ctx.store.walk_base(ctx.repository_id)
        taken.take(merged(local, remote_ahead, base))
    ctx.report.skipped.extend(skipped)  # one call: atomic under the GIL
    ctx.report.merged = taken.merged
    # What the scan skipped is taken out window by window, from the totals too
    # (Scanned.windows): a skip may be reported after paths under it were kept.
    scanned = taken.kept
    scanned.local_total, scanned.remote_total, scanned.base_total = taken.counts
    return scanned


@dataclass
class RemoteDifferences:
    """A remote check's pass over the whole remote listing and the base, in key order:
    where they differ, and the entries a session of those paths needs."""

    differing: set[str] = field(default_factory=set)
    # Entries at or under a differing or a named path: what a session of those paths
    # decides over (a differing file may stand where the other keys see a directory).
    remote: dict[str, Entry] = field(default_factory=dict)
    base: dict[str, BaseEntry] = field(default_factory=dict)
    remote_total: int = 0
    digest: str = ""
    skipped: list[Skipped] = field(default_factory=list)


def stored_keys(ctx: SessionContext) -> StoredKeys:
    """The base's every n-th key, asked only by a storage that cuts a large listing."""

    def stored(step: int) -> list[str]:
        return ctx.store.base_every(ctx.repository_id, step)

    return stored


def remote_differences(
    ctx: SessionContext, named: frozenset[str], excluded: PathFilter, expected: int
) -> RemoteDifferences:
    """Merge the remote's listing, digested, with the base (of ``expected`` paths); keep
    what differs."""
    try:
        return ctx.retry(_remote_pass, ctx, named, excluded, expected, sort=False)
    except _Unordered:
        return ctx.retry(_remote_pass, ctx, named, excluded, expected, sort=True)


def _remote_pass(
    ctx: SessionContext, named: frozenset[str], excluded: PathFilter, expected: int, *, sort: bool
) -> RemoteDifferences:
    found = RemoteDifferences()
    remote = ctx.remote
    skip = functools.partial(_skipped, found.skipped, Side.REMOTE)
    if sort:
        listing, digest = remote.sorted_walk_digested(skip, ctx.stop)
    else:
        listing, digest = remote.walk_digested(skip, ctx.stop, expected, stored_keys(ctx))
    fill, caps = not remote.caps.listing_metadata, remote.caps
    on_the_way: list[str] = []  # differing paths on the way to the current one
    try:
        for path, _, listed, known in merged((), listing, ctx.store.walk_base(ctx.repository_id)):
            if excluded and excluded.excluded(path):
                continue
            entry = listed
            if entry is not None:
                found.remote_total += 1
                if fill and known is not None:
                    entry = filled(Side.REMOTE, entry, known)
            while on_the_way and not path.startswith(on_the_way[-1]):
                on_the_way.pop()
            under = any(path[len(d)] == "/" for d in on_the_way)
            differs = (
                entry is None or known is None or not stamp_matches(entry, known, Side.REMOTE, caps)
            )
            if differs:
                found.differing.add(path)
                on_the_way.append(path)
            if differs or under or (named and within(path, named)):
                if entry is not None:
                    found.remote[path] = entry
                if known is not None:
                    found.base[path] = known
    except ListingOutOfOrder:
        raise _Unordered(Side.REMOTE) from None
    found.digest = digest()
    return found
