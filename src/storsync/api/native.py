"""The native API, /api/v1 (API.md section 2): thin handlers over the service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError

from storsync import __version__
from storsync.api import render
from storsync.api.errors import too_many_attempts
from storsync.api.inputs import repository_changes, repository_spec
from storsync.api.notifications import sse_stream
from storsync.api.schemas import (
    ApiKeyCreate,
    ApiKeyOut,
    ConflictOut,
    ConflictPage,
    EventPage,
    Health,
    Login,
    LogItemPage,
    PlanPage,
    Refresh,
    RepositoryCreate,
    RepositoryOut,
    RepositoryUpdate,
    ResolveIn,
    Revocation,
    ServiceSettingsIn,
    ServiceSettingsOut,
    SessionOut,
    SessionPage,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
    form_or_json,
)
from storsync.api.security import (
    Admin,
    Operator,
    Svc,
    Viewer,
    bearer_scheme,
    caller_secret,
    read_session,
    service_of,
)
from storsync.errors import InvalidRequest
from storsync.model import ConflictState, EventType, LogKind, SessionState, Trigger
from storsync.service.hub import EventFilter, EventHub
from storsync.state.records import ConflictQuery, Role, SessionQuery

router = APIRouter(prefix="/api/v1")
public = APIRouter()
# Ids are uuids (documented so; anything else simply names nothing: 404).
Id = Annotated[str, Path(max_length=64, json_schema_extra={"format": "uuid"})]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Limit = Annotated[int, Query(ge=1, le=1000)]
# A log item id: a 32-bit integer in the store (PostgreSQL's integer); a larger cursor
# would make the query itself fail.
Cursor = Annotated[int, Query(ge=0, le=2**31 - 1)]


@dataclass
class Paging:
    """A page of rows numbered by id: those after ``after``, at most ``limit``."""

    after: Cursor = 0
    limit: Limit = 100

    def following(self, request: Request, ids: list[int]) -> str | None:
        """The link to the next page, when this one is full."""
        if len(ids) < self.limit:
            return None
        return str(request.url.include_query_params(after=ids[-1]))


Page = Annotated[Paging, Depends()]


# -- unauthenticated ------------------------------------------------------------------


@public.get("/healthz", response_model=Health, tags=["health"])
def healthz(service: Svc) -> dict[str, str]:
    service.health()
    return {"status": "ok", "version": __version__}


@router.post(
    "/auth/token",
    response_model=TokenOut,
    response_model_by_alias=True,
    tags=["auth"],
    responses={429: too_many_attempts("NativeError")},
)
async def login(body: Login, service: Svc) -> dict[str, Any]:
    pair = await run_in_threadpool(service.accounts.login, body.username, body.password)
    return render.token_answer(pair)


@router.post("/auth/refresh", response_model=TokenOut, response_model_by_alias=True, tags=["auth"])
async def refresh(body: Refresh, service: Svc) -> dict[str, Any]:
    pair = await run_in_threadpool(service.accounts.refresh, body.refresh_token)
    return render.token_answer(pair)


_REVOCATION = Revocation.model_json_schema()


@router.post(
    "/auth/revoke",
    response_class=Response,
    tags=["auth"],
    responses={200: {"description": "Revoked, or nothing to revoke (RFC 7009 section 2.2)."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": _REVOCATION},
                "application/json": {"schema": _REVOCATION},
            },
        }
    },
)
async def revoke(request: Request, token: Viewer, service: Svc) -> Response:
    """Revoke a token given by its value (RFC 7009), form-encoded or JSON. An access or
    refresh token ends its whole sign-in (every token a password login and the refreshes
    after it issued); an API key ends alone. Another user's token needs an admin (403);
    an unknown, expired or revoked token is answered 200 as well."""
    fields = await form_or_json(request)
    if fields is None:
        raise InvalidRequest("the body is neither a form nor a JSON object")
    try:
        body = Revocation.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    await run_in_threadpool(service.accounts.revoke_secret, body.token, by=token.user)
    return Response(status_code=200)


# -- the service's settings ----------------------------------------------------------


@router.get("/settings", response_model=ServiceSettingsOut, tags=["settings"])
def get_settings(_: Viewer, service: Svc) -> dict[str, Any]:
    return {"bwlimitBytesPerSecond": service.bwlimit()}


@router.patch("/settings", response_model=ServiceSettingsOut, tags=["settings"])
def update_settings(body: ServiceSettingsIn, _: Admin, service: Svc) -> dict[str, Any]:
    """Change the total bandwidth of all running sessions (bytes per second, at least
    1024; null: no limit): running sessions get their new shares within 2 s, and the
    value outlives a restart. A field not given is left as it is."""
    if "bwlimitBytesPerSecond" in body.model_fields_set:
        service.set_bwlimit(body.bwlimitBytesPerSecond)
    return get_settings(_, service)


# -- users and keys -------------------------------------------------------------------


@router.get("/me", response_model=UserOut, tags=["users"])
def me(token: Viewer) -> dict[str, Any]:
    return render.native_user(token.user)


@router.get("/users", response_model=list[UserOut], tags=["users"])
def list_users(_: Admin, service: Svc) -> list[dict[str, Any]]:
    return [render.native_user(u) for u in service.accounts.users()]


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def create_user(body: UserCreate, _: Admin, service: Svc) -> dict[str, Any]:
    return render.native_user(
        service.accounts.create_user(body.name, body.password, Role(body.role))
    )


@router.patch("/users/{user_id}", response_model=UserOut, tags=["users"])
def update_user(user_id: Id, body: UserUpdate, _: Admin, service: Svc) -> dict[str, Any]:
    role = None if body.role is None else Role(body.role)
    return render.native_user(
        service.accounts.update_user(user_id, role=role, password=body.password)
    )


@router.delete("/users/{user_id}", status_code=204, tags=["users"])
def delete_user(user_id: Id, _: Admin, service: Svc) -> Response:
    service.accounts.delete_user(user_id)
    return Response(status_code=204)


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["users"])
def list_api_keys(token: Viewer, service: Svc) -> list[dict[str, Any]]:
    return [render.native_api_key(key) for key in service.accounts.api_keys(token.user)]


@router.post("/api-keys", response_model=ApiKeyOut, status_code=201, tags=["users"])
def create_api_key(body: ApiKeyCreate, token: Viewer, service: Svc) -> dict[str, Any]:
    key, secret = service.accounts.create_api_key(token.user, body.label)
    return render.native_api_key(key, secret)


@router.delete("/tokens/{token_id}", status_code=204, tags=["users"])
def revoke_token(token_id: Id, token: Viewer, service: Svc) -> Response:
    """Revoke one of the caller's tokens or API keys (an admin: anyone's)."""
    service.accounts.revoke(token_id, by=token.user)
    return Response(status_code=204)


# -- repositories ---------------------------------------------------------------------


@router.get("/repositories", response_model=list[RepositoryOut], tags=["repositories"])
def list_repositories(_: Viewer, service: Svc) -> list[dict[str, Any]]:
    return [render.native_repository(r) for r in service.repositories.list()]


@router.post("/repositories", response_model=RepositoryOut, status_code=201, tags=["repositories"])
def create_repository(body: RepositoryCreate, _: Admin, service: Svc) -> dict[str, Any]:
    return render.native_repository(service.repositories.create(repository_spec(body)))


@router.get("/repositories/{repository_id}", response_model=RepositoryOut, tags=["repositories"])
def show_repository(repository_id: Id, _: Viewer, service: Svc) -> dict[str, Any]:
    return render.native_repository(service.repositories.get(repository_id))


@router.patch("/repositories/{repository_id}", response_model=RepositoryOut, tags=["repositories"])
def update_repository(
    repository_id: Id, body: RepositoryUpdate, _: Admin, service: Svc
) -> dict[str, Any]:
    changes = repository_changes(body)
    return render.native_repository(service.repositories.update(repository_id, changes))


@router.post(
    "/repositories/{repository_id}/pause", response_model=RepositoryOut, tags=["repositories"]
)
def pause_repository(repository_id: Id, _: Operator, service: Svc) -> dict[str, Any]:
    """Neither its schedule nor its watch starts a session until it is resumed; triggers
    still do."""
    return render.native_repository(service.repositories.set_paused(repository_id, True))


@router.post(
    "/repositories/{repository_id}/resume", response_model=RepositoryOut, tags=["repositories"]
)
def resume_repository(repository_id: Id, _: Operator, service: Svc) -> dict[str, Any]:
    """Its schedule and watch start sessions again; a fire missed meanwhile runs once now."""
    return render.native_repository(service.repositories.set_paused(repository_id, False))


@router.delete("/repositories/{repository_id}", status_code=204, tags=["repositories"])
def delete_repository(repository_id: Id, _: Admin, service: Svc) -> Response:
    service.repositories.delete(repository_id)
    return Response(status_code=204)


@router.post(
    "/repositories/{repository_id}/sync",
    response_model=SessionOut,
    status_code=202,
    tags=["sessions"],
)
def trigger(repository_id: Id, _: Operator, service: Svc) -> dict[str, Any]:
    """Start a session, or join the one waiting (at most one runs and one waits)."""
    return render.native_session(service.sessions.trigger(repository_id, trigger=Trigger.API))


# -- sessions -------------------------------------------------------------------------


@router.get("/sessions", response_model=SessionPage, tags=["sessions"])
def list_sessions(
    request: Request,
    _: Viewer,
    service: Svc,
    repositoryId: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[list[SessionState] | None, Query()] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Response:
    sessions = service.sessions.search(
        SessionQuery(repositoryId, tuple(state or ()), offset, limit)
    )
    following = None
    if len(sessions) == limit:
        following = str(request.url.include_query_params(offset=offset + limit))
    # As rendered, like a single session: the model would check each item again.
    return JSONResponse(
        {
            "items": [render.native_session(s) for s in sessions],
            "offset": offset,
            "limit": limit,
            "next": following,
        }
    )


@router.get("/sessions/{session_id}", response_model=SessionOut, tags=["sessions"])
async def show_session(session_id: Id, _: Viewer, service: Svc) -> Response:
    # Answered as rendered: checking the dict against the model again cost a fifth of the
    # request (the model stays the schema).
    return JSONResponse(render.native_session(await read_session(service, session_id)))


@router.post("/sessions/{session_id}/stop", response_model=SessionOut, tags=["sessions"])
def stop_session(session_id: Id, _: Operator, service: Svc) -> dict[str, Any]:
    """Stop at the next safe point (between files); a waiting session is dropped."""
    return render.native_session(service.sessions.stop(session_id))


@router.get("/sessions/{session_id}/items", response_model=LogItemPage, tags=["sessions"])
def session_items(
    request: Request,
    session_id: Id,
    _: Viewer,
    service: Svc,
    page: Page,
    kind: LogKind | None = None,
) -> dict[str, Any]:
    """The session's log items: files transferred, deleted, in conflict, failed, skipped."""
    rows = service.sessions.items(session_id, kind=kind, after_id=page.after, limit=page.limit)
    items = [render.native_item(i) for i in rows]
    return {"items": items, "next": page.following(request, [i.id for i in rows])}


