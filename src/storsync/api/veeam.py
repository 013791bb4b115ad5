"""The Veeam Backup for Microsoft 365 face, /v6 (API.md section 4).

Paths are case-insensitive as in the original (``VeeamPaths`` rewrites them to the
spelling below before routing); errors are ``{"message", "errorCode"}``.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from storsync.api import render
from storsync.api.errors import too_many_attempts
from storsync.api.inputs import repository_changes, repository_spec
from storsync.api.schemas import RepositoryIn, TokenOut, form_or_json
from storsync.api.security import Admin, Operator, Svc, Viewer, read_session
from storsync.errors import InvalidRequest, TooManyAttempts, Unauthorized
from storsync.model import Trigger
from storsync.state.records import SessionQuery

router = APIRouter(prefix="/v6", tags=["Veeam Backup for Microsoft 365"])

DEFAULT_LIMIT = 100
# Ids are uuids: declared so in the schema, checked by ``_uuid`` for a message of our own.
VeeamId = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]

_SEGMENTS = {
    s.lower(): s
    for s in (
        "v6",
        "token",
        "BackupRepositories",
        "Sync",
        "RepositorySynchronizeSessions",
        "StopSynchronize",
    )
}


class VeeamPaths:
    """ASGI middleware: /V6/backuprepositories/... is routed as /v6/BackupRepositories/..."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path[:4].lower() == "/v6/" or path.lower() == "/v6":
                segments = path.split("/")
                fixed = "/".join(_SEGMENTS.get(s.lower(), s) for s in segments)
                if fixed != path:
                    scope = {**scope, "path": fixed, "raw_path": fixed.encode()}
        await self.app(scope, receive, send)


def _uuid(raw: str, what: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidRequest(f"{what} {raw!r} is not a valid id") from None


# -- token ----------------------------------------------------------------------------


def _oauth_error(code: str, description: str, *, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": code, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


_TOKEN_FIELDS = {
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "enum": ["password", "refresh_token"]},
        "username": {"type": "string", "maxLength": 128},
        "password": {"type": "string", "maxLength": 1024},
        "refresh_token": {"type": "string", "maxLength": 1024},
    },
}


@router.post(
    "/token",
    response_model=TokenOut,
    response_model_by_alias=True,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": _TOKEN_FIELDS},
                "application/json": {"schema": _TOKEN_FIELDS},
            },
        },
        "responses": {
            "400": {
                "description": "An OAuth 2 error: invalid_grant, invalid_request, ...",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}
                },
            },
            "429": too_many_attempts("OAuthError"),
        },
    },
)
async def token(request: Request, service: Svc) -> Any:
    """OAuth 2 password and refresh_token grants, form-encoded or JSON."""
    raw = await form_or_json(request)
    if raw is None:
        return _oauth_error("invalid_request", "the body is neither a form nor a JSON object")
    fields = {k: v for k, v in raw.items() if isinstance(v, str)}
    if any("\x00" in k or "\x00" in v for k, v in fields.items()):
        return _oauth_error("invalid_request", "the fields must not contain NUL characters")
    grant = fields.get("grant_type", "password")
    try:
        if grant == "password":
            if not fields.get("username") or not fields.get("password"):
                return _oauth_error("invalid_request", "username and password are required")
            pair = await run_in_threadpool(
                service.accounts.login, fields["username"][:128], fields["password"][:1024]
            )
        elif grant == "refresh_token":
            if not fields.get("refresh_token"):
                return _oauth_error("invalid_request", "refresh_token is required")
            pair = await run_in_threadpool(service.accounts.refresh, fields["refresh_token"][:1024])
        else:
            return _oauth_error(
                "unsupported_grant_type", f"grant_type {grant[:64]!r} is not supported"
            )
    except Unauthorized as exc:
        return _oauth_error("invalid_grant", exc.message)
    except TooManyAttempts as exc:
        # RFC 8628's error for "try again later", registered for token endpoints.
        refused = _oauth_error("slow_down", exc.message, status=429)
        refused.headers["Retry-After"] = str(exc.retry_after_s)
        return refused
    return JSONResponse(render.token_answer(pair), headers={"Cache-Control": "no-store"})


# -- repositories ---------------------------------------------------------------------


