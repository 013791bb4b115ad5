"""The scan stage: both sides listed once, in parallel, and filtered; what a side skipped
or cannot hold is taken out of the session; an object's mtime and bit are filled in from
the base while its ETag is the base's (a listing does not give them).

A whole session on a case-sensitive local side is one ordered pass (runner.stream). A
session of a few paths (``Scope``: a watch's, a remote check's) lists both sides and
reads the base at those paths only, so that all three cover the same paths: a path left
out of one and not of the others would read as deleted.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from storsync.engine.filters import PathFilter
from storsync.model import BaseEntry, Entry, Scope, Side, Skipped, StopSignal
from storsync.paths import outermost
from storsync.runner.context import SessionContext
from storsync.runner.scanned import Scanned, filled, leave_skipped_alone
from storsync.runner.stream import remote_differences, stored_keys, stream_scan
from storsync.storage.base import SkipReport


def scan_scope(ctx: SessionContext, scope: Scope, excluded: PathFilter, total: int) -> Scanned:
    """What the session decides over: everything, or the paths of its scope (``total``:
    how many paths the base records). A local side that cannot tell ``A`` from ``a``
    always looks at everything, since the remote spellings of a name are told apart only
    in a whole listing."""
    if scope.paths is None and ctx.local.caps.case_sensitive:
        return stream_scan(ctx, excluded, total)
    if scope.paths is None or not ctx.local.caps.case_sensitive:
        base = ctx.store.load_base(ctx.repository_id)
        return _settle(ctx, _both(ctx, base, excluded), excluded)
    if scope.remote_whole:
        return _remote_first(ctx, scope.paths, total, excluded)
    return _settle(ctx, _named(ctx, scope.paths, total, excluded), excluded)


def _named(ctx: SessionContext, named: frozenset[str], total: int, excluded: PathFilter) -> Scanned:
    """Both sides and the base at the named paths alone."""
    if not named:
        return Scanned({}, {}, {}, local_total=total, remote_total=total, base_total=total)
    tops = outermost(named)
    base = ctx.store.load_base_under(ctx.repository_id, tops)
    scanned = _both(ctx, base, excluded, tops)
    scanned.local_total = scanned.remote_total = scanned.base_total = total
    return scanned


def _remote_first(
    ctx: SessionContext, named: frozenset[str], total: int, excluded: PathFilter
) -> Scanned:
    """A remote check: the remote listed whole, then the local side where the remote
    differs from the base, or where notifications named a path.

    A listing whose digest is the one saved when the remote was last found equal to the
    base (a digest no write to the base has forgotten since) is equal to it still: the
    check then reads none of its keys, nor the base, and looks at the named paths alone.
    The listing is merged with the base in key order (runner.stream): a check holds what
    differs, not the tree; where too much differs it becomes a whole session.
    """
    saved = ctx.store.listing_digest(ctx.repository_id)
    probe = functools.partial(
        ctx.remote.listing_digest,
        ctx.stop,
        digest_kind(saved),
        total,
        stored_keys(ctx),
    )
    if ctx.retry(listing_unchanged, saved, probe, excluded.patterns):
        return _settle(ctx, _named(ctx, named, total, excluded), excluded)
    found = remote_differences(ctx, named, excluded, total)
    if found.digest and not found.differing and not found.skipped:
        # Equal, and nothing left out that a later check should report again.
        now_ns = ctx.clock.now_ns()
        salted = _salted(found.digest, excluded.patterns)
        ctx.store.save_listing_digest(ctx.repository_id, salted, now_ns)
    tops = outermost(named | found.differing)
    if len(tops) > Scope.MAX_PATHS:
        return stream_scan(ctx, excluded, total)
    ctx.report.skipped.extend(found.skipped)
    scanned = Scanned(
        _scan(ctx, Side.LOCAL, excluded, tops),
        found.remote,
        found.base,
        local_total=total,
        remote_total=found.remote_total,
        base_total=total,
    )
    return _settle(ctx, scanned, excluded)


def _both(
    ctx: SessionContext,
    base: dict[str, BaseEntry],
    excluded: PathFilter,
    tops: Sequence[str] | None = None,
) -> Scanned:
    """Both sides listed in parallel, whole or at ``tops``."""
    with ThreadPoolExecutor(1) as pool:
        remote = pool.submit(_scan, ctx, Side.REMOTE, excluded, tops)
        local = _scan(ctx, Side.LOCAL, excluded, tops)
        return Scanned(local, remote.result(), base)


def _settle(ctx: SessionContext, scanned: Scanned, excluded: PathFilter) -> Scanned:
    """Take out of the session what it must leave alone; fill in what listings lack."""
    base = scanned.base
    if excluded:
        scanned.base = {p: b for p, b in base.items() if not excluded.excluded(p)}
    _refuse_case_collisions(ctx, scanned)
    leave_skipped_alone(ctx.report.skipped, scanned.local, scanned.remote, scanned.base)
    for side in Side:
        if not ctx.storage(side).caps.listing_metadata:
            _fill_from_base(side, scanned.side(side), scanned.base)
    return scanned


def _scan(
    ctx: SessionContext, side: Side, excluded: PathFilter, tops: Sequence[str] | None = None
) -> dict[str, Entry]:
    storage = ctx.storage(side)
    scan = storage.scan if tops is None else functools.partial(storage.scan_under, tops)
    return _listed(ctx, side, excluded, scan)


def _listed(
    ctx: SessionContext,
    side: Side,
    excluded: PathFilter,
    scan: Callable[[SkipReport, StopSignal], dict[str, Entry]],
) -> dict[str, Entry]:
    skipped: list[Skipped] = []
    found = ctx.retry(scan, lambda p, r: skipped.append(Skipped(side, p, r)), ctx.stop)
    ctx.report.skipped.extend(skipped)  # one call: atomic under the GIL
    if excluded:
        found = {p: e for p, e in found.items() if not excluded.excluded(p)}
    return found


def listing_unchanged(saved: str, probe: Callable[[], str], excludes: Sequence[str]) -> bool:
    """Whether the remote's listing is the one whose digest (``saved``, the store's
    ``listing_digest``) a check found equal to the base, under these exclude patterns:
    ``probe`` (the remote's ``listing_digest`` of the saved digest's kind), a fraction of
    the cost of reading it."""
    return bool(saved) and _salted(probe(), excludes) == saved


def digest_kind(saved: str) -> str:
    """The kind of a saved digest ("": a listing read whole), that a probe lists as."""
    return saved.rpartition(":")[0]


def _salted(digest: str, excludes: Sequence[str]) -> str:
    """A listing's digest bound to the patterns it was compared under (a pattern changed
    since may take in a file the last check left out), keeping the digest's kind."""
    if not digest:
        return ""
    kind, colon, _ = digest.rpartition(":")
    salted = hashlib.blake2b(digest.encode(), digest_size=20)
    salted.update("\0".join(excludes).encode())
    return f"{kind}{colon}{salted.hexdigest()}"


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


def _fill_from_base(side: Side, entries: dict[str, Entry], base: Mapping[str, BaseEntry]) -> None:
    """Give an object whose ETag is the base's the mtime and bit its listing lacks."""
    for path, entry in entries.items():
        known = base.get(path)
        if known is not None:
            entries[path] = filled(side, entry, known)
