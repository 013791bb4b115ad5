"""The PLM Media Manager face, /api/media-manager/v0 (API.md section 3).

Synchronizer ids are ``$<pushId>+<pullId>``: the session's two phase ids. Answers are 200
with ``{"status": 0, "synchronizer": ...}``; errors use the PLM envelope.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from storsync.api import render
from storsync.api.errors import NOT_ALLOWED, PLM_PREFIX, answer
from storsync.api.security import Svc, requires
from storsync.errors import InvalidRequest, UnknownObject
from storsync.model import Trigger
from storsync.state.records import Role, SessionQuery, Token

router = APIRouter(prefix=f"{PLM_PREFIX}/storage/synchronizers", tags=["PLM Media Manager"])

PlmOperator = Annotated[Token, Depends(requires(Role.OPERATOR, anonymous_plm=True))]
PlmViewer = Annotated[Token, Depends(requires(Role.VIEWER, anonymous_plm=True))]
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# ``$<pushId>+<pullId>``: the pattern documents it; ``parse_id`` checks it (error_code 5).
SynchronizerId = Annotated[
    str, Path(max_length=160, json_schema_extra={"pattern": rf"^\${_UUID}\+\$?{_UUID}$"})
]


def parse_id(raw: str) -> tuple[str, str]:
    """``$push+pull`` to the two uuids; anything else is a bad request (error_code 5)."""
    if not raw.startswith("$"):
        raise InvalidRequest(f"synchronizer id {raw!r} must start with '$'")
    parts = raw[1:].split("+")
    if len(parts) != 2:
        raise InvalidRequest(f"synchronizer id {raw!r} must be $<pushId>+<pullId>")
    ids = []
    for part in parts:
        try:
            ids.append(str(uuid.UUID(part.removeprefix("$"))))
        except ValueError:
            raise InvalidRequest(f"synchronizer id {raw!r} holds an invalid id {part!r}") from None
    return ids[0], ids[1]


@router.post("", include_in_schema=False)
@router.post("/")
def create(
    _: PlmOperator,
    service: Svc,
    repositoryId: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Trigger a synchronization of the default repository (or ``repositoryId``)."""
    repository = (
        service.repositories.find(repositoryId) if repositoryId else service.repositories.default()
    )
    session = service.sessions.trigger(repository.id, trigger=Trigger.PLM)
    return {"status": 0, "synchronizer": render.plm_synchronizer(session)}


@router.get("", include_in_schema=False)
@router.get("/")
def index(
    _: PlmViewer,
    service: Svc,
    repositoryId: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Recent synchronizers, newest first."""
    sessions = service.sessions.search(SessionQuery(repositoryId, limit=limit))
    return {"status": 0, "synchronizers": [render.plm_synchronizer(s) for s in sessions]}


@router.get("/{synchronizer_id}")
def show(synchronizer_id: SynchronizerId, _: PlmViewer, service: Svc) -> dict[str, Any]:
    push_id, pull_id = parse_id(synchronizer_id)
    session = service.sessions.by_phases(push_id, pull_id)
    if session is None:
        raise UnknownObject(f"no synchronizer with id {synchronizer_id!r}")
    return {"status": 0, "synchronizer": render.plm_synchronizer(session)}


def _not_allowed(allowed: str) -> Any:
    def handler(request: Request) -> JSONResponse:
        response = answer(
            request, NOT_ALLOWED, f"{request.method} is not supported on {request.url.path}"
        )
        response.headers["Allow"] = allowed
        return response

    return handler


def _options(allowed: str) -> Any:
    def handler() -> Response:
        return Response(
            status_code=204,
            headers={
                "Allow": allowed,
                "Access-Control-Allow-Methods": allowed,
                "Access-Control-Allow-Headers": "Content-Type, Authorization",
            },
        )

    return handler


for path, allowed in (
    ("", "POST, GET, OPTIONS"),
    ("/", "POST, GET, OPTIONS"),
    ("/{synchronizer_id}", "GET, OPTIONS"),
):
    router.add_api_route(
        path, _not_allowed(allowed), methods=["PUT", "DELETE", "PATCH"], include_in_schema=False
    )
    router.add_api_route(path, _options(allowed), methods=["OPTIONS"], include_in_schema=False)
