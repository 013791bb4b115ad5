"""Watching in a real `storsync serve` (API.md section 7, SYNC.md promise 9):

- a change made while a session runs (after its scan) is not lost: the next session, a
  watch session once the running one ends, carries it, and the running one's own writes
  start nothing more;
- SIGTERM with watches active ends the service in good order; after SIGTERM or SIGKILL,
  what changed while it was down is synchronized when it starts again (the watch's first
  session), and the watch goes on;
- a repository deleted, or its watch turned off, is no longer watched; a watch starts
  nothing while a halt waits.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from storsync.errors import UsageError
from storsync.model import Scope, Trigger
from storsync.service import sessions, watches
from storsync.service.watches import NOTHING, REMOTE_CHECK
from tests.api_support import Api, ServerProcess, s3_remote, serving
from tests.conftest import tree, write
from tests.s3_server import SeaweedS3
from tests.session_support import (
    held_mid_push,
    make_files,
    sessions_of,
    trigger,
    wait_for,
    wait_gone,
    workers_of,
)
from tests.test_service_lifecycle import in_process

FILES = 1000


@contextmanager
def _served(tmp: Path) -> Iterator[tuple[ServerProcess, Api]]:
    leftovers: list[int] = []
    with serving(tmp) as (server, api):
        try:
            yield server, api
        finally:
            leftovers = workers_of(server.process.pid) if server.process else []
    for worker in leftovers:
        wait_gone(worker)


def _watched(api: Api) -> tuple[dict[str, Any], Path, Path]:
    """A watched repository (0.3 s quiet period), once the session its watch starts
    with has ended."""
    repository = api.new_repository(watch=True, watchDelaySeconds=0.3)
    wait_for(lambda: sessions_of(api, repository["id"]), "the session the watch starts with")
    _settled(api, repository["id"])
    return repository, Path(repository["localPath"]), Path(repository["remote"])


def _settled(api: Api, rid: str) -> list[dict[str, Any]]:
    """The repository's sessions (newest first) once none is queued or running."""
    wait_for(
        lambda: all(s["state"] not in ("queued", "running") for s in sessions_of(api, rid)),
        "the sessions to end",
    )
    return sessions_of(api, rid)


@pytest.mark.slow
def test_a_change_made_while_a_session_runs_is_carried_by_the_next(tmp_path: Path) -> None:
    with _served(tmp_path) as (server, api):
        # A long quiet period, so that the trigger below (not the watch) starts the push.
        repository = api.new_repository(watch=True, watchDelaySeconds=3)
        rid = repository["id"]
        local, remote = Path(repository["localPath"]), Path(repository["remote"])
        wait_for(lambda: sessions_of(api, rid), "the session the watch starts with")
        _settled(api, rid)
        expected = make_files(local, FILES, seed=3)
        assert server.process is not None
        session_id, worker = held_mid_push(
            server.process.pid, lambda: trigger(api, "native", rid)[0], remote
        )
        write(local, "late.txt", "written after the running session's scan")
        os.kill(worker, signal.SIGCONT)
        running = api.wait(session_id)
        assert (running["state"], running["pushed"]) == ("completed", FILES), running
        assert "late.txt" not in tree(remote)  # its scan came before the file
        wait_for(lambda: "late.txt" in tree(remote), "the late file on the remote")
        sessions = _settled(api, rid)  # newest first
        after = sessions[: [s["id"] for s in sessions].index(session_id)]
        # One watch session carried it, and the running session's own writes (its
        # thousand uploads were named by notifications too) started nothing more.
        assert [(s["trigger"], s["pushed"]) for s in after] == [("watch", 1)], after
        assert tree(remote) == {**expected, "late.txt": b"written after the running session's scan"}


@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_changes_made_while_the_service_was_down_sync_when_it_starts(
    tmp_path: Path, kill: bool
) -> None:
    with _served(tmp_path) as (server, api):
        repository = api.new_repository(watch=True, watchDelaySeconds=0.3)
        rid = repository["id"]
        local, remote = Path(repository["localPath"]), Path(repository["remote"])
        write(local, "before.txt", "watched")
        wait_for(lambda: "before.txt" in tree(remote), "the first file")
        _settled(api, rid)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        code = server.process.wait(30)
        # uvicorn ends an orderly shutdown by raising the signal it caught again.
        assert code == -(signal.SIGKILL if kill else signal.SIGTERM), server.log.read_text()
        write(local, "while-down.txt", "nobody watched")
        server.start()
        wait_for(lambda: "while-down.txt" in tree(remote), "the file written while down")
        write(local, "after.txt", "watched again")
        wait_for(lambda: "after.txt" in tree(remote), "a change after the restart")
        sessions = _settled(api, rid)
        assert tree(local) == tree(remote)
        assert {s["trigger"] for s in sessions} == {"watch"}, sessions
        assert all(s["state"] == "completed" for s in sessions), sessions


