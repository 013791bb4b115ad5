"""What a worker reports, recorded: the session's row, its log items and its events.

One ``Recorder`` call per report, from the thread that reads that worker (the only writer
of its session), so a session's events are published in the order its worker sent them.
"""

from __future__ import annotations

import dataclasses
import logging

from storsync.clock import Clock
from storsync.model import EventType, LogKind, Phase, PhaseState, SessionState, Trigger
from storsync.service.events import EventBus
from storsync.service.reports import (
    FinishedReport,
    ItemsReport,
    PhaseReport,
    PlannedReport,
    ProgressReport,
    WorkerReport,
)
from storsync.state.catalog import Catalog
from storsync.state.records import (
    ConflictFound,
    ConflictResolved,
    Detail,
    ItemBatch,
    PhaseChanged,
    Progressed,
    Session,
    SessionTotals,
)

log = logging.getLogger("storsync.service")

SHUTDOWN_MESSAGE = "stopped because the service shut down; it carries on at the next start"
# Log items of a finished session's errors, conflicts and skipped paths beyond this many
# are counted, not stored: the counters stay exact, the history stays small.
MAX_REPORTED_ITEMS = 10_000


# Sessions that start by themselves report only their start and end unless they have
# something to do: a schedule or a watch that found nothing to change stays quiet.
QUIET_TRIGGERS = frozenset({Trigger.SCHEDULE, Trigger.WATCH})


