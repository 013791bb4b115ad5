"""The service for API tests: in-process (ASGI, via httpx) or a real `storsync serve`
process on a loopback port; SQLite or PostgreSQL. Tests talk to both through ``Api``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from storsync.api.app import create_app
from storsync.config import load_settings
from tests.s3_server import SeaweedS3

ADMIN_PASSWORD = "admin-password-1"
DEFAULT_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(data_dir: Path, root: Path, database_url: str | None) -> dict[str, str]:
    env = {
        "STORSYNC_DATA_DIR": str(data_dir),
        "STORSYNC_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "STORSYNC_ALLOWED_ROOTS": str(root),
        "STORSYNC_ALLOW_PRIVATE_ENDPOINTS": "1",
        "STORSYNC_LOG_LEVEL": "warning",
    }
    if database_url:
        env["STORSYNC_DATABASE_URL"] = database_url
    return env


def s3_remote(s3: SeaweedS3, prefix: str) -> dict[str, Any]:
    """The fields of a repository whose remote is ``prefix`` in the test server's bucket."""
    return {
        "remote": f"s3://{s3.bucket}/{prefix}",
        "remoteCredentials": {
            "accessKeyId": s3.access_key,
            "secretAccessKey": s3.secret_key,
            "endpoint": s3.endpoint,
            "region": s3.region,
        },
    }


def repository_body(folder: Path) -> dict[str, str]:
    """A repository create body for ``folder/local`` synced with ``folder/remote``."""
    return {
        "name": folder.name,
        "localPath": str(folder / "local"),
        "remote": str(folder / "remote"),
    }


class ServerProcess:
    """`storsync serve` in a child process; stop() is SIGTERM, a grace, then SIGKILL."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        port: int | None = None,
        args: tuple[str, ...] = (),
        scheme: str = "http",
    ) -> None:
        self.env = env
        self.args = args
        self.scheme = scheme
        self.port = port or free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "storsync", "serve", "--port", str(self.port), *self.args],
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"storsync serve exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2, verify=False).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"storsync serve did not answer: {self.log.read_text()[-2000:]}")

    def stop(self, *, kill: bool = False, grace: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Api:
    """A client of one service with helpers; ``token`` is the admin's."""

    def __init__(self, client: httpx.Client, root: Path, kind: str) -> None:
        self.client = client
        self.root = root
        self.kind = kind
        self.token = self.login("admin", ADMIN_PASSWORD)

    def login(self, user: str, password: str) -> str:
        answer = self.client.post(
            "/v6/token", data={"grant_type": "password", "username": user, "password": password}
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def request(
        self, method: str, path: str, *, token: str | None = None, **kw: Any
    ) -> httpx.Response:
        headers = {**self.headers(token), **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def new_repository(self, **fields: Any) -> dict[str, Any]:
        """A repository in a fresh folder under the allowed root; local and remote dirs."""
        body = {**repository_body(self.root / uuid.uuid4().hex[:12]), **fields}
        answer = self.post("/api/v1/repositories", json=body)
        assert answer.status_code == 201, answer.text
        repository: dict[str, Any] = answer.json()
        return repository

    def session(self, session_id: str) -> dict[str, Any]:
        answer = self.get(f"/api/v1/sessions/{session_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def wait(self, session_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """The session once it has finished."""
        deadline = time.monotonic() + timeout
        while True:
            session = self.session(session_id)
            if session["state"] not in ("queued", "running"):
                return session
            if time.monotonic() > deadline:
                raise AssertionError(f"session still {session['state']}: {session}")
            time.sleep(0.05)

    def sync(self, repository_id: str) -> dict[str, Any]:
        answer = self.post(f"/api/v1/repositories/{repository_id}/sync")
        assert answer.status_code == 202, answer.text
        return self.wait(answer.json()["id"])


@contextlib.contextmanager
def running_api(kind: str, tmp: Path, database_url: str | None) -> Iterator[Api]:
    """``kind``: ``inprocess`` (ASGI in this process) or ``server`` (a child process)."""
    root = tmp / "root"
    data = tmp / "data"
    root.mkdir(parents=True, exist_ok=True)
    env = service_env(data, root, database_url)
    if kind == "inprocess":
        settings = load_settings({}, env)
        with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
            yield Api(client, root, kind)
        return
    with serving(tmp, database_url) as (_, api):
        yield api


@contextlib.contextmanager
def serving(
    tmp: Path, database_url: str | None = None, **server: Any
) -> Iterator[tuple[ServerProcess, Api]]:
    """A real `storsync serve` on the data directory ``tmp/data``, repositories allowed
    under ``tmp/root``, and a client of it; ``server``: more of ServerProcess's options."""
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    process = ServerProcess(
        service_env(tmp / "data", root, database_url), tmp / "server.log", **server
    )
    process.start()
    try:
        verify = server.get("scheme", "http") == "http"
        with httpx.Client(base_url=process.url, timeout=30, verify=verify) as client:
            yield process, Api(client, root, "server")
    finally:
        process.stop()
