"""Users and their tokens in the state store, with a short-lived cache of tokens read."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from storsync.clock import Clock
from storsync.state import schema
from storsync.state.recent import Recent
from storsync.state.records import Role, Token, TokenKind, User

_U = schema.users
_T = schema.tokens

# Tokens read from the store are kept this long for ``cached_token`` (the API checks
# it before going to the database on every request); any write to tokens or users
# through this store empties the cache at once.
TOKEN_CACHE_S = 5.0
TOKEN_CACHE_MAX = 4096
_FIND_TOKEN = (
    sa.select(_T, _U.c.name, _U.c.role, _U.c.created_ns.label("user_created_ns"))
    .join(_U, _U.c.id == _T.c.user_id)
    .where(_T.c.digest == sa.bindparam("digest"))
)


def _user(row: sa.Row[Any]) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role), created_ns=row.created_ns)


class AccountStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self._recent: Recent[Token] = Recent(TOKEN_CACHE_S, TOKEN_CACHE_MAX, clock)

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
            self._recent.forget()  # a cached token carries its user's role
        return self.get_user(user_id)

    def delete_user(self, user_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_T.delete().where(_T.c.user_id == user_id))
            conn.execute(_U.delete().where(_U.c.id == user_id))
        self._recent.forget()

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
        generation = self._recent.before_read()
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
        self._recent.keep(digest, token, generation)
        return token

    def cached_token(self, digest: str) -> Token | None:
        """The token ``find_token`` read for this digest less than TOKEN_CACHE_S ago, as it
        was then; None if there is none. No I/O: for the event loop. The caller still
        checks that it is live, as for a token read from the store."""
        return self._recent.get(digest)

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
        self._recent.forget()
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
        self._recent.forget()

    def prune_tokens(self, *, expired_before_ns: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(_T.delete().where(_T.c.expires_ns < expired_before_ns))
        self._recent.forget()