@router.get("/sessions/{session_id}/plan", response_model=PlanPage, tags=["halts"])
def session_plan(
    request: Request, session_id: Id, _: Viewer, service: Svc, page: Page
) -> dict[str, Any]:
    """A halted session's whole plan, step by step (empty for a session that did not halt)."""
    steps = service.halts.plan(session_id, after_id=page.after, limit=page.limit)
    items = [render.native_plan_step(s) for s in steps]
    return {"items": items, "next": page.following(request, [s.id for s in steps])}


@router.post(
    "/sessions/{session_id}/approve", response_model=SessionOut, status_code=202, tags=["halts"]
)
def approve_halt(session_id: Id, _: Operator, service: Svc) -> dict[str, Any]:
    """Carry out exactly the deletions the halted plan listed (each only while the file is
    still the version listed), in the waiting session or a new one: that session. 409 when
    the session is not a waiting halt, or a later session of the repository completed."""
    return render.native_session(service.halts.approve(session_id))


@router.post("/sessions/{session_id}/reject", response_model=SessionOut, tags=["halts"])
def reject_halt(session_id: Id, _: Operator, service: Svc) -> dict[str, Any]:
    """Refuse the halted plan and pause the repository: the halted session."""
    return render.native_session(service.halts.reject(session_id))


