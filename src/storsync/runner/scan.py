"""The scan stage: both sides listed once, in parallel, and filtered; what a side skipped
or cannot hold is taken out of the session; an object's mtime and bit are filled in from
the base while its ETag is the base's (a listing does not give them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from storsync.engine.filters import PathFilter
from storsync.model import BaseEntry, Entry, Side, Skipped
from storsync.paths import normalize, parents
from storsync.runner.context import SessionContext


@dataclass
class Scanned:
    local: dict[str, Entry]
    remote: dict[str, Entry]
    base: dict[str, BaseEntry]

    def side(self, side: Side) -> dict[str, Entry]:
        return self.local if side is Side.LOCAL else self.remote


def scan_both(ctx: SessionContext, base: dict[str, BaseEntry], excluded: PathFilter) -> Scanned:
    """Both sides as the session will decide them, and the base of the paths it covers."""
    with ThreadPoolExecutor(1) as pool:
        remote = pool.submit(_scan, ctx, Side.REMOTE, excluded)
        local = _scan(ctx, Side.LOCAL, excluded)
        scanned = Scanned(local, remote.result(), base)
    if excluded:
        scanned.base = {p: b for p, b in base.items() if not excluded.excluded(p)}
    _refuse_case_collisions(ctx, scanned)
    _leave_skipped_alone(ctx.report.skipped, scanned.local, scanned.remote, scanned.base)
    for side in Side:
        if not ctx.storage(side).caps.listing_metadata:
            _fill_from_base(side, scanned.side(side), scanned.base)
    return scanned


def _scan(ctx: SessionContext, side: Side, excluded: PathFilter) -> dict[str, Entry]:
    skipped: list[Skipped] = []
    storage = ctx.storage(side)
    found = ctx.retry(storage.scan, lambda p, r: skipped.append(Skipped(side, p, r)), ctx.stop)
    ctx.report.skipped.extend(skipped)  # one call: atomic under the GIL
    if excluded:
        found = {p: e for p, e in found.items() if not excluded.excluded(p)}
    return found


def _refuse_case_collisions(ctx: SessionContext, scanned: Scanned) -> None:
    """Where the local side cannot tell ``A`` from ``a``, one remote spelling per name.

    The spelling kept is the one the local side (else the base) already has, else the
    first in order; the others are refused with a log item, and so left alone.
    """
    if ctx.local.caps.case_sensitive:
        return
    spellings: dict[str, list[str]] = {}
    for path in scanned.remote:
        spellings.setdefault(path.casefold(), []).append(path)
    for paths in spellings.values():
        if len(paths) < 2:
            continue
        paths.sort()
        kept = next((p for p in paths if p in scanned.local), None)
        kept = kept or next((p for p in paths if p in scanned.base), paths[0])
        reason = f"differs only by case from {kept}, which the local file system cannot tell apart"
        ctx.report.skipped.extend(Skipped(Side.REMOTE, p, reason) for p in paths if p != kept)


def _leave_skipped_alone(
    skipped_items: list[Skipped], *maps: dict[str, Entry] | dict[str, BaseEntry]
) -> None:
    """Take every path a scan skipped, and what lies under it, out of this session.

    A skipped path (a link, a special file, an unreadable folder, a refused name) is
    not a deletion: its base row and the other side's file stay as they are. Names are
    compared in NFC: a refused spelling also holds back its normalized twin.
    """
    skipped = {normalize(s.path) for s in skipped_items}
    if not skipped:
        return
    everything = "." in skipped
    for mapping in maps:
        for path in [
            p
            for p in mapping
            if everything or p in skipped or any(d in skipped for d in parents(p))
        ]:
            del mapping[path]


def _fill_from_base(side: Side, entries: dict[str, Entry], base: Mapping[str, BaseEntry]) -> None:
    """Give an object whose ETag is the base's the mtime and bit its listing lacks."""
    for path, entry in entries.items():
        known = base.get(path)
        if known is None or entry.size != known.size:
            continue
        then = known.stamp(side)
        if entry.etag is not None and entry.etag == then.etag:
            entries[path] = dataclasses.replace(
                entry, mtime_ns=then.mtime_ns, executable=then.executable
            )
