"""A real `storsync serve` with a schedule, stopped (SIGTERM) or killed (SIGKILL) and
started again after a fire was due (API.md section 7): the fire missed while it was down
runs once at the start, no fire is carried by two sessions, and none is lost."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.api_support import Api, ServerProcess, service_env
from tests.conftest import tree, write
from tests.session_support import sessions_of, wait_for

INTERVAL = 10


def _scheduled(api: Api, rid: str) -> list[dict[str, object]]:
    return [s for s in sessions_of(api, rid) if s["trigger"] == "schedule"]


def _fires(database: Path, rid: str) -> list[tuple[int, str | None]]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT fire_ns, session_id FROM schedule_fires WHERE repository_id = ? "
            "ORDER BY fire_ns",
            (rid,),
        )
        return list(rows)


@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_a_fire_due_while_the_service_was_down_runs_once(tmp_path: Path, kill: bool) -> None:
    root = tmp_path / "root"
    root.mkdir()
    server = ServerProcess(service_env(tmp_path / "data", root, None), tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            api = Api(client, root, "server")
            repository = api.new_repository(schedule={"intervalSeconds": INTERVAL})
            rid, local = repository["id"], Path(repository["localPath"])
            write(local, "a.txt", "before")
            wait_for(lambda: _scheduled(api, rid), "the first fire", timeout=INTERVAL + 5)
            api.wait(str(_scheduled(api, rid)[0]["id"]))
            assert server.process is not None
            server.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            server.process.wait(30)
            down_at = time.time()
            write(local, "b.txt", "written while the service was down")
            time.sleep(2 * INTERVAL + 1.5)  # two fires are due meanwhile
            restarted_at = time.time()
            server.start()
            wait_for(lambda: "b.txt" in tree(Path(repository["remote"])), "the missed fire")
            for session in _scheduled(api, rid):
                api.wait(str(session["id"]))
            scheduled = _scheduled(api, rid)
            fires = _fires(tmp_path / "data" / "storsync.db", rid)
    finally:
        server.stop()
    # Each fire recorded once, carried by exactly one session, and every schedule
    # session carries a fire: no double run.
    carriers = [session_id for _, session_id in fires if session_id is not None]
    assert len(carriers) == len(set(carriers)) == len(fires), fires
    assert {s["id"] for s in scheduled} == set(carriers)
    # The instants missed while down (two at least) were run once, not once each.
    missed = [f for f, _ in fires if down_at * 1e9 < f < restarted_at * 1e9]
    assert len(missed) == 1, (down_at, restarted_at, fires)
