"""The service's records in the state store, one store per kind of record, on one
database (SQLite or PostgreSQL through SQLAlchemy Core). Every method of every store is
one short transaction; the service calls them from worker threads."""

from __future__ import annotations

from storsync.clock import Clock
from storsync.state.account_store import AccountStore
from storsync.state.conflict_store import ConflictStore
from storsync.state.database import Database
from storsync.state.event_store import EventStore
from storsync.state.fire_store import FireStore
from storsync.state.log_store import LogItemStore
from storsync.state.plan_store import PlanStore
from storsync.state.repository_store import RepositoryStore
from storsync.state.service_settings_store import ServiceSettingsStore
from storsync.state.session_store import SessionStore


class Catalog:
    def __init__(self, url: str, clock: Clock) -> None:
        self.database = Database(url)
        engine = self.database.engine
        self.sessions = SessionStore(engine, clock)
        self.repositories = RepositoryStore(engine, sessions_deleted=self.sessions.forget_cached)
        self.log_items = LogItemStore(engine)
        self.accounts = AccountStore(engine, clock)
        self.events = EventStore(engine)
        self.fires = FireStore(engine)
        self.plans = PlanStore(engine)
        self.conflicts = ConflictStore(engine)
        self.service_settings = ServiceSettingsStore(engine)

    def close(self) -> None:
        self.database.close()
