"""Checks of error answers in each face's shape (API.md sections 3-5), for the API tests.

``error(response, face, status, code)`` checks the status, the shape, the absence of a
traceback and that the message is one sentence, and returns the message.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

import httpx

from tests.api_support import Api

PLM = "/api/media-manager/v0/storage/synchronizers"
# A well-formed id that names nothing.
UNKNOWN = "0b7e6a4c-4f7d-4c55-9a38-2f8e51c9b2a1"
VEEAM_CODES = {
    "ResourceNotFound",
    "ParameterValidationFailure",
    "OperationConflict",
    "ResourceAccessDenied",
    "HttpError",
}
Face = Literal["plm", "veeam", "native", "oauth"]


def assert_sentence(message: object) -> None:
    """A message a user can read: one line, one sentence, no traceback, not a dump."""
    assert isinstance(message, str) and message.strip(), repr(message)
    assert "\n" not in message and "\r" not in message, repr(message)
    assert len(message) <= 500, f"{len(message)} characters: {message[:200]!r}..."
    assert "Traceback" not in message and 'File "' not in message, message
    assert not re.search(r"[.!?]\s+[A-Z]", message), f"more than one sentence: {message!r}"


def error(response: httpx.Response, face: Face, status: int, code: int | str | None = None) -> str:
    """The message of an error answer, once its status and shape are checked."""
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), where
    assert "Traceback" not in response.text, f"{where}: {response.text}"
    body = response.json()
    message: object
    if face == "plm":
        assert set(body) == {"status", "error_code", "error_message"}, f"{where}: {body}"
        assert body["status"] == 1 and isinstance(body["error_code"], int), body
        found, message = body["error_code"], body["error_message"]
    elif face == "veeam":
        assert set(body) == {"message", "errorCode"}, f"{where}: {body}"
        assert body["errorCode"] in VEEAM_CODES, body
        found, message = body["errorCode"], body["message"]
    elif face == "native":
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        found, message = body["error"]["code"], body["error"]["message"]
    else:
        assert set(body) == {"error", "error_description"}, f"{where}: {body}"
        assert response.headers.get("cache-control") == "no-store", where
        found, message = body["error"], body["error_description"]
    if code is not None:
        assert found == code, f"{where}: {code!r} expected: {body}"
    if status == 401 and face != "oauth":
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer"), where
    assert_sentence(message)
    assert isinstance(message, str)
    return message


def new_user(api: Api, role: str) -> tuple[str, str]:
    """A new user with this role (a unique name in the shared service): its id, a token."""
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    created = api.post("/api/v1/users", json={"name": name, "password": "password-1", "role": role})
    assert created.status_code == 201, created.text
    return created.json()["id"], api.login(name, "password-1")
