"""Live notifications: the PLM WebSocket (API.md section 3) and the native event stream
(Server-Sent Events with Last-Event-ID replay, and a long-poll form).

Both read from the event hub (storsync.service.hub): a consumer holds a cursor, never a
queue, so a slow or stalled one never slows a sync or another consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from storsync.api import render
from storsync.errors import Unauthorized
from storsync.service.core import Service
from storsync.service.hub import EventFilter, EventHub
from storsync.state.records import Event

router = APIRouter()

NOTIFICATIONS = "/notifications"
SYNCHRONIZERS = "/storage/synchronizers"
# Our events as the PLM face's: (event name, include progress figures).
_PLM_EVENTS = {
    "session.started": ("sync.started", False),
    "session.progress": ("sync.progress", True),
    "session.conflict": ("sync.conflict", False),
    "session.finished": ("sync.completed", False),
    "session.failed": ("sync.completed", False),
    "session.stopped": ("sync.completed", False),
}
_PLM_TYPES = frozenset(_PLM_EVENTS)


def plm_message(event: Event) -> dict[str, Any] | None:
    """The notification for an event, or None when the PLM face has none for it."""
    found = _PLM_EVENTS.get(event.type)
    snapshot = event.data.get("session")
    if found is None or snapshot is None:
        return None
    name, progress = found
    if name == "sync.completed" and not snapshot.get("started"):
        return None  # dropped while waiting: it never started, so it never completes
    data = render.plm_from_snapshot(snapshot, progress=progress)
    if name == "sync.conflict":
        data["path"] = event.data.get("path")
    return {"resource": SYNCHRONIZERS, "event": name, "data": data}


def _error(code: int, message: str) -> dict[str, Any]:
    return {
        "resource": NOTIFICATIONS,
        "event": "error",
        "data": {"error_code": code, "error_message": message},
    }


def _bearer(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return websocket.query_params.get("access_token") or None


async def _authenticate(websocket: WebSocket, service: Service) -> bool:
    """The token from the header or ``?access_token=``; a bad one is refused with a 401
    in the PLM envelope before the connection is accepted."""
    client = websocket.client.host if websocket.client else ""
    if (
        _bearer(websocket) is None
        and service.settings.plm_anonymous_loopback
        and client in ("127.0.0.1", "::1")
    ):
        return True
    try:
        await run_in_threadpool(service.accounts.authenticate, _bearer(websocket))
    except Unauthorized as exc:
        body = {"status": 1, "error_code": 7, "error_message": exc.message}
        try:
            await websocket.send_denial_response(
                JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            )
        except RuntimeError:  # the server cannot send an HTTP answer: close with policy
            await websocket.close(code=1008, reason=exc.message[:120])
        return False
    return True


async def _notifications(websocket: WebSocket) -> None:
    service: Service = websocket.app.state.service
    hub: EventHub = websocket.app.state.hub
    if not await _authenticate(websocket, service):
        return
    await websocket.accept()
    send_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(message))

    await send({"resource": NOTIFICATIONS, "event": "connection.established"})
    follower: asyncio.Task[None] | None = None

    async def follow(after_id: int) -> None:
        wanted = EventFilter(types=_PLM_TYPES)
        async for batch in hub.follow(after_id, wanted):
            for event in batch.events:
                message = plm_message(event)
                if message is not None:
                    await send(message)

    try:
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(received.get("code", 1000), received.get("reason"))
            # A binary frame is read as UTF-8 JSON too; anything else gets the error event
            # (never an exception, which would close the connection).
            raw = received.get("text")
            try:
                message = json.loads(raw if raw is not None else received.get("bytes") or b"")
                if not isinstance(message, dict):
                    raise ValueError
            except (ValueError, RecursionError):
                await send(_error(5, "a message must be a JSON object"))
                continue
            resource, event = message.get("resource"), message.get("event")
            data = message.get("data")
            if not isinstance(resource, str) or not isinstance(event, str):
                await send(_error(5, 'a message needs "resource" and "event" strings'))
                continue
            if resource != "_client":
                await send(_error(6, f"unknown resource {resource[:100]!r}"))
                continue
            if event not in ("subscribe", "unsubscribe"):
                await send(_error(4, f"unknown event {event[:100]!r}"))
                continue
            target = data.get("resource") if isinstance(data, dict) else None
            if not isinstance(target, str):
                await send(_error(5, f'{event} needs "data": {{"resource": "{SYNCHRONIZERS}"}}'))
                continue
            if target != SYNCHRONIZERS:
                await send(_error(6, f"cannot {event} to {target[:100]!r}"))
                continue
            if event == "subscribe" and follower is None:
                follower = asyncio.create_task(follow(hub.last_id))
            elif event == "unsubscribe" and follower is not None:
                follower.cancel()
                follower = None
    except WebSocketDisconnect:
        pass
    finally:
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await follower


for path in (NOTIFICATIONS, "/v0/notifications", "/api/media-manager/v0/notifications"):
    router.add_api_websocket_route(path, _notifications)


# -- the native stream ----------------------------------------------------------------


def sse_line(event: Event) -> str:
    data = json.dumps(render.native_event(event), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"


async def sse_stream(hub: EventHub, after_id: int, wanted: EventFilter) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    behind = False
    async for batch in hub.follow(after_id, wanted):
        if batch.replayed and not behind:
            # The reader fell behind the recent events kept in memory: say so, then
            # replay what it missed from the store, in order, without a hole.
            yield f"event: gap\ndata: {json.dumps({'after': after_id})}\n\n"
        behind = batch.replayed
        if not batch.events:
            yield ": keepalive\n\n"
        for event in batch.events:
            after_id = event.id
            yield sse_line(event)
