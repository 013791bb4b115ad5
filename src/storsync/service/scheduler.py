"""The scheduler: repositories' schedules fired by one thread of the service.

A fire is the last instant of a schedule that has come, since the previous fire and since
the schedule was set. Each is recorded once (a row keyed by repository and instant, so a
restart or a second try never records it twice) and then carried by one session: a new
one, or the repository's waiting one (one running and one waiting still holds). A fire
that came while the service was down is the last instant before the start: it runs once
at the start, not once per missed instant. A fire recorded but not yet carried (the
service stopped in between) is carried at the next start. Paused repositories and those
waiting out a backoff after failures fire nothing until then.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from storsync.clock import Clock
from storsync.model import Trigger
from storsync.service import scheduling
from storsync.state.fire_store import FireStore
from storsync.state.records import Repository
from storsync.state.repository_store import RepositoryStore

log = logging.getLogger("storsync.service")
# With no schedule to wait for, the scheduler looks again this often anyway (a change
# made behind its back, by another process on the database).
IDLE_S = 300.0


class SessionStarter(Protocol):
    def __call__(self, repository_id: str, trigger: Trigger) -> str | None:
        """The id of the session that carries the request (started, or the waiting one);
        None when the repository is gone."""
        ...


class Scheduler:
    def __init__(
        self,
        repositories: RepositoryStore,
        fires: FireStore,
        start_session: SessionStarter,
        clock: Clock,
        waiting_halts: Callable[[], set[str]] = set,
    ) -> None:
        self.repositories = repositories
        self.fires = fires
        self.start_session = start_session
        self.clock = clock
        # The repositories whose halt waits for a person: they start nothing meanwhile.
        self.waiting_halts = waiting_halts
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._closing = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="scheduler")
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def poke(self) -> None:
        """Look at the schedules again now (a repository changed)."""
        self._wake.set()

    def _loop(self) -> None:
        self._carry_left_over()
        while not self._closing:
            self._wake.clear()
            try:
                next_ns = self.run_due(self.clock.now_ns())
            except Exception:  # a database hiccup: the next round tries again
                log.exception("the scheduler failed; it tries again in a minute")
                next_ns = self.clock.now_ns() + 60 * 10**9
            if next_ns is None:
                next_ns = self.clock.now_ns() + int(IDLE_S * 1e9)
            self.clock.wait_until(next_ns, self._wake)

    def _carry_left_over(self) -> None:
        for repository_id, fire_ns in self.fires.uncarried():
            self._carry(repository_id, fire_ns)

    def run_due(self, now_ns: int) -> int | None:
        """Fire what is due at ``now_ns``; the next instant to look again (None: none)."""
        halted = self.waiting_halts()
        instants = [
            self._fire_if_due(r, now_ns) for r in self.repositories.all() if r.id not in halted
        ]
        found = [i for i in instants if i is not None]
        return min(found) if found else None

    def _fire_if_due(self, repository: Repository, now_ns: int) -> int | None:
        schedule = repository.settings.schedule
        if schedule is None or repository.settings.paused:
            return None
        waits = scheduling.backoff_until(repository.failures, repository.last_failure_ns)
        if waits is not None and now_ns < waits:
            return waits
        due = scheduling.latest_at_or_before(schedule, now_ns)
        since = max(
            self.fires.last(repository.id) or -1,
            repository.schedule_set_ns or repository.created_ns,
        )
        if due > since and self.fires.record(repository.id, due, now_ns=now_ns):
            self._carry(repository.id, due)
        return scheduling.next_after(schedule, now_ns)

    def _carry(self, repository_id: str, fire_ns: int) -> None:
        session_id = self.start_session(repository_id, Trigger.SCHEDULE)
        if session_id is not None:
            self.fires.carried(repository_id, fire_ns, session_id)
