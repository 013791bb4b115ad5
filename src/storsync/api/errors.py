"""One table from errors to answers, rendered in each face's own shape (API.md sections 3-4).

The face is told by the path: the PLM envelope under /api/media-manager, Veeam's
``{"message", "errorCode"}`` under /v6, ``{"error": {"code", "message"}}`` elsewhere.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from storsync.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    StorsyncError,
    TooManyAttempts,
    Unauthorized,
    UnknownObject,
)

PLM_PREFIX = "/api/media-manager/v0"
VEEAM_PREFIX = "/v6"

log = logging.getLogger("storsync.api")
_NUL = re.compile(rb"%00|\x00")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
# PLM and Veeam (beyond their token endpoint, which answers OAuth 2 errors) have no
# sign-in, so no code of their own for it: an extension code and Veeam's catch-all.
TOO_MANY = Answer(429, 9, "HttpError", "too_many_requests")

_BY_ERROR: tuple[tuple[type[StorsyncError], Answer], ...] = (
    (InvalidRequest, BAD_REQUEST),
    (Unauthorized, UNAUTHORIZED),
    (Forbidden, FORBIDDEN),
    (UnknownObject, NOT_FOUND),
    (Conflict, CONFLICT),
    (TooManyAttempts, TOO_MANY),
)


def face(path: str) -> str:
    lowered = path.lower()
    if lowered.startswith(PLM_PREFIX):
        return "plm"
    if lowered == VEEAM_PREFIX or lowered.startswith(VEEAM_PREFIX + "/"):
        return "veeam"
    return "native"


def body(which: str, kind: Answer, message: str) -> dict[str, Any]:
    """An error in the shape of one face (``plm``, ``veeam`` or ``native``)."""
    if which == "plm":
        return {"status": 1, "error_code": kind.plm_code, "error_message": message}
    if which == "veeam":
        return {"message": message, "errorCode": kind.veeam_code}
    return {"error": {"code": kind.native_code, "message": message}}


def response(which: str, kind: Answer, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if kind.status == 401 else None
    return JSONResponse(body(which, kind, message), status_code=kind.status, headers=headers)


def answer(request: Request, kind: Answer, message: str) -> JSONResponse:
    return response(face(request.url.path), kind, message)


def _sentence(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    loc = tuple(first.get("loc", ()))
    if loc == ("body",) and first.get("type") != "value_error":  # missing, not an object
        return "the body must be a JSON object"
    where = ".".join(str(p) for p in loc if p != "body") or (str(loc[0]) if loc else "request")
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {message}"


class RefuseControlCharacters:
    """ASGI middleware: a 400 in the face's shape for a control character in the path, or
    a NUL in the query. No id has a use for one; routes would match ``/x%0A`` as ``/x``
    (a regular expression's ``$`` matches before a final newline); and PostgreSQL refuses
    NUL in text, which would make it a 500 on one backend and a 404 on the other."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            message = None
            if _CONTROL.search(scope["path"]):
                message = "the URL path must not contain control characters (%00 to %1F)"
            elif _NUL.search(scope.get("query_string", b"")):
                message = "the URL must not contain NUL characters (%00)"
            if message is not None:
                await answer(Request(scope), BAD_REQUEST, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes on this path (Starlette's 405 names the first's)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


def install(app: FastAPI) -> None:
    async def storsync_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StorsyncError)
        found = next((a for kind, a in _BY_ERROR if isinstance(exc, kind)), BAD_REQUEST)
        response = answer(request, found, exc.message)
        if isinstance(exc, TooManyAttempts):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return answer(request, NO_ROUTE, f"no such resource: {request.url.path}")
        if exc.status_code == 405:
            response = answer(
                request, NOT_ALLOWED, f"{request.method} is not allowed on {request.url.path}"
            )
            allowed = _allowed_methods(request) or (exc.headers or {}).get("Allow")
            if allowed:
                response.headers["Allow"] = allowed
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


# -- the OpenAPI schema: errors as they are answered -------------------------------------

_STRING = {"type": "string"}
ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "NativeError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": _STRING, "message": _STRING},
            }
        },
    },
    "PlmError": {
        "type": "object",
        "required": ["status", "error_code", "error_message"],
        "properties": {
            "status": {"type": "integer", "enum": [1]},
            "error_code": {"type": "integer"},
            "error_message": _STRING,
        },
    },
    "VeeamError": {
        "type": "object",
        "required": ["message", "errorCode"],
        "properties": {"message": _STRING, "errorCode": _STRING},
    },
    "OAuthError": {
        "type": "object",
        "required": ["error", "error_description"],
        "properties": {
            "error": {
                "type": "string",
                "enum": [
                    "invalid_request",
                    "invalid_grant",
                    "unsupported_grant_type",
                    "slow_down",
                ],
            },
            "error_description": _STRING,
        },
    },
}
_SHAPE = {"native": "NativeError", "plm": "PlmError", "veeam": "VeeamError"}
_WHY = {
    "400": "A parameter or the body is invalid.",
    "401": "The bearer token is missing, unknown, expired or revoked.",
    "403": "The caller's role, or a setting, does not allow this.",
    "404": "No such object.",
    "409": "This contradicts the current state.",
}


def too_many_attempts(shape: str) -> dict[str, Any]:
    """The OpenAPI entry of the 429 a sign-in gets while its user name is locked out,
    with the error in this shape (a name of ERROR_SCHEMAS)."""
    return {
        "description": "Too many failed sign-ins for this user name; try again later.",
        "headers": {
            "Retry-After": {
                "description": "Seconds until a sign-in for this name is accepted again.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}},
    }


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Error answers in the OpenAPI schema, in each face's shape, instead of FastAPI's 422
    (requests that fail validation are answered 400)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    components.update(ERROR_SCHEMAS)
    for path, item in schema.get("paths", {}).items():
        shape = _SHAPE[face(path)]
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            secured = bool(operation.get("security"))
            statuses = ["400"]
            if secured or path.startswith("/api/v1/auth/"):
                statuses.append("401")
            if secured:
                statuses.append("403")
            if "{" in path or (shape == "PlmError" and method == "post"):
                statuses.append("404")
            if secured and method != "get":
                statuses.append("409")
            for status in statuses:
                responses.setdefault(
                    status,
                    {
                        "description": _WHY[status],
                        "content": {
                            "application/json": {
                                "schema": {"$ref": f"#/components/schemas/{shape}"}
                            }
                        },
                    },
                )
    return schema
