"""The service, wired from settings: one catalog, one vault, one event bus, the accounts,
the repositories and the session manager. The HTTP faces hold one of these."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

from storsync.clock import Clock, SystemClock
from storsync.config import Settings
from storsync.service.auth import Accounts
from storsync.service.events import EventBus
from storsync.service.repositories import DEFAULT_NAME, Repositories, RepositorySpec
from storsync.service.sessions import SessionManager, SessionOptions
from storsync.service.vault import Vault
from storsync.state.catalog import Catalog

HOUSEKEEPING_INTERVAL_S = 3600.0
log = logging.getLogger("storsync.service")


@dataclass
class Service:
    settings: Settings
    catalog: Catalog
    vault: Vault
    bus: EventBus
    accounts: Accounts
    repositories: Repositories
    sessions: SessionManager
    clock: Clock
    generated_admin_password: str | None = None
    _closing: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock | None = None) -> Service:
        clock = clock or SystemClock()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(settings.database)
        vault = Vault.open(settings.secret_key, settings.data_dir)
        bus = EventBus(catalog, clock)
        accounts = Accounts(
            catalog, clock, token_ttl_s=settings.token_ttl_s, refresh_ttl_s=settings.refresh_ttl_s
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
                retention_days=settings.retention_days,
                allow_private_endpoints=settings.allow_private_endpoints,
                trusted_endpoint=_operator_endpoint(settings),
            ),
        )
        repositories = Repositories(
            catalog,
            vault,
            clock,
            sessions,
            roots=settings.roots,
            allow_private_endpoints=settings.allow_private_endpoints,
        )
        service = cls(settings, catalog, vault, bus, accounts, repositories, sessions, clock)
        service.generated_admin_password = accounts.ensure_admin(
            settings.admin_user, settings.admin_password
        )
        service._ensure_default_repository()
        return service

    def _ensure_default_repository(self) -> None:
        s = self.settings
        if s.local is not None and s.remote is not None:
            local, remote = str(s.local), s.remote
        elif self.catalog.default_repository() is not None:
            return
        else:
            local = str(s.data_dir / "storsync-local")
            remote = str(s.data_dir / "storsync-remote")
        credentials = None
        if remote.startswith("s3://"):
            env = os.environ
            found = {
                "accessKeyId": env.get("AWS_ACCESS_KEY_ID", ""),
                "secretAccessKey": env.get("AWS_SECRET_ACCESS_KEY", ""),
                "endpoint": _operator_endpoint(s) or "",
                "region": s.s3_region or env.get("AWS_REGION", ""),
            }
            credentials = {k: v for k, v in found.items() if v}
        self.repositories.ensure_default(
            RepositorySpec(
                name=DEFAULT_NAME, local_path=local, remote=remote, credentials=credentials
            )
        )

    def start(self) -> None:
        self.sessions.recover()
        self.accounts.prune()
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
        self.sessions.shutdown()
        self.catalog.close()


def _operator_endpoint(settings: Settings) -> str | None:
    """The S3 endpoint of the default repository, as whoever starts the server gives it."""
    env = os.environ
    return (
        settings.s3_endpoint
        or env.get("AWS_ENDPOINT_URL_S3")
        or env.get("AWS_ENDPOINT_URL")
        or None
    )
