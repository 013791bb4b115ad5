"""The service's objects in the state store: repositories, sessions, log items, users,
tokens and events, through SQLAlchemy Core on SQLite or PostgreSQL.

Every method is one short transaction; the service calls them from worker threads.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from storsync.state import schema
from storsync.state.records import (
    Event,
    LogItem,
    PhaseCounters,
    PhaseState,
    Repository,
    Role,
    Session,
    SessionState,
    Token,
    TokenKind,
    User,
)
from storsync.state.store import StateStore

_R = schema.repositories
_S = schema.sessions
_L = schema.log_items
_U = schema.users
_T = schema.tokens
_E = schema.events
_V = TypeVar("_V")

REPOSITORY_FIELDS = frozenset(
    {"name", "description", "local_url", "remote_url", "mode", "policy", "excludes", "credentials"}
)
SESSION_FIELDS = frozenset(c.name for c in _S.columns) - {
    "id",
    "repository_id",
    "push_id",
    "pull_id",
}


def _repository(row: sa.Row[Any]) -> Repository:
    return Repository(
        id=row.id,
        name=row.name,
        description=row.description,
        local_url=row.local_url,
        remote_url=row.remote_url,
        mode=row.mode,
        policy=row.policy,
        excludes=tuple(json.loads(row.excludes)),
        has_credentials=row.credentials is not None,
        is_default=bool(row.is_default),
        created_ns=row.created_ns,
        updated_ns=row.updated_ns,
    )


# Every query that feeds _session selects these columns in this order, so that a row is
# unpacked positionally: attribute access on a Row (~0.5 us each, 28 of them) and Enum
# calls were most of the cost of a page of 100 sessions.
_SESSION_COLUMNS = (
    _S.c.id,
    _S.c.repository_id,
    _S.c.push_id,
    _S.c.pull_id,
    _S.c.state,
    _S.c.push_state,
    _S.c.pull_state,
    _S.c.created_ns,
    _S.c.started_ns,
    _S.c.ended_ns,
    _S.c.error,
    _S.c.stop_requested,
    _S.c.trigger,
    _S.c.percent,
    _S.c.push_files_planned,
    _S.c.push_files_done,
    _S.c.push_bytes_planned,
    _S.c.push_bytes_done,
    _S.c.pull_files_planned,
    _S.c.pull_files_done,
    _S.c.pull_bytes_planned,
    _S.c.pull_bytes_done,
    _S.c.pushed,
    _S.c.pulled,
    _S.c.deleted_local,
    _S.c.deleted_remote,
    _S.c.conflicts,
    _S.c.errors,
)
_SESSION_STATES = {s.value: s for s in SessionState}
_PHASE_STATES: dict[str | None, PhaseState | None] = {p.value: p for p in PhaseState}
_PHASE_STATES[None] = None


def _session(row: Sequence[Any]) -> Session:
    (
        id_,
        repository_id,
        push_id,
        pull_id,
        state,
        push_state,
        pull_state,
        created_ns,
        started_ns,
        ended_ns,
        error,
        stop_requested,
        trigger,
        percent,
        push_files_planned,
        push_files_done,
        push_bytes_planned,
        push_bytes_done,
        pull_files_planned,
        pull_files_done,
        pull_bytes_planned,
        pull_bytes_done,
        pushed,
        pulled,
        deleted_local,
        deleted_remote,
        conflicts,
        errors,
    ) = row
    return Session(
        id=id_,
        repository_id=repository_id,
        push_id=push_id,
        pull_id=pull_id,
        state=_SESSION_STATES[state],
        push_state=_PHASE_STATES[push_state],
        pull_state=_PHASE_STATES[pull_state],
        created_ns=created_ns,
        started_ns=started_ns,
        ended_ns=ended_ns,
        error=error,
        stop_requested=bool(stop_requested),
        trigger=trigger,
        percent=percent,
        push=PhaseCounters(
            push_files_planned, push_files_done, push_bytes_planned, push_bytes_done
        ),
        pull=PhaseCounters(
            pull_files_planned, pull_files_done, pull_bytes_planned, pull_bytes_done
        ),
        pushed=pushed,
        pulled=pulled,
        deleted_local=deleted_local,
        deleted_remote=deleted_remote,
        conflicts=conflicts,
        errors=errors,
    )


def _user(row: sa.Row[Any]) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role), created_ns=row.created_ns)


def _event(row: sa.Row[Any]) -> Event:
    return Event(
        id=row.id,
        ts_ns=row.ts_ns,
        type=row.type,
        repository_id=row.repository_id,
        session_id=row.session_id,
        data=json.loads(row.data),
    )


# Statements of the hot read paths, built once: building ``select(sessions)`` (30
# columns) and its cache key again on every call cost more than running it on SQLite.
_GET_SESSION = sa.select(*_SESSION_COLUMNS).where(_S.c.id == sa.bindparam("id"))
# Every trigger reads its repository and writes a session and two events: built once,
# as the reads above, since building a statement costs more than SQLite running it.
_GET_REPOSITORY = sa.select(_R).where(_R.c.id == sa.bindparam("id"), _R.c.name != "")
_ADD_SESSION = _S.insert()
_ADD_EVENT = _E.insert()
_FIND_TOKEN = (
    sa.select(_T, _U.c.name, _U.c.role, _U.c.created_ns.label("user_created_ns"))
    .join(_U, _U.c.id == _T.c.user_id)
    .where(_T.c.digest == sa.bindparam("digest"))
)


@functools.cache
def _list_sessions_query(by_repository: bool, by_state: bool) -> sa.Select[Any]:
    query = sa.select(*_SESSION_COLUMNS)
    if by_repository:
        query = query.where(_S.c.repository_id == sa.bindparam("repository_id"))
    if by_state:
        query = query.where(_S.c.state.in_(sa.bindparam("states", expanding=True)))
    return (
        query.order_by(_S.c.created_ns.desc(), _S.c.id.desc())
        .offset(sa.bindparam("offset", type_=sa.Integer))
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


# Tokens read from the store are kept this long for ``cached_token`` (the API checks
# it before going to the database on every request); any write to tokens or users
# through this catalog empties the cache at once, so this only bounds how long a change
# made behind the service's back (by hand in the database) can go unseen.
TOKEN_CACHE_S = 5.0
TOKEN_CACHE_MAX = 4096
# Sessions read or written lately, for ``cached_session`` (the status reads that clients
# poll). Write-through: every change to the sessions table goes through this catalog,
# in the service's one process, and replaces or drops the entry; the age limit only
# bounds a change made behind the service's back.
SESSION_CACHE_S = 1.0
SESSION_CACHE_MAX = 1024


class _Recent(Generic[_V]):
    """Rows read lately, for lookups without I/O from the event loop. Write-through: a
    write through the catalog forgets what it changed, and a read that raced with such a
    write (it began before, its row may be older) is not kept."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, _V]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def before_read(self) -> int:
        """Taken before reading the store; handed back to ``keep``."""
        return self._generation

    def keep(self, key: str, value: _V, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (time.monotonic(), value)

    def get(self, key: str) -> _V | None:
        found = self._entries.get(key)
        if found is None or time.monotonic() - found[0] > self.ttl_s:
            return None
        return found[1]

    def forget(self, key: str | None = None) -> None:
        """After a write: that key (None: every one) is no longer known."""
        with self._lock:
            self._generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)


