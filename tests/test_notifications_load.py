"""A hundred live subscribers (Server-Sent Events and the PLM WebSocket, asyncio in this
one process) and a few that never read, during a sync of 10,000 small files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.notifications_support import (
    END_TYPES,
    Live,
    Sse,
    drain_sse,
    live_server,
    read_sse_until,
    stalled_sse,
    stalled_websocket,
    synchronizer_id,
    ws_connect,
    ws_subscribe,
    ws_until_completed,
)

FILES = 10_000
ITEMS = ["items.transferred", "session.started", "session.finished"]


async def _crowd(
    live: Live, repository_id: str, sse_count: int, ws_count: int
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], list[Sse]]], list[Any], float]:
    """Start every subscriber, trigger, and read until each saw the end."""
    # Mostly the default view; a few also take every per-file batch (megabytes each).
    views: list[dict[str, Any]] = [{}, {"repositoryId": repository_id}] * 5 + [{"type": ITEMS}]

    def stop(e: Sse) -> bool:
        return e.event in END_TYPES and e.data["repositoryId"] == repository_id

    limits = httpx.Limits(max_connections=sse_count + 10, max_keepalive_connections=5)
    async with httpx.AsyncClient(base_url=live.url, timeout=180, limits=limits) as client:
        streams = []
        for i in range(sse_count):
            ready = asyncio.Event()
            params = views[i % len(views)]
            reader = read_sse_until(client, live.token, stop, params, ready=ready)
            task = asyncio.create_task(reader)
            streams.append((params, ready, task))
        sockets = [
            await ws_connect(live, by="header" if i % 2 else "query") for i in range(ws_count)
        ]
        await asyncio.gather(*(ws_subscribe(ws) for ws in sockets))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for _, r, _ in streams)), 60)

        session = await asyncio.to_thread(live.trigger, repository_id)
        sync_id = synchronizer_id(session)
        followers = [asyncio.create_task(ws_until_completed(ws, sync_id, 180)) for ws in sockets]
        # The API answers promptly all along.
        slowest = 0.0
        while not all(task.done() for _, _, task in streams):
            began = time.monotonic()
            answer = await client.get(f"/api/v1/sessions/{session['id']}", headers=live.headers)
            assert answer.status_code == 200
            slowest = max(slowest, time.monotonic() - began)
            await asyncio.sleep(0.25)
        streamed = [(params, await task) for params, _, task in streams]
        notified = [await task for task in followers]
        for ws in sockets:
            await ws.close()
    return session, streamed, notified, slowest


@pytest.mark.slow
def test_a_hundred_subscribers_and_stalled_ones_during_a_10k_file_sync(tmp_path: Path) -> None:
    with live_server(tmp_path) as live:
        # Long names: the per-file batches of this sync weigh ~5 MB, more than the
        # kernel's and the server's buffers hold (~3 MB on loopback), so the server's
        # sends to a reader of them that never reads do block.
        repository, paths = live.new_repository(files=FILES, size=32, pad=240)
        start = live.last_event_id()
        port = live.server.port
        # Connect, subscribe, never read: one asks for every per-file batch, one for the
        # rest, one is a WebSocket subscribed to the synchronizers.
        stalled = [
            stalled_sse(port, live.token, {"type": ITEMS}),
            stalled_sse(port, live.token),
            stalled_websocket(port, live.token),
        ]
        try:
            began = time.monotonic()
            session, streamed, notified, slowest = asyncio.run(
                _crowd(live, repository["id"], sse_count=50, ws_count=50)
            )
            took = time.monotonic() - began
            # The stalled reader, reading at last, gets its whole sequence too.
            late, size = drain_sse(stalled[0], lambda e: e.event == "session.finished")
        finally:
            for sock in stalled:
                sock.close()
        ended = live.session(session["id"])
        print(f"\n100 subscribers, {FILES} files: {took:.1f} s; slowest API answer {slowest:.2f} s")
        assert ended["state"] == "completed"
        assert ended["pushed"] == FILES
        assert slowest < 5

        stored = live.stored_events(start)  # only this session since ``start``
        assert {e["sessionId"] for e in stored} == {session["id"]}
        typed = live.stored_events(start, type=ITEMS)
        assert sorted(p["path"] for e in typed for p in e["data"].get("items", [])) == sorted(paths)
        for params, events in streamed:
            # The full sequence it subscribed to: nothing missing, nothing twice, in order.
            assert not any(e.event == "gap" for e in events)
            assert [e.data for e in events] == (typed if "type" in params else stored)
            assert [e.id for e in events] == sorted({e.id for e in events})
        assert size > 4_000_000  # so the server's sends to it must have blocked
        assert [e.data for e in late if e.event != "gap"] == typed
        progress = [e["data"]["session"] for e in stored if e["type"] == "session.progress"]
        assert 0 < len(progress) < 200  # throttled: not one per file
        for messages in notified:
            names = [m["event"] for m in messages]
            assert names == ["sync.started", *["sync.progress"] * len(progress), "sync.completed"]
            for message, snapshot in zip(messages[1:-1], progress, strict=True):
                assert message["data"]["counters"]["push"] == snapshot["push"]
            assert messages[-1]["data"]["state"] == "completed"
        # The server still serves after its stalled readers are gone.
        assert live.get("/healthz").status_code == 200
