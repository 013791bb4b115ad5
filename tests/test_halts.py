"""Halts instead of failures (API.md section 7, SYNC.md promise 10): a session whose plan
trips the delete guard or finds an empty side changes nothing and waits; its plan is
readable; approving it deletes exactly what it listed, each only while it is still the
version listed; a later completed session makes the approval a 409; rejecting pauses; each
face shows it; the command line and the event followers stop on it; schedules wait."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from storsync.clock import ManualClock
from storsync.model import Schedule
from storsync.service.scheduler import Scheduler
from tests.api_checks import error
from tests.api_support import Api
from tests.conftest import run_cli, tree, write
from tests.notifications_support import (
    SUBSCRIBE,
    Live,
    live_server,
    synchronizer_id,
    ws_connect,
    ws_request,
    ws_until_completed,
)
from tests.session_support import wait_for
from tests.test_schedules import Recording, at, catalog_with

PLM = "/api/media-manager/v0/storage/synchronizers"


def _established(api: Api, files: int = 10) -> tuple[dict[str, Any], Path, Path]:
    repository = api.new_repository()
    local, remote = Path(repository["localPath"]), Path(repository["remote"])
    for i in range(files):
        write(local, f"f{i}.txt", f"file {i}")
    assert api.sync(repository["id"])["state"] == "completed"
    return repository, local, remote


def _halted(api: Api, rid: str) -> dict[str, Any]:
    answer = api.post(f"/api/v1/repositories/{rid}/sync")
    assert answer.status_code == 202, answer.text
    session = api.wait(answer.json()["id"])
    assert session["state"] == "halted", session
    return session


def _plan(api: Api, session_id: str) -> list[dict[str, Any]]:
    answer = api.get(f"/api/v1/sessions/{session_id}/plan?limit=1000")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_sixty_percent_deletions_halt_change_nothing_and_list_the_plan(api: Api) -> None:
    repository, local, remote = _established(api)
    rid = repository["id"]
    for i in range(6):
        (local / f"f{i}.txt").unlink()
    before = (tree(local), tree(remote))
    halted = _halted(api, rid)
    assert (tree(local), tree(remote)) == before  # byte for byte
    assert halted["halt"]["deleteRemote"] == 6 and halted["halt"]["deleteLocal"] == 0
    assert sorted(halted["halt"]["sample"]) == [f"f{i}.txt" for i in range(6)]
    assert "50% limit" in halted["halt"]["reason"] and halted["haltOutcome"] is None
    assert halted["error"] == halted["halt"]["reason"]
    assert halted["push"]["state"] is None and halted["pushed"] == 0
    plan = _plan(api, halted["id"])
    assert sorted((s["action"], s["path"]) for s in plan) == [
        ("delete-remote", f"f{i}.txt") for i in range(6)
    ]
    shown = api.get(f"/api/v1/repositories/{rid}").json()
    assert shown["status"] == "halted" and shown["lastSessionId"] == halted["id"]
    # Each face.
    veeam = api.get(f"/v6/RepositorySynchronizeSessions/{halted['id']}").json()
    assert veeam["state"] == "Failed" and veeam["result"] == "Failed"
    assert f"/api/v1/sessions/{halted['id']}/approve" in veeam["error"]
    sync_id = synchronizer_id(halted)
    plm = api.get(f"{PLM}/{sync_id}").json()["synchronizer"]
    assert plm["state"] == "error"

    # The session's row ends before its end event is published: wait for the event, then
    # nothing may follow it.
    def types() -> list[str]:
        page = api.get(f"/api/v1/events?since=0&limit=1000&sessionId={halted['id']}").json()
        return [e["type"] for e in page["items"]]

    assert wait_for(lambda: "session.halted" in types(), "the halted event")
    assert types()[-1] == "session.halted"


def test_an_empty_side_on_an_established_repository_halts(api: Api) -> None:
    repository, local, remote = _established(api, files=3)
    for path in list(local.iterdir()):
        if path.name != ".storsync":
            path.unlink()
    halted = _halted(api, repository["id"])
    assert "is empty" in halted["halt"]["reason"]
    assert len(tree(remote)) == 3


def test_approve_deletes_exactly_the_listed_versions_and_nothing_more(api: Api) -> None:
    repository, local, remote = _established(api)
    rid = repository["id"]
    for i in range(6):
        (local / f"f{i}.txt").unlink()
    halted = _halted(api, rid)
    # After the halt: one more deletion (not listed), and a listed file edited on the
    # remote (no longer the listed version).
    (local / "f9.txt").unlink()
    write(remote, "f0.txt", "edited on the remote after the halt")
    answer = api.post(f"/api/v1/sessions/{halted['id']}/approve")
    assert answer.status_code == 202, answer.text
    carrier = api.wait(answer.json()["id"])
    assert carrier["trigger"] == "approval" and carrier["approves"] == halted["id"]
    assert carrier["state"] == "completed", carrier
    assert carrier["deletedRemote"] == 5
    assert sorted(tree(remote)) == ["f0.txt", "f6.txt", "f7.txt", "f8.txt", "f9.txt"]
    assert tree(local)["f0.txt"] == b"edited on the remote after the halt"  # it survived
    assert api.get(f"/api/v1/sessions/{halted['id']}").json()["haltOutcome"] == "approved"
    assert api.get(f"/api/v1/repositories/{rid}").json()["status"] == "idle"
    again = api.post(f"/api/v1/sessions/{halted['id']}/approve")
    assert "already" in error(again, "native", 409, "conflict")
    # The extra deletion is the next session's to decide (1 of 5: under the guard).
    follow = api.sync(rid)
    assert follow["state"] == "completed" and follow["deletedRemote"] == 1
    assert tree(local) == tree(remote)


def test_approving_after_a_later_completed_session_is_a_409(api: Api) -> None:
    repository, local, _ = _established(api)
    for i in range(6):
        (local / f"f{i}.txt").unlink()
    halted = _halted(api, repository["id"])
    for i in range(6):
        write(local, f"f{i}.txt", f"file {i}")  # put back: nothing to delete any more
    assert api.sync(repository["id"])["state"] == "completed"
    answer = api.post(f"/api/v1/sessions/{halted['id']}/approve")
    assert "out of date" in error(answer, "native", 409, "conflict")
    stale = api.post(f"/api/v1/sessions/{halted['id']}/reject")
    assert "out of date" in error(stale, "native", 409, "conflict")
    plain = api.get(f"/api/v1/sessions?repositoryId={repository['id']}&limit=1").json()
    answer = api.post(f"/api/v1/sessions/{plain['items'][0]['id']}/approve")
    assert "not halted" in error(answer, "native", 409, "conflict")


def test_reject_pauses_the_repository(api: Api) -> None:
    repository, local, remote = _established(api)
    rid = repository["id"]
    for i in range(6):
        (local / f"f{i}.txt").unlink()
    halted = _halted(api, rid)
    answer = api.post(f"/api/v1/sessions/{halted['id']}/reject")
    assert answer.status_code == 200, answer.text
    assert answer.json()["haltOutcome"] == "rejected"
    shown = api.get(f"/api/v1/repositories/{rid}").json()
    assert (shown["paused"], shown["status"]) == (True, "paused")
    assert len(tree(remote)) == 10
    answer = api.post(f"/api/v1/sessions/{halted['id']}/approve")
    assert "rejected already" in error(answer, "native", 409, "conflict")


def test_the_command_line_client_stops_on_a_halt_with_its_reason(api: Api) -> None:
    if api.kind != "server":
        pytest.skip("the command line talks to a real server")
    repository, local, _ = _established(api)
    for i in range(6):
        (local / f"f{i}.txt").unlink()
    url = str(api.client.base_url).rstrip("/")
    result = run_cli("trigger", repository["id"], "--wait", "--server", url, "--token", api.token)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout.split()[1] == "halted"
    assert "halted: " in result.stderr and "50% limit" in result.stderr


def test_the_plm_websocket_completes_a_halted_synchronizer_then_says_it_halted(
    tmp_path: Path,
) -> None:
    async def notified(live: Live, rid: str) -> list[dict[str, Any]]:
        ws = await ws_connect(live)
        await ws_request(ws, SUBSCRIBE)
        answer = await asyncio.to_thread(live.post, f"{PLM}?repositoryId={rid}")
        found = await ws_until_completed(ws, answer.json()["synchronizer"]["id"])
        found.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        await ws.close()
        return found

    with live_server(tmp_path) as live:
        repository, _ = live.new_repository(files=10)
        local = Path(repository["localPath"])
        live.wait(live.trigger(repository["id"])["id"])
        for path in sorted(
            p for p in local.rglob("*") if p.is_file() and ".storsync" not in p.parts
        )[:6]:
            path.unlink()
        found = asyncio.run(notified(live, repository["id"]))
    events = [m["event"] for m in found]
    assert events[0] == "sync.started" and events[-2:] == ["sync.completed", "sync.halted"]
    assert found[-2]["data"]["state"] == "error" and found[-1]["data"]["state"] == "error"
    assert "50% limit" in found[-1]["data"]["reason"]


def test_schedules_start_nothing_while_a_halt_waits(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with catalog_with(tmp_path, Schedule(interval_s=10)) as (catalog, [rid]):
        starter = Recording()
        clock = ManualClock(at("2026-05-01 00:00"))
        halted: set[str] = {rid}
        scheduler = Scheduler(
            catalog.repositories, catalog.fires, starter, clock, waiting_halts=lambda: halted
        )
        for _ in range(5):
            clock.advance(10)
            scheduler.run_due(clock.now_ns())
        assert starter.calls == []
        halted.clear()  # approved or rejected
        scheduler.run_due(clock.now_ns())
        assert len(starter.calls) == 1
