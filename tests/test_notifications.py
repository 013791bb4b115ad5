"""Live notifications with real clients over loopback (API.md sections 3 and 6): the PLM
WebSocket, the native Server-Sent Events stream and its long-poll form, against a
`storsync serve` process (SQLite; the ordering test also on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from storsync.api.app import create_app
from storsync.config import load_settings
from storsync.model import EventType
from storsync.service import hub as hub_module
from storsync.state.records import ConflictFound
from tests.api_support import free_port, service_env
from tests.notifications_support import (
    END_TYPES,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Live,
    Sse,
    ends,
    live_server,
    login,
    read_sse_until,
    stalled_sse,
    synchronizer_id,
    ws_connect,
    ws_request,
    ws_subscribe,
    ws_until_completed,
)

PLM = "/api/media-manager/v0/storage/synchronizers"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(tmp_path_factory.mktemp("live")) as found:
        yield found


@pytest.fixture(scope="module")
def live_pg(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> Iterator[Live]:
    name = postgres_server.create_database()
    try:
        with live_server(
            tmp_path_factory.mktemp("live-pg"), database_url=postgres_server.url(name)
        ) as found:
            yield found
    finally:
        postgres_server.drop_database(name)


def seconds(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def native(events: list[Sse]) -> list[Any]:
    """The stream's events without the replay marker, as the JSON pages show them."""
    return [e.data for e in events if e.event != "gap"]


def all_paths(batches: list[dict[str, Any]]) -> list[str]:
    return [item["path"] for b in batches for item in b["data"]["items"]]


# -- the WebSocket handshake and its messages ------------------------------------------


def test_handshake_takes_the_token_by_header_or_query_and_refuses_others(live: Live) -> None:
    key = live.post("/api/v1/api-keys", json={"label": "revoked"}).json()
    assert live.client.delete(f"/api/v1/tokens/{key['id']}", headers=live.headers).is_success
    refused = {
        "no token": ({}, ""),
        "forged header": ({"Authorization": "Bearer ss_forged"}, ""),
        "basic scheme": ({"Authorization": f"Basic {live.token}"}, ""),
        "forged query": ({}, "?access_token=ss_forged"),
        "empty query": ({}, "?access_token="),
        "revoked key": ({}, f"?access_token={key['token']}"),
    }

    async def check() -> None:
        for path in ("/notifications", "/v0/notifications"):
            for by in ("header", "query"):
                ws = await ws_connect(live, path=path, by=by)  # checks the greeting
                assert await ws_request(ws) == []
                await ws.close()
        for case, (headers, query) in refused.items():
            with pytest.raises(websockets.InvalidStatus) as caught:
                await websockets.connect(
                    f"{live.ws_url}/notifications{query}", additional_headers=headers
                )
            response = caught.value.response
            assert response.status_code == 401, case
            assert response.headers["WWW-Authenticate"] == "Bearer", case
            body = json.loads(response.body)
            assert body["status"] == 1, case
            assert body["error_code"] == 7, case
            assert body["error_message"], case

    asyncio.run(check())


BAD_MESSAGES: list[tuple[str, Any, int]] = [
    ("binary garbage", b"\x00\xff\xfe", 5),
    ("not JSON", "subscribe me", 5),
    ("a JSON array", "[1, 2]", 5),
    ("JSON null", "null", 5),
    ("deeply nested", "[" * 100_000, 5),
    ("no resource", {"event": "subscribe", "data": {"resource": "/storage/synchronizers"}}, 5),
    ("resource not a string", {"resource": 7, "event": "subscribe"}, 5),
    ("unknown resource", {**SUBSCRIBE, "resource": "/elsewhere"}, 6),
    ("unknown event", {**SUBSCRIBE, "event": "dance"}, 4),
    ("no data", {"resource": "_client", "event": "subscribe"}, 5),
    ("data not an object", {**SUBSCRIBE, "data": "/storage/synchronizers"}, 5),
    ("unknown target", {**SUBSCRIBE, "data": {"resource": "/storage/elsewhere"}}, 6),
    ("unsubscribe elsewhere", {**UNSUBSCRIBE, "data": {"resource": "/storage/x"}}, 6),
]


