"""Keeping a pair synchronized (SYNC.md promise 9): file-system notifications are hints
that start a session sooner, never a substitute for its scan.

``Cadence`` decides when a watched pair synchronizes: once a change was seen, after a
quiet period (but at most ``max_wait_s`` after the first change, however long the writes
go on); at once after the notifications could not be trusted (an overflow, a watcher
error, directories the kernel would not watch); at least every ``rescan_s`` (with jitter,
so that many pairs do not rescan together); and, where asked, every ``remote_s`` for the
remote's own changes. ``OwnWrites`` tells storsync's own writes apart by what it wrote
(the base's path, size, mtime and inode), not by a time window: a person's edit to a file
just downloaded is a change like any other. ``keep_synchronized`` is the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from storsync.clock import Clock, SystemClock
from storsync.engine.filters import PathFilter
from storsync.model import EVERYTHING, BaseEntry, Entry, Scope, Side, StopSignal
from storsync.runner.job import SyncJob
from storsync.runner.report import Report
from storsync.runner.run import run_job
from storsync.state.protocol import open_base_store
from storsync.storage.local import LocalStorage
from storsync.storage.local_watch import Hints, LocalWatcher
from storsync.storage.registry import location

log = logging.getLogger("storsync.watch")
# How long one wait for notifications lasts at most: a stop is seen within this.
POLL_S = 0.5
LOCAL_CHANGES = "local changes"
LOCAL_CHANGES_GOING_ON = "local changes still going on"
REMOTE_CHECK = "remote check"


@dataclass(frozen=True)
class WatchTimes:
    delay_s: float = 2.0
    max_wait_s: float = 30.0
    rescan_s: float = 3600.0
    jitter_s: float = 300.0
    remote_s: float | None = None  # None: the remote is checked some other way


class Cadence:
    """When to synchronize, in the clock's monotonic seconds."""

    def __init__(self, times: WatchTimes, now: float, rng: random.Random | None = None) -> None:
        self.times = times
        self._rng = rng or random.Random()
        self._first: float | None = None  # the first change not yet synchronized
        self._last: float | None = None  # the latest such change
        self._lost = False
        self.ran(now)

    def changed(self, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now

    def lost(self) -> None:
        """The notifications missed something: a full rescan, now."""
        self._lost = True

    def ran(self, now: float) -> None:
        """A session started: what it will see needs no other."""
        self._first = self._last = None
        self._lost = False
        self._session = now
        self._rescan = now + self.times.rescan_s + self._rng.uniform(0, self.times.jitter_s)

    def due(self, now: float) -> str | None:
        """Why a session should start now, or None."""
        if self._lost:
            return "rescan after lost notifications"
        if self._first is not None and self._last is not None:
            if now - self._last >= self.times.delay_s:
                return LOCAL_CHANGES
            if now - self._first >= self.times.max_wait_s:
                return LOCAL_CHANGES_GOING_ON
        if now >= self._rescan:
            return "periodic rescan"
        remote_s = self.times.remote_s
        if remote_s is not None and now - self._session >= remote_s:
            return REMOTE_CHECK
        return None

    def next_look(self, now: float) -> float:
        """The next instant ``due`` may change its answer without a new hint."""
        instants = [self._rescan]
        if self._last is not None and self._first is not None:
            instants.append(self._last + self.times.delay_s)
            instants.append(self._first + self.times.max_wait_s)
        if self.times.remote_s is not None:
            instants.append(self._session + self.times.remote_s)
        return max(now, min(instants))


class OwnWrites:
    """Which of the paths notifications named someone else changed: a file that is not
    the version the base recorded on its side, a synchronized file (or folder of them)
    that is gone; never storsync's own writes, deletions and emptied folders."""

    def __init__(
        self,
        stat: Callable[[str], Entry | None],
        recorded: Callable[[str], BaseEntry | None],
        recorded_below: Callable[[str], bool],
        excluded: PathFilter,
        side: Side = Side.LOCAL,
    ) -> None:
        self.stat = stat
        self.recorded = recorded
        self.recorded_below = recorded_below
        self.excluded = excluded
        self.side = side

    def foreign(self, paths: Iterable[str]) -> list[str]:
        return [p for p in paths if not self.excluded.excluded(p) and self._foreign(p)]

    def _foreign(self, path: str) -> bool:
        now = self.stat(path)
        base = self.recorded(path)
        if now is None:
            return base is not None or self.recorded_below(path)
        if base is None:
            return True
        then = base.stamp(self.side)
        return (now.size, now.mtime_ns, now.inode, now.executable) != (
            then.size,
            then.mtime_ns,
            then.inode,
            then.executable,
        )


@dataclass(frozen=True)
class Watched:
    """One watched root of a pair (the local one; a directory remote's too) and how to
    tell storsync's own writes there apart."""

    watcher: LocalWatcher
    own: OwnWrites


def keep_synchronized(
    watched: Sequence[Watched],
    cadence: Cadence,
    *,
    synchronize: Callable[[str, Scope], None],
    busy: Callable[[], bool],
    stop: StopSignal,
    clock: Clock,
    first: str | None = None,
) -> None:
    """Watch and synchronize until ``stop`` is set. ``synchronize(why, scope)`` starts (or
    runs) a session that looks at ``scope``: the paths named since the last one, the
    remote whole besides on a remote check; everything on a rescan. While ``busy()`` says
    one runs, the paths named meanwhile wait for its end, when the base tells storsync's
    own writes apart. ``first``: synchronize everything at once, once the watches are in
    place (so nothing written meanwhile goes unnoticed). The first of ``watched`` waits
    for notifications; the others (a directory remote) are read in passing."""
    for one in watched:
        started = one.watcher.start()
        if started.limited is not None:
            log.warning("%s: %s", one.watcher.root, started.limited)
    if first is not None:
        cadence.ran(clock.monotonic())
        synchronize(first, EVERYTHING)
    pending: list[set[str]] = [set() for _ in watched]
    named: set[str] = set()  # changed by someone else since the last session started
    while not stop.requested:
        now = clock.monotonic()
        wait = min(POLL_S, cadence.next_look(now) - now)
        for i, one in enumerate(watched):
            _take(one.watcher.poll(wait if i == 0 else 0.0), cadence, pending[i], one.watcher)
        now = clock.monotonic()
        if any(pending) and not busy():  # busy() reads the database: only when needed
            for one, paths in zip(watched, pending, strict=True):
                foreign = one.own.foreign(paths) if paths else []
                if foreign:
                    cadence.changed(now)
                    named.update(foreign)
                paths.clear()
        why = cadence.due(now)
        if why is not None and not busy() and not stop.requested:
            cadence.ran(now)
            synchronize(why, _scope(why, named))
            named.clear()


def _scope(why: str, named: set[str]) -> Scope:
    """What a session started for ``why`` looks at (SYNC.md promise 9: notifications may
    narrow a session; the rescans they cannot replace look at everything)."""
    if why in (LOCAL_CHANGES, LOCAL_CHANGES_GOING_ON):
        return Scope.named(named)
    if why == REMOTE_CHECK:
        return Scope.named(named, remote_whole=True)
    return EVERYTHING


def _take(hints: Hints, cadence: Cadence, pending: set[str], watcher: LocalWatcher) -> None:
    if hints.limited is not None:
        log.warning("%s: %s", watcher.root, hints.limited)
    if not hints.complete:
        log.warning("%s: %s; rescanning", watcher.root, hints.why)
        cadence.lost()
    pending.update(hints.paths)


def keep_job_synchronized(
    job: SyncJob,
    *,
    times: WatchTimes,
    reported: Callable[[str, Report], None],
    stop: StopSignal,
    quiet: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    clock: Clock | None = None,
) -> None:
    """Run ``job`` now and then whenever the cadence says, in this process, until ``stop``;
    ``reported(why, report)`` after each session; each runs within ``quiet()``."""
    clock = clock or SystemClock()
    store = open_base_store(job.state_url)
    watcher = LocalWatcher(job.local_root)
    try:
        repository_id = job.repository_id or store.repository_id(
            job.local_root.as_uri(), location(job.remote), now_ns=clock.now_ns()
        )
        own = OwnWrites(
            LocalStorage(job.local_root, clock=clock).stat,
            lambda path: store.base_entry(repository_id, path),
            lambda folder: store.base_has_below(repository_id, folder),
            PathFilter(job.settings.excludes),
        )

        def synchronize(why: str, scope: Scope) -> None:
            with quiet():
                report = run_job(dataclasses.replace(job, scope=scope), stop=stop, clock=clock)
            reported(why, report)

        keep_synchronized(
            [Watched(watcher, own)],
            Cadence(times, clock.monotonic()),
            synchronize=synchronize,
            busy=lambda: False,
            stop=stop,
            clock=clock,
            first="start",
        )
    finally:
        watcher.close()
        store.close()
