"""Users, passwords and bearer tokens (API.md section 5).

Tokens are opaque random strings; the store keeps only their SHA-256, so a leaked database
does not leak usable tokens, and any token can be revoked. Passwords are hashed with
Argon2id (argon2-cffi's defaults), which is slow and salted by design; failed sign-ins
lock a user name out for a growing while.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storsync.clock import Clock
from storsync.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    TooManyAttempts,
    Unauthorized,
    UnknownObject,
)
from storsync.state.account_store import AccountStore
from storsync.state.records import Role, Token, TokenKind, User

TOKEN_PREFIX = "ss_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")

# Failed sign-ins a user name is allowed before it is locked out: more than a person
# mistyping a password makes; then the lock-out doubles with each further failure, so a
# guesser gets a few hundred tries a day at most.
LOGIN_FAILURES_ALLOWED = 10
LOCKOUT_FIRST_S = 15.0
LOCKOUT_MAX_S = 300.0
# A name's failures are forgotten after this long without another (longer than the
# longest lock-out, so that a guesser waiting each one out keeps the longest).
FAILURES_KEPT_S = 900.0
# Names followed at most, the least recently tried forgotten first: any string can be
# tried as a user name, and the table must not grow with what an attacker sends.
THROTTLED_NAMES_MAX = 10_000


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


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class LoginThrottle:
    """Failed sign-ins per user name, in this process's memory, on the service's clock.
    Unknown names are followed as known ones, or a lock-out would tell which exist."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._names: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, name: str) -> None:
        """Refuse a sign-in while its name is locked out; else count it as failed until
        ``succeeded`` says otherwise: counted before the password is checked, concurrent
        guesses cannot slip past the limit while theirs are being checked."""
        with self._lock:
            now = self.clock.monotonic()
            failures = self._names.pop(name, None)
            if failures is None or now - failures.last > FAILURES_KEPT_S:
                failures = _Failures(0, now, now)
            self._names[name] = failures
            if failures.locked_until > now:
                wait = math.ceil(failures.locked_until - now)
                raise TooManyAttempts(
                    f"too many failed sign-ins for this user name; try again in {wait} s",
                    retry_after_s=wait,
                )
            failures.count += 1
            failures.last = now
            beyond = failures.count - LOGIN_FAILURES_ALLOWED
            if beyond >= 0:
                lockout = LOCKOUT_FIRST_S * 2 ** min(beyond, 32)
                failures.locked_until = now + min(lockout, LOCKOUT_MAX_S)
            while len(self._names) > THROTTLED_NAMES_MAX:
                self._names.popitem(last=False)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)