class VeeamRepositoryIn(RepositoryIn):
    model_config = ConfigDict(extra="ignore")  # Veeam clients send fields we do not use

    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=4096)
    path: str = Field(min_length=1, max_length=4096)
    remote: str = Field(min_length=1, max_length=4096)


class VeeamRepositoryUpdate(RepositoryIn):
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=4096)
    path: str | None = Field(default=None, min_length=1, max_length=4096)
    remote: str | None = Field(default=None, min_length=1, max_length=4096)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(json.loads(await request.body()))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # too deeply nested
        if isinstance(exc, ValidationError) and exc.errors():
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            message = first["msg"].removeprefix("Value error, ")
            raise InvalidRequest(f"{where}: {message}") from None
        raise InvalidRequest("the body must be a JSON object") from None


@router.get("/BackupRepositories")
def list_repositories(_: Viewer, service: Svc) -> list[dict[str, Any]]:
    return [render.veeam_repository(view) for view in service.repositories.list()]


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """A model read by hand from the body, documented as the request body."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)  # Credentials: in the components already (native API)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post("/BackupRepositories", openapi_extra=_json_body(VeeamRepositoryIn))
async def create_repository(request: Request, _: Admin, service: Svc) -> Any:
    body: VeeamRepositoryIn = await _body(request, VeeamRepositoryIn)
    created = await run_in_threadpool(service.repositories.create, repository_spec(body))
    return JSONResponse(render.veeam_repository(created), status_code=201)


@router.get("/BackupRepositories/{repository_id}")
def show_repository(repository_id: VeeamId, _: Viewer, service: Svc) -> dict[str, Any]:
    view = service.repositories.get(_uuid(repository_id, "repositoryId"))
    return render.veeam_repository(view)


@router.put("/BackupRepositories/{repository_id}", openapi_extra=_json_body(VeeamRepositoryUpdate))
async def update_repository(
    repository_id: VeeamId, request: Request, _: Admin, service: Svc
) -> Any:
    repository_id = _uuid(repository_id, "repositoryId")
    body: VeeamRepositoryUpdate = await _body(request, VeeamRepositoryUpdate)
    changes = repository_changes(body)
    updated = await run_in_threadpool(service.repositories.update, repository_id, changes)
    return render.veeam_repository(updated)


@router.delete("/BackupRepositories/{repository_id}")
def delete_repository(repository_id: VeeamId, _: Admin, service: Svc) -> Response:
    service.repositories.delete(_uuid(repository_id, "repositoryId"))
    return Response(status_code=200)


@router.post("/BackupRepositories/{repository_id}/Sync")
def sync(repository_id: VeeamId, _: Operator, service: Svc) -> dict[str, Any]:
    """Start a session, or join the waiting one; 200 with the session."""
    repository_id = _uuid(repository_id, "repositoryId")
    return render.veeam_session(service.sessions.trigger(repository_id, trigger=Trigger.VEEAM))


# -- sessions -------------------------------------------------------------------------


@router.get("/RepositorySynchronizeSessions", response_model=list[dict[str, Any]])
def list_sessions(
    _: Viewer,
    service: Svc,
    repositoryId: Annotated[
        str | None, Query(max_length=64, json_schema_extra={"format": "uuid"})
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = DEFAULT_LIMIT,
) -> Response:
    """A plain array, newest first; ``limit`` defaults to 100."""
    if repositoryId is not None:
        repositoryId = _uuid(repositoryId, "repositoryId")
    sessions = service.sessions.search(SessionQuery(repositoryId, offset=offset, limit=limit))
    # As rendered: FastAPI's generic encoder would walk a hundred sessions again.
    return JSONResponse([render.veeam_session(s) for s in sessions])


@router.get("/RepositorySynchronizeSessions/{session_id}", response_model=dict[str, Any])
async def show_session(session_id: VeeamId, _: Viewer, service: Svc) -> Response:
    # Answered as rendered (FastAPI's generic encoder would walk the dict again).
    session = await read_session(service, _uuid(session_id, "sessionId"))
    return JSONResponse(render.veeam_session(session))


@router.post("/RepositorySynchronizeSessions/{session_id}/StopSynchronize")
def stop_session(session_id: VeeamId, _: Operator, service: Svc) -> Response:
    service.sessions.stop(_uuid(session_id, "sessionId"))
    return Response(status_code=200)
