"""Live notifications: the PLM WebSocket (API.md section 3) and the native event stream
(Server-Sent Events with Last-Event-ID replay, and a long-poll form).

Both read from the event hub (storsync.service.hub): a consumer holds a cursor, never a
queue, so a slow or stalled one never slows a sync or another consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from storsync.api import render
from storsync.api.errors import BAD_REQUEST, NO_ROUTE, NOT_FOUND, UNAUTHORIZED, Answer, response
from storsync.api.security import until_refused
from storsync.errors import Unauthorized
from storsync.model import EventType
from storsync.service.core import Service
from storsync.service.hub import Batch, EventFilter, EventHub
from storsync.state.records import ConflictFound, Event

log = logging.getLogger("storsync.api")
router = APIRouter()

# RFC 6455 close codes: a connection whose token is refused, as at the handshake when the
# server cannot answer 401; one whose token could not be checked again.
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
# A close frame's reason is at most 123 bytes; the messages are ASCII.
REASON_CHARS = 120

NOTIFICATIONS = "/notifications"
SYNCHRONIZERS = "/storage/synchronizers"
# Our events as the PLM face's: (event names, include progress figures). A halt ends the
# synchronizer (``sync.completed``, in state ``error``), then says it halted.
_PLM_EVENTS = {
    EventType.SESSION_STARTED: (("sync.started",), False),
    EventType.SESSION_PROGRESS: (("sync.progress",), True),
    EventType.SESSION_CONFLICT: (("sync.conflict",), False),
    EventType.SESSION_FINISHED: (("sync.completed",), False),
    EventType.SESSION_FAILED: (("sync.completed",), False),
    EventType.SESSION_STOPPED: (("sync.completed",), False),
    EventType.SESSION_HALTED: (("sync.completed", "sync.halted"), False),
}
_PLM_TYPES = frozenset(_PLM_EVENTS)


def plm_messages(event: Event) -> list[dict[str, Any]]:
    """The notifications for an event (none when the PLM face has none for it)."""
    found = _PLM_EVENTS.get(event.type)
    snapshot = event.session
    if found is None or snapshot is None:
        return []
    names, progress = found
    if names[0] == "sync.completed" and not snapshot.started:
        return []  # dropped while waiting: it never started, so it never completes
    messages = []
    for name in names:
        data = render.plm_from_snapshot(snapshot, progress=progress)
        if isinstance(event.detail, ConflictFound):
            data["path"] = event.detail.path
        if name == "sync.halted":
            data["reason"] = snapshot.error
        messages.append({"resource": SYNCHRONIZERS, "event": name, "data": data})
    return messages


def _error(kind: Answer, message: str) -> dict[str, Any]:
    """The PLM error event: the envelope's code of the one error table."""
    return {
        "resource": NOTIFICATIONS,
        "event": "error",
        "data": {"error_code": kind.plm_code, "error_message": message},
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
        try:
            await websocket.send_denial_response(response("plm", UNAUTHORIZED, exc.message))
        except RuntimeError:  # the server cannot send an HTTP answer: close with policy
            await websocket.close(code=POLICY_VIOLATION, reason=exc.message[:REASON_CHARS])
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
            # Closed by close_when_refused: the answers and notifications still on their
            # way are dropped.
            if websocket.application_state is WebSocketState.CONNECTED:
                await websocket.send_text(json.dumps(message))

    async def close_when_refused(bearer: str) -> None:
        try:
            why = await until_refused(service, bearer)
        except Exception:
            # Fail closed: a connection whose token cannot be checked any more ends.
            log.exception("cannot check the token of a notifications connection again")
            code, why = INTERNAL_ERROR, "the access token could not be checked again"
        else:
            code = POLICY_VIOLATION
            await send(_error(UNAUTHORIZED, why))
        async with send_lock:
            await websocket.close(code=code, reason=why[:REASON_CHARS])

    await send({"resource": NOTIFICATIONS, "event": "connection.established"})
    follower: asyncio.Task[None] | None = None
    bearer = _bearer(websocket)
    # The anonymous loopback mode has no token to check again.
    watcher = None if bearer is None else asyncio.create_task(close_when_refused(bearer))

    async def follow(after_id: int) -> None:
        wanted = EventFilter(types=_PLM_TYPES)
        async for batch in hub.follow(after_id, wanted):
            for event in batch.events:
                for message in plm_messages(event):
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
                await send(_error(BAD_REQUEST, "a message must be a JSON object"))
                continue
            resource, event = message.get("resource"), message.get("event")
            data = message.get("data")
            if not isinstance(resource, str) or not isinstance(event, str):
                await send(_error(BAD_REQUEST, 'a message needs "resource" and "event" strings'))
                continue
            if resource != "_client":
                await send(_error(NOT_FOUND, f"unknown resource {resource[:100]!r}"))
                continue
            if event not in ("subscribe", "unsubscribe"):
                await send(_error(NO_ROUTE, f"unknown event {event[:100]!r}"))
                continue
            target = data.get("resource") if isinstance(data, dict) else None
            if not isinstance(target, str):
                needs = f'{event} needs "data": {{"resource": "{SYNCHRONIZERS}"}}'
                await send(_error(BAD_REQUEST, needs))
                continue
            if target != SYNCHRONIZERS:
                await send(_error(NOT_FOUND, f"cannot {event} to {target[:100]!r}"))
                continue
            if event == "subscribe" and follower is None:
                follower = asyncio.create_task(follow(hub.last_id))
            elif event == "unsubscribe" and follower is not None:
                follower.cancel()
                follower = None
    except WebSocketDisconnect:
        pass
    finally:
        for task in (follower, watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


for path in (NOTIFICATIONS, "/v0/notifications", "/api/media-manager/v0/notifications"):
    router.add_api_websocket_route(path, _notifications)


# -- the native stream ----------------------------------------------------------------


def sse_line(event: Event) -> str:
    data = json.dumps(render.native_event(event), separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.type.value}\ndata: {data}\n\n"


async def sse_stream(
    hub: EventHub,
    after_id: int,
    wanted: EventFilter,
    service: Service,
    bearer: str,
    *,
    cookie: bool = False,
) -> AsyncIterator[str]:
    """The stream, until the hub closes or the token is refused (then an ``error`` event
    in the native error shape ends it)."""
    yield "retry: 2000\n\n"
    behind = False
    batches = hub.follow(after_id, wanted)
    # The token is checked side by side with the wait for a batch, so also while no
    # batch comes; the next batch is asked for only once this one is sent.
    refused = asyncio.ensure_future(until_refused(service, bearer, cookie=cookie))
    following: asyncio.Future[Batch] | None = None
    try:
        while True:
            following = asyncio.ensure_future(anext(batches))
            await asyncio.wait((refused, following), return_when=asyncio.FIRST_COMPLETED)
            if refused.done():
                error = {"code": UNAUTHORIZED.native_code, "message": refused.result()}
                yield f"event: error\ndata: {json.dumps({'error': error})}\n\n"
                return
            try:
                batch = following.result()
            except StopAsyncIteration:  # the hub closed
                return
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
    finally:
        # Not awaited: in a cancelled scope (the client went away) an await would only be
        # cancelled again; each ends at its next step.
        refused.cancel()
        if following is not None:
            following.cancel()
