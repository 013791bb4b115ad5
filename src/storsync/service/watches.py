"""Repositories with ``watch`` on (API.md section 7): a thread each, in which local
file-system notifications start sessions (``trigger: watch``) after the repository's
quiet period, and a full rescan runs at least hourly (storsync.runner.watching).

A watch starts nothing while the repository's session runs (what was named meanwhile is
judged when it ends, against the base it committed, so storsync's own writes start
nothing), while a halt waits, while it backs off after failures, or while it is paused.
Its remote is checked by its schedule (and by the hourly rescan): a session that lists
the remote whole and looks at the local side only where the remote changed.

A session a watch starts looks only at the paths the notifications named (their scope:
storsync.model.Scope); the first one, and those after lost notifications and the hourly
rescans, look at everything.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storsync.clock import Clock
from storsync.engine.filters import PathFilter
from storsync.errors import StorsyncError
from storsync.model import EVERYTHING, BaseEntry, Scope, Side, StopSignal, Trigger
from storsync.runner.scan import digest_kind, listing_unchanged
from storsync.runner.watching import Cadence, OwnWrites, Watched, WatchTimes, keep_synchronized
from storsync.service import scheduling
from storsync.service.sessions import SessionManager
from storsync.state.protocol import BaseStore
from storsync.state.records import Repository
from storsync.state.repository_store import RepositoryStore
from storsync.storage.base import Storage
from storsync.storage.local import LocalStorage
from storsync.storage.local_watch import LocalWatcher, network_file_system
from storsync.storage.registry import RemoteSpec, kind_of

log = logging.getLogger("storsync.service")
REMOTE_CHECK = Scope(frozenset(), remote_whole=True)
NOTHING = Scope(frozenset())


@dataclass
class _Watching:
    repository: Repository
    stop: StopSignal
    thread: threading.Thread
    remote_watched: bool = False  # a directory remote's notifications are its check
    # The remote as the schedule's probes open it (by the scheduler's thread alone), with
    # the spec it was opened for: credentials changed since reopen it.
    probed: tuple[RemoteSpec, Storage] | None = None


class Watches:
    def __init__(
        self,
        repositories: RepositoryStore,
        sessions: SessionManager,
        base: BaseStore,
        clock: Clock,
    ) -> None:
        self.repositories = repositories
        self.sessions = sessions
        self._base = base
        self._base_lock = threading.Lock()  # one connection, many watching threads
        self.clock = clock
        self._lock = threading.Lock()
        self._watching: dict[str, _Watching] = {}
        self._started = self._closed = False

    def start(self) -> None:
        self._started = True
        self.refresh()

    def refresh(self) -> None:
        """Watch what should be watched now, as the repositories say (once started)."""
        with self._lock:
            if self._closed or not self._started:
                return
            wanted = {
                r.id: r
                for r in self.repositories.all()
                if r.settings.watch and not r.settings.paused
            }
            for repository_id, watching in list(self._watching.items()):
                if _watched_as(wanted.get(repository_id)) != _watched_as(watching.repository):
                    watching.stop.set()
                    del self._watching[repository_id]
            for repository_id, repository in wanted.items():
                if repository_id not in self._watching:
                    self._watching[repository_id] = self._start(repository)

    def watched(self) -> set[str]:
        """The repositories whose local root is watched now (its thread alive)."""
        with self._lock:
            return {rid for rid, one in self._watching.items() if one.thread.is_alive()}

    def scope_of_fire(self, repository_id: str) -> Scope:
        """What a session a schedule starts looks at: where the local root is watched, the
        remote whole and the local side only where the remote differs from the base (its
        notifications and hourly rescans see to the rest); nothing where the remote is
        watched too (the watch starts sessions for both sides); everything otherwise."""
        with self._lock:
            one = self._watching.get(repository_id)
            if one is None or not one.thread.is_alive():
                return EVERYTHING
            if one.remote_watched:
                return NOTHING
        return NOTHING if self._remote_unchanged(one) else REMOTE_CHECK

    def _remote_unchanged(self, one: _Watching) -> bool:
        """Whether the remote's listing is the one a remote check last found equal to the
        base: probed here, a session then looks at nothing and starts no worker (whose
        start, with an S3 client's, would be most of what the check costs). Anything
        amiss (no digest, a trusted endpoint no more, an unreachable remote) is for a
        worker to meet, and to report."""
        rid = one.repository.id
        with self._base_lock:
            saved = self._base.listing_digest(rid)
        repository = self.repositories.get(rid)
        if not saved or repository is None:
            return False
        try:
            spec = self.sessions.remote_spec(repository)
            if one.probed is None or one.probed[0] != spec:
                self._forget_probe(one)
                one.probed = spec, self.sessions.open_remote(spec)
            probe = self._probe(one.probed[1], rid, digest_kind(saved), one.stop)
            return listing_unchanged(saved, probe, repository.settings.excludes)
        except StorsyncError as exc:
            log.debug("repository %s: its remote probed for a worker: %s", rid, exc.message)
            return False

    def _probe(
        self, remote: Storage, repository_id: str, kind: str, stop: StopSignal
    ) -> Callable[[], str]:
        """The remote's digest of ``kind``, listed as a check listed it: a listing cut at
        keys of the base (``kind`` not "") is cut at the same keys."""

        def stored(step: int) -> list[str]:
            with self._base_lock:
                return self._base.base_every(repository_id, step)

        with self._base_lock:
            expected = self._base.base_count(repository_id) if kind else 0
        return functools.partial(remote.listing_digest, stop, kind, expected, stored)

    @staticmethod
    def _forget_probe(one: _Watching) -> None:
        if one.probed is not None:
            one.probed[1].close()
            one.probed = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watching = list(self._watching.values())
            self._watching.clear()
        for one in watching:
            one.stop.set()
        for one in watching:
            one.thread.join()
        self._base.close()

    def _start(self, repository: Repository) -> _Watching:
        stop = StopSignal()
        thread = threading.Thread(
            target=self._watch,
            args=(repository, stop),
            daemon=True,
            name=f"watch-{repository.id[:8]}",
        )
        thread.start()
        return _Watching(repository, stop, thread)

    def _watch(self, repository: Repository, stop: StopSignal) -> None:
        rid = repository.id
        try:
            watched = self._watched(repository)
        except OSError as exc:
            log.warning("repository %s: cannot watch %s: %s", rid, repository.local_root, exc)
            return
        try:
            with self._lock:
                one = self._watching.get(rid)
                if one is not None and one.stop is stop:
                    one.remote_watched = len(watched) > 1
            times = WatchTimes(delay_s=repository.settings.watch_delay_s)
            keep_synchronized(
                watched,
                Cadence(times, self.clock.monotonic()),
                synchronize=lambda why, scope: self._synchronize(rid, why, scope),
                busy=lambda: self._held(rid),
                stop=stop,
                clock=self.clock,
                # What changed while nothing watched (the service was down, the watch
                # off) is found by a session as the watch starts.
                first="watch started",
            )
        except Exception:  # a watch that fails leaves the schedule and triggers working
            log.exception("repository %s: its watch failed; it is not watched any more", rid)
        finally:
            for each in watched:
                each.watcher.close()

    def _watched(self, repository: Repository) -> list[Watched]:
        """The local root; and a directory remote, unless it lies on a network file
        system (whose changes made elsewhere no notification tells): its notifications
        are then its remote check."""
        watched = [self._root(repository, Side.LOCAL, repository.local_root)]
        remote = kind_of(repository.remote_url).directory(repository.remote_url)
        if remote is not None:
            network = network_file_system(remote)
            if network is None:
                try:
                    # Made as the session the watch starts with would make it.
                    remote.mkdir(parents=True, exist_ok=True)
                    watched.append(self._root(repository, Side.REMOTE, remote))
                except OSError as exc:
                    log.warning("repository %s: cannot watch %s: %s", repository.id, remote, exc)
            else:
                log.info(
                    "repository %s: its remote %s is on %s, so its schedule checks it",
                    repository.id,
                    remote,
                    network,
                )
        return watched

    def _root(self, repository: Repository, side: Side, root: Path) -> Watched:
        rid = repository.id
        own = OwnWrites(
            LocalStorage(root, clock=self.clock).stat,
            lambda path: self._recorded(rid, path),
            lambda folder: self._recorded_below(rid, folder),
            PathFilter(repository.settings.excludes),
            side,
        )
        return Watched(LocalWatcher(root), own)

    def _synchronize(self, repository_id: str, why: str, scope: Scope) -> None:
        session_id = self.sessions.carry(repository_id, Trigger.WATCH, scope)
        log.info("repository %s: %s: session %s", repository_id, why, session_id)

    def _held(self, repository_id: str) -> bool:
        """Whether the repository starts nothing by itself now."""
        if self.sessions.active(repository_id):
            return True
        if repository_id in self.sessions.waiting_halts():
            return True
        repository = self.repositories.get(repository_id)
        if repository is None or repository.settings.paused:
            return True
        waits = scheduling.backoff_until(repository.failures, repository.last_failure_ns)
        return waits is not None and self.clock.now_ns() < waits

    def _recorded(self, repository_id: str, path: str) -> BaseEntry | None:
        with self._base_lock:
            return self._base.base_entry(repository_id, path)

    def _recorded_below(self, repository_id: str, folder: str) -> bool:
        with self._base_lock:
            return self._base.base_has_below(repository_id, folder)


def _watched_as(repository: Repository | None) -> tuple[object, ...] | None:
    """What a watch depends on: a change of any restarts it."""
    if repository is None:
        return None
    s = repository.settings
    return (repository.local_url, repository.remote_url, s.watch_delay_s, s.excludes)
