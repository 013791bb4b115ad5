"""Conflicts as the service reads and decides them (API.md section 7); the sessions'
workers write them (storsync.state.conflict_sql)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.model import ConflictPolicy, ConflictState, Keep
from storsync.state import schema
from storsync.state.records import Conflict, ConflictQuery, Version

_C = schema.conflicts


class ConflictStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, conflict_id: str) -> Conflict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_C).where(_C.c.id == conflict_id)).first()
        return None if row is None else _conflict(row)

    def search(self, query: ConflictQuery) -> list[Conflict]:
        select = sa.select(_C).order_by(_C.c.found_ns, _C.c.id)
        if query.repository_id is not None:
            select = select.where(_C.c.repository_id == query.repository_id)
        if query.state is not None:
            select = select.where(_C.c.state == query.state.value)
        with self.engine.connect() as conn:
            rows = conn.execute(select.offset(query.offset).limit(query.limit))
            return [_conflict(row) for row in rows]

    def open_counts(self) -> dict[str, int]:
        """Open conflicts by repository."""
        select = (
            sa.select(_C.c.repository_id, sa.func.count())
            .where(_C.c.state == ConflictState.OPEN.value)
            .group_by(_C.c.repository_id)
        )
        with self.engine.connect() as conn:
            return {rid: int(count) for rid, count in conn.execute(select)}

    def carry(self, conflict_id: str, keep: Keep, session_id: str) -> bool:
        """Give an open conflict's decision to a session; False when it is resolved or
        another session carries a decision already."""
        update = (
            _C.update()
            .where(
                _C.c.id == conflict_id,
                _C.c.state == ConflictState.OPEN.value,
                _C.c.resolving_session_id.is_(None),
            )
            .values(resolving=keep.value, resolving_session_id=session_id)
        )
        with self.engine.begin() as conn:
            return conn.execute(update).rowcount == 1

    def release(self, session_id: str) -> None:
        """Decisions a session ended without carrying out (it failed or stopped first):
        their conflicts are open again for anyone to decide."""
        update = (
            _C.update()
            .where(_C.c.resolving_session_id == session_id)
            .values(resolving=None, resolving_session_id=None)
        )
        with self.engine.begin() as conn:
            conn.execute(update)

    def resolved_by(self, session_id: str) -> list[Conflict]:
        """The conflicts a session resolved: by a person's decision or by its policy."""
        select = sa.select(_C).where(_C.c.resolved_session_id == session_id).order_by(_C.c.id)
        with self.engine.connect() as conn:
            return [_conflict(row) for row in conn.execute(select)]


def _keep(value: Any) -> Keep | None:
    return None if value is None else Keep(value)


def _conflict(row: sa.Row[Any]) -> Conflict:
    return Conflict(
        id=row.id,
        repository_id=row.repository_id,
        path=row.path,
        copy_path=row.copy_path,
        state=ConflictState(row.state),
        policy=ConflictPolicy(row.policy),
        found_session_id=row.found_session_id,
        found_ns=row.found_ns,
        local=Version(row.local_size, row.local_mtime_ns, row.local_hash),
        remote=Version(row.remote_size, row.remote_mtime_ns, row.remote_hash),
        path_print=row.path_print,
        copy_print=row.copy_print,
        resolving=_keep(row.resolving),
        resolving_session_id=row.resolving_session_id,
        kept=_keep(row.kept),
        resolved_by=row.resolved_by,
        resolved_session_id=row.resolved_session_id,
        resolved_ns=row.resolved_ns,
    )
