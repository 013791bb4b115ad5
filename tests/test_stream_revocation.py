"""Event streams end once their token is refused (docs/api.md, Security: open streams):
the PLM WebSocket and the native Server-Sent Events of a `storsync serve` process on
loopback (SQLite), while the streams of another, valid token go on."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from storsync.api.security import RECHECK_S
from tests.api_support import ServerProcess, service_env
from tests.notifications_support import (
    END_TYPES,
    Live,
    Sse,
    live_server,
    login,
    read_sse_until,
    synchronizer_id,
    ws_connect,
    ws_request,
    ws_subscribe,
    ws_until_completed,
)

# A refused stream ends within one check period; the rest is its store read and the way
# back, which take milliseconds, with room for a busy machine.
BOUND_S = RECHECK_S + 4.0
TOKEN_TTL_S = 3
PLM_UNAUTHORIZED = 7
POLICY_VIOLATION = 1008


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(tmp_path_factory.mktemp("live")) as found:
        yield found


@contextlib.contextmanager
def server_with(tmp: Path, settings: dict[str, str]) -> Iterator[Live]:
    """`storsync serve` with these STORSYNC_* variables; its ``token`` is an API key of
    the admin's, which does not expire."""
    root, data = tmp / "root", tmp / "data"
    root.mkdir()
    server = ServerProcess({**service_env(data, root, None), **settings}, tmp / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            headers = {"Authorization": f"Bearer {login(server.url)}"}
            key = client.post("/api/v1/api-keys", json={"label": "kept"}, headers=headers)
            assert key.status_code == 201, key.text
            yield Live(server, root, key.json()["token"], client)
    finally:
        server.stop()


def login_as(live: Live, name: str, password: str) -> str:
    answer = live.client.post(
        "/v6/token", data={"grant_type": "password", "username": name, "password": password}
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


# -- ways to refuse a token: each gives a token and what refuses it ----------------------


def revoked_access_token(live: Live) -> tuple[str, Callable[[], None]]:
    """A sign-in of its own, revoked by itself (RFC 7009), as a client signing out."""
    token = login(live.url)

    def refuse() -> None:
        answer = live.client.post(
            "/api/v1/auth/revoke",
            data={"token": token},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text

    return token, refuse


def api_key_deleted_by_id(live: Live) -> tuple[str, Callable[[], None]]:
    key = live.post("/api/v1/api-keys", json={"label": "doomed"})
    assert key.status_code == 201, key.text

    def refuse() -> None:
        answer = live.client.delete(f"/api/v1/tokens/{key.json()['id']}", headers=live.headers)
        assert answer.status_code == 204, answer.text

    return key.json()["token"], refuse


def token_of_a_deleted_user(live: Live) -> tuple[str, Callable[[], None]]:
    name, password = f"viewer-{uuid.uuid4().hex[:8]}", "viewer-password-1"
    user = live.post("/api/v1/users", json={"name": name, "password": password})
    assert user.status_code == 201, user.text

    def refuse() -> None:
        answer = live.client.delete(f"/api/v1/users/{user.json()['id']}", headers=live.headers)
        assert answer.status_code == 204, answer.text

    return login_as(live, name, password), refuse


# -- the streams ---------------------------------------------------------------------


@dataclasses.dataclass
class Streams:
    """One token's streams: a subscribed and an idle WebSocket (by header and by query),
    and an event stream whose events ``sse`` reads until ``stop``."""

    subscribed: websockets.ClientConnection
    idle: websockets.ClientConnection
    sse: asyncio.Task[list[Sse]]


async def open_streams(
    live: Live, client: httpx.AsyncClient, token: str, stop: Callable[[Sse], bool]
) -> Streams:
    as_token = dataclasses.replace(live, token=token)
    subscribed = await ws_connect(as_token)
    await ws_subscribe(subscribed)
    idle = await ws_connect(as_token, by="query")
    ready = asyncio.Event()
    sse = asyncio.create_task(read_sse_until(client, token, stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    return Streams(subscribed, idle, sse)


async def until_closed(ws: websockets.ClientConnection) -> tuple[list[Any], int | None]:
    """Every message up to the close, and the server's close code."""
    received = []
    try:
        while True:
            received.append(json.loads(await ws.recv()))
    except websockets.ConnectionClosed as closed:
        return received, None if closed.rcvd is None else closed.rcvd.code


async def check_refused_streams_end(
    live: Live, doomed: str, refuse: Callable[[], None], *, bound_s: float = BOUND_S
) -> str:
    """Open streams on ``doomed`` and on ``live.token``, refuse ``doomed``: its streams
    end with the error within ``bound_s``, the others still follow a sync afterwards.
    The refused streams' error message."""
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
        # Read until the stream ends: the error is its last event.
        refused = await open_streams(live, client, doomed, lambda _: False)
        kept = await open_streams(live, client, live.token, lambda e: e.event in END_TYPES)
        await asyncio.to_thread(refuse)
        began = time.monotonic()
        try:
            (ws_messages, ws_code), (idle_messages, idle_code), streamed = await asyncio.wait_for(
                asyncio.gather(
                    until_closed(refused.subscribed), until_closed(refused.idle), refused.sse
                ),
                bound_s,
            )
        except TimeoutError:
            pytest.fail(f"the refused token's streams still run {bound_s} s later")
        print(f"\nthe refused token's streams ended {time.monotonic() - began:.1f} s later")

        for messages, code in ((ws_messages, ws_code), (idle_messages, idle_code)):
            assert code == POLICY_VIOLATION
            assert len(messages) == 1, messages
            assert messages[0]["resource"] == "/notifications"
            assert messages[0]["event"] == "error"
            assert messages[0]["data"]["error_code"] == PLM_UNAUTHORIZED
        assert [e.event for e in streamed] == ["error"]
        assert streamed[0].id is None  # not an event of the log: Last-Event-ID stays
        assert streamed[0].data["error"]["code"] == "unauthorized"
        message: str = streamed[0].data["error"]["message"]
        assert message == ws_messages[0]["data"]["error_message"]

        # The valid token's streams, older than a check period now, follow a sync.
        assert await ws_request(kept.idle) == []
        repository, _ = await asyncio.to_thread(live.new_repository, 5)
        session = await asyncio.to_thread(live.trigger, repository["id"])
        seen = await ws_until_completed(kept.subscribed, synchronizer_id(session))
        assert seen[0]["event"] == "sync.started"
        followed = await asyncio.wait_for(kept.sse, 60)
        assert [followed[0].event, followed[-1].event] == ["session.queued", "session.finished"]
        assert {e.data["sessionId"] for e in followed} == {session["id"]}
        await kept.subscribed.close()
        await kept.idle.close()
    return message


@pytest.mark.parametrize(
    "refused",
    [revoked_access_token, api_key_deleted_by_id, token_of_a_deleted_user],
    ids=["revoked", "deleted-by-id", "user-deleted"],
)
def test_a_refused_token_ends_its_streams_and_others_go_on(
    live: Live, refused: Callable[[Live], tuple[str, Callable[[], None]]]
) -> None:
    doomed, refuse = refused(live)
    message = asyncio.run(check_refused_streams_end(live, doomed, refuse))
    assert message


def test_an_expired_token_ends_its_streams_and_others_go_on(tmp_path: Path) -> None:
    with server_with(tmp_path, {"STORSYNC_TOKEN_TTL_S": str(TOKEN_TTL_S)}) as live:
        doomed = login(live.url)
        # Expiry needs no call: the token is refused TOKEN_TTL_S after it was issued.
        message = asyncio.run(
            check_refused_streams_end(live, doomed, lambda: None, bound_s=TOKEN_TTL_S + BOUND_S)
        )
        assert "expired" in message


def test_an_anonymous_loopback_connection_has_no_token_to_lose(tmp_path: Path) -> None:
    with server_with(tmp_path, {"STORSYNC_PLM_ANONYMOUS_LOOPBACK": "1"}) as live:
        repository, _ = live.new_repository(files=5)

        async def check() -> None:
            ws = await websockets.connect(f"{live.ws_url}/notifications")
            greeting = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert greeting["event"] == "connection.established"
            await ws_subscribe(ws)
            await asyncio.sleep(BOUND_S)  # past a check, were there one
            session = await asyncio.to_thread(live.trigger, repository["id"])
            seen = await ws_until_completed(ws, synchronizer_id(session))
            assert seen[0]["event"] == "sync.started"
            await ws.close()

        asyncio.run(check())
