"""Every sync setting of the command line on a repository (API.md section 7), applied by
the worker: each on its own repository beside a control repository with the defaults,
through the service (in-process and a real server, SQLite and PostgreSQL); and their
strict types and ranges, a 400 in each face's shape when wrong."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.api_checks import error
from tests.api_support import Api
from tests.conftest import trash, tree, write

DEFAULTS = {
    "mode": "two-way",
    "conflictPolicy": "keep-both",
    "excludes": [],
    "checksum": False,
    "maxDeletePercent": 50.0,
    "trashDays": 30.0,
    "transfers": 16,
}


def _pair(api: Api, **settings: Any) -> tuple[dict[str, Any], Path, Path]:
    repository = api.new_repository(**settings)
    return repository, Path(repository["localPath"]), Path(repository["remote"])


def _synced(api: Api, repository: dict[str, Any]) -> dict[str, Any]:
    session = api.sync(repository["id"])
    assert session["state"] in ("completed", "failed", "partial", "halted"), session
    return session


def test_settings_are_shown_back_with_their_defaults(api: Api) -> None:
    control = api.new_repository()
    assert {k: control[k] for k in DEFAULTS} == DEFAULTS
    chosen = {
        "mode": "push-only",
        "conflictPolicy": "newer",
        "excludes": ["*.tmp"],
        "checksum": True,
        "maxDeletePercent": 80,
        "trashDays": 0,
        "transfers": 3,
    }
    made = api.new_repository(**chosen)
    assert {k: made[k] for k in chosen} == chosen
    veeam = api.get(f"/v6/BackupRepositories/{made['id']}").json()
    assert {k: veeam[k] for k in chosen} == chosen
    changed = api.request("PATCH", f"/api/v1/repositories/{made['id']}", json={"transfers": 5})
    assert changed.status_code == 200, changed.text
    assert changed.json()["transfers"] == 5 and changed.json()["checksum"] is True
    put = api.request("PUT", f"/v6/BackupRepositories/{made['id']}", json={"trashDays": 7.5})
    assert put.status_code == 200, put.text
    assert put.json()["trashDays"] == 7.5 and put.json()["transfers"] == 5


def _same_size_edit_with_the_old_stamp(path: Path, data: bytes) -> None:
    """Rewrite a file in place (same inode) with other bytes of the same size, and give it
    back its mtime: nothing but its content tells it changed."""
    before = path.stat()
    with open(path, "r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )


def test_checksum_finds_an_edit_that_size_and_mtime_hide(api: Api) -> None:
    pairs = {"checksum": _pair(api, checksum=True), "control": _pair(api)}
    for repository, local, _ in pairs.values():
        write(local, "a.txt", b"first version")
        assert _synced(api, repository)["pushed"] == 1
        _same_size_edit_with_the_old_stamp(local / "a.txt", b"other version")
    for name, (repository, _, remote) in pairs.items():
        session = _synced(api, repository)
        assert session["state"] == "completed", session
        if name == "checksum":
            assert session["pushed"] == 1
            assert tree(remote) == {"a.txt": b"other version"}
        else:
            assert session["pushed"] == 0
            assert tree(remote) == {"a.txt": b"first version"}


def test_conflict_policy_local_makes_the_local_version_win(api: Api) -> None:
    pairs = {"local": _pair(api, conflictPolicy="local"), "control": _pair(api)}
    for repository, local, remote in pairs.values():
        write(local, "a.txt", "base")
        _synced(api, repository)
        write(local, "a.txt", "local edit")
        write(remote, "a.txt", "remote edit, longer")
    for name, (repository, local, remote) in pairs.items():
        session = _synced(api, repository)
        assert session["state"] == "completed" and session["conflicts"] == 1, session
        if name == "local":
            assert tree(local) == tree(remote) == {"a.txt": b"local edit"}
            assert trash(remote)["a.txt"] == [b"remote edit, longer"]
        else:
            copies = {p for p in tree(local) if ".conflict-" in p}
            assert len(copies) == 1 and tree(local) == tree(remote)
            assert tree(local)["a.txt"] == b"local edit"


def test_max_delete_percent_lets_a_larger_deletion_through(api: Api) -> None:
    pairs = {"80": _pair(api, maxDeletePercent=80), "control": _pair(api)}
    for repository, local, _ in pairs.values():
        for i in range(10):
            write(local, f"f{i}.txt", f"file {i}")
        _synced(api, repository)
        for i in range(7):  # 70% of the files
            (local / f"f{i}.txt").unlink()
    for name, (repository, local, remote) in pairs.items():
        session = _synced(api, repository)
        if name == "80":
            assert session["state"] == "completed" and session["deletedRemote"] == 7, session
            assert tree(remote) == tree(local) and len(tree(remote)) == 3
        else:
            assert session["state"] == "halted", session  # waits for approval, changed nothing
            assert "50% limit" in session["error"]
            assert len(tree(remote)) == 10


def test_trash_days_zero_keeps_no_replaced_version(api: Api) -> None:
    pairs = {"0": _pair(api, trashDays=0), "control": _pair(api)}
    for repository, local, _ in pairs.values():
        write(local, "a.txt", "version one")
        write(local, "b.txt", "to be deleted")
        _synced(api, repository)
        write(local, "a.txt", "version two, replacing one")
        (local / "b.txt").unlink()
    for name, (repository, _local, remote) in pairs.items():
        session = _synced(api, repository)
        assert session["state"] == "completed", session
        assert tree(remote) == {"a.txt": b"version two, replacing one"}
        if name == "0":
            assert trash(remote) == {}
        else:
            assert trash(remote) == {"a.txt": [b"version one"], "b.txt": [b"to be deleted"]}


# -- strict types and ranges, on each face that edits repositories ------------------------

WRONG = [
    ("checksum", "yes"),
    ("checksum", 1),
    ("conflictPolicy", "mine"),
    ("conflictPolicy", 2),
    ("maxDeletePercent", "80"),
    ("maxDeletePercent", True),
    ("maxDeletePercent", -1),
    ("maxDeletePercent", 100.5),
    ("trashDays", "30"),
    ("trashDays", -0.5),
    ("trashDays", False),
    ("transfers", 8.0),
    ("transfers", "8"),
    ("transfers", 0),
    ("transfers", 257),
    ("transfers", True),
    ("excludes", "*.tmp"),
    ("excludes", [1]),
    ("excludes", [""]),
    ("mode", "sideways"),
]


def _body(folder: Path, field: str, value: object, *, veeam: bool) -> dict[str, Any]:
    where = "path" if veeam else "localPath"
    return {
        "name": folder.name,
        where: str(folder / "local"),
        "remote": str(folder / "remote"),
        field: value,
    }


@pytest.mark.parametrize(("field", "value"), WRONG)
def test_a_wrong_type_or_range_is_a_400_in_each_face(api: Api, field: str, value: object) -> None:
    folder = api.root / f"wrong-{field}"
    native = api.post("/api/v1/repositories", json=_body(folder, field, value, veeam=False))
    assert field in error(native, "native", 400, "invalid")
    veeam = api.post("/v6/BackupRepositories", json=_body(folder, field, value, veeam=True))
    assert field in error(veeam, "veeam", 400, "ParameterValidationFailure")
    existing = api.new_repository()
    path = f"/api/v1/repositories/{existing['id']}"
    patched = api.request("PATCH", path, json={field: value})
    assert field in error(patched, "native", 400, "invalid")
    put = api.request("PUT", f"/v6/BackupRepositories/{existing['id']}", json={field: value})
    assert field in error(put, "veeam", 400, "ParameterValidationFailure")
    # Nothing was made or changed.
    assert not (folder / "local").exists()
    assert {k: api.get(path).json()[k] for k in DEFAULTS} == DEFAULTS
