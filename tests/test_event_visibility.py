"""Whoever sees a session queued, started or ended finds its event in the log: the change
and its event are one transaction of the state store, on SQLite and on PostgreSQL.

The storing of each such event is slowed (a fault injected into the event's encoding, in
the service's own process) while a client reads the session, then the log: on the code
before, the session showed ``completed`` half a second before ``session.finished`` was
in the log (a CI run's event check once read the log in that gap).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storsync.model import EventType
from storsync.state import event_store
from storsync.state.records import Event
from tests.api_support import Api, running_api
from tests.conftest import write
from tests.session_support import events, sessions_of

SLOW_S = 0.5
# The event slowed, and the states in which a reader must find it in the log.
SEEN_IN = {
    EventType.SESSION_QUEUED: ("queued", "running", "completed"),
    EventType.SESSION_STARTED: ("running", "completed"),
    EventType.SESSION_FINISHED: ("completed",),
}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("slowed", list(SEEN_IN), ids=lambda t: t.value)
def test_a_session_seen_in_a_state_has_the_event_of_that_state_in_the_log(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str | None,
    slowed: EventType,
) -> None:
    storing = threading.Event()
    encode = event_store.encode

    def slow_encode(event: Event) -> str:
        if event.type is slowed:
            storing.set()
            time.sleep(SLOW_S)
        return encode(event)

    monkeypatch.setattr(event_store, "encode", slow_encode)
    with running_api("inprocess", tmp_path, database_url) as api:
        repository = api.new_repository()
        write(Path(repository["localPath"]), "a.txt", b"a")
        answers: list[httpx.Response] = []
        # From a thread: the trigger's own answer waits for the queued event.
        trigger = threading.Thread(
            target=lambda: answers.append(api.post(f"/api/v1/repositories/{repository['id']}/sync"))
        )
        trigger.start()
        try:
            assert storing.wait(30), f"no {slowed.value} event was stored"
            assert _look_while_stored(api, repository["id"], slowed) > 0
        finally:
            trigger.join()
        assert answers[0].status_code == 202, answers[0].text
        assert api.wait(answers[0].json()["id"])["state"] == "completed"


def _look_while_stored(api: Api, repository_id: str, slowed: EventType) -> int:
    """Read the repository's sessions, then their events, over the time the event takes
    to store; return how many reads saw a session in a state that needs the event."""
    looked = 0
    deadline = time.monotonic() + SLOW_S * 2
    while time.monotonic() < deadline:
        seen = [s for s in sessions_of(api, repository_id) if s["state"] in SEEN_IN[slowed]]
        if not seen:
            continue
        logged = events(api, 0, repositoryId=repository_id)
        for session in seen:
            kinds = [e["type"] for e in logged if e["sessionId"] == session["id"]]
            assert slowed.value in kinds, (session["state"], kinds)
        looked += 1
    return looked
