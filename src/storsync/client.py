"""The command line's client of a running server (CLI.md: repositories, trigger,
sessions, watching a session live). Plain values in, plain values out; errors become
StorsyncError with the server's one-sentence message."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import platformdirs

from storsync.errors import StorsyncError, UsageError

DEFAULT_SERVER = "http://127.0.0.1:4443"


def login_file() -> Path:
    return Path(platformdirs.user_config_dir("storsync")) / "login.json"


def save_login(server: str, answer: dict[str, Any]) -> Path:
    """Keep the tokens for the next commands, readable by this user only."""
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(
            {
                "server": server,
                "access_token": answer["access_token"],
                "refresh_token": answer["refresh_token"],
            },
            out,
        )
    return path


def _saved() -> dict[str, str]:
    try:
        found: dict[str, str] = json.loads(login_file().read_text())
    except (OSError, ValueError):
        return {}
    return found


class Client:
    def __init__(self, server: str | None, token: str | None, *, verify: bool = True) -> None:
        saved = _saved()
        self.server = (server or saved.get("server") or DEFAULT_SERVER).rstrip("/")
        self._refresh = None if token else saved.get("refresh_token")
        self.token = token or (
            saved.get("access_token") if saved.get("server") == self.server else None
        )
        self._http = httpx.Client(base_url=self.server, timeout=30, verify=verify)

    def close(self) -> None:
        self._http.close()

    def login(self, user: str, password: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._send(
            "POST", "/api/v1/auth/token", json={"username": user, "password": password}, auth=False
        )
        return answer

    def logout(self) -> bool:
        """End the saved sign-in on the server (every token it issued) and forget it here;
        False when there was none."""
        token = self._refresh or self.token
        if token is None:
            return False
        if self._refresh is not None:  # a saved sign-in, not a --token given
            self._send("POST", "/api/v1/auth/revoke", json={"token": token})
            login_file().unlink(missing_ok=True)
        return self._refresh is not None

    def request(self, method: str, path: str, **kw: Any) -> Any:
        return self._send(method, path, **kw)

    def _send(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> Any:
        if auth and not self.token:
            raise UsageError(
                "not logged in: run `storsync login`, or give --token (or STORSYNC_TOKEN)"
            )
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        try:
            response = self._http.request(method, path, headers=headers, **kw)
            if response.status_code == 401 and auth and self._refresh:
                self._renew()
                headers = {"Authorization": f"Bearer {self.token}"}
                response = self._http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise StorsyncError(f"cannot reach the server at {self.server}: {exc}") from None
        return _result(response)

    def _renew(self) -> None:
        """A new pair from the saved refresh token, saved again."""
        try:
            answer = _result(
                self._http.post("/api/v1/auth/refresh", json={"refresh_token": self._refresh})
            )
        except StorsyncError:
            self._refresh = None
            return
        save_login(self.server, answer)
        self.token, self._refresh = answer["access_token"], answer["refresh_token"]

    def events(self, **params: Any) -> Iterator[dict[str, Any]]:
        """The server's event stream (SSE), one event at a time, until it ends. A ``gap``
        notice (the server replays from its store what this reader missed, as after a
        restart) is not an event; an ``error`` event (the token expired or was revoked)
        ends the stream with its message."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
        try:
            with self._http.stream(
                "GET", "/api/v1/events", params=params, headers=headers, timeout=None
            ) as response:
                if response.status_code != 200:
                    response.read()
                    _result(response)
                kind = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if kind == "error":
                            message = data.get("error", {}).get("message", "an error")
                            raise StorsyncError(f"the server ended the event stream: {message}")
                        if kind != "gap":
                            yield data
                    elif not line:
                        kind = None
        except httpx.HTTPError as exc:
            raise StorsyncError(f"lost the server at {self.server}: {exc}") from None


def _result(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    message = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        message = message or body.get("error_description") or body.get("message")
    error_class = UsageError if 400 <= response.status_code < 500 else StorsyncError
    raise error_class(message or f"the server answered {response.status_code}")
