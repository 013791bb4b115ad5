"""The old paths of possible moves (engine.moves), gathered window by window and held
while they are few. Past ``PAIRING_HELD`` they go to a scratch file of their own; the
pairing then cuts both the old paths and the new ones (the transfers that could be moves)
into partitions by the hash of their stamp, each read once into its partition, and pairs
a partition at a time: a session that deletes or moves a million files holds a partition
of their old paths, not all of them (a few hundred bytes each). The candidates a
partition pairs go to the scratch file too, and come back merged into the plan's order a
few at a time."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from storsync.engine import moves
from storsync.engine.moves import Candidate, Pairing, Remembered
from storsync.engine.reconcile import Plan, Transfer
from storsync.model import BaseEntry, Capabilities, Entry, Side
from storsync.runner.spill import Handle, Spill

PAIRING_HELD = 20_000  # old paths held at once (a partition: as many on average)
_FLUSH = 256  # records a partition gathers before they are written
_SIDES = {side: at for at, side in enumerate(Side)}  # the order candidates come in


class SpilledPairing:
    """``engine.moves.Pairing`` over a plan too large to hold its old paths."""

    def __init__(self, caps: Mapping[Side, Capabilities]) -> None:
        self._caps = caps
        self._held: list[Remembered] = []
        self._count = 0
        self._spill: Spill | None = None
        self._chunks: list[Handle] = []

    def remember(self, plan: Plan, base: Mapping[str, BaseEntry]) -> None:
        found = list(moves.remembered(plan, base, self._caps))
        self._count += len(found)
        self._held += found
        if len(self._held) > PAIRING_HELD:
            self._spill_held()

    def candidates(self, transfers: Callable[[Side], Iterable[Transfer]]) -> Iterator[Candidate]:
        """What ``Pairing.candidates`` finds over every old path, in its order."""
        if self._spill is None:
            pairing = Pairing(self._caps)
            pairing.add(self._held)
            found = pairing.candidates(lambda side: enumerate(transfers(side)))
            yield from (candidate for _, _, candidate in found)
            return
        self._spill_held()
        try:
            yield from self._partitioned(self._spill, transfers)
        finally:
            self._spill.close()

    def _partitioned(
        self, spill: Spill, transfers: Callable[[Side], Iterable[Transfer]]
    ) -> Iterator[Candidate]:
        # A stamp's old paths all fall in one partition, and so do the new paths of that
        # stamp, in their order: each partition pairs as the whole would.
        parts = -(-self._count // PAIRING_HELD)
        old = _Partitions(spill, parts)
        sides: set[Side] = set()
        for handle in self._chunks:
            for record in spill.get(handle):
                old.add(hash(record[1]) % parts, record)
                sides.add(Side(record[0]))
        new = {side: _Partitions(spill, parts) for side in sides}
        for side, partitions in new.items():
            for at, transfer in enumerate(transfers(side)):
                stamp = moves.new_stamp(transfer, side, self._caps)
                if stamp is not None:
                    partitions.add(hash(stamp) % parts, (at, _transfer_out(transfer)))
        # Each partition's candidates come in the plan's order (by side, then place): they
        # are merged back into it, a few of each partition's at a time.
        found = _Partitions(spill, parts)
        for part in range(parts):
            pairing = Pairing(self._caps)
            pairing.add(map(_remembered_in, old.read(part)))

            def among(side: Side, part: int = part) -> Iterator[tuple[int, Transfer]]:
                if side in new:  # each with its place in the plan
                    yield from ((at, _transfer_in(t)) for at, t in new[side].read(part))

            for side, at, candidate in pairing.candidates(among):
                found.add(part, (_SIDES[side], at, _candidate_out(candidate)))
        merged = heapq.merge(*(found.read(part) for part in range(parts)))
        return (_candidate_in(record) for _, _, record in merged)

    def _spill_held(self) -> None:
        if self._spill is None:
            self._spill = Spill()
        if self._held:
            self._chunks.append(self._spill.put([_remembered_out(r) for r in self._held]))
        self._held = []


class _Partitions:
    """Records cut into ``parts`` partitions on a spill, each read back in the order
    it was given."""

    def __init__(self, spill: Spill, parts: int) -> None:
        self._spill = spill
        self._gathering: list[list[Any]] = [[] for _ in range(parts)]
        self._written: list[list[Handle]] = [[] for _ in range(parts)]

    def add(self, part: int, record: Any) -> None:
        gathering = self._gathering[part]
        gathering.append(record)
        if len(gathering) >= _FLUSH:
            self._written[part].append(self._spill.put(gathering))
            self._gathering[part] = []

    def read(self, part: int) -> Iterator[Any]:
        """The records of ``part`` (``_FLUSH`` of them held at a time)."""
        for handle in self._written[part]:
            yield from self._spill.get(handle)
        yield from self._gathering[part]


def _remembered_out(found: Remembered) -> tuple[Any, ...]:
    side, stamp, (path, entry, edited, known) = found
    return side.value, stamp, (path, tuple(entry), edited, tuple(known))


def _remembered_in(record: Any) -> Remembered:
    side, stamp, (path, entry, edited, known) = record
    return Side(side), tuple(stamp), (path, Entry._make(entry), edited, BaseEntry._make(known))


def _transfer_out(transfer: Transfer) -> tuple[Any, ...]:
    return transfer.path, tuple(transfer.source), transfer.keep_replaced


def _transfer_in(record: Any) -> Transfer:
    path, source, keep_replaced = record
    return Transfer(path, Entry._make(source), None, False, keep_replaced)


def _candidate_out(found: Candidate) -> tuple[Any, ...]:
    side, path, entry = found.side.value, found.path, tuple(found.entry)
    return side, path, entry, found.edited, _transfer_out(found.transfer), tuple(found.base)


def _candidate_in(record: Any) -> Candidate:
    side, path, entry, edited, transfer, base = record
    return Candidate(
        Side(side), path, Entry._make(entry), edited, _transfer_in(transfer), BaseEntry._make(base)
    )