def test_bad_messages_get_the_error_event_and_the_connection_stays_usable(live: Live) -> None:
    repository, _ = live.new_repository(files=5)

    async def check() -> None:
        ws = await ws_connect(live)
        for case, message, code in BAD_MESSAGES:
            answers = await ws_request(ws, message)
            assert len(answers) == 1, (case, answers)
            assert answers[0]["resource"] == "/notifications", case
            assert answers[0]["event"] == "error", case
            assert answers[0]["data"]["error_code"] == code, (case, answers)
            assert isinstance(answers[0]["data"]["error_message"], str), case
        # Binary frames holding JSON are read like text ones.
        assert await ws_request(ws, json.dumps(SUBSCRIBE).encode()) == []
        session = await asyncio.to_thread(live.trigger, repository["id"])
        seen = await ws_until_completed(ws, synchronizer_id(session))
        assert seen[0]["event"] == "sync.started"
        await ws.close()

    asyncio.run(check())


def test_subscribe_and_unsubscribe(live: Live) -> None:
    repository, _ = live.new_repository(files=5)

    def sync() -> dict[str, Any]:
        session = live.trigger(repository["id"])
        live.wait(session["id"])
        live.wait_end_event(session["id"])  # so no notification of it comes later
        return session

    async def check() -> None:
        idle, follower = await ws_connect(live, by="query"), await ws_connect(live)
        # Not subscribed: a whole sync goes by without a message.
        await asyncio.to_thread(sync)
        assert await ws_request(idle) == []
        assert await ws_request(follower) == []
        # Subscribed (twice: still one copy of each notification).
        await ws_subscribe(follower)
        await ws_subscribe(follower)
        session = await asyncio.to_thread(sync)
        seen = await ws_until_completed(follower, synchronizer_id(session))
        names = [m["event"] for m in seen]
        assert names.count("sync.started") == 1
        assert names.count("sync.completed") == 1
        assert await ws_request(follower) == []  # nothing after the completion
        assert await ws_request(idle) == []
        # Unsubscribed: silence again; subscribed again: notifications again.
        assert await ws_request(follower, UNSUBSCRIBE) == []
        await asyncio.to_thread(sync)
        assert await ws_request(follower) == []
        await ws_subscribe(follower)
        session = await asyncio.to_thread(sync)
        seen = await ws_until_completed(follower, synchronizer_id(session))
        assert [seen[0]["event"], seen[-1]["event"]] == ["sync.started", "sync.completed"]
        await idle.close()
        await follower.close()

    asyncio.run(check())


