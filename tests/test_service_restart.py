"""A real `storsync serve` stopped or killed while a session runs, then started again
(docs/api.md, "Shutdown and restart"):

- SIGTERM: the running session stops at a safe point and is reported ``stopped`` because
  the service shut down; the next start runs the resumption it left queued, which
  converges without sending again what was made durable;
- SIGKILL: the worker, orphaned, notices its input closed and ends at a safe point; the
  next start reports the session ``failed`` in one sentence a user can act on and runs
  the session that was waiting, which converges; a new trigger then moves nothing;
  nothing is lost and no partial file is ever among the user's files.

Workers are found as the server's children running ``storsync.service.worker``.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import Api, ServerProcess, service_env
from tests.conftest import tree
from tests.session_support import (
    PLM,
    alive,
    check_one_at_a_time,
    events,
    frozen,
    held_mid_push,
    make_files,
    names,
    partials,
    pending_input,
    sessions_of,
    trigger,
    wait_for,
    wait_gone,
    workers_of,
)

FILES = 1000


@contextlib.contextmanager
def _service(tmp: Path, database_url: str | None) -> Iterator[tuple[ServerProcess, Api]]:
    root = tmp / "root"
    root.mkdir()
    server = ServerProcess(service_env(tmp / "data", root, database_url), tmp / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield server, Api(client, root, "server")
    finally:
        leftovers = workers_of(server.process.pid) if server.process else []
        server.stop()
        for worker in leftovers:
            wait_gone(worker)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


def _mid_push(api: Api, server: ServerProcess) -> tuple[dict[str, Any], str, int]:
    """A new repository of FILES files, its first session's worker run in short slices
    until its push has begun, then left stopped (SIGSTOP) with most of the push to do:
    the repository, the session id, the worker's pid."""
    repository = api.new_repository()
    make_files(Path(repository["localPath"]), FILES, seed=7)
    assert server.process is not None
    session_id, worker = held_mid_push(
        server.process.pid,
        lambda: trigger(api, "native", repository["id"])[0],
        Path(repository["remote"]),
    )
    return repository, session_id, worker


def _whole_files_only(local: Path, remote: Path) -> dict[str, bytes]:
    """What the remote holds while the service is down: whole copies of local files."""
    source, held = tree(local), tree(remote)
    assert names(remote) == set(held), names(remote) - set(held)
    assert all(held[path] == source[path] for path in held)
    return held


@pytest.mark.slow
def test_sigterm_stops_the_session_and_the_next_start_resumes_it(tmp_path: Path) -> None:
    with _service(tmp_path, None) as (server, api):
        repository, session_id, worker = _mid_push(api, server)
        rid = repository["id"]
        local, remote = Path(repository["localPath"]), Path(repository["remote"])
        expected = tree(local)
        # SIGTERM while the worker is held mid-push; it is let go once the service has
        # told it to stop (the line waits in its input), so it cannot finish first.
        assert server.process is not None
        with frozen(worker):
            assert pending_input(worker) == 0
            server.process.send_signal(signal.SIGTERM)
            wait_for(lambda: pending_input(worker) > 0, "the service to tell its worker")
        server.process.wait(60)
        assert not alive(worker)  # the service waited for its worker
        held = _whole_files_only(local, remote)
        assert 0 < len(held) < FILES

        server.start()
        stopped = api.session(session_id)
        assert stopped["state"] == "stopped", stopped
        assert stopped["error"] == (
            "stopped because the service shut down; it carries on at the next start"
        )
        assert stopped["stopRequested"] is False and stopped["push"]["state"] == "stopped"
        assert stopped["pushed"] == len(held)
        veeam = api.get(f"/v6/RepositorySynchronizeSessions/{session_id}").json()
        assert (veeam["state"], veeam["result"]) == ("None", "Stopped")
        [resumption] = [s for s in sessions_of(api, rid) if s["trigger"] == "resume"]
        resumed = api.wait(resumption["id"])
        assert resumed["state"] == "completed", resumed
        assert resumed["pushed"] == FILES - len(held)  # nothing durable sent twice
        assert tree(local) == tree(remote) == expected
        assert partials(remote) == []
        history = check_one_at_a_time(events(api, 0, repositoryId=rid))
        assert history[session_id][-1] == "session.stopped"
        assert history[resumption["id"]][-2:] == ["session.started", "session.finished"]


@pytest.mark.slow
def test_sigkill_mid_session_then_restart_reports_it_failed_and_a_new_sync_converges(
    tmp_path: Path, database: str | None
) -> None:
    with _service(tmp_path, database) as (server, api):
        repository, session_id, worker = _mid_push(api, server)
        rid = repository["id"]
        local, remote = Path(repository["localPath"]), Path(repository["remote"])
        expected = tree(local)
        with frozen(worker):  # let go once the service is dead
            waiting_id, state = trigger(api, "veeam", rid)
            assert state == "Synchronizing" and waiting_id != session_id
            server.stop(kill=True)
        # The orphaned worker sees its input close and ends at a safe point, soon.
        wait_gone(worker, timeout=30)
        held = _whole_files_only(local, remote)
        assert tree(local) == expected  # nothing lost

        server.start()
        failed = api.session(session_id)
        assert failed["state"] == "failed", failed
        error = failed["error"]
        assert error == (
            "the service stopped while this session ran; what had completed is kept "
            "and the next session carries on from there"
        )
        assert failed["push"]["state"] == "failed" and failed["endedAt"] is not None
        veeam = api.get(f"/v6/RepositorySynchronizeSessions/{session_id}").json()
        assert (veeam["state"], veeam["result"], veeam["error"]) == ("Failed", "Failed", error)
        plm_id = f"${failed['push']['id']}+{failed['pull']['id']}"
        plm = api.get(f"{PLM}/{plm_id}").json()["synchronizer"]
        assert plm["state"] == "error" and plm["push"]["state"] == "error"
        assert [e["type"] for e in events(api, 0, sessionId=session_id)][-1] == "session.failed"

        # The session left waiting runs at the start. Files the killed worker had
        # published are found equal on both sides and only recorded: nothing it made
        # visible is sent again.
        resumed = api.wait(waiting_id)
        assert resumed["state"] == "completed", resumed
        assert resumed["pushed"] == FILES - len(held)
        assert names(local) == names(remote) == set(expected)
        # And a new trigger finds both sides converged.
        after = api.sync(rid)
        assert (after["state"], after["pushed"], after["pulled"]) == ("completed", 0, 0)
        assert tree(local) == tree(remote) == expected
        assert partials(remote) == []
        check_one_at_a_time(events(api, 0, repositoryId=rid))
