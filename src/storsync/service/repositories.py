"""Repositories: what they are made of, how they are shown, and the checks of what a
client may point the server at (API.md section 5, storsync.service.repository_checks)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from storsync.clock import Clock
from storsync.errors import UnknownObject, UsageError
from storsync.model import RepositoryStatus, SessionState, SyncSettings
from storsync.service import scheduling
from storsync.service.repository_checks import RepositoryChecks
from storsync.service.sessions import SessionManager
from storsync.service.vault import Vault
from storsync.state.catalog import Catalog
from storsync.state.records import Repository, RepositorySettings, Session, SessionQuery
from storsync.state.repository_store import RepositoryValues
from storsync.storage.registry import kind_of, split_fields

T = TypeVar("T")
_STILL = (RepositoryStatus.PAUSED, RepositoryStatus.HALTED)  # nothing fires by itself
DEFAULT_NAME = "default"
# How the sealed credentials of a repository made before 0006_repository_settings name
# their fields (with its options among them); read once at the next start.
_SEALED_BEFORE_OPTIONS = {"accessKeyId": "access_key_id", "secretAccessKey": "secret_access_key"}


@dataclass(frozen=True)
class RepositorySpec:
    """A repository as a client asks for it. ``remote_fields``: the remote's options and
    credentials by their names in storsync.storage.registry (None: none)."""

    name: str
    local_path: str
    remote: str
    description: str = ""
    settings: RepositorySettings = field(default_factory=RepositorySettings)
    remote_fields: Mapping[str, str] | None = None


@dataclass(frozen=True)
class RepositoryChanges:
    """What an update changes; None leaves a field as it is. ``remote_fields``, when
    given, replaces the remote's options and credentials together."""

    name: str | None = None
    local_path: str | None = None
    remote: str | None = None
    description: str | None = None
    remote_fields: Mapping[str, str] | None = None
    settings: Mapping[str, Any] | None = None  # RepositorySettings fields to change


@dataclass(frozen=True)
class RepositoryView:
    """A repository as the faces show it: where it is, its effective settings, its newest
    session, how it is doing and when it next synchronizes by itself."""

    repository: Repository
    local_path: str
    remote: str
    settings: SyncSettings
    last_session: Session | None
    status: RepositoryStatus
    next_run_ns: int | None

    @property
    def out_of_sync(self) -> bool:
        """Whether the repository may differ from its remote now: it never completed a
        session, its newest one did not complete, or it changed after that one began."""
        repository, session = self.repository, self.last_session
        if session is None:
            return True
        changed = repository.updated_ns or repository.created_ns
        return session.state is not SessionState.COMPLETED or session.created_ns < changed