# -- one session on every view ----------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_one_session_in_order_and_alike_on_every_view(
    backend: str, request: pytest.FixtureRequest
) -> None:
    live: Live = request.getfixturevalue("live" if backend == "sqlite" else "live_pg")
    files = 2000
    repository, paths = live.new_repository(files=files)
    start = live.last_event_id()

    async def watch() -> tuple[dict[str, Any], list[dict[str, Any]], list[Sse]]:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            ws = await ws_connect(live)
            await ws_subscribe(ws)
            ready = asyncio.Event()
            sse = asyncio.create_task(
                read_sse_until(
                    client,
                    live.token,
                    lambda e: e.event in END_TYPES,
                    {"repositoryId": repository["id"]},
                    ready=ready,
                )
            )
            await asyncio.wait_for(ready.wait(), 30)
            answer = await client.post(
                PLM, params={"repositoryId": repository["id"]}, headers=live.headers
            )
            assert answer.status_code == 200, answer.text
            created = answer.json()["synchronizer"]
            assert created["state"] == "triggered"
            seen = await ws_until_completed(ws, created["id"])
            await ws.close()
            return created, seen, await asyncio.wait_for(sse, 120)

    created, seen, streamed = asyncio.run(watch())
    sync_id = created["id"]

    # The PLM WebSocket: started, then progress, then completed, for this synchronizer.
    mine = [m for m in seen if m["data"]["id"] == sync_id]
    names = [m["event"] for m in mine]
    assert names[0] == "sync.started"
    assert names[-1] == "sync.completed"
    assert set(names[1:-1]) == {"sync.progress"}
    assert all(m["resource"] == "/storage/synchronizers" for m in mine)
    percents = [m["data"]["progressPercent"] for m in mine[1:-1]]
    assert percents == sorted(percents)
    assert percents[-1] == 100
    done = [m["data"]["counters"]["push"]["filesDone"] for m in mine[1:-1]]
    assert done == sorted(done)
    assert done[-1] == files
    assert mine[0]["data"]["state"] == "triggered"
    assert mine[0]["data"]["push"]["id"] == created["push"]["id"]
    assert mine[0]["data"]["pull"]["id"] == created["pull"]["id"]

    # The native stream: increasing ids; queued, started, the phases in order, finished.
    ids = [e.id for e in streamed]
    assert all(isinstance(i, int) and i > start for i in ids)
    assert ids == sorted(set(ids))
    types = [e.event for e in streamed]
    assert types[:2] == ["session.queued", "session.started"]
    assert types[-1] == "session.finished"
    middle = streamed[2:-1]
    assert {e.event for e in middle} == {"phase.started", "phase.finished", "session.progress"}
    phases = [(e.event, e.data["data"]["phase"]) for e in middle if e.event.startswith("phase.")]
    assert phases == [
        ("phase.started", "push"),
        ("phase.finished", "push"),
        ("phase.started", "pull"),
        ("phase.finished", "pull"),
    ]
    session_id = streamed[0].data["sessionId"]
    assert {e.data["sessionId"] for e in streamed} == {session_id}
    assert all(e.event == e.data["type"] and e.id == e.data["id"] for e in streamed)

    # The stream is the store: the same events, field for field, as the JSON pages.
    assert live.stored_events(start, sessionId=session_id) == native(streamed)
    batches = live.stored_events(start, sessionId=session_id, type="items.transferred")
    assert sorted(all_paths(batches)) == sorted(paths)
    assert len(batches) < files / 50  # per durable batch, not per file

    # One progress notification per progress event, with the same figures.
    progress = [e.data["data"]["session"] for e in streamed if e.event == "session.progress"]
    assert len(progress) == len(mine) - 2
    for message, snapshot in zip(mine[1:-1], progress, strict=True):
        assert message["data"]["progressPercent"] == snapshot["progressPercent"]
        assert message["data"]["counters"] == {"push": snapshot["push"], "pull": snapshot["pull"]}

    # The REST views of the finished session agree with the last event.
    final = streamed[-1].data["data"]["session"]
    session = live.session(session_id)
    assert session["state"] == final["state"] == "completed"
    assert session["progressPercent"] == final["progressPercent"] == 100
    assert session["error"] is final["error"] is None
    for side in ("push", "pull"):
        assert session[side] == {
            "id": final[f"{side}Id"],
            "state": final[f"{side}State"],
            **final[side],
        }
    assert session["push"]["filesDone"] == session["pushed"] == files
    shown = live.get(f"{PLM}/{sync_id}")
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"status": 0, "synchronizer": mine[-1]["data"]}
    assert mine[-1]["data"] == {
        "id": sync_id,
        "state": "completed",
        "push": {"id": created["push"]["id"], "state": "completed"},
        "pull": {"id": created["pull"]["id"], "state": "completed"},
    }
    assert sync_id == synchronizer_id(session)
    listed = live.get(PLM).json()["synchronizers"]
    assert mine[-1]["data"] in listed
    veeam = live.get(f"/v6/RepositorySynchronizeSessions/{session_id}").json()
    assert veeam["result"] == "Success"
    assert veeam["progressPercent"] == 100
    assert veeam["transferredFiles"] == files


