"""Repositories in the state store: their settings, remote options and sealed credentials."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.errors import Conflict
from storsync.model import ConflictPolicy, Mode, Schedule
from storsync.state import schema
from storsync.state.records import Repository, RepositoryFields, RepositorySettings

_R = schema.repositories
_S = schema.sessions
_L = schema.log_items

# A repository made by the command line has no name: it is a pair, not a repository of
# the service, and no face shows it.
_NAMED = _R.c.name != ""
_GET = sa.select(_R).where(_R.c.id == sa.bindparam("id"), _NAMED)


@dataclass(frozen=True, slots=True)
class RepositoryValues(RepositoryFields):
    """A repository to store, checked by the service; ``credentials``: sealed, or None for
    none (on an update, ``keep_credentials`` leaves the stored ones)."""

    credentials: str | None
    keep_credentials: bool = False
    schedule_set_ns: int | None = None


def _repository(row: sa.Row[Any]) -> Repository:
    return Repository(
        id=row.id,
        name=row.name,
        description=row.description,
        local_url=row.local_url,
        remote_url=row.remote_url,
        remote_options=json.loads(row.remote_options or "{}"),
        settings=RepositorySettings(
            mode=Mode(row.mode),
            policy=ConflictPolicy(row.policy),
            excludes=tuple(json.loads(row.excludes)),
            checksum=bool(row.checksum),
            max_delete_percent=float(row.max_delete_percent),
            trash_days=float(row.trash_days),
            transfers=row.transfers,
            bwlimit_bps=row.bwlimit_bps,
            schedule=_schedule(row.schedule),
            watch=bool(row.watch),
            watch_delay_s=float(row.watch_delay_s),
            paused=bool(row.paused),
        ),
        has_credentials=row.credentials is not None,
        is_default=bool(row.is_default),
        created_ns=row.created_ns,
        updated_ns=row.updated_ns,
        schedule_set_ns=row.schedule_set_ns,
        failures=row.failures,
        last_success_ns=row.last_success_ns,
        last_failure_ns=row.last_failure_ns,
    )


@contextlib.contextmanager
def _unique_name(name: str) -> Iterator[None]:
    """The unique index's answer to a name taken meanwhile (two requests at once), as the
    service's check would have given it."""
    try:
        yield
    except sa.exc.IntegrityError:
        raise Conflict(f"a repository is named {name!r} already") from None


def _schedule(raw: str | None) -> Schedule | None:
    if raw is None:
        return None
    fields = json.loads(raw)
    return Schedule(fields.get("interval_s"), fields.get("cron"), fields.get("timezone", "UTC"))


def _schedule_json(schedule: Schedule | None) -> str | None:
    if schedule is None:
        return None
    return json.dumps(dataclasses.asdict(schedule), sort_keys=True)


def _columns(values: RepositoryValues) -> dict[str, Any]:
    s = values.settings
    columns: dict[str, Any] = {
        "name": values.name,
        "description": values.description,
        "local_url": values.local_url,
        "remote_url": values.remote_url,
        "remote_options": json.dumps(dict(values.remote_options), sort_keys=True),
        "mode": s.mode.value,
        "policy": s.policy.value,
        "excludes": json.dumps(list(s.excludes)),
        "checksum": s.checksum,
        "max_delete_percent": s.max_delete_percent,
        "trash_days": s.trash_days,
        "transfers": s.transfers,
        "bwlimit_bps": s.bwlimit_bps,
        "schedule": _schedule_json(s.schedule),
        "watch": s.watch,
        "watch_delay_s": s.watch_delay_s,
        "paused": s.paused,
    }
    if values.schedule_set_ns is not None:
        columns["schedule_set_ns"] = values.schedule_set_ns
    if not values.keep_credentials:
        columns["credentials"] = values.credentials
    return columns


