"""The hash stage: the content hashes the decisions depend on, and only those; and the
hashes that confirm a move."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from storsync.engine.compare import needs_hash, untouched
from storsync.engine.moves import Candidate, confirmed
from storsync.engine.reconcile import Move
from storsync.errors import ChangedError, StorageError
from storsync.model import Entry, Side
from storsync.runner.context import SessionContext
from storsync.runner.progress import Stage
from storsync.runner.scanned import Scanned

Wanted = tuple[Side, str, Entry]
CONFIRM_BATCH = 1_000  # candidates of moves confirmed at once


def hash_what_decides(ctx: SessionContext, scanned: Scanned) -> None:
    """Fill in the hashes of the entries whose decision depends on their content."""
    wanted = _wanted(ctx, scanned)
    if not wanted:
        return
    ctx.progress.stage = Stage.HASHING
    # A stop raises Stopped out of the files being hashed; the map then cancels those
    # still queued, so the pool's exit waits only for the few in flight.
    with ThreadPoolExecutor(ctx.settings.transfers) as pool:
        hashed = pool.map(lambda item: _digest(ctx, item), wanted)
        for (side, path, _), value in zip(wanted, hashed, strict=True):
            if value is not None:
                scanned.side(side)[path] = value


def confirm_moves(ctx: SessionContext, candidates: Iterable[Candidate]) -> Iterator[Move]:
    """The candidates whose moved file holds the bytes the base recorded for the old
    path: each new file hashed on the side it was moved on (unless its hash is known).
    Taken ``CONFIRM_BATCH`` at a time: a million moves are not held at once."""
    pending = iter(candidates)
    with ThreadPoolExecutor(ctx.settings.transfers) as pool:
        while batch := list(itertools.islice(pending, CONFIRM_BATCH)):
            ctx.progress.stage = Stage.HASHING
            wanted = [(c.side.other, c.transfer.path, c.transfer.source) for c in batch]
            hashed = pool.map(lambda item: item[2] if item[2].hash else _digest(ctx, item), wanted)
            for candidate, source in zip(batch, hashed, strict=True):
                caps = ctx.storage(candidate.side.other).caps
                if source is not None and (move := confirmed(candidate, source, caps)):
                    yield move


def _wanted(ctx: SessionContext, scanned: Scanned) -> list[Wanted]:
    checksum = ctx.settings.checksum
    local, remote, base = scanned.local, scanned.remote, scanned.base
    # Paths whose stamps are the base's on both sides need no hash (needs_hash says so
    # too): found in one pass instead of two needs_hash calls each.
    settled: set[str] = set()
    if not checksum:
        settled = {p for p, b in base.items() if untouched(local.get(p), remote.get(p), b)}
    wanted: list[Wanted] = []
    for side, mine, theirs in ((Side.LOCAL, local, remote), (Side.REMOTE, remote, local)):
        caps = ctx.storage(side).caps
        for path, entry in mine.items():
            if path in settled:
                continue
            if (checksum and entry.hash is None) or needs_hash(
                entry, theirs.get(path), base.get(path), side, caps
            ):
                wanted.append((side, path, entry))
    return wanted


def _digest(ctx: SessionContext, item: Wanted) -> Entry | None:
    side, path, entry = item
    storage = ctx.storage(side)
    ctx.stop.check()
    try:
        if not storage.caps.listing_metadata:
            # The decision compares the bit (and, for "newer", the mtime) that a listing
            # lacks: one HEAD gives them, and the stored hash if any.
            now = storage.stat(path)
            if now is None or now.etag != entry.etag:
                return None
            entry = entry._replace(mtime_ns=now.mtime_ns, executable=now.executable)
            if now.hash is not None:
                return entry._replace(hash=now.hash)
        return entry._replace(hash=storage.hash(path, entry, ctx.stop))
    except (ChangedError, StorageError):
        return None  # decided without the hash: safe, at worst a conflict copy
