"""Log items in the state store: what each session did, path by path."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.model import LogKind
from storsync.state import schema
from storsync.state.records import LogItem

_L = schema.log_items
_KINDS = {k.value: k for k in LogKind}


class LogItemStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self, session_id: str, kind: LogKind, ts_ns: int, items: Iterable[tuple[str, str | None]]
    ) -> None:
        """Items of one kind, each (path, message), in one transaction."""
        rows = [
            {"session_id": session_id, "ts_ns": ts_ns, "kind": kind.value, "path": p, "message": m}
            for p, m in items
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(_L.insert(), rows)

    def batch(
        self, session_id: str, kind: LogKind, first_id: int, last_id: int
    ) -> list[tuple[str, int | None]]:
        """The paths and sizes of one batch a worker recorded (its ids, by session and
        kind: on PostgreSQL another session's rows may lie within the range)."""
        query = (
            sa.select(_L.c.path, _L.c.size)
            .where(
                _L.c.session_id == session_id,
                _L.c.id >= first_id,
                _L.c.id <= last_id,
                _L.c.kind == kind.value,
            )
            .order_by(_L.c.id)
        )
        with self.engine.connect() as conn:
            return [(path, size) for path, size in conn.execute(query)]

    def moved_per_second(self, session_id: str) -> list[tuple[int, LogKind, int]]:
        """(second since the epoch, pushed or pulled, bytes) of a session, by second: what
        a plot of its throughput needs, summed by the database."""
        second = (_L.c.ts_ns // 1_000_000_000).label("second")
        moved = (LogKind.PUSHED.value, LogKind.PULLED.value)
        query = (
            sa.select(second, _L.c.kind, sa.func.sum(_L.c.size))
            .where(_L.c.session_id == session_id, _L.c.kind.in_(moved))
            .group_by(second, _L.c.kind)
            .order_by(second)
        )
        with self.engine.connect() as conn:
            return [(int(s), _KINDS[k], int(total or 0)) for s, k, total in conn.execute(query)]

    def list(
        self, session_id: str, *, kind: LogKind | None = None, after_id: int = 0, limit: int = 100
    ) -> list[LogItem]:
        query = sa.select(_L).where(_L.c.session_id == session_id, _L.c.id > after_id)
        if kind is not None:
            query = query.where(_L.c.kind == kind.value)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(_L.c.id).limit(limit))
            return [
                LogItem(r.id, r.session_id, r.ts_ns, _KINDS[r.kind], r.path, r.message, r.size)
                for r in rows
            ]