class Accounts:
    def __init__(
        self, store: AccountStore, clock: Clock, *, token_ttl_s: int, refresh_ttl_s: int
    ) -> None:
        self.store = store
        self.clock = clock
        self.token_ttl_s = token_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.throttle = LoginThrottle(clock)
        self._hasher = PasswordHasher()
        # Verifying against this keeps a wrong user name as slow as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    # -- users ------------------------------------------------------------------------

    def ensure_admin(self, name: str, password: str | None) -> str | None:
        """On the first start, the admin account; returns the password if it was generated."""
        if self.store.count_users():
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
        if self.store.user_with_hash(name) is not None:
            raise Conflict(f"a user named {name!r} exists already")
        return self.store.create_user(
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
        user = self.store.update_user(
            user_id,
            role=role,
            password_hash=None if password is None else self._hasher.hash(password),
        )
        if user is None:
            raise UnknownObject(f"no user with id {user_id!r}")
        return user

    def users(self) -> list[User]:
        return self.store.list_users()

    def delete_user(self, user_id: str) -> None:
        if self.store.get_user(user_id) is None:
            raise UnknownObject(f"no user with id {user_id!r}")
        self._keep_an_admin(user_id)
        self.store.delete_user(user_id)

    def _keep_an_admin(self, user_id: str) -> None:
        admins = [u for u in self.store.list_users() if u.role is Role.ADMIN]
        if [u.id for u in admins] == [user_id]:
            raise Conflict("this is the last admin account; make another admin first")

    # -- tokens -----------------------------------------------------------------------

    def login(self, name: str, password: str) -> TokenPair:
        """A new sign-in; refused while the name is locked out, even with the right
        password (else a guesser would learn it by the answer)."""
        user = self._verified(name, password)
        return self._issue(user, sign_in=secrets.token_hex(16))

    def sign_in_browser(self, name: str, password: str) -> str:
        """A person's sign-in to the dashboard: the secret of one token, for the session
        cookie alone, valid ``refresh_ttl_s``, checked as ``login`` checks."""
        user = self._verified(name, password)
        now, secret = self.clock.now_ns(), _new_token()
        self.store.add_token(
            user_id=user.id,
            kind=TokenKind.BROWSER,
            digest=digest(secret),
            label="dashboard",
            now_ns=now,
            expires_ns=now + self.refresh_ttl_s * 10**9,
        )
        return secret

    def _verified(self, name: str, password: str) -> User:
        self.throttle.admit(name)
        found = self.store.user_with_hash(name)
        try:
            self._hasher.verify(found[1] if found else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            found = None
        if found is None:
            raise Unauthorized("the user name or password is wrong")
        self.throttle.succeeded(name)
        return found[0]

    def refresh(self, refresh_token: str) -> TokenPair:
        """A new pair of the same sign-in for a valid refresh token, which is used up."""
        token = self.store.find_token(digest(refresh_token))
        if token is None or token.kind is not TokenKind.REFRESH or not self._live(token):
            raise Unauthorized("the refresh token is unknown, expired or revoked")
        self.store.revoke_token(token.id)
        # A pair issued before sign-ins were recorded has none: it starts one.
        return self._issue(token.user, sign_in=token.sign_in or secrets.token_hex(16))

    def _issue(self, user: User, *, sign_in: str) -> TokenPair:
        """An access and a refresh token of one sign-in (a password login and the refreshes
        that follow it), which share its id, so that revoking any of them can end them all
        (``revoke_secret``)."""
        now = self.clock.now_ns()
        access, refresh = _new_token(), _new_token()
        expires = now + self.token_ttl_s * 10**9
        self.store.add_token(
            user_id=user.id,
            kind=TokenKind.ACCESS,
            digest=digest(access),
            label="",
            sign_in=sign_in,
            now_ns=now,
            expires_ns=expires,
        )
        self.store.add_token(
            user_id=user.id,
            kind=TokenKind.REFRESH,
            digest=digest(refresh),
            label="",
            sign_in=sign_in,
            now_ns=now,
            expires_ns=now + self.refresh_ttl_s * 10**9,
        )
        return TokenPair(access, refresh, self.token_ttl_s, now, expires, user)

    def create_api_key(self, user: User, label: str) -> tuple[Token, str]:
        """A token for automation that does not expire until it is revoked."""
        secret = _new_token()
        token_id = self.store.add_token(
            user_id=user.id,
            kind=TokenKind.API_KEY,
            digest=digest(secret),
            label=label,
            now_ns=self.clock.now_ns(),
            expires_ns=None,
        )
        token = self.store.find_token(digest(secret))
        assert token is not None and token.id == token_id
        return token, secret

    def api_keys(self, user: User) -> list[Token]:
        return self.store.list_tokens(user.id, TokenKind.API_KEY)

    def recently_verified(self, bearer: str | None, *, cookie: bool = False) -> Token | None:
        """The caller's token if the store read it a few seconds ago and it is still live,
        without I/O (for the event loop); None sends the caller the full way
        (``authenticate``), which gives the error for an unknown or dead one."""
        if not bearer:
            return None
        token = self.store.cached_token(digest(bearer))
        if token is None or not _fits(token, cookie) or not self._live(token):
            return None
        return token

    def authenticate(self, bearer: str | None, *, cookie: bool = False) -> Token:
        """The token of a request: given as a bearer token, or (``cookie``) a dashboard
        sign-in's from its session cookie; neither is accepted the other way."""
        if not bearer:
            raise Unauthorized("this request needs an access token (Authorization: Bearer ...)")
        token = self.store.find_token(digest(bearer))
        if token is None or not _fits(token, cookie):
            raise Unauthorized("the access token is not valid")
        if not self._live(token):
            raise Unauthorized("the access token has expired or was revoked; sign in again")
        return token

    def revoke(self, token_id: str, *, by: User) -> None:
        for kind in TokenKind:
            for token in self.store.list_tokens(by.id, kind):
                if token.id == token_id:
                    self.store.revoke_token(token_id)
                    return
        if by.role is Role.ADMIN and self.store.revoke_token(token_id):
            return
        raise UnknownObject(f"no token with id {token_id!r}")

    def revoke_secret(self, secret: str, *, by: User) -> None:
        """Revoke a token given by its value (RFC 7009): an API key alone; an access or
        refresh token with every other of its sign-in, so one call signs a client out.
        Someone else's live token only for an admin; an unknown one is no error, nor is
        someone else's dead one (RFC 7009 section 2.2: nothing to revoke)."""
        token = self.store.find_token(digest(secret))
        if token is None:
            return
        if token.user.id != by.id and by.role is not Role.ADMIN:
            if self._live(token):
                raise Forbidden("this token is another user's; only an admin can revoke it")
            return
        if token.sign_in is None:
            self.store.revoke_token(token.id)
        else:
            self.store.revoke_sign_in(token.user.id, token.sign_in)

    def _live(self, token: Token) -> bool:
        if token.revoked:
            return False
        return token.expires_ns is None or token.expires_ns > self.clock.now_ns()

    def prune(self) -> None:
        self.store.prune_tokens(expired_before_ns=self.clock.now_ns())


def _fits(token: Token, cookie: bool) -> bool:
    """A refresh token is no access token; a dashboard sign-in's comes only in its
    cookie, and a cookie holds nothing else."""
    if cookie:
        return token.kind is TokenKind.BROWSER
    return token.kind not in (TokenKind.REFRESH, TokenKind.BROWSER)


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
