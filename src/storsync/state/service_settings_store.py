"""The service's settings changed through the API (0010_bandwidth): they outlive a
restart and win over the configuration's start value."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.state import schema

_T = schema.service_settings


class ServiceSettingsStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> tuple[bool, Any]:
        """(whether it was ever set, its value)."""
        with self.engine.connect() as conn:
            raw = conn.execute(sa.select(_T.c.value).where(_T.c.name == name)).scalar()
        return (False, None) if raw is None else (True, json.loads(raw))

    def set(self, name: str, value: Any) -> None:
        encoded = json.dumps(value)
        with self.engine.begin() as conn:
            done = conn.execute(_T.update().where(_T.c.name == name).values(value=encoded))
            if done.rowcount == 0:
                conn.execute(_T.insert().values(name=name, value=encoded))
