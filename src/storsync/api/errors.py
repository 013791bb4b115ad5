"""One table from errors to answers, rendered in each face's own shape (API.md sections 3-4).

The face is told by the path: the PLM envelope under /api/media-manager, Veeam's
``{"message", "errorCode"}`` under /v6, ``{"error": {"code", "message"}}`` elsewhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from storsync.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    StorsyncError,
    Unauthorized,
    UnknownObject,
)

PLM_PREFIX = "/api/media-manager/v0"
VEEAM_PREFIX = "/v6"

log = logging.getLogger("storsync.api")


@dataclass(frozen=True)
class Answer:
    status: int
    plm_code: int
    veeam_code: str
    native_code: str


UNKNOWN = Answer(500, -1, "HttpError", "internal")
BAD_REQUEST = Answer(400, 5, "ParameterValidationFailure", "invalid")
NOT_FOUND = Answer(404, 6, "ResourceNotFound", "not_found")
NO_ROUTE = Answer(404, 4, "ResourceNotFound", "not_found")
NOT_ALLOWED = Answer(405, 4, "HttpError", "method_not_allowed")
UNAUTHORIZED = Answer(401, 7, "ResourceAccessDenied", "unauthorized")
FORBIDDEN = Answer(403, 8, "ResourceAccessDenied", "forbidden")
CONFLICT = Answer(409, 2, "OperationConflict", "conflict")

_BY_ERROR: tuple[tuple[type[StorsyncError], Answer], ...] = (
    (InvalidRequest, BAD_REQUEST),
    (Unauthorized, UNAUTHORIZED),
    (Forbidden, FORBIDDEN),
    (UnknownObject, NOT_FOUND),
    (Conflict, CONFLICT),
)


def face(path: str) -> str:
    lowered = path.lower()
    if lowered.startswith(PLM_PREFIX):
        return "plm"
    if lowered == VEEAM_PREFIX or lowered.startswith(VEEAM_PREFIX + "/"):
        return "veeam"
    return "native"


def answer(request: Request, kind: Answer, message: str) -> JSONResponse:
    which = face(request.url.path)
    headers = {"WWW-Authenticate": "Bearer"} if kind.status == 401 else None
    body: object
    if which == "plm":
        body = {"status": 1, "error_code": kind.plm_code, "error_message": message}
    elif which == "veeam":
        body = {"message": message, "errorCode": kind.veeam_code}
    else:
        body = {"error": {"code": kind.native_code, "message": message}}
    return JSONResponse(body, status_code=kind.status, headers=headers)


def _sentence(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    if tuple(first.get("loc", ())) == ("body",):  # missing, or not an object
        return "the body must be a JSON object"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
    return f"{where}: {first.get('msg', 'invalid value')}"


def install(app: FastAPI) -> None:
    async def storsync_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StorsyncError)
        for kind, found in _BY_ERROR:
            if isinstance(exc, kind):
                return answer(request, found, exc.message)
        return answer(request, BAD_REQUEST, exc.message)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return answer(request, NO_ROUTE, f"no such resource: {request.url.path}")
        if exc.status_code == 405:
            response = answer(
                request, NOT_ALLOWED, f"{request.method} is not allowed on {request.url.path}"
            )
            if exc.headers and "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        kind = Answer(exc.status_code, 5, "HttpError", "invalid")
        return answer(request, kind, str(exc.detail))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return answer(request, BAD_REQUEST, _sentence(exc))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(request, UNKNOWN, "unknown error occurred; the server log says more")

    app.add_exception_handler(StorsyncError, storsync_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)
