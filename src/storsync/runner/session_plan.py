"""A session's whole plan, made window by window (runner.scanned): its parts in key
order, every part but the last spilled to the session's scratch file, with exact totals
from the start (each part is counted as it is added). The moves paired across parts and
an approval's choice of deletions are applied as each part is read back: the moves are
spilled too, a chunk at a time, and so are the paths of the steps they take the place of,
sorted a chunk at a time and merged back as the steps are read in key order.

Memory grows with one part, the read-back buffers of the moves' sorted runs and the paths
in conflict, not with the plan nor with the moves (an edited move's transfer under its new
name is spilled with the chunk of moves it came with).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from typing import Any

from storsync.engine import moves as moving
from storsync.engine.reconcile import Delete, KeepBoth, Move, Plan, Record, Rename, Transfer
from storsync.model import Entry, Side
from storsync.runner.spill import Handle, Spill

# The lists of a part, each spilled apart: a step of the execution reads one of them.
STEPS = tuple(f.name for f in fields(Plan) if f.name != "moves")
_BYTES = ("push", "pull")
# The lists a move takes steps out of (engine.moves.dropped): each part's sorted by path,
# so that the paths taken out can be merged against them.
_PAIRED = ("push", "pull", "delete_local", "delete_remote")
MOVES_HELD = 1_000  # moves spilled at once
RUN_PATHS = 20_000  # paths taken out by moves, sorted together into a run
_RUN_READ = 256  # paths of a run read back at once


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


def _path(step: Any) -> str:
    return str(step.path)


def _move_out(m: Move) -> tuple[Any, ...]:
    return m.side.value, m.path, m.new_path, tuple(m.entry), tuple(m.source), m.edited


def _move_in(t: tuple[Any, ...]) -> Move:
    return Move(Side(t[0]), t[1], t[2], _entry(t[3]), _entry(t[4]), t[5])


class _Absent:
    """Whether a step's path is absent from ``paths`` (sorted), asked of steps in key
    order: each path of ``paths`` read once."""

    def __init__(self, paths: Iterator[str]) -> None:
        self._paths = paths
        self._next = next(paths, None)

    def __call__(self, step: Any) -> bool:
        if getattr(step, "conflict", False):
            return True  # a conflict's transfer, never a move's (and its name a copy's)
        path: str = step.path
        while self._next is not None and self._next < path:
            self._next = next(self._paths, None)
        return self._next != path


class SessionPlan:
    """The parts of one session's plan, and what it does in all."""

    def __init__(self) -> None:
        self._spill = Spill()
        self._spilled: list[dict[str, Handle]] = []
        self._held: Plan | None = None  # the last part, in memory
        # Steps that belong to no part (an edited move's transfer under its new name), by
        # list: spilled a chunk of moves' worth at a time.
        self._tail: dict[str, list[Handle]] = {}
        self._keep: dict[str, list[Callable[[], Callable[[Any], bool]]]] = {}
        self._moves: list[Handle] = []  # the moves, a spilled chunk each, as found
        self._moved = dict.fromkeys(Side, 0)
        # By list, the paths moves took out of it: sorted runs, each in a few handles.
        self._taken: dict[str, list[list[Handle]]] = {}
        self.conflicts: list[str] = []
        self._counts = dict.fromkeys(STEPS, 0)
        self._bytes = dict.fromkeys(_BYTES, 0)

    def add(self, part: Plan) -> None:
        """The next part in key order; the one before it goes to the spill."""
        for name in _PAIRED:  # a part lists first the paths one side holds, then others
            getattr(part, name).sort(key=_path)
        if self._held is not None:
            self._spilled.append(self._put(self._held))
        self._held = part
        self.conflicts.extend(part.conflicts)
        self._count(part)

    def apply_moves(self, found: Iterable[Move]) -> None:
        """Make ``found`` part of the plan, in place of the steps they pair (engine.moves):
        read to its end before any step is taken out (``found`` may be reading them)."""
        pending = iter(found)
        gathered: dict[str, list[str]] = {}  # by list, paths taken out, not yet in a run
        while chunk := list(itertools.islice(pending, MOVES_HELD)):
            self._moves.append(self._spill.put([_move_out(m) for m in chunk]))
            for m in chunk:
                self._moved[m.side] += 1
            for name, paths in moving.dropped(chunk).items():
                gathered.setdefault(name, []).extend(paths)
            for name, added in moving.added(chunk).items():
                encoded = list(map(_ENCODE[name], added))
                self._tail.setdefault(name, []).append(self._spill.put(encoded))
            if sum(map(len, gathered.values())) >= RUN_PATHS:
                self._sorted_runs(gathered)
        self._sorted_runs(gathered)
        if self._moves:
            self._recount()

    def _sorted_runs(self, gathered: dict[str, list[str]]) -> None:
        """Each list's ``gathered`` paths, sorted, as a run of the spill; then none."""
        for name, paths in gathered.items():
            paths.sort()
            handles = [
                self._spill.put(paths[at : at + _RUN_READ])
                for at in range(0, len(paths), _RUN_READ)
            ]
            self._taken.setdefault(name, []).append(handles)
        gathered.clear()

    def moves(self, side: Side) -> Iterator[Move]:
        """The moves on ``side``, as found (in the key order of their new paths)."""
        for handle in self._moves:
            for record in self._spill.get(handle):
                if record[0] == side.value:
                    yield _move_in(record)

    def move_count(self, side: Side) -> int:
        return self._moved[side]

    def keep_only(self, name: str, keep: Callable[[], Callable[[Any], bool]]) -> None:
        """Of list ``name``, only the steps the filter ``keep`` makes takes: one made for
        each pass over the list, asked of its steps in key order (it may read a sorted
        list beside them, as ``_Absent`` does)."""
        self._keep.setdefault(name, []).append(keep)
        self._recount()

    def count(self, name: str) -> int:
        return sum(self._moved.values()) if name == "moves" else self._counts[name]

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
        keep = [make() for make in self._keep.get(name, [])]
        if name in self._taken:
            runs = (self._run(handles) for handles in self._taken[name])
            keep.append(_Absent(heapq.merge(*runs)))
        for part in self._raw(name):
            kept = [s for s in part if all(k(s) for k in keep)] if keep else part
            if kept:
                yield kept
        for handle in self._tail.get(name, []):
            yield list(map(_DECODE[name], self._spill.get(handle)))

    def whole(self) -> Plan:
        """The plan in one piece: a dry run's, which is shown whole."""
        plan = Plan(moves=[m for side in Side for m in self.moves(side)])
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

    def _run(self, handles: list[Handle]) -> Iterator[str]:
        for handle in handles:
            yield from self._spill.get(handle)

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
            if name not in self._keep and name not in self._taken:
                continue
            self._counts[name] = size = 0
            for batch in self.batches(name):
                self._counts[name] += len(batch)
                if name in _BYTES:
                    size += sum(t.source.size for t in batch)
            if name in _BYTES:
                self._bytes[name] = size
