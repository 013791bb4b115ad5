"""Renames and moves (SYNC.md, "Scale"): a file moved on one side is moved the same way on
the other side, instead of deleted there and transferred again.

Reconciliation sees a move on side O as a deletion on the other side S (the old path,
which S still holds as the base recorded it) and a transfer to S (the new path, which S
does not hold). The pairs are found after the plan is made, since the two paths lie far
apart in any order: a transfer's source whose stamp on O is the one the base recorded for
the deleted path (on a directory, size, mtime and inode, which a rename keeps; on an
object store, size and ETag, which a server-side copy keeps) is a candidate, and the
runner confirms it by the content hash before it becomes a move. A move is never counted
by the delete guard: nothing is lost by it.

Only a path that S still holds as the base recorded it is moved: against an edit on S,
the edit is kept (transferred or not as the table says) and the moved file is
transferred as a new one; against a deletion on S, there is nothing to move and the
moved file is transferred.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from storsync.engine.compare import stamp_matches
from storsync.engine.reconcile import Delete, Move, Plan, Transfer
from storsync.model import BaseEntry, Capabilities, Entry, Side


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deletion on ``side`` and a transfer to it that may be one move there."""

    side: Side
    delete: Delete
    transfer: Transfer
    base: BaseEntry


Stamp = tuple[object, ...]


def _stamp(
    size: int, mtime_ns: int, inode: int | None, etag: str | None, caps: Capabilities
) -> Stamp:
    if caps.etags:
        return (size, etag)
    return (size, mtime_ns, inode if caps.inodes else None)


def _base_stamp(base: BaseEntry, observed: Side, caps: Capabilities) -> Stamp:
    if observed is Side.LOCAL:
        return _stamp(base.size, base.local_mtime_ns, base.local_inode, base.local_etag, caps)
    return _stamp(base.size, base.remote_mtime_ns, base.remote_inode, base.remote_etag, caps)


def candidates(
    plan: Plan, base: Mapping[str, BaseEntry], caps: Mapping[Side, Capabilities]
) -> list[Candidate]:
    """The deletions and transfers of ``plan`` that may be moves, one transfer to one
    deletion; a stamp that several deleted paths share pairs none of them."""
    found: list[Candidate] = []
    for side in Side:
        observed = side.other
        deleted: dict[Stamp, list[tuple[Delete, BaseEntry]]] = {}
        for delete in plan.deletes(side):
            known = base.get(delete.path)
            if known is None or known.hash is None:
                continue  # no content to confirm a move by
            if not stamp_matches(delete.entry, known, side, caps[side]):
                continue  # an edit on this side: kept, not moved
            deleted.setdefault(_base_stamp(known, observed, caps[observed]), []).append(
                (delete, known)
            )
        limit = caps[side].move_limit
        for transfer in plan.transfers(side):
            if transfer.target is not None or transfer.conflict:
                continue
            if limit is not None and transfer.source.size > limit:
                continue
            source = transfer.source
            stamp = _stamp(source.size, source.mtime_ns, source.inode, source.etag, caps[observed])
            same = deleted.get(stamp)
            if same is not None and len(same) == 1:
                delete, known = same.pop()
                found.append(Candidate(side, delete, transfer, known))
    return found


def confirmed(candidate: Candidate, source: Entry, caps: Capabilities) -> Move | None:
    """The move, if ``source`` (the transfer's source, hashed) holds the base's bytes and
    executable bit; ``caps`` are those of the side it was read on."""
    known = candidate.base
    if source.hash is None or source.hash != known.hash or source.size != known.size:
        return None
    if caps.executable_bit and source.executable != known.executable:
        return None
    delete = candidate.delete
    return Move(candidate.side, delete.path, candidate.transfer.path, delete.entry, source)


def apply(plan: Plan, moves: list[Move]) -> None:
    """Make ``moves`` part of ``plan``, in place of their deletions and transfers."""
    for side in Side:
        mine = [m for m in moves if m.side is side]
        if not mine:
            continue
        gone = {m.path for m in mine}
        arriving = {m.new_path for m in mine}
        deletes = [d for d in plan.deletes(side) if d.path not in gone]
        transfers = [t for t in plan.transfers(side) if t.path not in arriving]
        if side is Side.LOCAL:
            plan.delete_local, plan.pull = deletes, transfers
        else:
            plan.delete_remote, plan.push = deletes, transfers
    plan.moves.extend(moves)