class Catalog(StateStore):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._tokens: _Recent[Token] = _Recent(TOKEN_CACHE_S, TOKEN_CACHE_MAX)
        self._sessions: _Recent[Session] = _Recent(SESSION_CACHE_S, SESSION_CACHE_MAX)

    # -- repositories -----------------------------------------------------------------

    def list_repositories(self) -> list[Repository]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_R).where(_R.c.name != "").order_by(_R.c.created_ns))
            return [_repository(r) for r in rows]

    def get_repository(self, repository_id: str) -> Repository | None:
        with self.engine.connect() as conn:
            row = conn.execute(_GET_REPOSITORY, {"id": repository_id}).first()
        return None if row is None else _repository(row)

    def default_repository(self) -> Repository | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_R).where(_R.c.is_default.is_(True))).first()
        return None if row is None else _repository(row)

    def repository_credentials(self, repository_id: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(_R.c.credentials).where(_R.c.id == repository_id))
            return found.scalar()

    def create_repository(
        self,
        *,
        name: str,
        description: str,
        local_url: str,
        remote_url: str,
        mode: str,
        policy: str,
        excludes: Sequence[str],
        credentials: str | None,
        now_ns: int,
    ) -> Repository:
        new_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                _R.insert().values(
                    id=new_id,
                    name=name,
                    description=description,
                    local_url=local_url,
                    remote_url=remote_url,
                    mode=mode,
                    policy=policy,
                    excludes=json.dumps(list(excludes)),
                    credentials=credentials,
                    created_ns=now_ns,
                    updated_ns=now_ns,
                )
            )
        found = self.get_repository(new_id)
        assert found is not None
        return found

    def update_repository(
        self, repository_id: str, values: Mapping[str, Any], *, now_ns: int
    ) -> Repository | None:
        unknown = set(values) - REPOSITORY_FIELDS
        if unknown:
            raise ValueError(f"not a repository field: {sorted(unknown)}")
        row = dict(values)
        if "excludes" in row:
            row["excludes"] = json.dumps(list(row["excludes"]))
        with self.engine.begin() as conn:
            conn.execute(
                _R.update().where(_R.c.id == repository_id).values(updated_ns=now_ns, **row)
            )
        return self.get_repository(repository_id)

    def set_default_repository(self, repository_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_R.update().where(_R.c.id != repository_id).values(is_default=False))
            conn.execute(_R.update().where(_R.c.id == repository_id).values(is_default=True))

    def delete_repository(self, repository_id: str) -> None:
        """The repository, its base and its history."""
        with self.engine.begin() as conn:
            sessions = sa.select(_S.c.id).where(_S.c.repository_id == repository_id)
            conn.execute(_L.delete().where(_L.c.session_id.in_(sessions)))
            conn.execute(_S.delete().where(_S.c.repository_id == repository_id))
            conn.execute(schema.base.delete().where(schema.base.c.repository_id == repository_id))
            conn.execute(_R.delete().where(_R.c.id == repository_id))
        self._sessions.forget()

    # -- sessions ---------------------------------------------------------------------

    def create_session(self, repository_id: str, *, trigger: str, now_ns: int) -> Session:
        values = {
            "id": str(uuid.uuid4()),
            "repository_id": repository_id,
            "push_id": str(uuid.uuid4()),
            "pull_id": str(uuid.uuid4()),
            "state": SessionState.QUEUED.value,
            "created_ns": now_ns,
            "trigger": trigger,
        }
        with self.engine.begin() as conn:
            conn.execute(_ADD_SESSION, values)
        found = self.get_session(str(values["id"]))
        assert found is not None
        return found

    def get_session(self, session_id: str) -> Session | None:
        generation = self._sessions.before_read()
        with self.engine.connect() as conn:
            row = conn.execute(_GET_SESSION, {"id": session_id}).first()
        if row is None:
            return None
        session = _session(row)
        self._sessions.keep(session_id, session, generation)
        return session

    def cached_session(self, session_id: str) -> Session | None:
        """The session as ``get_session`` last read it, if less than SESSION_CACHE_S ago and
        not changed since through this catalog; else None. No I/O: for the event loop."""
        return self._sessions.get(session_id)

    def session_by_phases(self, push_id: str, pull_id: str) -> Session | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(*_SESSION_COLUMNS).where(_S.c.push_id == push_id, _S.c.pull_id == pull_id)
            ).first()
        return None if row is None else _session(row)

    def list_sessions(
        self,
        *,
        repository_id: str | None = None,
        states: Iterable[SessionState] = (),
        offset: int = 0,
        limit: int = 100,
    ) -> list[Session]:
        wanted = [s.value for s in states]
        query = _list_sessions_query(repository_id is not None, bool(wanted))
        values: dict[str, Any] = {"offset": offset, "limit": limit}
        if repository_id is not None:
            values["repository_id"] = repository_id
        if wanted:
            values["states"] = wanted
        with self.engine.connect() as conn:
            return [_session(r) for r in conn.execute(query, values)]

    def count_sessions_by_state(self) -> dict[SessionState, int]:
        query = sa.select(_S.c.state, sa.func.count()).group_by(_S.c.state)
        with self.engine.connect() as conn:
            return {SessionState(state): int(n) for state, n in conn.execute(query)}

    def update_session(self, session_id: str, **values: Any) -> Session | None:
        unknown = set(values) - SESSION_FIELDS
        if unknown:
            raise ValueError(f"not a session field: {sorted(unknown)}")
        for key, value in values.items():
            if isinstance(value, SessionState | PhaseState):
                values[key] = value.value
        with self.engine.begin() as conn:
            conn.execute(_S.update().where(_S.c.id == session_id).values(**values))
        self._sessions.forget(session_id)
        return self.get_session(session_id)

    def prune_sessions(self, *, ended_before_ns: int) -> list[str]:
        """Forget finished sessions, their log items and events older than the cutoff;
        the ids of the sessions forgotten."""
        old = sa.select(_S.c.id).where(_S.c.ended_ns < ended_before_ns)
        with self.engine.begin() as conn:
            pruned = [str(i) for i in conn.execute(old).scalars()]
            conn.execute(_L.delete().where(_L.c.session_id.in_(old)))
            # The newest event stays, whatever its age: the next id is counted from it,
            # so ids are never given twice (a client resuming from an old id would wait).
            newest = sa.select(sa.func.max(_E.c.id)).scalar_subquery()
            conn.execute(_E.delete().where(_E.c.session_id.in_(old), _E.c.id < newest))
            conn.execute(_S.delete().where(_S.c.ended_ns < ended_before_ns))
        self._sessions.forget()
        return pruned

    # -- log items --------------------------------------------------------------------

    def add_log_items(self, session_id: str, items: Iterable[Mapping[str, Any]]) -> None:
        rows = [{"session_id": session_id, **item} for item in items]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(_L.insert(), rows)

    def log_item_batch(
        self, session_id: str, kind: str, first_id: int, last_id: int
    ) -> list[tuple[str, int | None]]:
        """The paths and sizes of one batch a worker recorded (its ids, by session and
        kind: on PostgreSQL another session's rows may lie within the range)."""
        query = (
            sa.select(_L.c.path, _L.c.size)
            .where(
                _L.c.session_id == session_id,
                _L.c.id >= first_id,
                _L.c.id <= last_id,
                _L.c.kind == kind,
            )
            .order_by(_L.c.id)
        )
        with self.engine.connect() as conn:
            return [(path, size) for path, size in conn.execute(query)]

    def list_log_items(
        self, session_id: str, *, kind: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[LogItem]:
        query = sa.select(_L).where(_L.c.session_id == session_id, _L.c.id > after_id)
        if kind is not None:
            query = query.where(_L.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(_L.c.id).limit(limit))
            return [
                LogItem(r.id, r.session_id, r.ts_ns, r.kind, r.path, r.message, r.size)
                for r in rows
            ]

    # -- users and tokens -------------------------------------------------------------

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_U)).scalar_one())

    def create_user(self, *, name: str, password_hash: str, role: Role, now_ns: int) -> User:
        user = User(id=str(uuid.uuid4()), name=name, role=role, created_ns=now_ns)
        with self.engine.begin() as conn:
            conn.execute(
                _U.insert().values(
                    id=user.id,
                    name=name,
                    password_hash=password_hash,
                    role=role.value,
                    created_ns=now_ns,
                )
            )
        return user

    def user_with_hash(self, name: str) -> tuple[User, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_U).where(_U.c.name == name)).first()
        return None if row is None else (_user(row), row.password_hash)

    def get_user(self, user_id: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_U).where(_U.c.id == user_id)).first()
        return None if row is None else _user(row)

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [_user(r) for r in conn.execute(sa.select(_U).order_by(_U.c.created_ns))]

    def update_user(
        self, user_id: str, *, role: Role | None = None, password_hash: str | None = None
    ) -> User | None:
        values: dict[str, str] = {}
        if role is not None:
            values["role"] = role.value
        if password_hash is not None:
            values["password_hash"] = password_hash
        if values:
            with self.engine.begin() as conn:
                conn.execute(_U.update().where(_U.c.id == user_id).values(**values))
            self._tokens.forget()  # a cached token carries its user's role
        return self.get_user(user_id)

    def delete_user(self, user_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_T.delete().where(_T.c.user_id == user_id))
            conn.execute(_U.delete().where(_U.c.id == user_id))
        self._tokens.forget()

    def add_token(
        self,
        *,
        user_id: str,
        kind: TokenKind,
        digest: str,
        label: str,
        now_ns: int,
        expires_ns: int | None,
        sign_in: str | None = None,
    ) -> str:
        token_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            conn.execute(
                _T.insert().values(
                    id=token_id,
                    user_id=user_id,
                    kind=kind.value,
                    digest=digest,
                    label=label,
                    created_ns=now_ns,
                    expires_ns=expires_ns,
                    sign_in=sign_in,
                )
            )
        return token_id

    def find_token(self, digest: str) -> Token | None:
        generation = self._tokens.before_read()
        with self.engine.connect() as conn:
            row = conn.execute(_FIND_TOKEN, {"digest": digest}).first()
        if row is None:
            return None
        user = User(
            id=row.user_id, name=row.name, role=Role(row.role), created_ns=row.user_created_ns
        )
        token = Token(
            id=row.id,
            user=user,
            kind=TokenKind(row.kind),
            label=row.label,
            created_ns=row.created_ns,
            expires_ns=row.expires_ns,
            revoked=bool(row.revoked),
            sign_in=row.sign_in,
        )
        self._tokens.keep(digest, token, generation)
        return token

    def cached_token(self, digest: str) -> Token | None:
        """The token ``find_token`` read for this digest less than TOKEN_CACHE_S ago, as it
        was then; None if there is none. No I/O: for the event loop. The caller still
        checks that it is live, as for a token read from the store."""
        return self._tokens.get(digest)

    def list_tokens(self, user_id: str, kind: TokenKind) -> list[Token]:
        user = self.get_user(user_id)
        if user is None:
            return []
        query = sa.select(_T).where(_T.c.user_id == user_id, _T.c.kind == kind.value)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(_T.c.created_ns))
            return [
                Token(
                    r.id,
                    user,
                    TokenKind(r.kind),
                    r.label,
                    r.created_ns,
                    r.expires_ns,
                    bool(r.revoked),
                    r.sign_in,
                )
                for r in rows
            ]

    def revoke_token(self, token_id: str) -> bool:
        """Whether a token with this id exists (and is now revoked)."""
        with self.engine.begin() as conn:
            found = conn.execute(_T.update().where(_T.c.id == token_id).values(revoked=True))
        self._tokens.forget()
        return bool(found.rowcount)

    def revoke_sign_in(self, user_id: str, sign_in: str) -> None:
        """Revoke the access and refresh tokens of one sign-in (``Accounts._issue``)."""
        query = _T.update().where(
            _T.c.user_id == user_id,
            _T.c.sign_in == sign_in,
            _T.c.kind.in_((TokenKind.ACCESS.value, TokenKind.REFRESH.value)),
        )
        with self.engine.begin() as conn:
            conn.execute(query.values(revoked=True))
        self._tokens.forget()

    def prune_tokens(self, *, expired_before_ns: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(_T.delete().where(_T.c.expires_ns < expired_before_ns))
        self._tokens.forget()

    # -- events -----------------------------------------------------------------------

    def last_event_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(_E.c.id))).scalar() or 0)

    def add_event(self, event: Event) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                _ADD_EVENT,
                {
                    "id": event.id,
                    "ts_ns": event.ts_ns,
                    "type": event.type,
                    "repository_id": event.repository_id,
                    "session_id": event.session_id,
                    "data": json.dumps(event.data),
                },
            )

    def events_since(
        self,
        after_id: int,
        *,
        limit: int = 100,
        repository_id: str | None = None,
        session_id: str | None = None,
        types: Iterable[str] = (),
    ) -> list[Event]:
        query = sa.select(_E).where(_E.c.id > after_id)
        if repository_id is not None:
            query = query.where(_E.c.repository_id == repository_id)
        if session_id is not None:
            query = query.where(_E.c.session_id == session_id)
        wanted = list(types)
        if wanted:
            query = query.where(_E.c.type.in_(wanted))
        with self.engine.connect() as conn:
            return [_event(r) for r in conn.execute(query.order_by(_E.c.id).limit(limit))]