class Recorder:
    def __init__(self, catalog: Catalog, bus: EventBus, clock: Clock) -> None:
        self.catalog = catalog
        self.bus = bus
        self.clock = clock
        self._quiet: set[str] = set()  # no phase or progress events (yet)
        self._announced: set[str] = set()  # conflicts published when planned

    def expect(self, session: Session) -> None:
        """A session about to start: quiet until its plan moves something, if it started
        by itself."""
        if session.trigger in QUIET_TRIGGERS:
            self._quiet.add(session.id)

    def record(self, session_id: str, report: WorkerReport, *, closing: bool) -> None:
        """``closing``: the service is shutting down (a stop it did not ask for of a user
        is then the shutdown's)."""
        if isinstance(report, PlannedReport):
            self._planned(session_id, report)
        elif isinstance(report, PhaseReport):
            session = self.catalog.sessions.set_phase(session_id, report.phase, report.state)
            started = report.state is PhaseState.RUNNING
            kind = EventType.PHASE_STARTED if started else EventType.PHASE_FINISHED
            self._loud(kind, session, PhaseChanged(report.phase, report.state))
        elif isinstance(report, ProgressReport):
            sessions = self.catalog.sessions
            session = sessions.set_progress(session_id, report.percent, report.push, report.pull)
            detail = Progressed(report.stage.value, report.rate_bps, report.eta_s)
            self._loud(EventType.SESSION_PROGRESS, session, detail)
        elif isinstance(report, ItemsReport):
            self._items(session_id, report)
        else:
            self._finish(session_id, report, closing=closing)

    def _loud(self, kind: EventType, session: Session, detail: Detail) -> None:
        if session.id not in self._quiet:
            self.bus.about(kind, session, detail)

    def _planned(self, session_id: str, report: PlannedReport) -> None:
        """Conflicts are announced as soon as the plan finds them, not at the end."""
        plan = report.plan
        if plan.moves_nothing:
            return
        self._quiet.discard(session_id)
        if plan.conflicts:
            session = self.catalog.sessions.cached(session_id) or self.catalog.sessions.get(
                session_id
            )
            assert session is not None
            for path in plan.conflicts[:MAX_REPORTED_ITEMS]:
                self.bus.about(EventType.SESSION_CONFLICT, session, ConflictFound(path))
            self._announced.add(session_id)

    def _items(self, session_id: str, report: ItemsReport) -> None:
        # One event per durable batch, delivered only to those who ask for it: the worker
        # stored the batch's log items, the event says where they are, and the event hub
        # reads them for whoever asked (storsync.service.hub).
        found = self.catalog.sessions.cached(session_id) or self.catalog.sessions.get(session_id)
        assert found is not None
        self.bus.publish(
            EventType.ITEMS_TRANSFERRED,
            repository_id=found.repository_id,
            session_id=session_id,
            detail=ItemBatch(report.kind, report.count, report.first_id, report.last_id),
        )

    def _finish(self, session_id: str, report: FinishedReport, *, closing: bool) -> None:
        session = self.catalog.sessions.get(session_id)
        assert session is not None
        now = self.clock.now_ns()
        log_items = self.catalog.log_items
        limit = MAX_REPORTED_ITEMS
        log_items.add(session_id, LogKind.ERROR, now, report.errors[:limit])
        conflicts = [(path, None) for path in report.conflicts[:limit]]
        log_items.add(session_id, LogKind.CONFLICT, now, conflicts)
        log_items.add(session_id, LogKind.SKIPPED, now, report.skipped[:limit])
        totals = report.totals
        error = totals.error
        if totals.state is SessionState.PARTIAL and not error:
            path, message = report.errors[0] if report.errors else ("", "")
            error = (
                f"{len(report.errors)} file(s) could not be synchronized, first {path}: {message}"
            )
        if totals.state is SessionState.STOPPED and closing and not session.stop_requested:
            error = SHUTDOWN_MESSAGE
        # Announced before the end is recorded: whoever saw the session end sees these.
        self._settled_conflicts(session)
        if session_id not in self._announced:
            for path in report.conflicts[:limit]:
                self.bus.about(EventType.SESSION_CONFLICT, session, ConflictFound(path))
        self._quiet.discard(session_id)
        self._announced.discard(session_id)
        self.end(session, dataclasses.replace(totals, error=error))

    def _settled_conflicts(self, session: Session) -> None:
        """Announce the conflicts the session resolved, by a decision or by its policy."""
        for c in self.catalog.conflicts.resolved_by(session.id):
            if c.kept is not None and c.resolved_by is not None:
                detail = ConflictResolved(c.id, c.path, c.kept, c.resolved_by)
                self.bus.about(EventType.CONFLICT_RESOLVED, session, detail)

    def end(self, session: Session, totals: SessionTotals) -> Session:
        """End a session in ``totals.state`` and announce it; its phases still running end
        with it; its repository counts a failure, or is reset by a finish (a stop is
        neither)."""
        now = self.clock.now_ns()
        failed = totals.state is SessionState.FAILED
        # The repository first: whoever sees the session ended sees its repository's last
        # success (or failure) too, never the one before.
        if failed or totals.state in (SessionState.COMPLETED, SessionState.PARTIAL):
            self.catalog.repositories.record_outcome(
                session.repository_id, failed=failed, now_ns=now
            )
        ending = PhaseState.FAILED if failed else PhaseState.STOPPED
        phases = {p: ending for p in Phase if session.phase_state(p) is PhaseState.RUNNING}
        ended = self.bus.with_change(
            EventType.ending(totals.state),
            lambda announce: self.catalog.sessions.end(
                session.id, totals, now_ns=now, phases=phases, announce=announce
            ),
        )
        # Decisions on conflicts it did not carry out (it failed, stopped, or never
        # started): open again for anyone to decide.
        self.catalog.conflicts.release(session.id)
        _log_end(ended)
        return ended


def _log_end(s: Session) -> None:
    """One line per session end: its result, what it did and how long it took; a failure
    as a warning with its error."""
    took = (
        ""
        if s.started_ns is None or s.ended_ns is None
        else (f" in {(s.ended_ns - s.started_ns) / 1e9:.1f} s")
    )
    line = (
        f"session {s.id} of repository {s.repository_id} {s.state.value}{took}: "
        f"pushed {s.pushed}, pulled {s.pulled}, moved {s.moved_local} local and "
        f"{s.moved_remote} remote, deleted {s.deleted_local} local and "
        f"{s.deleted_remote} remote, {s.conflicts} conflicts, {s.errors} errors"
    )
    if s.state is SessionState.FAILED:
        log.warning("%s; %s", line, s.error)
    elif s.error:
        log.info("%s; %s", line, s.error)
    else:
        log.info("%s", line)
