"""Sessions: the one-running-one-waiting rule, worker processes, history.

Per repository at most one session runs and at most one waits (API.md section 6): a
trigger while one runs returns the waiting session, creating it if needed. Each running
session is a worker process (storsync.service.worker) given a ``SyncJob``; a thread per
worker reads its reports and is the only writer of that session (storsync.service.recorder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from storsync.clock import Clock
from storsync.errors import Conflict, StorsyncError, UnknownObject, UsageError
from storsync.model import (
    EVERYTHING,
    EventType,
    LogKind,
    Phase,
    PhaseState,
    Scope,
    SessionState,
    Trigger,
)
from storsync.runner.job import SyncJob
from storsync.service.bandwidth import Bandwidth, shares
from storsync.service.events import EventBus
from storsync.service.recorder import Recorder
from storsync.service.reports import FinishedReport, WorkerSetup
from storsync.service.vault import Vault
from storsync.service.workers import WorkerProcess, Workers
from storsync.state.catalog import Catalog
from storsync.state.records import (
    HaltOutcome,
    LogItem,
    Queued,
    Repository,
    Session,
    SessionQuery,
    SessionTotals,
)
from storsync.storage.base import Storage
from storsync.storage.registry import RemoteSpec, kind_of, open_remote

log = logging.getLogger("storsync.service")

DAY_NS = 86_400 * 10**9
SHUTDOWN_GRACE_S = 20.0
INTERRUPTED = (
    "the service stopped while this session ran; what had completed is kept "
    "and the next session carries on from there"
)


@dataclass(frozen=True)
class SessionOptions:
    database_url: str
    transfers: int = 16
    niceness: int = 10
    # One worker process started ahead for the next session (service.workers.Workers).
    spare_worker: bool = True
    retention_days: float = 30.0
    # A session a schedule or a watch started that changed nothing is kept this long.
    quiet_retention_days: float = 1.0
    allow_private_endpoints: bool = False
    # The S3 endpoint whoever started the server gave (the default repository's): trusted
    # at sync time as it was when the repository was made.
    trusted_endpoint: str | None = None


class SessionManager:
    def __init__(
        self,
        catalog: Catalog,
        bus: EventBus,
        vault: Vault,
        clock: Clock,
        options: SessionOptions,
        bandwidth: Bandwidth,
    ) -> None:
        self.catalog = catalog
        self.store = catalog.sessions
        self.bus = bus
        self.vault = vault
        self.clock = clock
        self.options = options
        self.bandwidth = bandwidth
        self.recorder = Recorder(catalog, bus, clock)
        self._lock = threading.RLock()
        self.workers = Workers(options.niceness, spare=options.spare_worker)
        self._runs: dict[str, WorkerProcess] = {}  # by repository id
        # What each queued session of a watch or a remote check must look at, by session
        # id; a queued session not here (any other, or one queued before a restart)
        # looks at everything.
        self._scopes: dict[str, Scope] = {}
        self._closing = False

    # -- reads ------------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        found = self.store.get(session_id)
        if found is None:
            raise UnknownObject(f"no session with id {session_id!r}")
        return found

    def cached(self, session_id: str) -> Session | None:
        """The session if it was read less than a second ago, without I/O (or None)."""
        return self.store.cached(session_id)

    def search(self, query: SessionQuery) -> list[Session]:
        return self.store.search(query)

    def by_phases(self, push_id: str, pull_id: str) -> Session | None:
        return self.store.by_phases(push_id, pull_id)

    def items(
        self, session_id: str, *, kind: LogKind | None, after_id: int, limit: int
    ) -> list[LogItem]:
        self.get(session_id)
        return self.catalog.log_items.list(session_id, kind=kind, after_id=after_id, limit=limit)

    def moved_per_second(self, session_id: str) -> list[tuple[int, LogKind, int]]:
        """The bytes a session moved each second, by direction (a throughput plot)."""
        self.get(session_id)
        return self.catalog.log_items.moved_per_second(session_id)

    def running(self) -> int:
        with self._lock:
            return len(self._runs)

    def active(self, repository_id: str) -> bool:
        """Whether a session of the repository runs now (its worker has not ended)."""
        with self._lock:
            return repository_id in self._runs

    # -- lifecycle --------------------------------------------------------------------

    def recover(self) -> None:
        """After a start: report what a crash interrupted; start what was waiting."""
        for session in self.store.search(
            SessionQuery(states=(SessionState.RUNNING,), limit=10_000)
        ):
            self.recorder.end(session, SessionTotals(SessionState.FAILED, INTERRUPTED))
        with self._lock:
            for session in self.store.search(
                SessionQuery(states=(SessionState.QUEUED,), limit=10_000)
            ):
                if session.repository_id not in self._runs:
                    self._start(session)
        self.prune()

    def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop running sessions at a safe point; what they left undone waits for the
        next start as a queued session."""
        with self._lock:
            self._closing = True
            runs = list(self._runs.values())
        for run in runs:
            run.stop()
        # One grace for all of them together, not one each.
        deadline = self.clock.monotonic() + grace_s
        for run in runs:
            if not run.wait(max(0.0, deadline - self.clock.monotonic())):
                run.kill()
        for run in runs:
            run.wait(None)
        self.workers.close()

    def prune(self) -> int:
        now = self.clock.now_ns()
        pruned = self.store.prune(
            ended_before_ns=now - int(self.options.retention_days * DAY_NS),
            quiet_ended_before_ns=now - int(self.options.quiet_retention_days * DAY_NS),
        )
        self.bus.forget(pruned)
        return len(pruned)

    # -- use cases --------------------------------------------------------------------

    def trigger(
        self, repository_id: str, *, trigger: Trigger, scope: Scope = EVERYTHING
    ) -> Session:
        """The session that will carry this request: started, or the one waiting (which
        then looks at what both requests need: ``scope``)."""
        with self._lock:
            if self.catalog.repositories.get(repository_id) is None:
                raise UnknownObject(f"no repository with id {repository_id!r}")
            waiting = self.store.search(_waiting(repository_id))
            if waiting:
                joined = self._scopes.pop(waiting[0].id, EVERYTHING).joined(scope)
                if not joined.whole:
                    self._scopes[waiting[0].id] = joined
                return waiting[0]
            session = self._queue(repository_id, trigger)
            if not scope.whole:
                self._scopes[session.id] = scope
            if repository_id not in self._runs and not self._closing:
                self._start(session)
        return self.get(session.id)

    def carry(self, repository_id: str, trigger: Trigger, scope: Scope = EVERYTHING) -> str | None:
        """The session that carries a fire of the scheduler or the watcher (None: the
        repository is gone)."""
        try:
            return self.trigger(repository_id, trigger=trigger, scope=scope).id
        except UnknownObject:
            return None

    def stop(self, session_id: str) -> Session:
        with self._lock:
            session = self.get(session_id)
            if session.state is SessionState.QUEUED:
                self._scopes.pop(session_id, None)
                self.store.request_stop(session_id)
                stopped = SessionTotals(SessionState.STOPPED, "stopped before it started")
                self.recorder.end(session, stopped)
            elif session.state is SessionState.RUNNING:
                self.store.request_stop(session_id)
                run = self._runs.get(session.repository_id)
                if run is not None and run.session_id == session_id:
                    run.stop()
        return self.get(session_id)

    # -- halts ----------------------------------------------------------------------------

    def approve(self, session_id: str) -> Session:
        """Carry out a halted plan's deletions (exactly those it listed, each while it is
        still the version listed) in the waiting session, or a new one; that session."""
        with self._lock:
            halted = self._waiting_halt(session_id, "approved")
            repository_id = halted.repository_id
            waiting = self.store.search(_waiting(repository_id))
            if waiting:
                self._scopes.pop(waiting[0].id, None)  # a plan's deletions may be anywhere
                carrier = self.store.carry_approval(waiting[0].id, halted.id)
            else:
                carrier = self._queue(repository_id, Trigger.APPROVAL, approves=halted.id)
                if repository_id not in self._runs and not self._closing:
                    self._start(carrier)
            self.store.settle_halt(halted.id, HaltOutcome.APPROVED)
        return self.get(carrier.id)

    def resolve(self, repository_id: str, carry: Callable[[str], bool]) -> Session | None:
        """The session that carries a decision on a conflict: the repository's waiting
        one, or a new one (``trigger: resolve``). ``carry(session_id)`` hands the decision
        to it before it can start; when it refuses (False), nothing is queued: None."""
        with self._lock:
            waiting = self.store.search(_waiting(repository_id))
            if waiting:
                if not carry(waiting[0].id):
                    return None
                self._scopes.pop(waiting[0].id, None)  # it must see what the decision does
                return self.get(waiting[0].id)
            session = self._queue(repository_id, Trigger.RESOLVE)
            if not carry(session.id):
                self._not_started(session, "another decision on the conflict came first")
                return None
            if repository_id not in self._runs and not self._closing:
                self._start(session)
        return self.get(session.id)

    def reject(self, session_id: str) -> Session:
        """Refuse a halted plan: nothing of it is carried out."""
        with self._lock:
            halted = self._waiting_halt(session_id, "rejected")
            return self.store.settle_halt(halted.id, HaltOutcome.REJECTED)

    def _waiting_halt(self, session_id: str, what: str) -> Session:
        session = self.get(session_id)
        if session.state is not SessionState.HALTED:
            raise Conflict(
                f"the session is {session.state.value}, not halted; only a halt can be {what}"
            )
        if session.halt_outcome is not None:
            raise Conflict(f"the halt was {session.halt_outcome.value} already")
        done = SessionQuery(session.repository_id, (SessionState.COMPLETED,), limit=1)
        later = self.store.search(done)
        if later and later[0].created_ns > session.created_ns:
            raise Conflict(
                "a later session of the repository completed after this halt, so its "
                "plan is out of date; the next session decides again"
            )
        return session

    def waiting_halts(self) -> set[str]:
        """The repositories whose newest session is a halt nobody settled yet."""
        return {
            s.repository_id
            for s in self.store.latest().values()
            if s.state is SessionState.HALTED and s.halt_outcome is None
        }

    @contextlib.contextmanager
    def idle(self, repository_id: str, what: str) -> Iterator[None]:
        """Hold off the sessions of a repository while it is ``what`` ("changed",
        "deleted"): Conflict if one is queued or running, else no session of it starts
        until the block has ended. One check and one lock with ``trigger``, so a trigger
        comes wholly before the change (which then conflicts) or wholly after it."""
        with self._lock:
            active = self.store.search(
                SessionQuery(repository_id, (SessionState.QUEUED, SessionState.RUNNING), limit=1)
            )
            # A worker that has reported its end but not yet exited counts as running.
            if active or repository_id in self._runs:
                state = active[0].state if active else SessionState.RUNNING
                raise Conflict(
                    f"the repository has a session {state.value}; it can be {what} "
                    "when it has finished or been stopped"
                )
            yield

    # -- workers ----------------------------------------------------------------------

    def _queue(
        self, repository_id: str, trigger: Trigger, *, approves: str | None = None
    ) -> Session:
        now = self.clock.now_ns()
        return self.bus.with_change(
            EventType.SESSION_QUEUED,
            lambda announce: self.store.create(
                repository_id, trigger=trigger, now_ns=now, approves=approves, announce=announce
            ),
            Queued(trigger),
        )

    def _start(self, session: Session) -> None:
        """Start the worker of a queued session; the caller holds the lock."""
        repository = self.catalog.repositories.get(session.repository_id)
        if repository is None:
            self._not_started(session, "the repository was deleted")
            return
        # A job that cannot run (credentials sealed under another secret key) fails this
        # session with the reason: left queued, it would block the repository and, at
        # the next start, the whole service.
        try:
            job = self._job(repository, session)
        except StorsyncError as exc:
            self._not_started(session, exc.message)
            return
        if job.scope.empty:
            self._look_at_nothing(session, repository)
            return
        setup = WorkerSetup(self.vault.export_key())
        try:
            run = self.workers.start(session.id, setup, job)
        except OSError as exc:
            self._not_started(session, f"the session's worker process could not be started: {exc}")
            return
        started = self._started(session)
        log.info(
            "session %s of repository %s (%s) started by %s, looking at %s",
            session.id,
            repository.id,
            repository.name,
            session.trigger.value,
            job.scope,
        )
        self.recorder.expect(started)
        self._runs[repository.id] = run
        run.bwlimit = job.settings.bwlimit_bps
        self._rebalance()
        run.follow(
            lambda report: self.recorder.record(session.id, report, closing=self._closing),
            lambda death: self._after(session.id, repository.id, death),
        )

    def _look_at_nothing(self, session: Session, repository: Repository) -> None:
        """A session with nothing to look at (a schedule's, where the remote's own
        notifications are its check) ends at once as a quiet no-op ends, without a
        worker: starting one would be most of what it costs."""
        started = self._started(session)
        log.info(
            "session %s of repository %s (%s) started by %s, looking at nothing",
            session.id,
            repository.id,
            repository.name,
            session.trigger.value,
        )
        for phase in Phase:
            started = self.store.set_phase(session.id, phase, PhaseState.COMPLETED)
        self.recorder.end(started, SessionTotals(SessionState.COMPLETED))

    def _started(self, session: Session) -> Session:
        now = self.clock.now_ns()
        return self.bus.with_change(
            EventType.SESSION_STARTED,
            lambda announce: self.store.start(session.id, now_ns=now, announce=announce),
        )

    def _not_started(self, session: Session, error: str) -> None:
        self._scopes.pop(session.id, None)
        self.recorder.end(session, SessionTotals(SessionState.FAILED, error))

    def remote_spec(self, repository: Repository) -> RemoteSpec:
        """The repository's remote as its sessions' jobs carry it."""
        sealed = self.catalog.repositories.credentials(repository.id)
        endpoint = kind_of(repository.remote_url).endpoint(repository.remote_options)
        trusted = self.options.allow_private_endpoints or (
            endpoint is not None and endpoint == self.options.trusted_endpoint
        )
        return RemoteSpec(repository.remote_url, repository.remote_options, sealed, trusted)

    def open_remote(self, spec: RemoteSpec) -> Storage:
        """The remote of ``spec`` opened in this process (a probe of its listing); only a
        remote whose endpoint is trusted: the check of any other pins the resolution of
        its host for the whole process, which is a worker's to do."""
        if not spec.private_endpoint_allowed:
            raise UsageError("only a worker opens a remote whose endpoint is not trusted")
        credentials = (
            None if spec.sealed_credentials is None else self.vault.unseal(spec.sealed_credentials)
        )
        return open_remote(spec, credentials, clock=self.clock)

    def _job(self, repository: Repository, session: Session) -> SyncJob:
        remote = self.remote_spec(repository)
        if remote.sealed_credentials is not None:
            # A key that changed fails here, before any start.
            self.vault.unseal(remote.sealed_credentials)
        return SyncJob(
            local_root=repository.local_root,
            remote=remote,
            settings=dataclasses.replace(
                repository.settings.sync_settings(self.options.transfers),
                bwlimit_bps=self._share(repository),
            ),
            state_url=self.options.database_url,
            repository_id=repository.id,
            session_id=session.id,
            halts=True,
            approves=session.approves,
            scope=self._scopes.pop(session.id, EVERYTHING),
        )

    def _after(self, session_id: str, repository_id: str, death: str | None) -> None:
        """A worker ended (``death``: how, when it could not report its end itself): start
        the waiting session, or leave a resumption for the next service start."""
        with self._lock:
            self._runs.pop(repository_id)
            self._rebalance()
            if death is not None:
                self.recorder.record(session_id, self._death(death), closing=self._closing)
            ended = self.store.get(session_id)
            waiting = self.store.search(_waiting(repository_id))
            if self._closing:
                interrupted = (
                    ended is not None
                    and ended.state is SessionState.STOPPED
                    and not ended.stop_requested
                )
                if interrupted and not waiting:
                    self._queue(repository_id, Trigger.RESUME)
            elif waiting:
                self._start(waiting[0])
        self.workers.keep_spare()

    def rebalance(self) -> None:
        """Give running sessions their bandwidth again (a limit changed)."""
        with self._lock:
            self._rebalance()

    def _rebalance(self) -> None:
        """The caller holds the lock."""
        own = {rid: self._own_limit(rid) for rid in self._runs}
        for repository_id, share in shares(self.bandwidth.total, own).items():
            run = self._runs[repository_id]
            if run.bwlimit != share:
                run.limit(share)

    def _own_limit(self, repository_id: str) -> int | None:
        repository = self.catalog.repositories.get(repository_id)
        return None if repository is None else repository.settings.bwlimit_bps

    def _share(self, repository: Repository) -> int | None:
        """The bandwidth of a session about to start beside those running."""
        own = {rid: self._own_limit(rid) for rid in self._runs}
        own[repository.id] = repository.settings.bwlimit_bps
        return shares(self.bandwidth.total, own)[repository.id]

    def _death(self, death: str) -> FinishedReport:
        if self._closing:
            # Ended by the shutdown, not at a safe point: what it had made durable is
            # kept; the recorder says so and ``_after`` leaves a resumption.
            stopped = "the session was stopped before it finished"
            return FinishedReport.failed(stopped, SessionState.STOPPED)
        return FinishedReport.failed(
            f"the session's worker process ended unexpectedly ({death}); what had "
            "completed is kept and the next session carries on from there"
        )


def _waiting(repository_id: str) -> SessionQuery:
    """The repository's waiting session, if any."""
    return SessionQuery(repository_id, (SessionState.QUEUED,), limit=1)


def _all_in(state: SessionState) -> SessionQuery:
    """Every session in ``state`` (as many as a start can have left behind)."""
    return SessionQuery(states=(state,), limit=10_000)
