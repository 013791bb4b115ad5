"""Whoever follows a session (the command line's progress bar, the service's worker) is
told through one observer: the progress a few times a second, each direction's state, and
each batch of files made durable."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from storsync.clock import Clock
from storsync.model import LogKind, Phase, PhaseCounters, PhaseState
from storsync.runner.progress import Snapshot

PROGRESS_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Planned:
    """What a session's plan will do, told before it starts doing it: files and bytes
    per direction (deletions are files without bytes) and the paths in conflict."""

    push: PhaseCounters
    pull: PhaseCounters
    conflicts: tuple[str, ...]

    @property
    def moves_nothing(self) -> bool:
        return not (self.push.files_planned or self.pull.files_planned or self.conflicts)


class SessionObserver(Protocol):
    def planned(self, plan: Planned) -> None:
        """The plan is made (not on a dry run): what it will do."""

    def progress(self, snapshot: Snapshot) -> None:
        """The figures, at most every PROGRESS_INTERVAL_S and only when they moved; once
        more when the session ends."""

    def phase(self, phase: Phase, state: PhaseState) -> None:
        """A direction started (``running``) or ended (any other state)."""

    def items(
        self, kind: LogKind, items: Sequence[tuple[str, int | None]], ids: tuple[int, int] | None
    ) -> None:
        """A batch of files made durable: (path, size) each; ``ids``, the first and last
        log item ids the batch was stored under, when the session keeps log items."""


class NoObserver:
    def planned(self, plan: Planned) -> None:
        pass

    def progress(self, snapshot: Snapshot) -> None:
        pass

    def phase(self, phase: Phase, state: PhaseState) -> None:
        pass

    def items(
        self, kind: LogKind, items: Sequence[tuple[str, int | None]], ids: tuple[int, int] | None
    ) -> None:
        pass


class ProgressTicker:
    """The one thread that reads a session's counters while it runs and hands them to its
    observer; on exit, the last figures (those of the finished session)."""

    def __init__(
        self, read: Callable[[float], Snapshot], observer: SessionObserver, clock: Clock
    ) -> None:
        self._read = read
        self._observer = observer
        self._clock = clock
        self._started = clock.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="progress")
        self._last: Snapshot | None = None

    def _now(self) -> Snapshot:
        return self._read(self._clock.monotonic() - self._started)

    def _tick(self) -> None:
        while not self._done.wait(PROGRESS_INTERVAL_S):
            snapshot = self._now()
            if not snapshot.same_figures(self._last):
                self._observer.progress(snapshot)
                self._last = snapshot

    def __enter__(self) -> ProgressTicker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self._observer.progress(self._now())
