"""Halted sessions' plans in the state store (written by the session's worker), read page
by page."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.model import PlanAction
from storsync.state import schema

_P = schema.plan_items


@dataclass(frozen=True, slots=True)
class PlanStep:
    id: int
    action: PlanAction
    path: str
    size: int | None


class PlanStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def page(self, session_id: str, *, after_id: int, limit: int) -> list[PlanStep]:
        query = (
            sa.select(_P.c.id, _P.c.action, _P.c.path, _P.c.size)
            .where(_P.c.session_id == session_id, _P.c.id > after_id)
            .order_by(_P.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [PlanStep(i, PlanAction(a), p, s) for i, a, p, s in conn.execute(query)]
