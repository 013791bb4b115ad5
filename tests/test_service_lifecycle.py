"""The session manager's lifecycle, in process, on a service whose clock the test sets
(``Service.open(settings, clock=...)``):

- history (sessions, their log items and events) past ``retention_days`` is pruned, at
  start and by the housekeeping; recent history stays readable on every face, and a
  session under way is never pruned;
- a session whose job cannot even be built (stored credentials sealed under another
  secret key) fails with the reason, instead of staying queued for ever and stopping
  the service from starting;
- a shutdown gives all workers one grace together; a worker that has not reached a safe
  point by then is ended, its session reported stopped by the shutdown and resumed at the
  next start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from storsync.api.app import create_app
from storsync.clock import Clock, SystemClock
from storsync.config import load_settings
from storsync.model import Trigger
from storsync.service.core import Service
from tests.api_support import Api, service_env
from tests.conftest import tree, write
from tests.session_support import (
    PLM,
    check_one_at_a_time,
    events,
    frozen,
    items,
    last_event_id,
    make_files,
    new_worker,
    sessions_of,
    trigger,
    workers_of,
)

DAY_NS = 86_400 * 10**9
SHUTDOWN_MESSAGE = "stopped because the service shut down; it carries on at the next start"


class SetClock(SystemClock):
    """Wall time set by the test; intervals (``monotonic``) are real."""

    def __init__(self) -> None:
        self.now = time.time_ns()

    def now_ns(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, days: float) -> None:
        self.now += int(days * DAY_NS)


@contextlib.contextmanager
def in_process(
    tmp: Path, database_url: str | None, clock: Clock | None = None, **variables: str
) -> Iterator[tuple[Service, Api]]:
    """The service in this process, opened (and started) as `storsync serve` would, on
    the data directory ``tmp/data``: the same database on each use."""
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    settings = load_settings({}, {**service_env(tmp / "data", root, database_url), **variables})
    service = Service.open(settings, clock=clock)
    service.start()
    try:
        app = create_app(settings, service=service)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            yield service, Api(client, root, "inprocess")
    finally:
        service.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


# -- retention ------------------------------------------------------------------------


def _pruned_everywhere(api: Api, session: dict[str, Any], *, events_too: bool = True) -> None:
    sid = session["id"]
    plm_id = f"${session['push']['id']}+{session['pull']['id']}"
    answer = api.get(f"/api/v1/sessions/{sid}")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert api.get(f"/api/v1/sessions/{sid}/items").status_code == 404
    if events_too:
        _no_event_but_the_newest(api, events(api, 0, (), sessionId=sid))
    assert sid not in {s["id"] for s in sessions_of(api, session["repositoryId"])}
    answer = api.get(f"{PLM}/{plm_id}")
    assert answer.status_code == 404 and answer.json()["error_code"] == 6
    assert plm_id not in {s["id"] for s in api.get(PLM).json()["synchronizers"]}
    answer = api.get(f"/v6/RepositorySynchronizeSessions/{sid}")
    assert answer.status_code == 404 and answer.json()["errorCode"] == "ResourceNotFound"
    assert sid not in {s["id"] for s in api.get("/v6/RepositorySynchronizeSessions").json()}


def _no_event_but_the_newest(api: Api, found: list[dict[str, Any]]) -> None:
    """Pruned: no event left, but the newest of all, which pruning keeps whatever its
    age so that ids are never given twice."""
    assert [e["id"] for e in found] in ([], [last_event_id(api)]), found


def _readable_everywhere(api: Api, session: dict[str, Any], pushed: set[str]) -> None:
    sid = session["id"]
    plm_id = f"${session['push']['id']}+{session['pull']['id']}"
    assert api.session(sid) == session and session["state"] == "completed"
    assert {i["path"] for i in items(api, sid, "pushed")} == pushed
    kinds = [e["type"] for e in events(api, 0, (), sessionId=sid)]
    assert kinds[0] == "session.queued" and kinds[-1] == "session.finished", kinds
    assert sid in {s["id"] for s in sessions_of(api, session["repositoryId"])}
    plm = api.get(f"{PLM}/{plm_id}")
    assert plm.status_code == 200 and plm.json()["synchronizer"]["state"] == "completed"
    assert plm_id in {s["id"] for s in api.get(PLM).json()["synchronizers"]}
    veeam = api.get(f"/v6/RepositorySynchronizeSessions/{sid}")
    assert veeam.status_code == 200 and veeam.json()["result"] == "Success"
    assert sid in {s["id"] for s in api.get("/v6/RepositorySynchronizeSessions").json()}


def test_history_past_the_retention_is_pruned_and_recent_history_stays_readable(
    tmp_path: Path, database: str | None
) -> None:
    clock = SetClock()
    settings = {"STORSYNC_RETENTION_DAYS": "7", "STORSYNC_TOKEN_TTL_S": str(10**9)}
    with in_process(tmp_path, database, clock, **settings) as (service, api):
        assert service.settings.retention_days == 7
        repository = api.new_repository()
        rid, local = repository["id"], Path(repository["localPath"])
        write(local, "old.txt", "old")
        old = api.sync(rid)  # ends on day 0
        clock.advance(5)
        write(local, "recent.txt", "recent")
        recent = api.sync(rid)  # ends on day 5
        clock.advance(2.9)  # day 7.9: the old one is past the retention, by a little
        assert service.sessions.prune() == 1
        # (The events route still serves pruned events from memory until the next start:
        # test_pruned_events_are_no_longer_served below.)
        _pruned_everywhere(api, old, events_too=False)
        _readable_everywhere(api, recent, {"recent.txt"})

        # A session under way is never pruned, however long it has been running. Enough
        # files that it is still under way when its worker is seen and stopped: a spare
        # already warm does one file in less time than a look through /proc takes.
        write(local, "late.txt", "late")
        late_files = make_files(local, 500, prefix="late/")
        exiting = set(workers_of(os.getpid()))  # the last session's, perhaps still ending
        running_id, _ = trigger(api, "native", rid)
        with frozen(new_worker(os.getpid(), exiting)):
            clock.advance(100)
            assert service.sessions.prune() == 1  # the recent one, now 102.9 days old
            assert api.session(running_id)["state"] == "running"
        _pruned_everywhere(api, recent, events_too=False)
        late = api.wait(running_id)
        _readable_everywhere(api, late, {"late.txt", *late_files})

    # The next start prunes too: eight days on, the last session is past the retention.
    # Every pruned session's events are gone from the store (but the newest event).
    clock.advance(8)
    with in_process(tmp_path, database, clock, **settings) as (service, api):
        for session in (old, recent, late):
            _pruned_everywhere(api, session)
        assert sessions_of(api, rid) == []
        _no_event_but_the_newest(api, events(api, 0, (), repositoryId=rid))
        assert tree(local) == tree(Path(repository["remote"]))


def _dropped_session(service: Service, api: Api, repository_id: str) -> str:
    """A session that ends without a worker: left waiting, then stopped through the API."""
    session = service.catalog.sessions.create(
        repository_id, trigger=Trigger.API, now_ns=service.clock.now_ns()
    )
    answer = api.post(f"/api/v1/sessions/{session.id}/stop")
    assert answer.status_code == 200 and answer.json()["state"] == "stopped", answer.text
    return session.id


def test_pruned_events_are_no_longer_served(tmp_path: Path) -> None:
    clock = SetClock()
    settings = {"STORSYNC_RETENTION_DAYS": "1", "STORSYNC_TOKEN_TTL_S": str(10**9)}
    with in_process(tmp_path, None, clock, **settings) as (service, api):
        rid = api.new_repository()["id"]
        older = _dropped_session(service, api, rid)
        _dropped_session(service, api, rid)  # its event is the newest: kept by design
        assert events(api, 0, (), sessionId=older) != []
        clock.advance(2)
        assert service.sessions.prune() == 2
        assert api.get(f"/api/v1/sessions/{older}").status_code == 404
        assert events(api, 0, (), sessionId=older) == []


def test_event_ids_keep_increasing_after_the_whole_history_is_pruned(tmp_path: Path) -> None:
    clock = SetClock()
    settings = {"STORSYNC_RETENTION_DAYS": "1", "STORSYNC_TOKEN_TTL_S": str(10**9)}
    with in_process(tmp_path, None, clock, **settings) as (service, api):
        rid = api.new_repository()["id"]
        _dropped_session(service, api, rid)
        newest = last_event_id(api)
        assert newest > 0
    clock.advance(2)
    with in_process(tmp_path, None, clock, **settings):
        pass  # this start prunes the whole history
    with in_process(tmp_path, None, clock, **settings) as (service, api):
        # A client that saw ``newest`` asks for what came after it: the new event.
        dropped = _dropped_session(service, api, rid)
        assert [e["sessionId"] for e in events(api, newest, (), repositoryId=rid)] == [dropped]


# -- a session that cannot start ------------------------------------------------------


def test_credentials_sealed_under_another_key_fail_the_session_instead_of_blocking(
    tmp_path: Path,
) -> None:
    credentials = {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "s3cr3t", "region": "x"}
    with in_process(tmp_path, None, STORSYNC_SECRET_KEY="the first key") as (service, api):
        repository = api.new_repository(remoteCredentials=credentials)
        rid, local = repository["id"], Path(repository["localPath"])
        write(local, "a.txt", "a")
        # A session left waiting when the service stopped, started by the next start.
        service.catalog.sessions.create(rid, trigger=Trigger.API, now_ns=time.time_ns())

    # The key changed: the service still starts, and says why the session cannot run.
    with in_process(tmp_path, None, STORSYNC_SECRET_KEY="another key") as (_, api):
        [left] = sessions_of(api, rid)
        assert left["state"] == "failed", left
        assert left["error"] == (
            "stored remote credentials cannot be decrypted: the secret key changed; "
            "give the repository its credentials again"
        )
        # A trigger answers with a session that failed for that reason; none stays queued.
        for face in ("native", "veeam", "plm"):
            _, state = trigger(api, face, rid)
            assert state in ("failed", "Failed", "error"), (face, state)
        assert sessions_of(api, rid, "queued", "running") == []
        failed = sessions_of(api, rid)
        assert {s["error"] for s in failed} == {left["error"]}
        for session in failed:
            kinds = [e["type"] for e in events(api, 0, (), sessionId=session["id"])]
            assert kinds[-1] == "session.failed" and "session.started" not in kinds
        # Given its credentials again, the repository synchronizes.
        answer = api.request(
            "PATCH", f"/api/v1/repositories/{rid}", json={"remoteCredentials": credentials}
        )
        assert answer.status_code == 200, answer.text
        assert api.sync(rid)["state"] == "completed"
        assert tree(local) == tree(Path(repository["remote"])) == {"a.txt": b"a"}


# -- the store fails while a report is recorded --------------------------------------


def test_a_report_the_store_fails_to_record_does_not_wedge_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with in_process(tmp_path, None) as (service, api):
        repository = api.new_repository()
        rid, local = repository["id"], Path(repository["localPath"])
        expected = make_files(local, 300, seed=9)
        record = service.catalog.sessions.set_progress
        failed: list[tuple[Any, ...]] = []

        def hiccup(session_id: str, *values: Any) -> Any:
            if not failed:
                failed.append(values)  # the first progress report, once
                raise sa.exc.OperationalError(
                    "UPDATE sessions", None, Exception("server closed the connection")
                )
            return record(session_id, *values)

        monkeypatch.setattr(service.catalog.sessions, "set_progress", hiccup)
        first = api.sync(rid)
        assert failed, "no progress report was recorded"
        assert first["state"] == "completed", first
        assert tree(local) == tree(Path(repository["remote"])) == expected
        assert api.sync(rid)["state"] == "completed"


# -- shutdown -------------------------------------------------------------------------


def test_shutdown_gives_all_workers_one_grace_then_resumes_what_it_ended(
    tmp_path: Path,
) -> None:
    grace = 3.0
    repositories: list[dict[str, Any]] = []
    stuck: list[int] = []
    try:
        with in_process(tmp_path, None) as (service, api):
            for n in range(2):
                repository = api.new_repository()
                make_files(Path(repository["localPath"]), 300, seed=n)
                session_id, _ = trigger(api, "native", repository["id"])
                # A worker that never reaches a safe point (held before it even starts).
                stuck.append(new_worker(os.getpid(), set(stuck)))
                repositories.append({**repository, "session": session_id})
            started = time.monotonic()
            service.sessions.shutdown(grace_s=grace)
            elapsed = time.monotonic() - started
            assert elapsed < grace + 2.0, f"{elapsed:.1f} s: one grace per worker"
            for repository in repositories:
                ended = api.session(repository["session"])
                assert ended["state"] == "stopped", ended
                assert ended["error"] == SHUTDOWN_MESSAGE
                [waiting] = sessions_of(api, repository["id"], "queued")
                assert waiting["trigger"] == "resume"
    finally:
        for pid in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # The next start runs the resumptions, which converge.
    with in_process(tmp_path, None) as (_, api):
        for repository in repositories:
            [resumption] = [
                s for s in sessions_of(api, repository["id"]) if s["trigger"] == "resume"
            ]
            assert api.wait(resumption["id"])["state"] == "completed"
            local, remote = Path(repository["localPath"]), Path(repository["remote"])
            assert tree(local) == tree(remote) and len(tree(remote)) == 300
            check_one_at_a_time(events(api, 0, repositoryId=repository["id"]))
