"""Counters of a session, per direction, and the figures derived from them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum

from storsync.model import PhaseCounters, Side


class Stage(StrEnum):
    """What a session is doing now, as its progress reports say."""

    SCANNING = "scanning"
    HASHING = "hashing"
    PUSH = "push"
    PULL = "pull"


@dataclass
class Counters:
    files_planned: int = 0
    files_done: int = 0
    bytes_planned: int = 0
    bytes_done: int = 0

    def frozen(self) -> PhaseCounters:
        return PhaseCounters(
            self.files_planned, self.files_done, self.bytes_planned, self.bytes_done
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    stage: Stage
    push: PhaseCounters
    pull: PhaseCounters
    elapsed_s: float
    rate_bps: int
    eta_s: float | None
    percent: int

    def same_figures(self, other: Snapshot | None) -> bool:
        """Whether ``other`` says the same, but for the time it was taken."""
        return other is not None and (
            (self.stage, self.push, self.pull, self.rate_bps, self.eta_s, self.percent)
            == (other.stage, other.push, other.pull, other.rate_bps, other.eta_s, other.percent)
        )


@dataclass
class Progress:
    """Updated by the workers and the committer; read by whoever reports progress.

    ``percent`` weighs each file operation as one unit plus its bytes over a 64 KiB unit,
    so that a session of many tiny files and one of a few huge ones both move smoothly.
    It is capped at 99 until the session is finished.
    """

    push: Counters = field(default_factory=Counters)
    pull: Counters = field(default_factory=Counters)
    stage: Stage = Stage.SCANNING
    finished: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def counters(self, side_to: Side) -> Counters:
        return self.pull if side_to is Side.LOCAL else self.push

    def add_bytes(self, side_to: Side, n: int) -> None:
        with self._lock:
            self.counters(side_to).bytes_done += n

    def add_file(self, side_to: Side) -> None:
        with self._lock:
            self.counters(side_to).files_done += 1

    def percent(self) -> int:
        if self.finished:
            return 100
        unit = 64 * 1024
        planned = done = 0
        for c in (self.push, self.pull):
            planned += c.files_planned + c.bytes_planned // unit
            done += c.files_done + min(c.bytes_done, c.bytes_planned) // unit
        if planned == 0:
            return 0
        return min(99, done * 100 // planned)

    def snapshot(self, elapsed_s: float) -> Snapshot:
        with self._lock:
            push, pull = self.push.frozen(), self.pull.frozen()
        done = push.bytes_done + pull.bytes_done
        left = max(0, push.bytes_planned + pull.bytes_planned - done)
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        eta = round(left / rate, 1) if rate > 0 else None
        return Snapshot(self.stage, push, pull, elapsed_s, round(rate), eta, self.percent())
