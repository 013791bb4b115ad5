"""Bearer tokens on every route but health, the token endpoints and static files."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from storsync.errors import Forbidden
from storsync.service.core import Service
from storsync.state.records import Role, Token, TokenKind, User

bearer_scheme = HTTPBearer(auto_error=False, description="An access token or an API key.")

ANONYMOUS = User(id="", name="anonymous", role=Role.OPERATOR, created_ns=0)


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def requires(role: Role, *, anonymous_plm: bool = False) -> Callable[..., object]:
    """A dependency giving the caller's token, refusing a missing or weak one."""

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
        token = await run_in_threadpool(service.accounts.authenticate, given)
        if not token.user.role.allows(role):
            raise Forbidden(
                f"this needs the {role.value} role; {token.user.name} is {token.user.role.value}"
            )
        return token

    return check


viewer = requires(Role.VIEWER)
operator = requires(Role.OPERATOR)
admin = requires(Role.ADMIN)
