"""The fires of repositories' schedules: each recorded once, then the session carrying it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.state import schema

_F = schema.schedule_fires


class FireStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, repository_id: str, fire_ns: int, *, now_ns: int) -> bool:
        """Record a fire; False when it was recorded already (by anyone, ever)."""
        row = {"repository_id": repository_id, "fire_ns": fire_ns, "recorded_ns": now_ns}
        try:
            with self.engine.begin() as conn:
                conn.execute(_F.insert().values(**row))
        except sa.exc.IntegrityError:
            return False
        return True

    def carried(self, repository_id: str, fire_ns: int, session_id: str) -> None:
        """The session that carries a recorded fire."""
        query = _F.update().where(_F.c.repository_id == repository_id, _F.c.fire_ns == fire_ns)
        with self.engine.begin() as conn:
            conn.execute(query.values(session_id=session_id))

    def last(self, repository_id: str) -> int | None:
        query = sa.select(sa.func.max(_F.c.fire_ns)).where(_F.c.repository_id == repository_id)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def uncarried(self) -> list[tuple[str, int]]:
        """Fires recorded that no session took (the service stopped in between)."""
        query = sa.select(_F.c.repository_id, _F.c.fire_ns).where(_F.c.session_id.is_(None))
        with self.engine.connect() as conn:
            return [(str(r), int(f)) for r, f in conn.execute(query.order_by(_F.c.fire_ns))]
