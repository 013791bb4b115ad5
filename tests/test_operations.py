"""Operations (API.md section 7): `/metrics` per repository (last success, sessions by
result, files and bytes each way, open conflicts, halted); the service log's line per
session start, end and failure, and its start-up summary, from a real `storsync serve`."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.api_support import Api, ServerProcess, service_env
from tests.conftest import write
from tests.test_service_lifecycle import in_process


def _metrics(api: Api) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The repository figures, by name and labels."""
    answer = api.get("/metrics")
    assert answer.status_code == 200, answer.text
    found = {}
    for line in answer.text.splitlines():
        parsed = re.fullmatch(r"(storsync_repository_\w+)\{(.*)\} (\S+)", line)
        if parsed:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', parsed.group(2)))
            found[parsed.group(1), labels] = float(parsed.group(3))
    return found


def _of(repository: dict[str, object], **labels: str) -> frozenset[tuple[str, str]]:
    given = {"repository": str(repository["id"]), "name": str(repository["name"]), **labels}
    return frozenset(given.items())


def test_metrics_per_repository(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (_, api):
        repository = api.new_repository(name="busy")
        rid, local = repository["id"], Path(repository["localPath"])
        remote = Path(repository["remote"])
        for i in range(10):
            write(local, f"f{i}.txt", "x" * 100)
        write(remote, "down.txt", "y" * 50)
        assert api.sync(rid)["state"] == "completed"
        write(local, "f0.txt", "local edit")
        write(remote, "f0.txt", "remote edit")
        assert api.sync(rid)["conflicts"] == 1
        for i in range(1, 8):
            (local / f"f{i}.txt").unlink()
        assert api.sync(rid)["state"] == "halted"
        idle = api.new_repository(name="idle")

        found = _metrics(api)
        figures = {
            ("sessions", "state", "completed"): 2,
            ("sessions", "state", "halted"): 1,
            ("sessions", "state", "failed"): 0,
            ("files", "direction", "push"): 11,
            ("files", "direction", "pull"): 2,
            ("bytes", "direction", "push"): 1000 + 10,
            ("bytes", "direction", "pull"): 50 + 11,
        }
        for (name, label, value), expected in figures.items():
            key = (f"storsync_repository_{name}", _of(repository, **{label: value}))
            assert found[key] == expected, (name, value)
        assert found["storsync_repository_open_conflicts", _of(repository)] == 1
        assert found["storsync_repository_halted", _of(repository)] == 1
        success = found["storsync_repository_last_success_timestamp_seconds", _of(repository)]
        assert success > 1.7e9
        assert found["storsync_repository_halted", _of(idle)] == 0
        assert ("storsync_repository_last_success_timestamp_seconds", _of(idle)) not in found


def test_the_log_has_a_line_per_session_and_a_start_up_summary(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env = {**service_env(tmp_path / "data", root, None), "STORSYNC_LOG_LEVEL": "info"}
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            api = Api(client, root, "server")
            good = api.new_repository(name="good")
            write(Path(good["localPath"]), "a.txt", "a")
            done = api.sync(good["id"])
            bad = api.new_repository(name="bad")
            Path(bad["remote"]).parent.mkdir(parents=True, exist_ok=True)
            Path(bad["remote"]).write_text("a file where the remote folder should be")
            failed = api.sync(bad["id"])
            assert failed["state"] == "failed", failed
    finally:
        server.stop()
    log = server.log.read_text()
    summary = re.search(r"INFO storsync\.api: storsync \S+ listening on (\S+); data directory", log)
    assert summary is not None, log
    assert summary.group(1) == server.url
    assert f"database sqlite:///{tmp_path / 'data' / 'storsync.db'}" in log
    assert "repositories: 1 (0 scheduled, 0 watched)" in log  # the default one, at start
    started = (
        f"session {done['id']} of repository {good['id']} (good) started by api, "
        "looking at everything"
    )
    assert started in log
    ended = re.search(
        rf"INFO storsync\.service: session {done['id']} of repository {good['id']} "
        r"completed in [\d.]+ s: pushed 1, pulled 0, moved 0 local and 0 remote, "
        r"deleted 0 local and 0 remote, "
        r"0 conflicts, 0 errors",
        log,
    )
    assert ended is not None, log
    failure = re.search(
        rf"WARNING storsync\.service: session {failed['id']} .* failed .*; (.+)", log
    )
    assert failure is not None, log
    assert failure.group(1) == failed["error"]
