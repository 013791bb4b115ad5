"""The three faces over one engine: the seed pages reproduced field for field, and syncs
triggered through each face that really move files (API.md sections 2-4)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from tests.api_support import Api
from tests.conftest import tree, write

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PLM = "/api/media-manager/v0/storage/synchronizers"


def _dirs(repository: dict[str, object]) -> tuple[Path, Path]:
    return Path(str(repository["localPath"])), Path(str(repository["remote"]))


def test_native_sync_moves_files_both_ways(api: Api) -> None:
    repository = api.new_repository()
    local, remote = _dirs(repository)
    write(local, "docs/a.txt", "from local")
    write(remote, "b.txt", "from remote")
    session = api.sync(repository["id"])
    assert session["state"] == "completed", session
    assert session["progressPercent"] == 100
    assert session["push"]["state"] == "completed" and session["pull"]["state"] == "completed"
    assert (session["pushed"], session["pulled"]) == (1, 1)
    assert tree(local) == tree(remote) == {"docs/a.txt": b"from local", "b.txt": b"from remote"}
    items = api.get(f"/api/v1/sessions/{session['id']}/items").json()["items"]
    assert {(i["kind"], i["path"]) for i in items} == {
        ("pushed", "docs/a.txt"),
        ("pulled", "b.txt"),
    }


def test_plm_create_then_show_reproduce_the_seed(api: Api) -> None:
    repository = api.new_repository()
    local, remote = _dirs(repository)
    write(local, "photo.jpg", b"\xff\xd8 not really a photo")
    created = api.post(f"{PLM}/?repositoryId={repository['id']}", content=b"ignored body")
    assert created.status_code == 200, created.text
    body = created.json()
    assert set(body) == {"status", "synchronizer"} and body["status"] == 0
    sync = body["synchronizer"]
    assert set(sync) == {"id", "state", "push", "pull"}
    match = re.fullmatch(rf"\$({UUID})\+({UUID})", sync["id"])
    assert match, sync["id"]
    assert sync["state"] == "triggered"
    assert sync["push"]["id"] == f"${match[1]}" and sync["pull"]["id"] == f"${match[2]}"
    for phase in (sync["push"], sync["pull"]):
        assert set(phase) <= {"id", "state"}
        assert phase.get("state", "triggered") in ("triggered", "completed", "error")

    session_id = api.get(f"/api/v1/sessions?repositoryId={repository['id']}").json()["items"][0][
        "id"
    ]
    api.wait(session_id)
    shown = api.get(f"{PLM}/{sync['id']}")
    assert shown.status_code == 200
    assert shown.json() == {
        "status": 0,
        "synchronizer": {
            "id": sync["id"],
            "state": "completed",
            "push": {"id": sync["push"]["id"], "state": "completed"},
            "pull": {"id": sync["pull"]["id"], "state": "completed"},
        },
    }
    assert tree(remote) == {"photo.jpg": b"\xff\xd8 not really a photo"}
    index = api.get(PLM).json()
    assert index["status"] == 0 and sync["id"] in [s["id"] for s in index["synchronizers"]]


def test_plm_trailing_slash_optional_on_create(api: Api) -> None:
    repository = api.new_repository()
    for path in (PLM, f"{PLM}/"):
        answer = api.post(f"{path}?repositoryId={repository['id']}")
        assert answer.status_code == 200 and answer.json()["status"] == 0


def test_plm_failed_phase_makes_the_whole_error(api: Api) -> None:
    repository = api.new_repository()
    local, remote = _dirs(repository)
    write(local, "a.txt", "x")
    api.sync(repository["id"])
    # The remote root loses its marker: a vanished side is never taken as "delete all".
    for marker in (remote / ".storsync" / "repositories").iterdir():
        marker.unlink()
    answer = api.post(f"{PLM}?repositoryId={repository['id']}").json()["synchronizer"]
    session = api.get(f"/api/v1/sessions?repositoryId={repository['id']}").json()["items"][0]
    finished = api.wait(session["id"])
    assert finished["state"] == "failed" and "marker" in finished["error"]
    shown = api.get(f"{PLM}/{answer['id']}").json()["synchronizer"]
    assert shown["state"] == "error"
    assert "state" not in shown["push"] and "state" not in shown["pull"]  # never started
    assert tree(local) == {"a.txt": b"x"}


def test_veeam_session_reproduces_the_seed(api: Api) -> None:
    repository = api.new_repository()
    local, _ = _dirs(repository)
    write(local, "mail.pst", "x" * 1000)
    started = api.post(f"/v6/BackupRepositories/{repository['id']}/Sync")
    assert started.status_code == 200, started.text
    session = started.json()
    assert re.fullmatch(UUID, session["id"])
    assert session["repositoryId"] == repository["id"]
    assert session["state"] in ("Synchronizing", "None")
    assert isinstance(session["progressPercent"], int)
    assert session["_links"] == {
        "self": {"href": f"/v6/RepositorySynchronizeSessions/{session['id']}"},
        "repository": {"href": f"/v6/backuprepositories/{repository['id']}"},
    }
    api.wait(session["id"])
    listed = api.get("/v6/RepositorySynchronizeSessions")
    assert listed.status_code == 200
    assert listed.headers["content-type"].startswith("application/json")
    sessions = listed.json()
    assert isinstance(sessions, list)
    mine = next(s for s in sessions if s["id"] == session["id"])
    assert mine["state"] == "None" and mine["progressPercent"] == 100
    assert mine["result"] == "Success" and "error" not in mine
    one = api.get(f"/v6/RepositorySynchronizeSessions/{session['id']}").json()
    assert one == mine
    # Paths are case-insensitive, as in the original; the repository link resolves.
    assert api.get(f"/V6/repositorysynchronizesessions/{session['id']}").json() == mine
    linked = api.get(mine["_links"]["repository"]["href"])
    assert linked.status_code == 200 and linked.json()["id"] == repository["id"]


def test_veeam_list_is_newest_first_and_filtered(api: Api) -> None:
    repository = api.new_repository()
    ids = []
    for _ in range(3):
        session = api.post(f"/v6/BackupRepositories/{repository['id']}/Sync").json()
        api.wait(session["id"])
        ids.append(session["id"])
    listed = api.get(f"/v6/RepositorySynchronizeSessions?repositoryId={repository['id']}").json()
    assert [s["id"] for s in listed] == ids[::-1]
    assert [
        s["id"]
        for s in api.get(
            f"/v6/RepositorySynchronizeSessions?repositoryId={repository['id']}&offset=1&limit=1"
        ).json()
    ] == [ids[1]]


def test_veeam_stop_synchronize_answers_200_with_no_body(api: Api) -> None:
    repository = api.new_repository()
    session = api.post(f"/v6/BackupRepositories/{repository['id']}/Sync").json()
    stopped = api.post(f"/v6/RepositorySynchronizeSessions/{session['id']}/StopSynchronize")
    assert stopped.status_code == 200 and stopped.content == b""
    final = api.wait(session["id"])
    assert final["state"] in ("stopped", "completed")
    veeam = api.get(f"/v6/RepositorySynchronizeSessions/{session['id']}").json()
    assert veeam["state"] == "None"


def test_veeam_token_grants(api: Api) -> None:
    answer = api.client.post(
        "/v6/Token",
        data={"grant_type": "password", "username": "admin", "password": "admin-password-1"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "userName",
        ".issued",
        ".expires",
    }
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["userName"] == "admin"
    refreshed = api.client.post(
        "/v6/token", json={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["access_token"] != body["access_token"]
    assert api.get("/v6/BackupRepositories", token=new["access_token"]).status_code == 200
    # A refresh token is used up by its first use.
    again = api.client.post(
        "/v6/token", data={"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_veeam_backup_repositories(api: Api) -> None:
    repository = api.new_repository(description="mail archive")
    shown = api.get(f"/v6/BackupRepositories/{repository['id']}").json()
    assert shown["id"] == repository["id"] and shown["name"] == repository["name"]
    assert shown["description"] == "mail archive"
    assert shown["path"] == repository["localPath"]
    assert shown["isOutOfSync"] is True
    assert shown["_links"]["self"] == {"href": f"/v6/backuprepositories/{repository['id']}"}
    session = api.post(f"/v6/BackupRepositories/{repository['id']}/Sync").json()
    api.wait(session["id"])
    assert api.get(f"/v6/BackupRepositories/{repository['id']}").json()["isOutOfSync"] is False
    folder = api.root / uuid.uuid4().hex[:12]
    created = api.post(
        "/v6/BackupRepositories",
        json={"name": "veeam-made", "path": str(folder / "l"), "remote": str(folder / "r")},
    )
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    assert (
        api.request("PUT", f"/v6/BackupRepositories/{new_id}", json={"description": "d"}).json()[
            "description"
        ]
        == "d"
    )
    assert api.request("DELETE", f"/v6/BackupRepositories/{new_id}").status_code == 200
    assert api.get(f"/v6/BackupRepositories/{new_id}").status_code == 404


def test_credentials_never_echoed(api: Api) -> None:
    secret = "very-secret-" + uuid.uuid4().hex
    folder = api.root / uuid.uuid4().hex[:12]
    answer = api.post(
        "/api/v1/repositories",
        json={
            "name": "s3-like",
            "localPath": str(folder),
            "remote": "s3://some-bucket/prefix",
            "remoteCredentials": {
                "accessKeyId": "AKIAEXAMPLE",
                "secretAccessKey": secret,
                "endpoint": "http://127.0.0.1:9",
                "region": "us-east-1",
            },
        },
    )
    assert answer.status_code == 201, answer.text
    repository = answer.json()
    assert repository["hasCredentials"] is True
    for path in (
        "/api/v1/repositories",
        f"/api/v1/repositories/{repository['id']}",
        "/v6/BackupRepositories",
        f"/v6/BackupRepositories/{repository['id']}",
    ):
        text = api.get(path).text
        assert secret not in text and "AKIAEXAMPLE" not in text
