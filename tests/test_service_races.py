"""Changes of a repository racing the triggers of its sessions (issue 4), in process:

- a delete answers either success or 409 (a session of the repository is queued or
  running); once it succeeded, no session of the repository is left queued or running, no
  worker of it is alive, and a later trigger is a 404;
- an update of a repository is never written while a session of it runs: each session ran
  wholly before the change or wholly after it;
- through the HTTP faces the same race never answers 500.

The window between the idle check and the write is widened by a few milliseconds
(``_widened``) so that triggers land inside it on many rounds: without the session
manager's lock around both, these tests fail within a few rounds.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from storsync.api.app import create_app
from storsync.config import load_settings
from storsync.errors import Conflict, UnknownObject
from storsync.model import SessionState, Trigger
from storsync.service.core import Service
from storsync.service.repositories import RepositoryChanges, RepositorySpec
from storsync.state.records import SessionQuery
from tests.api_support import Api, service_env
from tests.session_support import PLM, wait_for, workers_of

ROUNDS = 40
TRIGGERS = 6
# Triggers are released this far apart, so that some come before the idle check, some
# inside the widened window and some after the write.
STAGGER_S = 0.004
# How much later than the change the first trigger is released, round after round: however
# long the change takes to reach its idle check on a loaded machine, some rounds straddle
# it, some see the triggers win and some the change.
OFFSETS_S = (-0.010, -0.005, 0.0, 0.005, 0.010, 0.020, 0.030, 0.045, 0.060, 0.080)
WINDOW_S = 0.015
ACTIVE = [SessionState.QUEUED, SessionState.RUNNING]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Service, Api]]:
    root = tmp_path / "root"
    root.mkdir()
    settings = load_settings({}, service_env(tmp_path / "data", root, None))
    service = Service.open(settings)
    service.start()
    try:
        with TestClient(create_app(settings, service=service), base_url="http://127.0.0.1") as c:
            yield service, Api(c, root, "inprocess")
    finally:
        service.close()


def _widened(monkeypatch: pytest.MonkeyPatch, store: Any, name: str) -> list[int]:
    """Make ``store.<name>`` sleep before it writes; the wall-clock instants of its
    writes, in order."""
    original: Callable[..., Any] = getattr(store, name)
    writes: list[int] = []

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(WINDOW_S)
        writes.append(time.time_ns())
        return original(*args, **kwargs)

    monkeypatch.setattr(store, name, slow)
    return writes


def _new_repository(service: Service, root: Path) -> str:
    folder = root / uuid.uuid4().hex[:12]
    spec = RepositorySpec(
        name=folder.name, local_path=str(folder / "local"), remote=str(folder / "remote")
    )
    return service.repositories.create(spec).repository.id


def _race(act: Callable[[], str], trigger: Callable[[int], str], round_: int) -> list[str]:
    """``act`` and TRIGGERS staggered triggers, the first this round's offset after it;
    their outcomes, ``act``'s first. Any exception but the expected ones fails the test (it
    would be a 500)."""
    barrier = threading.Barrier(TRIGGERS + 1, timeout=30)
    offset = OFFSETS_S[round_ % len(OFFSETS_S)]

    def one(i: int) -> str:
        barrier.wait()
        if i == 0:
            time.sleep(max(0.0, -offset))
            return act()
        time.sleep(max(0.0, offset) + (i - 1) * STAGGER_S)
        return trigger(i)

    with ThreadPoolExecutor(TRIGGERS + 1) as pool:
        return list(pool.map(one, range(TRIGGERS + 1)))


def _service_trigger(service: Service, repository_id: str) -> Callable[[int], str]:
    def trigger(_: int) -> str:
        try:
            return service.sessions.trigger(repository_id, trigger=Trigger.API).state.value
        except UnknownObject:
            return "unknown"

    return trigger


def _settled(service: Service, repository_id: str) -> None:
    """Wait until no session of the repository is queued or running and its worker is gone."""
    wait_for(
        lambda: (
            not service.catalog.sessions.search(SessionQuery(repository_id, tuple(ACTIVE)))
            and service.sessions.running() == 0
        ),
        "the sessions to end",
        timeout=120,
    )


def _valid_history(service: Service) -> None:
    """Every session row reads back with a known state; ended ones have an end."""
    for session in service.catalog.sessions.search(SessionQuery(limit=100_000)):
        assert session.state in SessionState
        if session.state not in ACTIVE:
            assert session.ended_ns is not None, session
        assert service.catalog.repositories.get(session.repository_id) is not None, session


def _gone(service: Service, repository_id: str) -> None:
    """What a successful delete leaves: nothing of the repository, nothing running."""
    assert service.catalog.repositories.get(repository_id) is None
    assert service.catalog.sessions.search(SessionQuery(repository_id, limit=100)) == []
    assert service.sessions.running() == 0
    assert workers_of(os.getpid()) == []
    with pytest.raises(UnknownObject):
        service.sessions.trigger(repository_id, trigger=Trigger.API)


def test_a_delete_racing_triggers_is_a_conflict_or_leaves_nothing_running(
    served: tuple[Service, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, api = served
    _widened(monkeypatch, service.catalog.repositories, "delete")
    seen: set[str] = set()
    for round_ in range(ROUNDS):
        rid = _new_repository(service, api.root)

        def delete(rid: str = rid) -> str:
            try:
                service.repositories.delete(rid)
            except Conflict:
                return "conflict"
            return "deleted"

        outcome, *triggered = _race(delete, _service_trigger(service, rid), round_)
        seen.add(outcome)
        assert set(triggered) <= {"queued", "running", "unknown"}, triggered
        if outcome == "deleted":
            _gone(service, rid)
            continue
        # The triggers came first: every one of them was answered with a session.
        assert "unknown" not in triggered
        _settled(service, rid)
        _valid_history(service)
        assert delete() == "deleted"
        _gone(service, rid)
    _valid_history(service)
    assert seen == {"deleted", "conflict"}, "the race was not exercised both ways"


def test_an_update_racing_triggers_never_changes_a_repository_under_a_session(
    served: tuple[Service, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, api = served
    writes = _widened(monkeypatch, service.catalog.repositories, "update")
    seen: set[str] = set()
    for round_ in range(ROUNDS):
        rid = _new_repository(service, api.root)
        moved = api.root / uuid.uuid4().hex[:12]

        def update(rid: str = rid, moved: Path = moved) -> str:
            try:
                service.repositories.update(rid, RepositoryChanges(local_path=str(moved)))
            except Conflict:
                return "conflict"
            return "updated"

        outcome, *triggered = _race(update, _service_trigger(service, rid), round_)
        seen.add(outcome)
        assert set(triggered) <= {"queued", "running"}, triggered
        _settled(service, rid)
        if outcome == "updated":
            written = writes[-1]
            for session in service.catalog.sessions.search(SessionQuery(rid, limit=100)):
                assert session.started_ns is not None and session.ended_ns is not None
                # Wholly before the change, or wholly after it.
                assert session.ended_ns <= written or session.started_ns >= written, session
    _valid_history(service)
    assert seen == {"updated", "conflict"}, "the race was not exercised both ways"


def test_deletes_racing_triggers_on_every_face_never_answer_500(
    served: tuple[Service, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, api = served
    _widened(monkeypatch, service.catalog.repositories, "delete")
    faces: list[tuple[str, Callable[[str], str], set[int]]] = [
        ("native", lambda rid: f"/api/v1/repositories/{rid}/sync", {202, 404}),
        ("veeam", lambda rid: f"/v6/BackupRepositories/{rid}/Sync", {200, 404}),
        ("plm", lambda rid: f"{PLM}?repositoryId={rid}", {200, 404}),
    ]
    for round_ in range(ROUNDS // 2):
        rid = _new_repository(service, api.root)
        native = round_ % 2 == 0
        path = f"/api/v1/repositories/{rid}" if native else f"/v6/BackupRepositories/{rid}"
        deleted = 204 if native else 200

        def delete(path: str = path) -> str:
            return str(api.request("DELETE", path).status_code)

        def trigger(i: int, rid: str = rid) -> str:
            face, url, allowed = faces[i % len(faces)]
            status = api.post(url(rid)).status_code
            assert status in allowed, (face, status)
            return str(status)

        outcome, *_ = _race(delete, trigger, round_)
        assert outcome in {str(deleted), "409"}, outcome
        if outcome == "409":
            _settled(service, rid)
            assert api.request("DELETE", path).status_code == deleted
        _gone(service, rid)
    _valid_history(service)
