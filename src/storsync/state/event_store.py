"""Events in the state store, numbered by the service's one writer (API.md section 6).

An event's session snapshot and details are stored as JSON in the ``data`` column, with
the field names of the records. Events stored before 0.1's typed events used the native
face's camelCase names; they are read through ``_LEGACY``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from storsync.model import (
    EventType,
    Keep,
    LogKind,
    Phase,
    PhaseCounters,
    PhaseState,
    SessionState,
    Trigger,
)
from storsync.state import schema
from storsync.state.records import (
    ConflictFound,
    ConflictResolved,
    Detail,
    Event,
    ItemBatch,
    Nothing,
    PhaseChanged,
    Progressed,
    Queued,
    SessionSnapshot,
)

_E = schema.events
_ADD = _E.insert()
_LEGACY = {
    "repositoryId": "repository_id",
    "pushId": "push_id",
    "pullId": "pull_id",
    "pushState": "push_state",
    "pullState": "pull_state",
    "progressPercent": "percent",
    "filesPlanned": "files_planned",
    "filesDone": "files_done",
    "bytesPlanned": "bytes_planned",
    "bytesDone": "bytes_done",
    "rateBps": "rate_bps",
    "etaSeconds": "eta_s",
    "firstItemId": "first_id",
    "lastItemId": "last_id",
}


def _plain(value: Any) -> Any:
    """A record as JSON values: dataclasses as objects, enums by value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _renamed(raw: Any) -> Any:
    if isinstance(raw, dict):
        return {_LEGACY.get(k, k): _renamed(v) for k, v in raw.items()}
    return raw


def encode(event: Event) -> str:
    data = _plain(event.detail)
    data.pop("items", None)  # where the items are is stored, not the items
    if event.session is not None:
        data["session"] = _plain(event.session)
    return json.dumps(data, separators=(",", ":"))


def _snapshot(raw: dict[str, Any]) -> SessionSnapshot:
    def phase(value: str | None) -> PhaseState | None:
        return None if value is None else PhaseState(value)

    return SessionSnapshot(
        id=raw["id"],
        repository_id=raw["repository_id"],
        state=SessionState(raw["state"]),
        started=bool(raw["started"]),
        push_id=raw["push_id"],
        pull_id=raw["pull_id"],
        push_state=phase(raw["push_state"]),
        pull_state=phase(raw["pull_state"]),
        percent=int(raw["percent"]),
        push=PhaseCounters(**raw["push"]),
        pull=PhaseCounters(**raw["pull"]),
        error=raw["error"],
    )


def _detail(type_: EventType, raw: dict[str, Any]) -> Detail:
    if type_ is EventType.SESSION_QUEUED:
        return Queued(Trigger(raw["trigger"]))
    if type_ in (EventType.PHASE_STARTED, EventType.PHASE_FINISHED):
        return PhaseChanged(Phase(raw["phase"]), PhaseState(raw["state"]))
    if type_ is EventType.SESSION_PROGRESS:
        # Named "phase" before typed events.
        return Progressed(raw.get("stage", raw.get("phase", "")), raw["rate_bps"], raw["eta_s"])
    if type_ is EventType.SESSION_CONFLICT:
        return ConflictFound(raw["path"])
    if type_ is EventType.CONFLICT_RESOLVED:
        return ConflictResolved(raw["conflict_id"], raw["path"], Keep(raw["kept"]), raw["by"])
    if type_ is EventType.ITEMS_TRANSFERRED:
        return ItemBatch(LogKind(raw["kind"]), raw["count"], raw["first_id"], raw["last_id"])
    return Nothing()


def decode(row: sa.Row[Any]) -> Event:
    type_ = EventType(row.type)
    data = _renamed(json.loads(row.data))
    snapshot = data.pop("session", None)
    return Event(
        id=row.id,
        ts_ns=row.ts_ns,
        type=type_,
        repository_id=row.repository_id,
        session_id=row.session_id,
        session=None if snapshot is None else _snapshot(snapshot),
        detail=_detail(type_, data),
    )


def insert(conn: Connection, event: Event) -> None:
    """Store the event in the caller's transaction (a session's change and its event are
    one transaction: storsync.state.session_store)."""
    conn.execute(
        _ADD,
        {
            "id": event.id,
            "ts_ns": event.ts_ns,
            "type": event.type.value,
            "repository_id": event.repository_id,
            "session_id": event.session_id,
            "data": encode(event),
        },
    )


class EventStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def last_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(_E.c.id))).scalar() or 0)

    def add(self, event: Event) -> None:
        with self.engine.begin() as conn:
            insert(conn, event)

    def since(
        self,
        after_id: int,
        *,
        limit: int = 100,
        repository_id: str | None = None,
        session_id: str | None = None,
        types: Iterable[EventType] = (),
    ) -> list[Event]:
        query = sa.select(_E).where(_E.c.id > after_id)
        if repository_id is not None:
            query = query.where(_E.c.repository_id == repository_id)
        if session_id is not None:
            query = query.where(_E.c.session_id == session_id)
        wanted = [t.value for t in types]
        if wanted:
            query = query.where(_E.c.type.in_(wanted))
        with self.engine.connect() as conn:
            return [decode(r) for r in conn.execute(query.order_by(_E.c.id).limit(limit))]
