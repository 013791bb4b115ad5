"""Sessions in the state store, with a short-lived cache of the ones read lately.

Every change to a session goes through one of the typed writes below, each one short
transaction that also forgets the cached row. A change that has an event (queued,
started, ended) stores the event in the same transaction, so that whoever sees the change
finds its event in the log too.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storsync.clock import Clock
from storsync.model import (
    ConflictState,
    Halt,
    Phase,
    PhaseCounters,
    PhaseState,
    SessionState,
    Trigger,
)
from storsync.state import schema
from storsync.state.event_store import insert as insert_event
from storsync.state.recent import Recent
from storsync.state.records import (
    Event,
    HaltOutcome,
    RepositoryTotals,
    Session,
    SessionQuery,
    SessionTotals,
)

_S = schema.sessions
_L = schema.log_items
_P = schema.plan_items
_E = schema.events

# Makes the event about a session as a change left it (the event bus numbers it).
Announce = Callable[[Session], Event]

# Sessions read or written lately, for ``cached`` (the status reads that clients poll).
SESSION_CACHE_S = 1.0
SESSION_CACHE_MAX = 1024

# Every query that feeds _session selects these columns in this order, so that a row is
# unpacked positionally: attribute access on a Row (~0.5 us each, 28 of them) and Enum
# calls were most of the cost of a page of 100 sessions.
_COLUMNS = (
    _S.c.id,
    _S.c.repository_id,
    _S.c.push_id,
    _S.c.pull_id,
    _S.c.state,
    _S.c.push_state,
    _S.c.pull_state,
    _S.c.created_ns,
    _S.c.started_ns,
    _S.c.ended_ns,
    _S.c.error,
    _S.c.stop_requested,
    _S.c.trigger,
    _S.c.percent,
    _S.c.push_files_planned,
    _S.c.push_files_done,
    _S.c.push_bytes_planned,
    _S.c.push_bytes_done,
    _S.c.pull_files_planned,
    _S.c.pull_files_done,
    _S.c.pull_bytes_planned,
    _S.c.pull_bytes_done,
    _S.c.pushed,
    _S.c.pulled,
    _S.c.deleted_local,
    _S.c.deleted_remote,
    _S.c.conflicts,
    _S.c.errors,
    _S.c.halt,
    _S.c.halt_outcome,
    _S.c.approves,
    _S.c.moved_local,
    _S.c.moved_remote,
)
_STATES = {s.value: s for s in SessionState}
_PHASE_STATES: dict[str | None, PhaseState | None] = {p.value: p for p in PhaseState}
_PHASE_STATES[None] = None
_TRIGGERS = {t.value: t for t in Trigger}
_PHASE_COLUMNS = {Phase.PUSH: "push_state", Phase.PULL: "pull_state"}
_NOTHING_DONE = (
    "pushed",
    "pulled",
    "deleted_local",
    "deleted_remote",
    "moved_local",
    "moved_remote",
    "conflicts",
    "errors",
)


def _session(row: Sequence[Any]) -> Session:
    (id_, repository_id, push_id, pull_id, state, push_state, pull_state) = row[:7]
    (created_ns, started_ns, ended_ns, error, stop_requested, trigger, percent) = row[7:14]
    push, pull = PhaseCounters(*row[14:18]), PhaseCounters(*row[18:22])
    (pushed, pulled, deleted_local, deleted_remote, conflicts, errors) = row[22:28]
    halt, outcome, approves, moved_local, moved_remote = row[28:33]
    return Session(
        id=id_,
        repository_id=repository_id,
        push_id=push_id,
        pull_id=pull_id,
        state=_STATES[state],
        push_state=_PHASE_STATES[push_state],
        pull_state=_PHASE_STATES[pull_state],
        created_ns=created_ns,
        started_ns=started_ns,
        ended_ns=ended_ns,
        error=error,
        stop_requested=bool(stop_requested),
        trigger=_TRIGGERS[trigger],
        percent=percent,
        push=push,
        pull=pull,
        pushed=pushed,
        pulled=pulled,
        deleted_local=deleted_local,
        deleted_remote=deleted_remote,
        moved_local=moved_local,
        moved_remote=moved_remote,
        conflicts=conflicts,
        errors=errors,
        halt=None if halt is None else _halt(halt),
        halt_outcome=None if outcome is None else HaltOutcome(outcome),
        approves=approves,
    )


def _halt(raw: str) -> Halt:
    fields = json.loads(raw)
    return Halt(
        fields["reason"], fields["delete_local"], fields["delete_remote"], tuple(fields["sample"])
    )


def _counters(phase: Phase, counters: PhaseCounters) -> dict[str, int]:
    if phase is Phase.PUSH:
        return {
            "push_files_planned": counters.files_planned,
            "push_files_done": counters.files_done,
            "push_bytes_planned": counters.bytes_planned,
            "push_bytes_done": counters.bytes_done,
        }
    return {
        "pull_files_planned": counters.files_planned,
        "pull_files_done": counters.files_done,
        "pull_bytes_planned": counters.bytes_planned,
        "pull_bytes_done": counters.bytes_done,
    }


# Statements of the hot paths, built once: building ``select(sessions)`` (30 columns) and
# its cache key again on every call cost more than running it on SQLite.
_GET = sa.select(*_COLUMNS).where(_S.c.id == sa.bindparam("id"))
_ADD = _S.insert()


def _announce(conn: Connection, session_id: str, announce: Announce | None) -> Session | None:
    """Store the event about the session as the transaction left it, in that transaction;
    the session as read for it (None: no event)."""
    if announce is None:
        return None
    row = conn.execute(_GET, {"id": session_id}).first()
    assert row is not None, f"session {session_id} is gone"
    session = _session(row)
    insert_event(conn, announce(session))
    return session


@functools.cache
def _list_query(by_repository: bool, by_state: bool) -> sa.Select[Any]:
    query = sa.select(*_COLUMNS)
    if by_repository:
        query = query.where(_S.c.repository_id == sa.bindparam("repository_id"))
    if by_state:
        query = query.where(_S.c.state.in_(sa.bindparam("states", expanding=True)))
    return (
        query.order_by(_S.c.created_ns.desc(), _S.c.id.desc())
        .offset(sa.bindparam("offset", type_=sa.Integer))
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def _latest_query() -> sa.Select[Any]:
    """The newest session of every repository, in one query: per repository one step down
    the (repository_id, created_ns, id) index; a window over every session (the former
    query) read the whole history, 0.5 s for 100,000 sessions on SQLite."""
    repositories = schema.repositories
    newest = (
        sa.select(_S.c.id)
        .where(_S.c.repository_id == repositories.c.id)
        .order_by(_S.c.repository_id.desc(), _S.c.created_ns.desc(), _S.c.id.desc())
        .limit(1)
        .correlate(repositories)
        .scalar_subquery()
    )
    return sa.select(*_COLUMNS).select_from(repositories.join(_S, _S.c.id == newest))


_LATEST = _latest_query()


class SessionStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self._recent: Recent[Session] = Recent(SESSION_CACHE_S, SESSION_CACHE_MAX, clock)

    # -- reads ------------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        generation = self._recent.before_read()
        with self.engine.connect() as conn:
            row = conn.execute(_GET, {"id": session_id}).first()
        if row is None:
            return None
        session = _session(row)
        self._recent.keep(session_id, session, generation)
        return session

    def cached(self, session_id: str) -> Session | None:
        """The session as ``get`` last read it, if less than SESSION_CACHE_S ago and not
        changed since through this store; else None. No I/O: for the event loop."""
        return self._recent.get(session_id)

    def by_phases(self, push_id: str, pull_id: str) -> Session | None:
        query = sa.select(*_COLUMNS).where(_S.c.push_id == push_id, _S.c.pull_id == pull_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _session(row)

    def search(self, wanted: SessionQuery) -> list[Session]:
        states = [s.value for s in wanted.states]
        query = _list_query(wanted.repository_id is not None, bool(states))
        values: dict[str, Any] = {"offset": wanted.offset, "limit": wanted.limit}
        if wanted.repository_id is not None:
            values["repository_id"] = wanted.repository_id
        if states:
            values["states"] = states
        with self.engine.connect() as conn:
            return [_session(r) for r in conn.execute(query, values)]

    def latest(self) -> dict[str, Session]:
        """The newest session of each repository that has one, by repository id."""
        with self.engine.connect() as conn:
            return {s.repository_id: s for s in map(_session, conn.execute(_LATEST))}

    def totals_by_repository(self) -> dict[str, RepositoryTotals]:
        """Per repository: its sessions by state, and the files and bytes they moved each
        way (as far as the history reaches)."""
        query = sa.select(
            _S.c.repository_id,
            _S.c.state,
            sa.func.count(),
            sa.func.sum(_S.c.pushed),
            sa.func.sum(_S.c.pulled),
            sa.func.sum(_S.c.push_bytes_done),
            sa.func.sum(_S.c.pull_bytes_done),
        ).group_by(_S.c.repository_id, _S.c.state)
        found: dict[str, RepositoryTotals] = {}
        with self.engine.connect() as conn:
            for rid, state, n, pushed, pulled, up, down in conn.execute(query):
                totals = found.setdefault(rid, RepositoryTotals())
                totals.sessions_by_state[SessionState(state)] = int(n)
                totals.files_pushed += int(pushed or 0)
                totals.files_pulled += int(pulled or 0)
                totals.bytes_pushed += int(up or 0)
                totals.bytes_pulled += int(down or 0)
        return found

    def count_by_state(self) -> dict[SessionState, int]:
        query = sa.select(_S.c.state, sa.func.count()).group_by(_S.c.state)
        with self.engine.connect() as conn:
            return {SessionState(state): int(n) for state, n in conn.execute(query)}

    # -- writes -----------------------------------------------------------------------

    def create(
        self,
        repository_id: str,
        *,
        trigger: Trigger,
        now_ns: int,
        approves: str | None = None,
        announce: Announce | None = None,
    ) -> Session:
        values = {
            "id": str(uuid.uuid4()),
            "repository_id": repository_id,
            "push_id": str(uuid.uuid4()),
            "pull_id": str(uuid.uuid4()),
            "state": SessionState.QUEUED.value,
            "created_ns": now_ns,
            "trigger": trigger.value,
            "approves": approves,
        }
        with self.engine.begin() as conn:
            conn.execute(_ADD, values)
            announced = _announce(conn, str(values["id"]), announce)
        found = announced or self.get(str(values["id"]))
        assert found is not None
        return found

    def start(self, session_id: str, *, now_ns: int, announce: Announce | None = None) -> Session:
        values = {"state": SessionState.RUNNING.value, "started_ns": now_ns}
        return self._update(session_id, values, announce)

    def set_phase(self, session_id: str, phase: Phase, state: PhaseState) -> Session:
        return self._update(session_id, {_PHASE_COLUMNS[phase]: state.value})

    def set_progress(
        self, session_id: str, percent: int, push: PhaseCounters, pull: PhaseCounters
    ) -> Session:
        values = {"percent": percent, **_counters(Phase.PUSH, push), **_counters(Phase.PULL, pull)}
        return self._update(session_id, values)

    def settle_halt(self, session_id: str, outcome: HaltOutcome) -> Session:
        return self._update(session_id, {"halt_outcome": outcome.value})

    def carry_approval(self, session_id: str, halted_id: str) -> Session:
        """A queued session carries the approval of a halt."""
        return self._update(session_id, {"approves": halted_id})

    def request_stop(self, session_id: str) -> Session:
        return self._update(session_id, {"stop_requested": True})

    def end(
        self,
        session_id: str,
        totals: SessionTotals,
        *,
        now_ns: int,
        phases: Mapping[Phase, PhaseState] | None = None,
        announce: Announce | None = None,
    ) -> Session:
        """The session ended as ``totals`` say; ``phases``: the states its phases end in
        (those still running). A session that completed shows 100%."""
        values: dict[str, Any] = {
            "state": totals.state.value,
            "ended_ns": now_ns,
            "error": totals.error,
            "pushed": totals.pushed,
            "pulled": totals.pulled,
            "deleted_local": totals.deleted_local,
            "deleted_remote": totals.deleted_remote,
            "moved_local": totals.moved_local,
            "moved_remote": totals.moved_remote,
            "conflicts": totals.conflicts,
            "errors": totals.errors,
        }
        if totals.halt is not None:
            values["halt"] = json.dumps(dataclasses.asdict(totals.halt))
        if totals.state in (SessionState.COMPLETED, SessionState.PARTIAL):
            values["percent"] = 100
        for phase, state in (phases or {}).items():
            values[_PHASE_COLUMNS[phase]] = state.value
        return self._update(session_id, values, announce)

    def _update(
        self, session_id: str, values: Mapping[str, Any], announce: Announce | None = None
    ) -> Session:
        with self.engine.begin() as conn:
            conn.execute(_S.update().where(_S.c.id == session_id).values(**values))
            announced = _announce(conn, session_id, announce)
        self._recent.forget(session_id)
        found = announced or self.get(session_id)
        assert found is not None, f"session {session_id} is gone"
        return found

    def forget_cached(self) -> None:
        """Sessions were deleted behind this store (with their repository)."""
        self._recent.forget()

    def prune(self, *, ended_before_ns: int, quiet_ended_before_ns: int) -> list[str]:
        """Forget finished sessions, their log items and events, and the conflicts resolved,
        older than the cutoff, and sooner the sessions that started by themselves and
        changed nothing (a schedule or a watch with nothing to do), in one transaction;
        the ids of the sessions forgotten."""
        quiet = sa.and_(
            _S.c.ended_ns < quiet_ended_before_ns,
            _S.c.trigger.in_([t.value for t in (Trigger.SCHEDULE, Trigger.WATCH)]),
            _S.c.state == SessionState.COMPLETED.value,
            *(_S.c[name] == 0 for name in _NOTHING_DONE),
        )
        old = sa.select(_S.c.id).where(sa.or_(_S.c.ended_ns < ended_before_ns, quiet))
        with self.engine.begin() as conn:
            pruned = [str(i) for i in conn.execute(old).scalars()]
            conn.execute(_L.delete().where(_L.c.session_id.in_(old)))
            conn.execute(_P.delete().where(_P.c.session_id.in_(old)))
            # The newest event stays, whatever its age: the next id is counted from it,
            # so ids are never given twice (a client resuming from an old id would wait).
            newest = sa.select(sa.func.max(_E.c.id)).scalar_subquery()
            conn.execute(_E.delete().where(_E.c.session_id.in_(old), _E.c.id < newest))
            conn.execute(_S.delete().where(_S.c.id.in_(old)))
            # Resolved conflicts go with the history of their time; open ones stay.
            found = schema.conflicts
            conn.execute(
                found.delete().where(
                    found.c.state == ConflictState.RESOLVED.value,
                    found.c.resolved_ns < ended_before_ns,
                )
            )
        self._recent.forget()
        return pruned
