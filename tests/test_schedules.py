"""Schedules (API.md section 7) with a controlled clock: the instants of intervals and of
cron expressions (across a daylight-saving change), each fire recorded once and carried by
exactly one session, a fire due during downtime run once at start, the backoff after
failures, pause; then real sessions started by the service's own scheduler."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from storsync.api.app import create_app
from storsync.clock import ManualClock, SystemClock
from storsync.config import load_settings
from storsync.errors import InvalidRequest
from storsync.model import Schedule, Trigger
from storsync.service import scheduling
from storsync.service.core import Service
from storsync.service.repositories import RepositoryChanges, RepositorySpec
from storsync.service.scheduler import Scheduler
from storsync.state.catalog import Catalog
from storsync.state.records import RepositorySettings
from tests.api_checks import error
from tests.api_support import Api, service_env
from tests.conftest import tree, write
from tests.session_support import wait_for

S = 10**9
MINUTE = 60 * S


def at(text: str, zone: str = "UTC") -> int:
    """An instant, from ``YYYY-MM-DD HH:MM[:SS]`` read in ``zone``."""
    when = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return int(when.timestamp()) * S


def shown(ns: int, zone: str) -> str:
    return datetime.fromtimestamp(ns / S, UTC).astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M")


# -- the instants -------------------------------------------------------------------------


def test_interval_instants_are_counted_from_the_epoch() -> None:
    every = Schedule(interval_s=600)
    t = at("2026-05-01 10:07:30")
    assert scheduling.next_after(every, t) == at("2026-05-01 10:10")
    assert scheduling.latest_at_or_before(every, t) == at("2026-05-01 10:00")
    exact = at("2026-05-01 10:10")
    assert scheduling.latest_at_or_before(every, exact) == exact
    assert scheduling.next_after(every, exact) == at("2026-05-01 10:20")


def test_cron_instants_follow_the_time_zone_across_daylight_saving_changes() -> None:
    zone = "Europe/Paris"
    nightly = Schedule(cron="30 2 * * *", timezone=zone)
    # 2026-03-29 02:00 Paris jumps to 03:00: 02:30 does not exist that night; cron fires
    # at the first instant after the gap, once.
    t, seen = at("2026-03-27 12:00", zone), []
    for _ in range(4):
        t = scheduling.next_after(nightly, t)
        seen.append(shown(t, zone))
    assert seen == ["03-28 02:30", "03-29 03:00", "03-30 02:30", "03-31 02:30"]
    assert at("2026-03-30 02:30", zone) - at("2026-03-28 02:30", zone) == 47 * 3600 * S
    # 2026-10-25 03:00 Paris goes back to 02:00: 02:30 comes twice; one fire.
    t, seen = at("2026-10-24 12:00", zone), []
    for _ in range(3):
        t = scheduling.next_after(nightly, t)
        seen.append(shown(t, zone))
    assert seen == ["10-25 02:30", "10-26 02:30", "10-27 02:30"]
    quarter = Schedule(cron="*/15 * * * *", timezone=zone)
    assert scheduling.latest_at_or_before(quarter, at("2026-03-29 03:07", zone)) == at(
        "2026-03-29 03:00", zone
    )
    assert scheduling.latest_at_or_before(quarter, at("2026-03-29 03:15", zone)) == at(
        "2026-03-29 03:15", zone
    )


@pytest.mark.parametrize(
    ("schedule", "needle"),
    [
        (Schedule(interval_s=9), "intervalSeconds"),
        (Schedule(), "either"),
        (Schedule(interval_s=60, cron="* * * * *"), "either"),
        (Schedule(cron="61 * * * *"), "cron"),
        (Schedule(cron="* * *"), "cron"),
        (Schedule(cron="* * * * *", timezone="Mars/Olympus"), "timezone"),
    ],
)
def test_a_schedule_that_cannot_fire_is_refused(schedule: Schedule, needle: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        scheduling.check(schedule)
    assert needle in refused.value.message


def test_backoff_waits_one_minute_doubling_to_an_hour_after_three_failures() -> None:
    last = at("2026-05-01 10:00")
    assert scheduling.backoff_until(2, last) is None
    waits = [(scheduling.backoff_until(n, last) or 0) - last for n in range(3, 12)]
    assert [w // MINUTE for w in waits] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


# -- the scheduler against a recording starter ------------------------------------------


class Recording:
    """A session starter that records each call and joins a waiting session, as the
    session manager does: calls between two ``run`` calls land in one session."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Trigger]] = []
        self.sessions = 0
        self.waiting: str | None = None
        self.lock = threading.Lock()

    def __call__(self, repository_id: str, trigger: Trigger) -> str | None:
        with self.lock:
            self.calls.append((repository_id, trigger))
            if self.waiting is None:
                self.sessions += 1
                self.waiting = f"s{self.sessions}"
            return self.waiting

    def run(self) -> None:
        with self.lock:
            self.waiting = None