def test_a_repository_no_longer_watched_starts_nothing(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (service, api):
        gone = api.new_repository(watch=True, watchDelaySeconds=0.3)
        off = api.new_repository(watch=True, watchDelaySeconds=0.3)
        paused = api.new_repository(watch=True, watchDelaySeconds=0.3)
        ids = {r["id"] for r in (gone, off, paused)}
        wait_for(lambda: service.watches.watched() == ids, "three watches")
        for repository in (gone, off, paused):  # the session each watch starts with
            wait_for(lambda r=repository: sessions_of(api, r["id"]), "a first session")
            _settled(api, repository["id"])
            # its worker may still be exiting (it counts as running until then)
            wait_for(lambda r=repository: not service.sessions.active(r["id"]), "its worker")
        answer = api.request("DELETE", f"/api/v1/repositories/{gone['id']}")
        assert answer.status_code == 204, answer.text
        answer = api.request("PATCH", f"/api/v1/repositories/{off['id']}", json={"watch": False})
        assert answer.status_code == 200, answer.text
        answer = api.post(f"/api/v1/repositories/{paused['id']}/pause")
        assert answer.status_code == 200, answer.text
        wait_for(lambda: service.watches.watched() == set(), "the watches to end")
        before = {r["id"]: len(sessions_of(api, r["id"])) for r in (off, paused)}
        for repository in (gone, off, paused):
            write(Path(repository["localPath"]), "a.txt", "not watched any more")
        with pytest.raises(AssertionError):
            wait_for(
                lambda: {r: len(sessions_of(api, r)) for r in before} != before,
                "a session",
                timeout=2,
            )
        answer = api.post(f"/api/v1/repositories/{paused['id']}/resume")
        assert answer.status_code == 200, answer.text
        wait_for(lambda: "a.txt" in tree(Path(paused["remote"])), "the resumed watch's session")
        assert tree(Path(off["remote"])) == {}


def test_a_watch_starts_nothing_while_a_halt_waits(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (_, api):
        repository = api.new_repository(watch=True, watchDelaySeconds=0.3)
        rid, local = repository["id"], Path(repository["localPath"])
        for i in range(10):
            write(local, f"f{i}.txt", f"file {i}")
        wait_for(lambda: len(tree(Path(repository["remote"]))) == 10, "the first files")
        _settled(api, rid)
        for i in range(6):  # 60% deleted: the watch's session halts
            (local / f"f{i}.txt").unlink()
        wait_for(lambda: sessions_of(api, rid, "halted"), "the halt")
        halted = len(sessions_of(api, rid))
        write(local, "new.txt", "made while the halt waits")
        with pytest.raises(AssertionError):
            wait_for(lambda: len(sessions_of(api, rid)) > halted, "a session", timeout=2)
        [halt] = sessions_of(api, rid, "halted")
        assert api.post(f"/api/v1/sessions/{halt['id']}/reject").status_code == 200
        assert api.post(f"/api/v1/repositories/{rid}/resume").status_code == 200
        # Resumed, the watch starts again with a session; the deletions halt again (the
        # guard still holds), and the new file waits with them.
        wait_for(lambda: len(sessions_of(api, rid)) > halted, "the resumed watch's session")


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sessions a worker process is started for, in order (the workers still start)."""
    started: list[str] = []
    start = sessions.Workers.start
    monkeypatch.setattr(
        sessions.Workers,
        "start",
        lambda self, session_id, *args: (
            started.append(session_id) or start(self, session_id, *args)
        ),
    )
    return started


def test_a_directory_remote_is_watched_too(tmp_path: Path, spawned: list[str]) -> None:
    """Changes on a directory remote start sessions as local ones do; storsync's own
    writes on either side start none; the schedule's sessions then look at nothing, and
    start no worker for it."""
    with in_process(tmp_path, None) as (service, api):
        repository, local, remote = _watched(api)
        rid = repository["id"]
        wait_for(lambda: service.watches.scope_of_fire(rid) == NOTHING, "the remote's watch")
        write(remote, "remote.txt", "made on the remote")
        wait_for(lambda: "remote.txt" in tree(local), "the remote change")
        write(local, "local.txt", "made locally")
        wait_for(lambda: "local.txt" in tree(remote), "the local change")
        count = len(_settled(api, rid))
        with pytest.raises(AssertionError):  # its own writes start nothing more
            wait_for(lambda: len(sessions_of(api, rid)) > count, "another session", timeout=2)
        assert {s["trigger"] for s in sessions_of(api, rid)} == {"watch"}
        assert tree(local) == tree(remote)
        answer = api.request(
            "PATCH", f"/api/v1/repositories/{rid}", json={"schedule": {"intervalSeconds": 10}}
        )
        assert answer.status_code == 200, answer.text

        def scheduled() -> dict[str, Any] | None:
            done = [s for s in sessions_of(api, rid, "completed") if s["trigger"] == "schedule"]
            return done[0] if done else None

        fired = wait_for(scheduled, "the schedule's session", timeout=40)
        assert fired["id"] not in spawned and len(spawned) == count
        assert fired["pushed"] == fired["pulled"] == 0


def test_a_remote_on_a_network_file_system_is_checked_by_the_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch's session carries the local change its notifications named, and not a
    remote change made beside it on a remote it cannot watch (it lists neither side
    whole: SYNC.md promise 9); the schedule's next session, a remote check, finds it."""
    # No network file system can be had here: the mount table says the remote is one.
    monkeypatch.setattr(watches, "network_file_system", lambda path: "nfs4")
    with in_process(tmp_path, None) as (service, api):
        repository, local, remote = _watched(api)
        rid = repository["id"]
        write(remote, "remote.txt", "made on the remote")
        write(local, "local.txt", "made locally")
        wait_for(lambda: "local.txt" in tree(remote), "the watch's session")
        _settled(api, rid)
        assert "remote.txt" not in tree(local)
        assert service.watches.scope_of_fire(rid) == REMOTE_CHECK
        answer = api.request(
            "PATCH", f"/api/v1/repositories/{rid}", json={"schedule": {"intervalSeconds": 10}}
        )
        assert answer.status_code == 200, answer.text
        wait_for(lambda: "remote.txt" in tree(local), "the remote check", timeout=40)
        carrier = _settled(api, rid)[0]
        assert (carrier["trigger"], carrier["state"]) == ("schedule", "completed")
        assert tree(local) == tree(remote)


def test_a_quiet_s3_remote_is_checked_without_a_worker(
    tmp_path: Path, spawned: list[str], s3_server: SeaweedS3
) -> None:
    """The first remote check of a watched S3 repository reads the listing and saves its
    digest; the next, the same listing probed by the service, looks at nothing and starts
    no worker; a change made on the remote changes the digest, and a worker's check
    carries it."""
    prefix = f"probe-{uuid.uuid4().hex[:12]}"
    with in_process(tmp_path, None) as (service, api):
        # Written before the watch starts: the session it starts with carries them, and
        # no notification of them comes after.
        local = api.root / prefix
        make_files(local, 20, seed=3)
        repository = api.new_repository(
            localPath=str(local),
            **s3_remote(s3_server, prefix),
            watch=True,
            watchDelaySeconds=0.3,
        )
        rid = repository["id"]
        wait_for(lambda: sessions_of(api, rid), "the session the watch starts with")
        assert _settled(api, rid)[0]["pushed"] == 20

        def fire() -> tuple[Scope, dict[str, Any]]:
            scope = service.watches.scope_of_fire(rid)
            session_id = service.sessions.carry(rid, Trigger.SCHEDULE, scope)
            assert session_id is not None
            return scope, api.wait(session_id)

        assert fire()[0] == REMOTE_CHECK  # no digest saved yet: a worker reads it whole
        untrusted = dataclasses.replace(
            service.sessions.remote_spec(service.catalog.repositories.get(rid)),
            private_endpoint_allowed=False,
        )
        with pytest.raises(UsageError, match="only a worker"):  # the worker pins its host
            service.sessions.open_remote(untrusted)
        workers = len(spawned)
        scope, quiet = fire()
        assert (scope, quiet["state"], len(spawned)) == (NOTHING, "completed", workers)
        path, data = sorted(tree(local).items())[0]
        changed = bytes(b ^ 1 for b in data)  # the same size
        s3 = s3_server.boto3_client()
        s3.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{path}", Body=changed)
        scope, checked = fire()
        assert (scope, checked["state"], checked["pulled"]) == (REMOTE_CHECK, "completed", 1)
        assert len(spawned) == workers + 1 and tree(local)[path] == changed
