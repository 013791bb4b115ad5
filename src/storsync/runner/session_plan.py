"""A session's whole plan, made window by window (runner.scanned): its parts in key
order, every part but the last spilled to the session's scratch file, with exact totals
from the start (each part is counted as it is added). The moves paired across parts and
an approval's choice of deletions are applied as each part is read back.

Memory grows with one part, the moves and the paths in conflict, not with the plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

from storsync.engine import moves as moving
from storsync.engine.reconcile import Delete, KeepBoth, Move, Plan, Record, Rename, Transfer
from storsync.model import Entry, Side
from storsync.runner.spill import Handle, Spill

# The lists of a part, each spilled apart: a step of the execution reads one of them.
STEPS = tuple(f.name for f in fields(Plan) if f.name != "moves")
_BYTES = ("push", "pull")


def _entry(t: tuple[Any, ...]) -> Entry:
    return tuple.__new__(Entry, t)


def _maybe(t: tuple[Any, ...] | None) -> Entry | None:
    return None if t is None else tuple.__new__(Entry, t)


def _tuple(e: Entry | None) -> tuple[Any, ...] | None:
    return None if e is None else tuple(e)


# Each list of a part as tuples of plain values, and back (marshal refuses the engine's
# classes and named tuples).
_ENCODE: dict[str, Callable[[Any], Any]] = {
    "push": lambda t: (t.path, tuple(t.source), _tuple(t.target), t.conflict, t.keep_replaced),
    "delete_local": lambda d: (d.path, tuple(d.entry)),
    "renames": lambda r: (r.side.value, r.path, r.new_path, tuple(r.entry)),
    "keep_both": lambda k: (k.path, k.copy_path, tuple(k.local), tuple(k.remote)),
    "record": lambda r: (r.path, tuple(r.local), tuple(r.remote), r.hash),
    "forget": str,
}
_DECODE: dict[str, Callable[[Any], Any]] = {
    "push": lambda t: Transfer(t[0], _entry(t[1]), _maybe(t[2]), t[3], t[4]),
    "delete_local": lambda t: Delete(t[0], _entry(t[1])),
    "renames": lambda t: Rename(Side(t[0]), t[1], t[2], _entry(t[3])),
    "keep_both": lambda t: KeepBoth(t[0], t[1], _entry(t[2]), _entry(t[3])),
    "record": lambda t: Record(t[0], _entry(t[1]), _entry(t[2]), t[3]),
    "forget": str,
}
for _same, _as in (("pull", "push"), ("delete_remote", "delete_local"), ("conflicts", "forget")):
    _ENCODE[_same], _DECODE[_same] = _ENCODE[_as], _DECODE[_as]


def _not_at(paths: set[str]) -> Callable[[Any], bool]:
    return lambda step: step.path not in paths


class SessionPlan:
    """The parts of one session's plan, and what it does in all."""

    def __init__(self) -> None:
        self._spill = Spill()
        self._spilled: list[dict[str, Handle]] = []
        self._held: Plan | None = None  # the last part, in memory
        # Steps that belong to no part: an edited move's transfer under its new name.
        self._tail = Plan()
        self._keep: dict[str, list[Callable[[Any], bool]]] = {}
        self.moves: list[Move] = []
        self.conflicts: list[str] = []
        self._counts = dict.fromkeys(STEPS, 0)
        self._bytes = dict.fromkeys(_BYTES, 0)

    def add(self, part: Plan) -> None:
        """The next part in key order; the one before it goes to the spill."""
        if self._held is not None:
            self._spilled.append(self._put(self._held))
        self._held = part
        self.conflicts.extend(part.conflicts)
        self._count(part)

    def apply_moves(self, found: list[Move]) -> None:
        """Make ``found`` part of the plan, in place of the steps they pair (engine.moves)."""
        if not found:
            return
        for name, paths in moving.dropped(found).items():
            if paths:
                self._keep.setdefault(name, []).append(_not_at(paths))
        for name, added in moving.added(found).items():
            getattr(self._tail, name).extend(added)
        self.moves.extend(found)
        self._recount()

    def keep_only(self, name: str, keep: Callable[[Any], bool]) -> None:
        """Of list ``name``, only the steps ``keep`` takes."""
        self._keep.setdefault(name, []).append(keep)
        self._recount()

    def count(self, name: str) -> int:
        return len(self.moves) if name == "moves" else self._counts[name]

    def bytes(self, name: str) -> int:
        """What the transfers of ``name`` (push or pull) read."""
        return self._bytes[name]

    def transfer_count(self, side: Side) -> int:
        return self._counts[Plan.transfer_list(side)]

    def delete_count(self, side: Side) -> int:
        return self._counts[Plan.delete_list(side)]

    def steps(self, name: str) -> Iterator[Any]:
        """The steps of list ``name``, part after part, in key order."""
        for batch in self.batches(name):
            yield from batch

    def batches(self, name: str) -> Iterator[list[Any]]:
        """The steps of list ``name``, a part's at a time (none empty)."""
        keep = self._keep.get(name, [])
        for part in self._raw(name):
            kept = [s for s in part if all(k(s) for k in keep)] if keep else part
            if kept:
                yield kept
        tail = getattr(self._tail, name)
        if tail:
            yield list(tail)

    def whole(self) -> Plan:
        """The plan in one piece: a dry run's, which is shown whole."""
        plan = Plan(moves=list(self.moves))
        for name in STEPS:
            setattr(plan, name, list(self.steps(name)))
        return plan

    def as_json(self) -> dict[str, object]:
        return self.whole().as_json()

    def close(self) -> None:
        self._spill.close()

    def _put(self, part: Plan) -> dict[str, Handle]:
        spilled = {}
        for name in STEPS:
            steps = getattr(part, name)
            if steps:
                spilled[name] = self._spill.put(list(map(_ENCODE[name], steps)))
        return spilled

    def _raw(self, name: str) -> Iterator[list[Any]]:
        for index in range(len(self._spilled) + (self._held is not None)):
            yield self._part_list(index, name)

    def _part_list(self, index: int, name: str) -> list[Any]:
        if index == len(self._spilled):
            assert self._held is not None
            return list(getattr(self._held, name))
        handle = self._spilled[index].get(name)
        if handle is None:
            return []
        return list(map(_DECODE[name], self._spill.get(handle)))

    def _count(self, part: Plan) -> None:
        for name in STEPS:
            self._counts[name] += len(getattr(part, name))
        for name in _BYTES:
            self._bytes[name] += sum(t.source.size for t in getattr(part, name))

    def _recount(self) -> None:
        """Counted again after a filter: those lists read back once (a move's added step
        goes to a list it filters too)."""
        for name in STEPS:
            if name not in self._keep:
                continue
            self._counts[name] = size = 0
            for batch in self.batches(name):
                self._counts[name] += len(batch)
                if name in _BYTES:
                    size += sum(t.source.size for t in batch)
            if name in _BYTES:
                self._bytes[name] = size