@contextlib.contextmanager
def catalog_with(
    tmp_path: Path, *schedules: Schedule | None
) -> Iterator[tuple[Catalog, list[str]]]:
    """A catalog (SQLite) with one repository per schedule, set at 2026-05-01 00:00."""
    service = Service.open(
        load_settings({}, service_env(tmp_path / "data", tmp_path / "root", None)),
        clock=ManualClock(at("2026-05-01 00:00")),
    )
    ids = []
    for i, schedule in enumerate(schedules):
        spec = RepositorySpec(
            f"r{i}",
            str(tmp_path / "root" / f"r{i}"),
            str(tmp_path / "root" / f"remote{i}"),
            settings=RepositorySettings(schedule=schedule),
        )
        ids.append(service.repositories.create(spec).repository.id)
    try:
        yield service.catalog, ids
    finally:
        service.close()


def fires_of(catalog: Catalog) -> list[tuple[str, int, str | None]]:
    import sqlalchemy as sa

    from storsync.state import schema

    table = schema.schedule_fires
    query = sa.select(table.c.repository_id, table.c.fire_ns, table.c.session_id)
    with catalog.database.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def test_over_a_thousand_fires_each_recorded_once_and_carried_by_one_session(
    tmp_path: Path,
) -> None:
    (tmp_path / "root").mkdir()
    with catalog_with(tmp_path, Schedule(interval_s=10), Schedule(interval_s=30)) as (
        catalog,
        ids,
    ):
        starter = Recording()
        clock = ManualClock(at("2026-05-01 00:00"))
        # Two schedulers on the same store, as after a restart racing the old process,
        # or two nodes: every fire is still recorded once.
        schedulers = [
            Scheduler(catalog.repositories, catalog.fires, starter, clock) for _ in range(2)
        ]
        for step in range(1, 1101):
            clock.advance(10)
            for scheduler in schedulers:
                scheduler.run_due(clock.now_ns())
            if step % 3:  # most fires start a session; every third joins the waiting one
                starter.run()
        fires = fires_of(catalog)
        by_repository = {rid: sorted(f for r, f, _ in fires if r == rid) for rid in ids}
        assert len(by_repository[ids[0]]) == 1100
        assert len(by_repository[ids[1]]) == 1100 // 3
        for rid, every in zip(ids, (10, 30), strict=True):
            instants = by_repository[rid]
            assert len(set(instants)) == len(instants)
            assert all(b - a == every * S for a, b in itertools.pairwise(instants))
        assert all(session is not None for _, _, session in fires)
        assert len(starter.calls) == len(fires)  # one start (or join) per fire, never two
        assert {t for _, t in starter.calls} == {Trigger.SCHEDULE}
        assert starter.sessions < len(fires)  # some fires joined a waiting session


