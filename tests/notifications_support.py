"""Real clients of the live notifications, for tests and bench/notifications_stall.py:
a `storsync serve` on loopback, Server-Sent Events and WebSocket readers (httpx,
websockets) and raw sockets that connect, subscribe and then never read."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets

from tests.api_support import ADMIN_PASSWORD, ServerProcess, repository_body, service_env

SYNCHRONIZERS = "/storage/synchronizers"
SUBSCRIBE = {"resource": "_client", "event": "subscribe", "data": {"resource": SYNCHRONIZERS}}
UNSUBSCRIBE = {**SUBSCRIBE, "event": "unsubscribe"}
# A message the server answers with an error event ("unknown event 'probe'"): its answer
# shows that every message sent before it has been handled (they are read in order).
PROBE = {"resource": "_client", "event": "probe"}
END_TYPES = frozenset({"session.finished", "session.failed", "session.stopped"})


def make_files(
    folder: Path, count: int, size: int = 64, *, per_dir: int = 200, pad: int = 0
) -> set[str]:
    """``count`` small files under ``folder`` (``per_dir`` a directory); their paths.
    ``pad`` lengthens every path by about twice that many characters (two directories
    with long names: cheap, unlike long names of every file)."""
    paths: set[str] = set()
    body = os.urandom(size)
    for i in range(count):
        sub = f"{'d' * pad}{i // per_dir:03d}" + (f"/{'e' * pad}" if pad else "")
        if i % per_dir == 0:
            (folder / sub).mkdir(parents=True, exist_ok=True)
        name = f"{sub}/f{i:05d}.bin"
        (folder / name).write_bytes(body + i.to_bytes(4, "big"))
        paths.add(name)
    return paths


@dataclass
class Live:
    """A running `storsync serve` with the admin's token."""

    server: ServerProcess
    root: Path
    token: str
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, headers=self.headers, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.post(path, headers=self.headers, **kw)

    def new_repository(
        self, files: int = 0, size: int = 64, *, pad: int = 0
    ) -> tuple[dict[str, Any], set[str]]:
        """A repository whose local side holds ``files`` new files; it and their paths."""
        folder = self.root / uuid.uuid4().hex[:12]
        paths = make_files(folder / "local", files, size, pad=pad)
        answer = self.post("/api/v1/repositories", json=repository_body(folder))
        assert answer.status_code == 201, answer.text
        repository: dict[str, Any] = answer.json()
        return repository, paths

    def trigger(self, repository_id: str) -> dict[str, Any]:
        answer = self.post(f"/api/v1/repositories/{repository_id}/sync")
        assert answer.status_code == 202, answer.text
        session: dict[str, Any] = answer.json()
        return session

    def session(self, session_id: str) -> dict[str, Any]:
        answer = self.get(f"/api/v1/sessions/{session_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def wait(self, session_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            session = self.session(session_id)
            if session["state"] not in ("queued", "running"):
                return session
            assert time.monotonic() < deadline, f"session still {session['state']}"
            time.sleep(0.05)

    def wait_end_event(self, session_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The session's end event, once stored (long poll): the REST view shows a session
        finished a moment before its end event is published."""
        params = {"sessionId": session_id, "type": sorted(END_TYPES), "timeout": timeout}
        answer = self.get("/api/v1/events", params=params, timeout=timeout + 30)
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        assert items, f"no end event for session {session_id} in {timeout} s"
        found: dict[str, Any] = items[0]
        return found

    def last_event_id(self) -> int:
        """The newest event's id (from the metrics, which read the bus)."""
        answer = self.get("/metrics")
        assert answer.status_code == 200, answer.text
        for line in answer.text.splitlines():
            if line.startswith("storsync_last_event_id "):
                return int(float(line.split()[1]))
        raise AssertionError("no storsync_last_event_id in the metrics")

    def stored_events(self, since: int = 0, *, limit: int = 1000, **filters: Any) -> list[Any]:
        """Every stored event after ``since`` matching ``filters``, by the JSON pages."""
        found: list[Any] = []
        while True:
            answer = self.get("/api/v1/events", params={"since": since, "limit": limit, **filters})
            assert answer.status_code == 200, answer.text
            page = answer.json()
            found += page["items"]
            if not page["items"]:
                return found
            assert page["lastId"] == page["items"][-1]["id"]
            since = page["lastId"]


def login(url: str) -> str:
    answer = httpx.post(
        f"{url}/v6/token",
        data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


@contextlib.contextmanager
def live_server(
    tmp: Path, *, database_url: str | None = None, port: int | None = None
) -> Iterator[Live]:
    """`storsync serve` on its own data directory under ``tmp``; stopped with SIGTERM."""
    root, data = tmp / "root", tmp / "data"
    root.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(service_env(data, root, database_url), tmp / "server.log", port=port)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield Live(server, root, login(server.url), client)
    finally:
        server.stop()


# -- Server-Sent Events -----------------------------------------------------------------


@dataclass(frozen=True)
class Sse:
    """One Server-Sent Event: ``event`` is the type (``gap`` for the replay marker)."""

    id: int | None
    event: str
    data: Any


async def sse_events(
    client: httpx.AsyncClient,
    token: str,
    params: dict[str, Any] | None = None,
    *,
    last_event_id: int | None = None,
    ready: asyncio.Event | None = None,
) -> AsyncIterator[Sse]:
    """The events of ``GET /api/v1/events`` as a stream; ``ready`` is set once the
    server answered (from then on the stream's starting point is fixed)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with client.stream("GET", "/api/v1/events", params=params, headers=headers) as answer:
        assert answer.status_code == 200, await answer.aread()
        assert answer.headers["content-type"].startswith("text/event-stream")
        if ready is not None:
            ready.set()
        fields: dict[str, str] = {}
        async for line in answer.aiter_lines():
            if line == "":
                if "event" in fields or "data" in fields:
                    raw_id = fields.get("id")
                    yield Sse(
                        None if raw_id is None else int(raw_id),
                        fields.get("event", "message"),
                        json.loads(fields["data"]) if "data" in fields else None,
                    )
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")


async def read_sse_until(
    client: httpx.AsyncClient,
    token: str,
    stop: Callable[[Sse], bool],
    params: dict[str, Any] | None = None,
    *,
    last_event_id: int | None = None,
    ready: asyncio.Event | None = None,
) -> list[Sse]:
    """Events up to and including the first for which ``stop`` is true."""
    found: list[Sse] = []
    stream = sse_events(client, token, params, last_event_id=last_event_id, ready=ready)
    async for event in stream:
        found.append(event)
        if stop(event):
            break
    await stream.aclose()
    return found


def ends(session_id: str) -> Callable[[Sse], bool]:
    """``stop`` for read_sse_until: the end event of that session."""
    return lambda e: e.event in END_TYPES and e.data["sessionId"] == session_id


# -- the PLM WebSocket ------------------------------------------------------------------


async def ws_connect(
    live: Live, *, path: str = "/notifications", by: str = "header"
) -> websockets.ClientConnection:
    """A connection with the token by ``header`` or by ``query``; the greeting checked."""
    if by == "header":
        ws = await websockets.connect(live.ws_url + path, additional_headers=live.headers)
    else:
        ws = await websockets.connect(f"{live.ws_url}{path}?access_token={live.token}")
    greeting = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert greeting == {"resource": "/notifications", "event": "connection.established"}
    return ws


async def ws_request(
    ws: websockets.ClientConnection, message: Any = None, timeout: float = 30
) -> list[dict[str, Any]]:
    """Send ``message`` (if any), then a probe; everything received before the probe's
    answer (error events, sync notifications)."""
    if message is not None:
        await ws.send(message if isinstance(message, str | bytes) else json.dumps(message))
    await ws.send(json.dumps(PROBE))
    received: list[dict[str, Any]] = []
    while True:
        answer = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if answer.get("event") == "error" and "'probe'" in answer["data"]["error_message"]:
            assert answer["data"]["error_code"] == 4, answer
            return received
        received.append(answer)


async def ws_subscribe(ws: websockets.ClientConnection) -> None:
    """Subscribe and wait until the server has acted on it."""
    assert await ws_request(ws, SUBSCRIBE) == []


async def ws_until_completed(
    ws: websockets.ClientConnection, synchronizer_id: str, timeout: float = 120
) -> list[dict[str, Any]]:
    """Notifications up to this synchronizer's ``sync.completed``."""
    found: list[dict[str, Any]] = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        found.append(message)
        if message["event"] == "sync.completed" and message["data"]["id"] == synchronizer_id:
            return found


def synchronizer_id(session: dict[str, Any]) -> str:
    """The PLM id of a native session."""
    return f"${session['push']['id']}+{session['pull']['id']}"


# -- clients that never read ------------------------------------------------------------


def _raw_connect(port: int, request: bytes) -> tuple[socket.socket, bytes]:
    """A socket with a tiny receive buffer, the request sent, the answer's head read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: nothing of the body is taken off the socket
        assert chunk, head
        head += chunk
    return sock, head


def stalled_sse(port: int, token: str, params: dict[str, Any] | None = None) -> socket.socket:
    """An event stream request whose answer is never read past its head."""
    query = f"?{urlencode(params, doseq=True)}" if params else ""
    request = (
        f"GET /api/v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    sock, head = _raw_connect(port, request)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def stalled_websocket(port: int, token: str) -> socket.socket:
    """A WebSocket that subscribes to the synchronizers and then never reads."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /notifications?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    sock, head = _raw_connect(port, request)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked_text_frame(json.dumps(SUBSCRIBE).encode()))
    return sock


def _masked_text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def drain_sse(sock: socket.socket, stop: Callable[[Sse], bool]) -> tuple[list[Sse], int]:
    """Read a raw event stream (chunked) from where it stands, up to the first event for
    which ``stop`` is true; the events and the bytes of the stream's body read."""
    buffer, body, found = b"", b"", []
    total = 0

    def take(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            chunk = sock.recv(1 << 16)
            assert chunk, "the stream ended"
            buffer += chunk
        out, buffer = buffer[:n], buffer[n:]
        return out

    def line() -> bytes:
        nonlocal buffer
        while b"\r\n" not in buffer:
            chunk = sock.recv(1 << 16)
            assert chunk, "the stream ended"
            buffer += chunk
        out, _, buffer = buffer.partition(b"\r\n")
        return out

    while True:
        size = int(line().split(b";")[0], 16)
        assert size > 0, "the stream ended"
        body += take(size)
        take(2)
        total += size
        while b"\n\n" in body:
            block, _, body = body.partition(b"\n\n")
            fields = dict(
                (name, value.removeprefix(" "))
                for name, _, value in (
                    raw.partition(":") for raw in block.decode().split("\n") if raw
                )
                if name
            )
            if "data" not in fields:
                continue
            event = Sse(
                int(fields["id"]) if "id" in fields else None,
                fields.get("event", "message"),
                json.loads(fields["data"]),
            )
            found.append(event)
            if stop(event):
                return found, total
