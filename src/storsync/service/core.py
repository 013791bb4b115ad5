"""The service, wired from settings: one catalog, one vault, one event bus, the accounts,
the repositories and the session manager. The HTTP faces hold one of these and call
nothing else."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

from storsync import __version__
from storsync.clock import Clock, SystemClock
from storsync.config import Settings
from storsync.model import SessionState
from storsync.service.auth import Accounts
from storsync.service.bandwidth import Bandwidth
from storsync.service.conflicts import Conflicts
from storsync.service.events import EventBus
from storsync.service.halts import Halts
from storsync.service.hub import EventHub
from storsync.service.repositories import DEFAULT_NAME, Repositories, RepositorySpec
from storsync.service.repository_checks import RepositoryChecks
from storsync.service.scheduler import Scheduler
from storsync.service.sessions import SessionManager, SessionOptions
from storsync.service.vault import Vault
from storsync.service.watches import Watches
from storsync.state.catalog import Catalog
from storsync.state.protocol import open_base_store
from storsync.state.records import RepositoryTotals
from storsync.storage.registry import kind_of

HOUSEKEEPING_INTERVAL_S = 3600.0
log = logging.getLogger("storsync.service")


@dataclass(frozen=True)
class RepositoryMetrics:
    """One repository's figures (API.md section 7, Operations)."""

    id: str
    name: str
    last_success_ns: int | None
    totals: RepositoryTotals
    open_conflicts: int
    halted: bool


@dataclass(frozen=True)
class Metrics:
    """The figures ``/metrics`` exports, read at scrape time."""

    sessions_by_state: dict[SessionState, int]
    workers_running: int
    repositories: int
    last_event_id: int
    per_repository: list[RepositoryMetrics]


