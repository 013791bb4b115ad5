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

A rename against an edit on S (the plan then transfers the edit from S to the old path,
which O no longer holds) is applied, where O tells a file by its inode, as the rename
plus the edit: the edited file is moved
on S, and the edit goes to O under the new name, over the moved file (whose version goes
to O's trash as any replaced one). Against a deletion on S there is nothing to move: the
moved file is transferred (a modification beats a deletion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from storsync.engine.compare import stamp_matches
from storsync.engine.reconcile import Move, Plan, Transfer
from storsync.model import BaseEntry, Capabilities, Entry, Side


@dataclass(frozen=True, slots=True)
class Candidate:
    """What may be one move on ``side``: its ``path``, which ``side`` holds as ``entry``
    (the base's version, or an edit of it: ``edited``), and the transfer to ``side`` of
    the new path, which the other side holds."""

    side: Side
    path: str
    entry: Entry
    edited: bool
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


Old = tuple[str, Entry, bool, BaseEntry]


def _old_paths(
    plan: Plan, base: Mapping[str, BaseEntry], side: Side, caps: Mapping[Side, Capabilities]
) -> Iterator[Old]:
    """The paths the other side no longer holds that ``side`` still does: as the base
    recorded them (a deletion is planned on ``side``) or edited (a transfer from it).

    An edited one only where the other side tells a file by more than its bytes (an
    inode): on an object store a deleted object and a new one with the same bytes look
    like a move, and carrying an edit over to the new name is then a guess."""
    for delete in plan.deletes(side):
        known = base.get(delete.path)
        if known is not None and stamp_matches(delete.entry, known, side, caps[side]):
            yield delete.path, delete.entry, False, known
    if not caps[side.other].inodes:
        return
    for transfer in plan.transfers(side.other):
        known = base.get(transfer.path)
        if known is not None and transfer.target is None and not transfer.conflict:
            yield transfer.path, transfer.source, True, known


Remembered = tuple[Side, Stamp, Old]  # an old path of a possible move on a side, by stamp


def remembered(
    plan: Plan, base: Mapping[str, BaseEntry], caps: Mapping[Side, Capabilities]
) -> Iterator[Remembered]:
    """The old paths of ``plan`` that a move could have left, each by the stamp a new
    path's source must show on the other side (one without a hash has no content to
    confirm a move by)."""
    for side in Side:
        observed = side.other
        for old in _old_paths(plan, base, side, caps):
            if old[3].hash is not None:
                yield side, _base_stamp(old[3], observed, caps[observed]), old


def new_stamp(transfer: Transfer, side: Side, caps: Mapping[Side, Capabilities]) -> Stamp | None:
    """The stamp by which a transfer to ``side`` may pair with an old path, or None: it
    cannot be a move (it replaces something, settles a conflict, or is too large)."""
    limit = caps[side].move_limit
    if transfer.target is not None or transfer.conflict:
        return None
    if limit is not None and transfer.source.size > limit:
        return None
    source = transfer.source
    return _stamp(source.size, source.mtime_ns, source.inode, source.etag, caps[side.other])


class Pairing:
    """The old paths of a plan gathered part by part, then paired with the new paths of
    the whole plan (runner.pairing holds them, or a partition of them at a time)."""

    def __init__(self, caps: Mapping[Side, Capabilities]) -> None:
        self.caps = caps
        self._old: dict[Side, dict[Stamp, list[Old]]] = {side: {} for side in Side}

    def add(self, found: Iterable[Remembered]) -> None:
        old = self._old
        for side, stamp, path in found:
            old[side].setdefault(stamp, []).append(path)

    def candidates(
        self, transfers: Callable[[Side], Iterable[tuple[int, Transfer]]]
    ) -> list[tuple[Side, int, Candidate]]:
        """The steps that may be moves, one new path (of ``transfers`` to a side, each
        with its place in the plan) to one old path, each with its side and that place;
        a stamp that several old paths share pairs none of them."""
        found: list[tuple[Side, int, Candidate]] = []
        for side in Side:
            old = self._old[side]
            if not old:
                continue  # a first sync reads no transfer again
            for at, transfer in transfers(side):
                stamp = new_stamp(transfer, side, self.caps)
                same = None if stamp is None else old.get(stamp)
                if same is None or len(same) != 1 or _nested(same[0][0], transfer.path):
                    continue
                path, entry, edited, known = same.pop()
                found.append((side, at, Candidate(side, path, entry, edited, transfer, known)))
        return found


def candidates(
    plan: Plan, base: Mapping[str, BaseEntry], caps: Mapping[Side, Capabilities]
) -> list[Candidate]:
    """The steps of ``plan`` that may be moves (``Pairing`` over one part)."""
    pairing = Pairing(caps)
    pairing.add(remembered(plan, base, caps))
    found = pairing.candidates(lambda side: enumerate(plan.transfers(side)))
    return [candidate for _, _, candidate in found]


def _nested(old: str, new: str) -> bool:
    """One name inside the other (``b`` to ``b/a``): the file itself stands in the way of
    the move, which a deletion and a transfer do not meet."""
    return new.startswith(f"{old}/") or old.startswith(f"{new}/")


def confirmed(candidate: Candidate, source: Entry, caps: Capabilities) -> Move | None:
    """The move, if ``source`` (the transfer's source, hashed) holds the base's bytes and
    executable bit; ``caps`` are those of the side it was read on."""
    known = candidate.base
    if source.hash is None or source.hash != known.hash or source.size != known.size:
        return None
    if caps.executable_bit and source.executable != known.executable:
        return None
    new_path = candidate.transfer.path
    return Move(candidate.side, candidate.path, new_path, candidate.entry, source, candidate.edited)


def dropped(moves: list[Move]) -> dict[str, set[str]]:
    """The paths whose steps ``moves`` take the place of, by list of a plan: the old
    path's deletion on the move's side (or, edited, its transfer from there) and the
    transfer of the new path to it."""
    found: dict[str, set[str]] = {}
    for m in moves:
        old = Plan.transfer_list(m.side.other) if m.edited else Plan.delete_list(m.side)
        found.setdefault(old, set()).add(m.path)
        found.setdefault(Plan.transfer_list(m.side), set()).add(m.new_path)
    return found


def added(moves: list[Move]) -> dict[str, list[Transfer]]:
    """The steps ``moves`` add, by list of a plan: an edited one takes the edit to the
    other side under the new name, over the moved file."""
    found: dict[str, list[Transfer]] = {}
    for m in moves:
        if m.edited:
            step = Transfer(m.new_path, m.entry, m.source)
            found.setdefault(Plan.transfer_list(m.side.other), []).append(step)
    return found


def apply(plan: Plan, moves: list[Move]) -> None:
    """Make ``moves`` part of ``plan``, in place of the steps they pair."""
    for name, paths in dropped(moves).items():
        setattr(plan, name, [s for s in getattr(plan, name) if s.path not in paths])
    for name, steps in added(moves).items():
        getattr(plan, name).extend(steps)
    plan.moves.extend(moves)
