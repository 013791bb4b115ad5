"""The client commands of a service left running (API.md section 7, `--help` of each),
against a real `storsync serve` over loopback: pause and resume, approve and reject a
halt, list and resolve conflicts, stop a session, remove a repository, log out. Errors
are one line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import ADMIN_PASSWORD, Api, ServerProcess, service_env, serving
from tests.conftest import run_cli, tree, write


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str]]:
    with serving(tmp_path_factory.mktemp("manage")) as (server, api):
        yield api, server.url


def _cli(served: tuple[Api, str], *args: str, env: dict[str, str] | None = None) -> Any:
    api, url = served
    auth = () if env is not None else ("--token", api.token)
    return run_cli(*args, "--server", url, *auth, env={**os.environ, **(env or {})})


def _established(api: Api, files: int = 10, **settings: Any) -> tuple[dict[str, Any], Path, Path]:
    repository = api.new_repository(**settings)
    local, remote = Path(repository["localPath"]), Path(repository["remote"])
    for i in range(files):
        write(local, f"f{i}.txt", f"file {i}")
    assert api.sync(repository["id"])["state"] == "completed"
    return repository, local, remote


def _halted(api: Api, rid: str, local: Path) -> dict[str, Any]:
    for i in range(6):
        (local / f"f{i}.txt").unlink(missing_ok=True)
    halted = api.sync(rid)
    assert halted["state"] == "halted", halted
    return halted


def test_pause_and_resume(served: tuple[Api, str]) -> None:
    api, _ = served
    repository = api.new_repository(name="pausing")
    paused = _cli(served, "pause", "pausing")
    assert (paused.returncode, paused.stdout) == (0, "pausing paused\n"), paused.stderr
    assert api.get(f"/api/v1/repositories/{repository['id']}").json()["paused"] is True
    resumed = _cli(served, "resume", repository["id"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["paused"] is False
    missing = _cli(served, "pause", "no-such-repository")
    assert missing.returncode == 2
    assert missing.stderr == "storsync: no repository 'no-such-repository'\n"


def test_approve_and_reject_a_halt(served: tuple[Api, str]) -> None:
    api, _ = served
    repository, local, remote = _established(api)
    halted = _halted(api, repository["id"], local)
    approved = _cli(served, "approve", halted["id"], "--wait")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.split()[1] == "completed"
    assert tree(remote) == tree(local) and len(tree(remote)) == 4
    again = _cli(served, "approve", halted["id"])
    assert again.returncode == 2 and "approved already" in again.stderr, again.stderr

    repository, local, remote = _established(api)
    halted = _halted(api, repository["id"], local)
    rejected = _cli(served, "reject", halted["id"])
    assert (rejected.returncode, rejected.stdout) == (0, f"{halted['id']} rejected\n")
    assert api.get(f"/api/v1/repositories/{repository['id']}").json()["status"] == "paused"
    assert len(tree(remote)) == 10  # nothing of the plan was done


def test_list_and_resolve_conflicts(served: tuple[Api, str]) -> None:
    api, _ = served
    repository, local, remote = _established(api, files=4, name="conflicted")
    write(local, "f0.txt", "local edit")
    write(remote, "f0.txt", "remote edit")
    assert api.sync(repository["id"])["conflicts"] == 1
    listed = _cli(served, "conflicts", "--repository", "conflicted")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    conflict_id, state, path, *_ = line.split()
    assert (state, path) == ("open", "f0.txt") and "copy f0.conflict-" in line
    resolved = _cli(served, "resolve", conflict_id, "--keep", "remote", "--wait")
    assert resolved.returncode == 0, resolved.stderr
    assert tree(local)["f0.txt"] == tree(remote)["f0.txt"] == b"remote edit"
    shown = _cli(served, "conflicts", "--repository", "conflicted", "--state", "all", "--json")
    [conflict] = json.loads(shown.stdout)
    assert conflict["resolution"]["keep"] == "remote"
    bad = _cli(served, "resolve", conflict_id, "--keep", "mine")
    assert bad.returncode == 2 and "Invalid value for '--keep'" in bad.stderr
    twice = _cli(served, "resolve", conflict_id, "--keep", "local")
    assert twice.returncode == 2
    assert twice.stderr == "storsync: the conflict is resolved already\n"


def test_stop_and_remove(served: tuple[Api, str]) -> None:
    api, _ = served
    repository, local, remote = _established(api, files=2, name="removed")
    done = api.sync(repository["id"])
    late = _cli(served, "stop", done["id"])  # a session that ended stays as it ended
    assert (late.returncode, late.stdout) == (0, f"{done['id']} completed\n"), late.stderr
    unknown = _cli(served, "stop", "no-such-session")
    assert unknown.returncode == 2
    assert unknown.stderr == "storsync: no session with id 'no-such-session'\n"
    removed = _cli(served, "repo-rm", "removed")
    assert (removed.returncode, removed.stdout) == (0, f"{repository['id']}\n"), removed.stderr
    assert api.get(f"/api/v1/repositories/{repository['id']}").status_code == 404
    assert len(tree(local)) == len(tree(remote)) == 2  # the files stay


def test_logout_ends_the_saved_sign_in(served: tuple[Api, str], tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "STORSYNC_PASSWORD": ADMIN_PASSWORD}
    assert _cli(served, "login", env=env).returncode == 0
    saved = json.loads((tmp_path / "config" / "storsync" / "login.json").read_text())
    out = _cli(served, "logout", env=env)
    assert out.returncode == 0 and out.stdout.startswith("logged out of "), out.stderr
    assert not (tmp_path / "config" / "storsync" / "login.json").exists()
    api, _ = served
    refresh = api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": saved["refresh_token"]}
    )
    assert refresh.status_code == 401
    after = _cli(served, "repos", env=env)
    assert after.returncode == 2 and "not logged in" in after.stderr
    assert _cli(served, "logout", env=env).stdout == "not logged in\n"


def test_following_a_session_after_a_restart(tmp_path: Path) -> None:
    # The client follows from the first event; after a restart the server's first answer
    # is a gap notice (its memory holds none of the old events), which the client once
    # took for an event and crashed on (KeyError: 'data').
    root = tmp_path / "root"
    root.mkdir()
    server = ServerProcess(service_env(tmp_path / "data", root, None), tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            api = Api(client, root, "server")
            repository, local, remote = _established(api, files=3)
        server.stop()
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            api = Api(client, root, "server")
            write(local, "after.txt", "after the restart")
            result = _cli((api, server.url), "trigger", repository["id"], "--wait")
            assert result.returncode == 0, result.stderr
            assert result.stdout.split()[1] == "completed"
            done = api.get(f"/api/v1/sessions?repositoryId={repository['id']}").json()["items"]
            watched = _cli((api, server.url), "watch", done[0]["id"])
            assert watched.returncode == 0, watched.stderr
        assert tree(remote)["after.txt"] == b"after the restart"
    finally:
        server.stop()
