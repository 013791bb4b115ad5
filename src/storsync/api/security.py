"""Bearer tokens on every route but health, the token endpoints and static files."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from storsync.api import browser
from storsync.errors import Forbidden, Unauthorized
from storsync.service.core import Service
from storsync.state.records import Role, Session, Token, TokenKind, User

bearer_scheme = HTTPBearer(auto_error=False, description="An access token or an API key.")

ANONYMOUS = User(id="", name="anonymous", role=Role.OPERATOR, created_ns=0)
# Streams that outlive their first request check their token again this often: a
# revoked or expired token loses its streams within this time, while many streams on one
# token share about one store read per period (the catalog keeps a token read as long).
RECHECK_S = 5.0


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def service_dependency(request: Request) -> Service:
    """``service_of`` as a FastAPI dependency. ``async`` on purpose: FastAPI runs a plain
    ``def`` dependency in a worker thread, a hop per request for an attribute read."""
    return service_of(request)


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def caller_secret(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The secret a request was let in with (a stream checks it again as it goes)."""
    if credentials is not None:
        return credentials.credentials
    secret = browser.cookie_secret(request)
    assert secret is not None  # else the role's dependency refused the request
    return secret


async def until_refused(service: Service, bearer: str, *, cookie: bool = False) -> str:
    """Wait while ``bearer`` stays valid, checking it every RECHECK_S, from the cache when
    it answers; then why it is not any more (revoked, expired, its user deleted). No role
    check: the streams need a viewer's at most, which every role includes."""
    while True:
        await asyncio.sleep(RECHECK_S)
        if service.accounts.recently_verified(bearer, cookie=cookie) is not None:
            continue
        try:
            await run_in_threadpool(
                functools.partial(service.accounts.authenticate, bearer, cookie=cookie)
            )
        except Unauthorized as refused:
            return refused.message


def requires(role: Role, *, anonymous_plm: bool = False) -> Callable[..., object]:
    """A dependency giving the caller's token, refusing a missing or weak one: a bearer
    token, else the dashboard's session cookie (with its CSRF token to change state)."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Token:
        service = service_of(request)
        if (
            credentials is None
            and anonymous_plm
            and service.settings.plm_anonymous_loopback
            and _is_loopback(request)
        ):
            return Token("", ANONYMOUS, TokenKind.ACCESS, "anonymous loopback", 0, None, False)
        given = credentials.credentials if credentials else None
        cookie = given is None and browser.cookie_secret(request) is not None
        if cookie:
            given = browser.cookie_secret(request)
            assert given is not None
            browser.check_state_change(request, given, request.headers.get(browser.CSRF_HEADER))
        accounts = service.accounts
        token = accounts.recently_verified(given, cookie=cookie)
        if token is None:
            token = await run_in_threadpool(
                functools.partial(accounts.authenticate, given, cookie=cookie)
            )
        if not token.user.role.allows(role):
            raise Forbidden(
                f"this needs the {role.value} role; {token.user.name} is {token.user.role.value}"
            )
        return token

    return check


viewer = requires(Role.VIEWER)
operator = requires(Role.OPERATOR)
admin = requires(Role.ADMIN)

# What handlers take: the service, and the caller's token with at least a role.
Svc = Annotated[Service, Depends(service_dependency)]
Viewer = Annotated[Token, Depends(viewer)]
Operator = Annotated[Token, Depends(operator)]
Admin = Annotated[Token, Depends(admin)]


async def read_session(service: Service, session_id: str) -> Session:
    """A session for a status read, which clients poll: from the service's cache in the
    event loop when it is there, else read in a worker thread (UnknownObject if none)."""
    session = service.sessions.cached(session_id)
    if session is None:
        session = await run_in_threadpool(service.sessions.get, session_id)
    return session