def test_a_fire_due_during_downtime_runs_once_at_start(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with catalog_with(tmp_path, Schedule(interval_s=60)) as (catalog, _):
        starter = Recording()
        clock = ManualClock(at("2026-05-01 00:00"))
        Scheduler(catalog.repositories, catalog.fires, starter, clock).run_due(clock.now_ns())
        assert fires_of(catalog) == []  # the first instant after the schedule was set
        clock.advance(61)
        scheduler = Scheduler(catalog.repositories, catalog.fires, starter, clock)
        scheduler.run_due(clock.now_ns())
        assert [f for _, f, _ in fires_of(catalog)] == [at("2026-05-01 00:01")]
        clock.advance(3600 * 5)  # down for five hours: 300 instants went by
        again = Scheduler(catalog.repositories, catalog.fires, starter, clock)
        assert again.run_due(clock.now_ns()) == at("2026-05-01 05:02")
        assert [f for _, f, _ in fires_of(catalog)] == [
            at("2026-05-01 00:01"),
            at("2026-05-01 05:01"),
        ]
        assert len(starter.calls) == 2


def test_a_fire_recorded_but_not_carried_is_carried_at_the_next_start(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with catalog_with(tmp_path, Schedule(interval_s=60)) as (catalog, [rid]):
        assert catalog.fires.record(rid, at("2026-05-01 00:01"), now_ns=1)
        assert not catalog.fires.record(rid, at("2026-05-01 00:01"), now_ns=2)
        starter = Recording()
        scheduler = Scheduler(catalog.repositories, catalog.fires, starter, ManualClock())
        scheduler._carry_left_over()
        assert fires_of(catalog) == [(rid, at("2026-05-01 00:01"), "s1")]
        assert catalog.fires.uncarried() == []


def test_a_failing_repository_backs_off_and_a_success_resets_it(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with catalog_with(tmp_path, Schedule(interval_s=10)) as (catalog, [rid]):
        starter = Recording()
        clock = ManualClock(at("2026-05-01 00:00"))
        scheduler = Scheduler(catalog.repositories, catalog.fires, starter, clock)
        for _ in range(3):
            clock.advance(10)
            catalog.repositories.record_outcome(rid, failed=True, now_ns=clock.now_ns())
        failed_at = clock.now_ns()
        clock.advance(10)
        assert scheduler.run_due(clock.now_ns()) == failed_at + MINUTE  # waits it out
        assert starter.calls == []
        clock.advance(50)
        scheduler.run_due(clock.now_ns())
        assert len(starter.calls) == 1  # the one fire due when the wait ended
        catalog.repositories.record_outcome(rid, failed=True, now_ns=clock.now_ns())
        assert scheduler.run_due(clock.now_ns() + 10 * S) == clock.now_ns() + 2 * MINUTE
        catalog.repositories.record_outcome(rid, failed=False, now_ns=clock.now_ns())
        clock.advance(10)
        scheduler.run_due(clock.now_ns())
        assert len(starter.calls) == 2
        repository = catalog.repositories.get(rid)
        assert repository is not None and repository.failures == 0


def test_a_paused_repository_fires_nothing_and_once_when_resumed(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    with catalog_with(tmp_path, Schedule(interval_s=10)) as (catalog, [rid]):
        starter = Recording()
        clock = ManualClock(at("2026-05-01 00:00"))
        scheduler = Scheduler(catalog.repositories, catalog.fires, starter, clock)
        catalog.repositories.set_paused(rid, True)
        for _ in range(10):
            clock.advance(10)
            assert scheduler.run_due(clock.now_ns()) is None
        assert starter.calls == []
        catalog.repositories.set_paused(rid, False)
        scheduler.run_due(clock.now_ns())
        scheduler.run_due(clock.now_ns())
        assert len(starter.calls) == 1


# -- through the service and its faces ------------------------------------------------


@contextlib.contextmanager
def served(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[Service, Api]]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    # Tokens that outlive the days the clock is moved on.
    env = {**service_env(tmp_path / "data", root, None), "STORSYNC_TOKEN_TTL_S": str(10**9)}
    settings = load_settings({}, env)
    service = Service.open(settings, clock=clock)
    try:
        app = create_app(settings, service=service)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            service.start()
            yield service, Api(client, root, "inprocess")
    finally:
        service.close()


def schedule_sessions(api: Api, rid: str) -> list[dict[str, Any]]:
    page = api.get(f"/api/v1/sessions?repositoryId={rid}&limit=1000").json()["items"]
    return [s for s in page if s["trigger"] == "schedule"]


def test_twenty_fires_run_real_sessions_and_a_restart_runs_a_missed_one_once(
    tmp_path: Path,
) -> None:
    clock = ManualClock(at("2026-05-01 00:00"))
    with served(tmp_path, clock) as (service, api):
        repository = api.new_repository(schedule={"intervalSeconds": 60})
        rid, local = repository["id"], Path(repository["localPath"])
        assert repository["nextRunAt"] == "2026-05-01T00:01:00.000Z"
        assert repository["status"] == "idle" and repository["lastSuccessAt"] is None
        for i in range(20):
            write(local, f"f{i}.txt", f"file {i}")
            clock.advance(60)
            wait_for(
                lambda i=i: (
                    len(schedule_sessions(api, rid)) == i + 1
                    and schedule_sessions(api, rid)[0]["state"] == "completed"
                ),
                f"scheduled session {i + 1}",
            )
        assert tree(local) == tree(Path(repository["remote"]))
        assert len(tree(local)) == 20
        shown = api.get(f"/api/v1/repositories/{rid}").json()
        assert shown["lastSessionId"] == schedule_sessions(api, rid)[0]["id"]
        assert shown["lastSuccessAt"] is not None
        assert shown["nextRunAt"] == "2026-05-01T00:21:00.000Z"
        fires = fires_of(service.catalog)
        assert len(fires) == 20 and len({s for _, _, s in fires}) == 20
    clock.advance(3600)  # the service is down for an hour
    with served(tmp_path, clock) as (service, api):
        wait_for(lambda: len(schedule_sessions(api, rid)) == 21, "the missed fire at start")
        api.wait(schedule_sessions(api, rid)[0]["id"])
        clock.advance(1)
        assert len(schedule_sessions(api, rid)) == 21
        assert len(fires_of(service.catalog)) == 21


def test_schedules_are_set_shown_and_checked_on_each_face(api: Api) -> None:
    created = api.new_repository(
        schedule={"cron": "*/15 * * * *", "timezone": "Europe/Paris"}, watch=True
    )
    assert created["schedule"] == {"cron": "*/15 * * * *", "timezone": "Europe/Paris"}
    assert created["watch"] is True and created["watchDelaySeconds"] == 2
    # A watch starts with a session (it finds what changed while nothing watched).
    assert created["paused"] is False and created["status"] in ("idle", "running")
    assert created["nextRunAt"] is not None
    path = f"/api/v1/repositories/{created['id']}"
    cleared = api.request("PATCH", path, json={"schedule": None})
    assert cleared.status_code == 200 and cleared.json()["schedule"] is None
    assert cleared.json()["nextRunAt"] is None and cleared.json()["watch"] is True
    veeam = api.request(
        "PUT", f"/v6/BackupRepositories/{created['id']}", json={"schedule": {"intervalSeconds": 90}}
    )
    assert veeam.status_code == 200 and veeam.json()["schedule"] == {"intervalSeconds": 90}
    paused = api.post(f"{path}/pause")
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["status"], paused.json()["nextRunAt"]) == (
        True,
        "paused",
        None,
    )
    resumed = api.post(f"{path}/resume").json()
    assert resumed["paused"] is False and resumed["status"] in ("idle", "running")
    for wrong in (
        {"intervalSeconds": 5},
        {"intervalSeconds": "60"},
        {"cron": "not cron"},
        {"cron": "* * * * *", "timezone": "Nowhere/Else"},
        {"intervalSeconds": 60, "cron": "* * * * *"},
        {},
        "hourly",
    ):
        answer = api.request("PATCH", path, json={"schedule": wrong})
        assert "schedule" in error(answer, "native", 400, "invalid") or answer.status_code == 400
        answer = api.request(
            "PUT", f"/v6/BackupRepositories/{created['id']}", json={"schedule": wrong}
        )
        error(answer, "veeam", 400, "ParameterValidationFailure")
    for field, value in (("watch", "yes"), ("watchDelaySeconds", 0), ("paused", 1)):
        answer = api.request("PATCH", path, json={field: value})
        assert field in error(answer, "native", 400, "invalid")
    assert api.get(path).json()["schedule"] == {"intervalSeconds": 90}


def test_the_system_clock_scheduler_thread_wakes_when_a_schedule_is_set(tmp_path: Path) -> None:
    """With the real clock: a schedule given to a repository fires at its first instant
    (within 10 s), not after the idle scheduler's next look (5 minutes): a change wakes
    the scheduler."""
    clock = SystemClock()
    root = tmp_path / "root"
    root.mkdir()
    settings = load_settings({}, service_env(tmp_path / "data", root, None))
    service = Service.open(settings, clock=clock)
    service.start()
    try:
        spec = RepositorySpec("r", str(root / "l"), str(root / "r"))
        rid = service.repositories.create(spec).repository.id
        service.repositories.update(
            rid, RepositoryChanges(settings={"schedule": Schedule(interval_s=10)})
        )
        wait_for(lambda: fires_of(service.catalog), "a fire", timeout=15)
    finally:
        service.close()


def _event_types(api: Api, session_id: str) -> list[str]:
    page = api.get(f"/api/v1/events?since=0&limit=1000&sessionId={session_id}").json()
    return [e["type"] for e in page["items"]]


def test_a_scheduled_session_with_nothing_to_do_stays_quiet_and_goes_after_a_day(
    tmp_path: Path,
) -> None:
    clock = ManualClock(at("2026-05-01 00:00"))
    with served(tmp_path, clock) as (service, api):
        repository = api.new_repository(schedule={"intervalSeconds": 60})
        rid, local = repository["id"], Path(repository["localPath"])
        write(local, "a.txt", "a")
        clock.advance(60)
        wait_for(lambda: len(schedule_sessions(api, rid)) == 1, "the first fire")
        busy = api.wait(schedule_sessions(api, rid)[0]["id"])
        clock.advance(60)
        wait_for(lambda: len(schedule_sessions(api, rid)) == 2, "the second fire")
        idle = api.wait(schedule_sessions(api, rid)[0]["id"])
        assert (busy["pushed"], idle["pushed"]) == (1, 0)
        assert {"phase.started", "session.progress"} <= set(_event_types(api, busy["id"]))
        assert _event_types(api, idle["id"]) == [
            "session.queued",
            "session.started",
            "session.finished",
        ]
        clock.advance(86_400 + 3600)  # more than a day later: the quiet one goes
        # The store keeps its newest event whatever its age (event ids count from it):
        # let the fire this advance causes end first, so that newest is not the idle's.
        wait_for(lambda: len(schedule_sessions(api, rid)) == 3, "the third fire")
        api.wait(schedule_sessions(api, rid)[0]["id"])
        service.sessions.prune()
        left = [s["id"] for s in schedule_sessions(api, rid)]
        assert busy["id"] in left and idle["id"] not in left
        assert _event_types(api, idle["id"]) == []


def test_a_scheduled_session_that_only_moved_files_is_not_a_quiet_one(tmp_path: Path) -> None:
    """Moving files is work done: such a session stays in the history past the day
    after which the quiet ones go."""
    clock = ManualClock(at("2026-05-01 00:00"))
    with served(tmp_path, clock) as (service, api):
        repository = api.new_repository(schedule={"intervalSeconds": 60})
        rid, local = repository["id"], Path(repository["localPath"])
        for i in range(5):
            write(local, f"a{i}.txt", f"file {i}")
        clock.advance(60)
        wait_for(lambda: len(schedule_sessions(api, rid)) == 1, "the first fire")
        api.wait(schedule_sessions(api, rid)[0]["id"])
        (local / "a0.txt").rename(local / "b0.txt")
        clock.advance(60)
        wait_for(lambda: len(schedule_sessions(api, rid)) == 2, "the second fire")
        moved = api.wait(schedule_sessions(api, rid)[0]["id"])
        assert (moved["pushed"], moved["deletedRemote"], moved["movedRemote"]) == (0, 0, 1)
        clock.advance(86_400 + 3600)
        wait_for(lambda: len(schedule_sessions(api, rid)) == 3, "the third fire")
        api.wait(schedule_sessions(api, rid)[0]["id"])
        service.sessions.prune()
        assert moved["id"] in [s["id"] for s in schedule_sessions(api, rid)]


def test_conflicts_are_announced_when_planned_before_any_transfer(api: Api) -> None:
    repository = api.new_repository()
    local, remote = Path(repository["localPath"]), Path(repository["remote"])
    write(local, "a.txt", "base")
    api.sync(repository["id"])
    write(local, "a.txt", "local edit")
    write(remote, "a.txt", "remote edit, longer")
    session = api.sync(repository["id"])
    types = _event_types(api, session["id"])
    assert types.count("session.conflict") == 1
    assert types.index("session.conflict") < types.index("phase.started")