@router.get("/conflicts", response_model=ConflictPage, tags=["conflicts"])
def list_conflicts(
    request: Request,
    _: Viewer,
    service: Svc,
    repositoryId: Annotated[str | None, Query(max_length=64)] = None,
    state: ConflictState | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Conflicts, oldest first: open ones keep both versions (the path holds the local
    one, ``copyPath`` the remote one) until a person decides; resolved ones say how."""
    found = service.conflicts.search(ConflictQuery(repositoryId, state, offset, limit))
    following = None
    if len(found) == limit:
        following = str(request.url.include_query_params(offset=offset + limit))
    items = [render.native_conflict(c) for c in found]
    return {"items": items, "offset": offset, "limit": limit, "next": following}


@router.get("/conflicts/{conflict_id}", response_model=ConflictOut, tags=["conflicts"])
def get_conflict(conflict_id: Id, _: Viewer, service: Svc) -> dict[str, Any]:
    return render.native_conflict(service.conflicts.get(conflict_id))


@router.post(
    "/conflicts/{conflict_id}/resolve",
    response_model=SessionOut,
    status_code=202,
    tags=["conflicts"],
)
def resolve_conflict(conflict_id: Id, body: ResolveIn, _: Operator, service: Svc) -> dict[str, Any]:
    """Decide an open conflict: ``both`` accepts the two files as they stand, ``local``
    moves the copy to the trash on both sides, ``remote`` puts the copy's bytes at the
    path on both sides (the replaced version to the trash) and removes the copy. Carried
    out by a session (``trigger: resolve``; the repository's waiting one if there is
    one): that session. 409 when the conflict is resolved, a decision on it is pending,
    or the path or its copy changed on a side since the conflict was recorded."""
    return render.native_session(service.conflicts.resolve(conflict_id, body.keep))


@router.get("/sessions/{session_id}/conflicts", response_model=LogItemPage, tags=["sessions"])
def session_conflicts(
    request: Request, session_id: Id, viewer: Viewer, service: Svc, page: Page
) -> dict[str, Any]:
    return session_items(request, session_id, viewer, service, page, LogKind.CONFLICT)


# -- events ---------------------------------------------------------------------------


@router.get(
    "/events",
    response_model=EventPage,
    tags=["events"],
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def list_events(
    request: Request,
    _: Viewer,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Limit = 100,
    timeout: Annotated[float, Query(ge=0, le=300)] = 0,
    repositoryId: Annotated[str | None, Query(max_length=64)] = None,
    sessionId: Annotated[str | None, Query(max_length=64)] = None,
    type: Annotated[list[EventType] | None, Query()] = None,
) -> Any:
    """Events after ``since``, oldest first.

    With ``Accept: text/event-stream``: a Server-Sent Events stream from ``since`` or the
    ``Last-Event-ID`` header (default: from now on), with the same filters; it ends with
    an ``error`` event within 5 s once the token is revoked or expires. With
    ``timeout``: a long poll, answered as soon as an event after ``since`` exists or when
    the timeout (seconds) has passed. Per-file batches (``items.transferred``) only come
    when asked for by ``type``.
    """
    hub: EventHub = request.app.state.hub
    wanted = EventFilter(
        repository_id=repositoryId, session_id=sessionId, types=frozenset(type or ())
    )
    if "text/event-stream" in request.headers.get("accept", ""):
        start = _last_event_id(request.headers.get("last-event-id"))
        if start is None:
            start = hub.last_id if since is None else since
        secret = caller_secret(request, credentials)
        stream = sse_stream(
            hub, start, wanted, service_of(request), secret, cookie=credentials is None
        )
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    cursor = since or 0
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        batch = await hub.read(cursor, wanted, limit=limit)
        cursor = batch.cursor
        events = batch.events[:limit]
        if events or cursor < hub.last_id:
            if events:
                break
            continue
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        await hub.wait(cursor, left)
    return {
        "items": [render.native_event(e) for e in events],
        "lastId": events[-1].id if events else cursor,
    }


def _last_event_id(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be an event id (a whole number)") from None
    if value < 0:
        raise InvalidRequest("Last-Event-ID must not be negative")
    return value