def test_progress_is_throttled_whatever_the_number_of_files(live: Live) -> None:
    files = 6000
    repository, _ = live.new_repository(files=files)
    session = live.trigger(repository["id"])
    assert live.wait(session["id"])["state"] == "completed"
    live.wait_end_event(session["id"])
    events = live.stored_events(0, sessionId=session["id"])
    started = next(seconds(e) for e in events if e["type"] == "session.started")
    finished = next(seconds(e) for e in events if e["type"] == "session.finished")
    duration = finished - started
    times = [seconds(e) for e in events if e["type"] == "session.progress"]
    busiest = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    print(
        f"\n{files} files in {duration:.1f} s: {len(times)} progress events, "
        f"{len(events)} events in all; at most {busiest} progress events in one second"
    )
    assert times
    # A tick every 0.2 s plus the final figures; one more for scheduling jitter.
    assert busiest <= 7
    assert len(times) <= 5 * duration + 3
    # Per-file events: one per durable batch, and only to those who ask for them.
    assert not any(e["type"] == "items.transferred" for e in events)
    batches = live.stored_events(0, sessionId=session["id"], type="items.transferred")
    assert sum(len(b["data"]["items"]) for b in batches) == files
    assert len(events) + len(batches) < 5 * duration + 40


# -- filters ----------------------------------------------------------------------------


def test_filters_by_repository_session_and_type(live: Live) -> None:
    (a, a_paths), (b, b_paths) = live.new_repository(files=40), live.new_repository(files=30)
    start = live.last_event_id()
    sa, sb = live.trigger(a["id"]), live.trigger(b["id"])
    for session in (sa, sb):
        live.wait(session["id"])
        live.wait_end_event(session["id"])
    everything = live.stored_events(start)  # all but the per-file batches
    assert {e["sessionId"] for e in everything} == {sa["id"], sb["id"]}
    assert not any(e["type"] == "items.transferred" for e in everything)
    wanted = {"session.started", "session.finished"}

    def both_ended(seen: set[str]) -> Any:
        def stop(e: Sse) -> bool:
            if e.event in END_TYPES:
                seen.add(e.data["sessionId"])
            return seen == {sa["id"], sb["id"]}

        return stop

    async def read() -> list[list[Sse]]:
        since = {"since": start}
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            return list(
                await asyncio.gather(
                    read_sse_until(client, live.token, both_ended(set()), since),
                    read_sse_until(
                        client, live.token, ends(sa["id"]), {**since, "repositoryId": a["id"]}
                    ),
                    read_sse_until(
                        client, live.token, ends(sb["id"]), {**since, "sessionId": sb["id"]}
                    ),
                    read_sse_until(
                        client, live.token, both_ended(set()), {**since, "type": sorted(wanted)}
                    ),
                    read_sse_until(
                        client,
                        live.token,
                        ends(sa["id"]),
                        {
                            **since,
                            "repositoryId": a["id"],
                            "type": ["items.transferred", "session.finished"],
                        },
                    ),
                )
            )

    unfiltered, by_repository, by_session, by_type, items = asyncio.run(read())
    assert native(unfiltered) == everything
    assert native(by_repository) == [e for e in everything if e["repositoryId"] == a["id"]]
    assert native(by_session) == [e for e in everything if e["sessionId"] == sb["id"]]
    assert native(by_type) == [e for e in everything if e["type"] in wanted]
    # Per-file batches come only when asked for, and then all of them.
    assert not any(e.event == "items.transferred" for e in unfiltered)
    assert native(items) == live.stored_events(
        start, repositoryId=a["id"], type=["items.transferred", "session.finished"]
    )
    assert {e.event for e in items} == {"items.transferred", "session.finished"}
    assert sorted(all_paths(native(items)[:-1])) == sorted(a_paths)
    # The JSON pages filter alike.
    for params, expected in (
        ({"repositoryId": b["id"]}, [e for e in everything if e["repositoryId"] == b["id"]]),
        ({"sessionId": sa["id"]}, [e for e in everything if e["sessionId"] == sa["id"]]),
        ({"type": sorted(wanted)}, [e for e in everything if e["type"] in wanted]),
    ):
        assert live.stored_events(start, limit=3, **params) == expected
    b_items = live.stored_events(start, repositoryId=b["id"], type="items.transferred")
    assert sorted(all_paths(b_items)) == sorted(b_paths)