class Repositories:
    def __init__(
        self,
        catalog: Catalog,
        vault: Vault,
        clock: Clock,
        sessions: SessionManager,
        checks: RepositoryChecks,
        *,
        default_transfers: int,
        changed: Callable[[], None],
    ) -> None:
        self.store = catalog.repositories
        self.catalog = catalog
        self.vault = vault
        self.clock = clock
        self.sessions = sessions
        self.checks = checks
        self.default_transfers = default_transfers
        # Told after any change: the scheduler looks at the schedules again.
        self.changed = changed

    # -- reads ------------------------------------------------------------------------

    def list(self) -> list[RepositoryView]:
        latest = self.catalog.sessions.latest()
        return [self._view(r, latest.get(r.id)) for r in self.store.all()]

    def names(self) -> dict[str, str]:
        """Every repository's name by its id (pages that name a session's repository)."""
        return {r.id: r.name for r in self.store.all()}

    def get(self, repository_id: str) -> RepositoryView:
        return self.view(self.find(repository_id))

    def find(self, repository_id: str) -> Repository:
        found = self.store.get(repository_id)
        if found is None:
            raise UnknownObject(f"no repository with id {repository_id!r}")
        return found

    def default(self) -> Repository:
        found = self.store.default()
        if found is None:
            raise UnknownObject(
                "there is no default repository; start the server with --local/--remote"
            )
        return found

    def view(self, repository: Repository) -> RepositoryView:
        last = self.catalog.sessions.search(SessionQuery(repository.id, limit=1))
        return self._view(repository, last[0] if last else None)

    def _view(self, repository: Repository, last: Session | None) -> RepositoryView:
        status = _status(repository, last)
        return RepositoryView(
            repository,
            str(repository.local_root),
            kind_of(repository.remote_url).shown(repository.remote_url),
            repository.settings.sync_settings(self.default_transfers),
            last,
            status,
            None if status in _STILL else self._next_run(repository),
        )

    def _next_run(self, repository: Repository) -> int | None:
        schedule = repository.settings.schedule
        if schedule is None:
            return None
        now = self.clock.now_ns()
        due = scheduling.next_after(schedule, now)
        waits = scheduling.backoff_until(repository.failures, repository.last_failure_ns)
        return due if waits is None or waits <= now else max(due, waits)

    # -- changes ----------------------------------------------------------------------

    def create(self, spec: RepositorySpec, *, trusted: bool = False) -> RepositoryView:
        values = self._values(spec, trusted=trusted, exclude_id=None)
        now = self.clock.now_ns()
        created = self.store.create(replace(values, schedule_set_ns=now), now_ns=now)
        self.changed()
        return self.view(created)

    def update(self, repository_id: str, changes: RepositoryChanges) -> RepositoryView:
        current = self.find(repository_id)
        settings = replace(current.settings, **(changes.settings or {}))
        spec = RepositorySpec(
            name=_given(changes.name, current.name),
            local_path=_given(changes.local_path, str(current.local_root)),
            remote=_given(changes.remote, current.remote_url),
            description=_given(changes.description, current.description),
            settings=settings,
            remote_fields=_given(changes.remote_fields, current.remote_options),
        )
        given = changes.remote_fields is not None
        values = self._values(spec, trusted=False, exclude_id=repository_id, check_endpoint=given)
        if not given:
            values = replace(values, keep_credentials=True)  # the stored ones stay
        now = self.clock.now_ns()
        if settings.schedule != current.settings.schedule:
            values = replace(values, schedule_set_ns=now)
        # Where it points may only change between sessions; its settings, name and
        # schedule at any time (a running session keeps the job it was given).
        moved = given or (values.local_url, values.remote_url) != (
            current.local_url,
            current.remote_url,
        )
        idle = self.sessions.idle(repository_id, "changed") if moved else contextlib.nullcontext()
        with idle:
            updated = self.store.update(repository_id, values, now_ns=now)
        if updated is None:
            raise UnknownObject(f"no repository with id {repository_id!r}")
        self.changed()
        return self.view(updated)

    def set_paused(self, repository_id: str, paused: bool) -> RepositoryView:
        """Pause (neither schedule nor watch fires; triggers still work) or resume."""
        self.find(repository_id)
        self.store.set_paused(repository_id, paused)
        self.changed()
        return self.get(repository_id)

    def delete(self, repository_id: str) -> None:
        self.find(repository_id)
        with self.sessions.idle(repository_id, "deleted"):
            self.store.delete(repository_id)
        self.changed()

    def ensure_default(self, spec: RepositorySpec) -> Repository:
        """The server's default repository (``--local``/``--remote``), created or updated.

        It is given by whoever starts the server, so the allowed roots do not apply.
        """
        current = self.store.default()
        if current is None:  # a repository may have taken the name meanwhile
            spec = replace(spec, name=self._free_name(spec.name))
        values = self._values(spec, trusted=True, exclude_id=current.id if current else None)
        if current is None:
            created = self.store.create(values, now_ns=self.clock.now_ns())
            self.store.set_default(created.id)
            return self.find(created.id)
        # Its name, description and settings (changed through the API) stay; no credentials
        # given (none in the environment) leaves those stored.
        values = replace(
            values,
            name=current.name,
            description=current.description,
            settings=current.settings,
            keep_credentials=values.credentials is None,
        )
        moved = (current.local_url, current.remote_url) != (values.local_url, values.remote_url)
        idle = self.sessions.idle(current.id, "changed") if moved else contextlib.nullcontext()
        with idle:
            updated = self.store.update(current.id, values, now_ns=self.clock.now_ns())
        assert updated is not None
        return updated

    def _free_name(self, name: str) -> str:
        taken = {r.name for r in self.store.all()}
        found, n = name, 1
        while found in taken:
            n += 1
            found = f"{name} ({n})"
        return found

    def upgrade_sealed_options(self) -> None:
        """Repositories made before options were stored apart keep them sealed with their
        credentials: unsealed once, and stored apart. A repository whose credentials
        cannot be unsealed (the key changed) is left as it is: its sessions say why."""
        for repository_id, sealed in self.store.without_options():
            credentials = None
            options: dict[str, str] = {}
            if sealed is not None:
                try:
                    fields = self.vault.unseal(sealed)
                except UsageError:
                    continue
                renamed = {_SEALED_BEFORE_OPTIONS.get(k, k): v for k, v in fields.items()}
                options, secrets = split_fields(renamed)
                credentials = self.vault.seal(secrets) if secrets else None
            self.store.set_remote(repository_id, options, credentials)

    def _values(
        self,
        spec: RepositorySpec,
        *,
        trusted: bool,
        exclude_id: str | None,
        check_endpoint: bool = True,
    ) -> RepositoryValues:
        checked = self.checks.check(
            spec, trusted=trusted, exclude_id=exclude_id, check_endpoint=check_endpoint
        )
        sealed = self.vault.seal(checked.credentials) if checked.credentials else None
        return RepositoryValues(
            name=checked.name,
            description=spec.description,
            local_url=checked.local_url,
            remote_url=checked.remote_url,
            remote_options=checked.options,
            settings=spec.settings,
            credentials=sealed,
        )


def _status(repository: Repository, last: Session | None) -> RepositoryStatus:
    if last is not None and last.state is SessionState.HALTED and last.halt_outcome is None:
        return RepositoryStatus.HALTED
    if repository.settings.paused:
        return RepositoryStatus.PAUSED
    if last is not None and last.state.active:
        return RepositoryStatus.RUNNING
    if repository.failures >= scheduling.BACKOFF_AFTER:
        return RepositoryStatus.FAILING
    return RepositoryStatus.IDLE


def _given(value: T | None, current: T) -> T:
    return current if value is None else value