class RepositoryStore:
    def __init__(self, engine: Engine, *, sessions_deleted: Callable[[], None]) -> None:
        self.engine = engine
        # Told when a repository's sessions go with it: the session store's cache forgets.
        self._sessions_deleted = sessions_deleted

    def all(self) -> list[Repository]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_R).where(_NAMED).order_by(_R.c.created_ns))
            return [_repository(r) for r in rows]

    def get(self, repository_id: str) -> Repository | None:
        with self.engine.connect() as conn:
            row = conn.execute(_GET, {"id": repository_id}).first()
        return None if row is None else _repository(row)

    def default(self) -> Repository | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_R).where(_R.c.is_default.is_(True))).first()
        return None if row is None else _repository(row)

    def credentials(self, repository_id: str) -> str | None:
        """The sealed credentials, as stored."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(_R.c.credentials).where(_R.c.id == repository_id))
            return found.scalar()

    def without_options(self) -> list[tuple[str, str | None]]:
        """(id, sealed credentials) of the repositories made before options were stored
        apart (remote_options NULL)."""
        query = sa.select(_R.c.id, _R.c.credentials).where(_R.c.remote_options.is_(None))
        with self.engine.connect() as conn:
            return [(str(i), c) for i, c in conn.execute(query)]

    def set_remote(
        self, repository_id: str, options: Mapping[str, str], credentials: str | None
    ) -> None:
        """Store a repository's remote options and sealed credentials, nothing else."""
        with self.engine.begin() as conn:
            conn.execute(
                _R.update()
                .where(_R.c.id == repository_id)
                .values(
                    remote_options=json.dumps(dict(options), sort_keys=True),
                    credentials=credentials,
                )
            )

    def create(self, values: RepositoryValues, *, now_ns: int) -> Repository:
        new_id = str(uuid.uuid4())
        with _unique_name(values.name), self.engine.begin() as conn:
            conn.execute(
                _R.insert().values(
                    id=new_id, created_ns=now_ns, updated_ns=now_ns, **_columns(values)
                )
            )
        found = self.get(new_id)
        assert found is not None
        return found

    def update(
        self, repository_id: str, values: RepositoryValues, *, now_ns: int
    ) -> Repository | None:
        with _unique_name(values.name), self.engine.begin() as conn:
            conn.execute(
                _R.update()
                .where(_R.c.id == repository_id)
                .values(updated_ns=now_ns, **_columns(values))
            )
        return self.get(repository_id)

    def set_paused(self, repository_id: str, paused: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(_R.update().where(_R.c.id == repository_id).values(paused=paused))

    def record_outcome(self, repository_id: str, *, failed: bool, now_ns: int) -> None:
        """A session of the repository ended: a failure adds to its failures in a row, any
        other end but a stop or a halt resets them (the caller leaves those out)."""
        update = _R.update().where(_R.c.id == repository_id)
        if failed:
            update = update.values(failures=_R.c.failures + 1, last_failure_ns=now_ns)
        else:
            update = update.values(failures=0, last_success_ns=now_ns)
        with self.engine.begin() as conn:
            conn.execute(update)

    def set_default(self, repository_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_R.update().where(_R.c.id != repository_id).values(is_default=False))
            conn.execute(_R.update().where(_R.c.id == repository_id).values(is_default=True))

    def delete(self, repository_id: str) -> None:
        """The repository, its base, its history, its schedule's fires and its conflicts."""
        with self.engine.begin() as conn:
            sessions = sa.select(_S.c.id).where(_S.c.repository_id == repository_id)
            conn.execute(_L.delete().where(_L.c.session_id.in_(sessions)))
            plan = schema.plan_items
            conn.execute(plan.delete().where(plan.c.session_id.in_(sessions)))
            conn.execute(_S.delete().where(_S.c.repository_id == repository_id))
            conn.execute(schema.base.delete().where(schema.base.c.repository_id == repository_id))
            listing = schema.remote_listings
            conn.execute(listing.delete().where(listing.c.repository_id == repository_id))
            fires = schema.schedule_fires
            conn.execute(fires.delete().where(fires.c.repository_id == repository_id))
            found = schema.conflicts
            conn.execute(found.delete().where(found.c.repository_id == repository_id))
            conn.execute(_R.delete().where(_R.c.id == repository_id))
        self._sessions_deleted()