@dataclass
class Service:
    settings: Settings
    catalog: Catalog
    vault: Vault
    bus: EventBus
    accounts: Accounts
    repositories: Repositories
    sessions: SessionManager
    halts: Halts
    scheduler: Scheduler
    watches: Watches
    conflicts: Conflicts
    clock: Clock
    generated_admin_password: str | None = None
    _closing: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock | None = None) -> Service:
        clock = clock or SystemClock()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(settings.database, clock)
        vault = Vault.open(settings.secret_key, settings.data_dir)
        bus = EventBus(catalog.events, clock)
        accounts = Accounts(
            catalog.accounts,
            clock,
            token_ttl_s=settings.token_ttl_s,
            refresh_ttl_s=settings.refresh_ttl_s,
        )
        sessions = SessionManager(
            catalog,
            bus,
            vault,
            clock,
            SessionOptions(
                database_url=settings.database,
                transfers=settings.transfers,
                niceness=settings.worker_niceness,
                spare_worker=settings.spare_worker,
                retention_days=settings.retention_days,
                quiet_retention_days=settings.quiet_retention_days,
                allow_private_endpoints=settings.allow_private_endpoints,
                trusted_endpoint=settings.s3_endpoint,
            ),
            Bandwidth(catalog.service_settings, settings.bwlimit_bytes_per_second),
        )
        checks = RepositoryChecks(
            catalog.repositories,
            roots=settings.roots,
            allow_private_endpoints=settings.allow_private_endpoints,
        )
        watches = Watches(catalog.repositories, sessions, open_base_store(settings.database), clock)
        scheduler = Scheduler(
            catalog.repositories,
            catalog.fires,
            lambda rid, trigger: sessions.carry(rid, trigger, watches.scope_of_fire(rid)),
            clock,
            sessions.waiting_halts,
        )

        def changed() -> None:
            scheduler.poke()
            sessions.rebalance()
            watches.refresh()

        repositories = Repositories(
            catalog,
            vault,
            clock,
            sessions,
            checks,
            default_transfers=settings.transfers,
            changed=changed,
        )
        halts = Halts(sessions, repositories, catalog.plans)
        conflicts = Conflicts(
            catalog.conflicts,
            catalog.repositories,
            sessions,
            open_base_store(settings.database),
            clock,
        )
        service = cls(
            settings,
            catalog,
            vault,
            bus,
            accounts,
            repositories,
            sessions,
            halts,
            scheduler,
            watches,
            conflicts,
            clock,
        )
        service.generated_admin_password = accounts.ensure_admin(
            settings.admin_user, settings.admin_password
        )
        repositories.upgrade_sealed_options()
        service._ensure_default_repository()
        return service

    def _ensure_default_repository(self) -> None:
        s = self.settings
        if s.local is not None and s.remote is not None:
            local, remote = str(s.local), s.remote
        elif self.catalog.repositories.default() is not None:
            return
        else:
            local = str(s.data_dir / "storsync-local")
            remote = str(s.data_dir / "storsync-remote")
        given = {
            "access_key_id": s.s3_access_key_id or "",
            "secret_access_key": s.s3_secret_access_key or "",
            "endpoint": s.s3_endpoint or "",
            "region": s.s3_region or "",
        }
        fields = {k: v for k, v in given.items() if v and k in kind_of(remote).fields}
        self.repositories.ensure_default(
            RepositorySpec(name=DEFAULT_NAME, local_path=local, remote=remote, remote_fields=fields)
        )

    # -- for the faces ------------------------------------------------------------------

    def health(self) -> None:
        """Raises when the database does not answer."""
        self.catalog.events.last_id()

    def open_conflicts(self) -> dict[str, int]:
        """Open conflicts by repository (none: absent)."""
        return self.catalog.conflicts.open_counts()

    def metrics(self) -> Metrics:
        repositories = self.catalog.repositories.all()
        totals = self.catalog.sessions.totals_by_repository()
        conflicts = self.catalog.conflicts.open_counts()
        halted = self.sessions.waiting_halts()
        return Metrics(
            sessions_by_state=self.catalog.sessions.count_by_state(),
            workers_running=self.sessions.running(),
            repositories=len(repositories),
            last_event_id=self.bus.last_id,
            per_repository=[
                RepositoryMetrics(
                    r.id,
                    r.name,
                    r.last_success_ns,
                    totals.get(r.id, RepositoryTotals()),
                    conflicts.get(r.id, 0),
                    r.id in halted,
                )
                for r in repositories
            ],
        )

    def summary(self, listening: str) -> str:
        """The start-up line: where its data is, what it keeps, where it listens."""
        repositories = self.catalog.repositories.all()
        scheduled = sum(r.settings.schedule is not None for r in repositories)
        watched = sum(r.settings.watch for r in repositories)
        return (
            f"storsync {__version__} listening on {listening}; data directory "
            f"{self.settings.data_dir}, database {self.catalog.database.shown()}; "
            f"repositories: {len(repositories)} ({scheduled} scheduled, {watched} watched); "
            f"sessions running: {self.sessions.running()}"
        )

    def bwlimit(self) -> int | None:
        """The service's total bandwidth limit, bytes per second (None: none)."""
        return self.sessions.bandwidth.total

    def set_bwlimit(self, bytes_per_second: int | None) -> None:
        """Change the total; running sessions get their new shares at once."""
        self.sessions.bandwidth.set_total(bytes_per_second)
        self.sessions.rebalance()

    def hub(self, loop: asyncio.AbstractEventLoop) -> EventHub:
        """Live delivery of this service's events to the consumers on ``loop``."""
        return EventHub(self.bus, self.catalog.events, self.catalog.log_items, loop)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.sessions.recover()
        self.accounts.prune()
        self.scheduler.start()
        self.watches.start()
        self._closing.clear()
        threading.Thread(target=self._housekeeping, daemon=True, name="housekeeping").start()

    def _housekeeping(self) -> None:
        """Prune the history past its retention, and expired tokens, every hour."""
        while not self._closing.wait(HOUSEKEEPING_INTERVAL_S):
            try:
                self.sessions.prune()
                self.accounts.prune()
            except Exception:  # a database hiccup: the next round tries again
                log.exception("housekeeping failed")

    def close(self) -> None:
        self._closing.set()
        self.watches.close()
        self.conflicts.close()
        self.scheduler.close()
        self.sessions.shutdown()
        self.catalog.close()
