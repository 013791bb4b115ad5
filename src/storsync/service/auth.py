"""Users, passwords and bearer tokens (API.md section 5).

Tokens are opaque random strings; the store keeps only their SHA-256, so a leaked database
does not leak usable tokens, and any token can be revoked. Passwords are hashed with
Argon2id (argon2-cffi's defaults), which is slow and salted by design.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storsync.clock import Clock
from storsync.errors import Conflict, InvalidRequest, Unauthorized, UnknownObject
from storsync.state.catalog import Catalog
from storsync.state.records import Role, Token, TokenKind, User

TOKEN_PREFIX = "ss_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    issued_ns: int
    expires_ns: int
    user: User


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(
        self, catalog: Catalog, clock: Clock, *, token_ttl_s: int, refresh_ttl_s: int
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._hasher = PasswordHasher()
        # Verifying against this keeps a wrong user name as slow as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    # -- users ------------------------------------------------------------------------

    def ensure_admin(self, name: str, password: str | None) -> str | None:
        """On the first start, the admin account; returns the password if it was generated."""
        if self.catalog.count_users():
            return None
        generated = None
        if not password:
            password = generated = secrets.token_urlsafe(18)
        self.create_user(name, password, Role.ADMIN)
        return generated

    def create_user(self, name: str, password: str, role: Role) -> User:
        if not _NAME.match(name):
            raise InvalidRequest("a user name is 1 to 128 letters, digits or . _ @ -")
        if len(password) < 8:
            raise InvalidRequest("a password needs at least 8 characters")
        if self.catalog.user_with_hash(name) is not None:
            raise Conflict(f"a user named {name!r} exists already")
        return self.catalog.create_user(
            name=name,
            password_hash=self._hasher.hash(password),
            role=role,
            now_ns=self.clock.now_ns(),
        )

    def update_user(
        self, user_id: str, *, role: Role | None = None, password: str | None = None
    ) -> User:
        if password is not None and len(password) < 8:
            raise InvalidRequest("a password needs at least 8 characters")
        if role is not None and role is not Role.ADMIN:
            self._keep_an_admin(user_id)
        user = self.catalog.update_user(
            user_id,
            role=role,
            password_hash=None if password is None else self._hasher.hash(password),
        )
        if user is None:
            raise UnknownObject(f"no user with id {user_id!r}")
        return user

    def delete_user(self, user_id: str) -> None:
        if self.catalog.get_user(user_id) is None:
            raise UnknownObject(f"no user with id {user_id!r}")
        self._keep_an_admin(user_id)
        self.catalog.delete_user(user_id)

    def _keep_an_admin(self, user_id: str) -> None:
        admins = [u for u in self.catalog.list_users() if u.role is Role.ADMIN]
        if [u.id for u in admins] == [user_id]:
            raise Conflict("this is the last admin account; make another admin first")

    # -- tokens -----------------------------------------------------------------------

    def login(self, name: str, password: str) -> TokenPair:
        found = self.catalog.user_with_hash(name)
        try:
            self._hasher.verify(found[1] if found else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            found = None
        if found is None:
            raise Unauthorized("the user name or password is wrong")
        return self._issue(found[0])

    def refresh(self, refresh_token: str) -> TokenPair:
        """A new pair for a valid refresh token, which is used up."""
        token = self.catalog.find_token(digest(refresh_token))
        if token is None or token.kind is not TokenKind.REFRESH or not self._live(token):
            raise Unauthorized("the refresh token is unknown, expired or revoked")
        self.catalog.revoke_token(token.id)
        return self._issue(token.user)

    def _issue(self, user: User) -> TokenPair:
        now = self.clock.now_ns()
        access, refresh = _new_token(), _new_token()
        expires = now + self.token_ttl_s * 10**9
        self.catalog.add_token(
            user_id=user.id,
            kind=TokenKind.ACCESS,
            digest=digest(access),
            label="",
            now_ns=now,
            expires_ns=expires,
        )
        self.catalog.add_token(
            user_id=user.id,
            kind=TokenKind.REFRESH,
            digest=digest(refresh),
            label="",
            now_ns=now,
            expires_ns=now + self.refresh_ttl_s * 10**9,
        )
        return TokenPair(access, refresh, self.token_ttl_s, now, expires, user)

    def create_api_key(self, user: User, label: str) -> tuple[Token, str]:
        """A token for automation that does not expire until it is revoked."""
        secret = _new_token()
        token_id = self.catalog.add_token(
            user_id=user.id,
            kind=TokenKind.API_KEY,
            digest=digest(secret),
            label=label,
            now_ns=self.clock.now_ns(),
            expires_ns=None,
        )
        token = self.catalog.find_token(digest(secret))
        assert token is not None and token.id == token_id
        return token, secret

    def authenticate(self, bearer: str | None) -> Token:
        if not bearer:
            raise Unauthorized("this request needs an access token (Authorization: Bearer ...)")
        token = self.catalog.find_token(digest(bearer))
        if token is None or token.kind is TokenKind.REFRESH:
            raise Unauthorized("the access token is not valid")
        if not self._live(token):
            raise Unauthorized("the access token has expired or was revoked; sign in again")
        return token

    def revoke(self, token_id: str, *, by: User) -> None:
        for kind in TokenKind:
            for token in self.catalog.list_tokens(by.id, kind):
                if token.id == token_id:
                    self.catalog.revoke_token(token_id)
                    return
        if by.role is Role.ADMIN and self.catalog.revoke_token(token_id):
            return
        raise UnknownObject(f"no token with id {token_id!r}")

    def _live(self, token: Token) -> bool:
        if token.revoked:
            return False
        return token.expires_ns is None or token.expires_ns > self.clock.now_ns()

    def prune(self) -> None:
        self.catalog.prune_tokens(expired_before_ns=self.clock.now_ns())


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