# -- reconnecting -----------------------------------------------------------------------


def test_reconnect_with_the_last_id_gets_the_missed_events(live: Live) -> None:
    repository, _ = live.new_repository(files=3000)
    start = live.last_event_id()

    async def run() -> tuple[dict[str, Any], str, list[Sse], list[Sse]]:
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
            # A long poll from now answers as soon as the next event exists.
            poll = asyncio.create_task(
                client.get(
                    "/api/v1/events",
                    params={"since": start, "timeout": 60},
                    headers=live.headers,
                )
            )
            await asyncio.sleep(0.3)
            assert not poll.done()
            session = await asyncio.to_thread(live.trigger, repository["id"])
            began = time.monotonic()
            answer = await asyncio.wait_for(poll, 30)
            assert time.monotonic() - began < 5
            assert answer.status_code == 200, answer.text
            # A first connection (from ``since``) reads up to the first progress...
            first = await read_sse_until(
                client,
                live.token,
                lambda e: e.event == "session.progress",
                {"since": start, "sessionId": session["id"]},
            )
            # ... and the next one goes on from the last id it saw.
            second = await read_sse_until(
                client,
                live.token,
                ends(session["id"]),
                {"sessionId": session["id"]},
                last_event_id=first[-1].id,
            )
            return answer.json(), session["id"], first, second

    polled, session_id, first, second = asyncio.run(run())
    stored = live.stored_events(start, sessionId=session_id)
    assert polled["items"][0] == stored[0]
    assert polled["items"][0]["type"] == "session.queued"
    assert native(first) + native(second) == stored
    # The long poll from the same id, in small pages, gives the same events.
    since, pages = first[-1].id, []
    while not pages or pages[-1]["type"] not in END_TYPES:
        answer = live.get(
            "/api/v1/events",
            params={"since": since, "sessionId": session_id, "limit": 3, "timeout": 30},
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["items"], page
        pages += page["items"]
        since = page["lastId"]
    assert pages == native(second)


def test_reconnect_across_a_restart_gets_every_missed_event(tmp_path: Path) -> None:
    with live_server(tmp_path, port=free_port()) as live:
        repository, _ = live.new_repository(files=4000)
        start = live.last_event_id()

        async def before() -> tuple[str, list[Sse], list[dict[str, Any]], int | None]:
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
                ws = await ws_connect(live)
                await ws_subscribe(ws)
                session = await asyncio.to_thread(live.trigger, repository["id"])
                first = await read_sse_until(
                    client,
                    live.token,
                    lambda e: e.event == "session.progress",
                    {"since": start},
                )
                # The server stops (SIGTERM) while the session runs: it stops the session
                # at a safe point and leaves it to resume at the next start.
                await asyncio.to_thread(live.server.stop)
                seen: list[dict[str, Any]] = []
                while True:
                    try:
                        seen.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
                    except websockets.ConnectionClosed as closed:
                        code = None if closed.rcvd is None else closed.rcvd.code
                        return session["id"], first, seen, code

        session_id, first, seen, close_code = asyncio.run(before())
        assert close_code == 1012  # "service restart"
        assert seen[0]["event"] == "sync.started"
        live.server.start()  # the same data directory and port
        listed = live.get("/api/v1/sessions", params={"repositoryId": repository["id"]})
        last = listed.json()["items"][0]  # the newest
        resumed = last["id"] != session_id
        print(f"\nthe session was {'stopped and resumed' if resumed else 'done'} at the restart")
        if resumed:  # stopped at a safe point by the shutdown, carried on at the start
            assert last["trigger"] == "resume"
            assert live.session(session_id)["state"] == "stopped"
        assert live.wait(last["id"])["state"] == "completed"
        live.wait_end_event(last["id"])
        # Once more, idle: after this start no event is in memory, all are in the store.
        live.server.stop()
        live.server.start()
        began = time.monotonic()
        polled = live.get("/api/v1/events", params={"since": first[-1].id}, timeout=10)
        assert time.monotonic() - began < 5
        assert polled.status_code == 200, polled.text

        async def after() -> list[Sse]:
            async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
                ws = await ws_connect(live)  # the WebSocket works again
                await ws_subscribe(ws)
                await ws.close()
                return await read_sse_until(
                    client, live.token, ends(last["id"]), last_event_id=first[-1].id
                )

        second = asyncio.run(after())
        stored = live.stored_events(start)
        assert native(first) + native(second) == stored
        assert polled.json()["items"] == [e for e in stored if e["id"] > first[-1].id][:100]
        types = [e["type"] for e in stored]
        assert types[-1] == "session.finished"
        if resumed:
            assert "session.stopped" in types
            assert types.index("session.stopped") < types.index("session.finished")
        # The long poll from the same id agrees.
        assert live.stored_events(first[-1].id, limit=7) == [
            e for e in stored if e["id"] > first[-1].id
        ]


def test_sigterm_ends_open_event_streams_promptly(tmp_path: Path) -> None:
    with live_server(tmp_path) as live:
        reader = stalled_sse(live.server.port, live.token)
        process = live.server.process
        assert process is not None
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(5)
        except subprocess.TimeoutExpired:
            pytest.fail("storsync serve still runs 5 s after SIGTERM")
        finally:
            reader.close()
            live.server.stop(kill=True)


# -- falling behind ---------------------------------------------------------------------


def test_a_reader_behind_the_ring_gets_gap_then_every_missed_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process (to shrink the ring): a stream that stops reading while far more
    than the ring's events are published picks up with ``gap``, then each of them."""
    monkeypatch.setattr(hub_module, "RING_SIZE", 16)
    (tmp_path / "root").mkdir()
    settings = load_settings({}, service_env(tmp_path / "data", tmp_path / "root", None))
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        bus = app.state.service.bus
        pad = "x" * 64 * 1024  # many times the socket buffers in all

        def publish(n: int) -> int:
            # A filler event: any type will do; its number leads its 64 KiB path.
            filler = ConflictFound(f"{n}/{pad}")
            return int(bus.publish(EventType.SESSION_CONFLICT, detail=filler).id)

        headers = {"Authorization": f"Bearer {login(url)}", "Accept": "text/event-stream"}
        received: list[tuple[str, int | None, dict[str, Any]]] = []
        with httpx.stream("GET", f"{url}/api/v1/events", headers=headers, timeout=60) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()
            first = publish(0)
            event: dict[str, str] = {}
            total, last = 400, -1
            for line in lines:
                if line.startswith(("id:", "event:", "data:")):
                    name, _, value = line.partition(": ")
                    event[name] = value
                elif line == "" and "data" in event:
                    raw_id = event.get("id")
                    received.append(
                        (event["event"], None if raw_id is None else int(raw_id), event)
                    )
                    event = {}
                    if received[-1][1] == first:
                        # Stop reading while the rest is published: the server's sends
                        # block, and the ring (16 events) moves on without this reader.
                        last = 0
                        for n in range(1, total + 1):
                            last = publish(n)
                    elif received[-1][1] == last:
                        break
        kinds = [kind for kind, _, _ in received]
        # One gap, or more on a loaded machine (the server may find the reader behind
        # again while it is still publishing); each says where the reader was.
        gaps = [where for where, kind in enumerate(kinds) if kind == "gap"]
        assert gaps, kinds[:50]
        ids = [i for kind, i, _ in received if kind != "gap"]
        assert ids == list(range(first, first + total + 1))  # every one, in order, once
        for where in gaps:
            after = {"after": received[where - 1][1]}
            assert json.loads(received[where][2]["data"]) == after
        paths = [json.loads(e["data"])["data"]["path"] for k, _, e in received if k != "gap"]
        numbers = [int(path.split("/")[0]) for path in paths]
        assert numbers == list(range(total + 1))
    finally:
        server.should_exit = True
        thread.join(60)
