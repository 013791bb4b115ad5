"""Repository names are unique (API.md section 7): a duplicate is a 409 on each face that
makes or renames repositories; names given twice before are renamed once by the
migration; the default repository takes a free name when its own is taken."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from storsync.config import load_settings
from storsync.service.core import Service
from storsync.service.repositories import RepositorySpec
from tests.api_support import Api, service_env
from tests.test_service_lifecycle import in_process


def _body(api: Api, name: str) -> dict[str, str]:
    folder = api.root / uuid.uuid4().hex[:8]
    return {"name": name, "localPath": str(folder / "l"), "remote": str(folder / "r")}


def test_a_duplicate_name_is_a_409_on_each_face(api: Api) -> None:
    name = f"photos-{uuid.uuid4().hex[:6]}"
    first = api.post("/api/v1/repositories", json=_body(api, name))
    assert first.status_code == 201, first.text
    again = api.post("/api/v1/repositories", json=_body(api, name))
    assert again.status_code == 409, again.text
    assert again.json()["error"]["message"] == (
        f"a repository is named {name!r} already ({first.json()['id']})"
    )
    body = _body(api, name)
    veeam = api.post(
        "/v6/BackupRepositories",
        json={"name": name, "path": body["localPath"], "remote": body["remote"]},
    )
    assert veeam.status_code == 409, veeam.text
    other = api.post("/api/v1/repositories", json=_body(api, f"{name}-other"))
    renamed = api.request(
        "PATCH", f"/api/v1/repositories/{other.json()['id']}", json={"name": name}
    )
    assert renamed.status_code == 409, renamed.text
    same = api.request("PATCH", f"/api/v1/repositories/{first.json()['id']}", json={"name": name})
    assert same.status_code == 200, same.text  # its own name is no duplicate


def test_names_given_twice_before_are_renamed_by_the_migration(tmp_path: Path) -> None:
    database = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    config = Config()
    config.set_main_option("script_location", "storsync.state:migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0010_bandwidth")
    engine.dispose()
    with sqlite3.connect(database) as conn:
        # Two of the command line's pairs, which have no name, beside the named ones.
        for i, name in enumerate(["music", "music", "music (2)", "music", "books", "", ""]):
            conn.execute(
                "INSERT INTO repositories (id, local_url, remote_url, created_ns, name) "
                "VALUES (?, ?, ?, ?, ?)",
                (f"id-{i}", f"file:///l{i}", f"file:///r{i}", i, name),
            )
    root = tmp_path / "root"
    root.mkdir()
    env = {
        **service_env(tmp_path / "data", root, None),
        "STORSYNC_DATABASE_URL": f"sqlite:///{database}",
    }
    service = Service.open(load_settings({}, env))
    service.close()  # opening it migrated the database
    with sqlite3.connect(database) as conn:
        # (beside the service's own default repository, made at its start)
        rows = conn.execute("SELECT id, name FROM repositories WHERE id LIKE 'id-%'")
        names = dict(rows.fetchall())
    # Each name keeps its oldest; a name that was unique ("music (2)") stays.
    assert names == {
        "id-0": "music",
        "id-1": "music (3)",
        "id-2": "music (2)",
        "id-3": "music (4)",
        "id-4": "books",
        "id-5": "",
        "id-6": "",
    }


def test_the_default_repository_takes_a_free_name(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (service, api):
        made = service.catalog.repositories.default()
        assert made is not None and made.name == "default"
        assert api.request("DELETE", f"/api/v1/repositories/{made.id}").status_code == 204
        taken = api.post("/api/v1/repositories", json=_body(api, "default"))
        assert taken.status_code == 201, taken.text
        again = service.repositories.ensure_default(
            RepositorySpec("default", str(tmp_path / "dl"), str(tmp_path / "dr"))
        )
        assert again.name == "default (2)"
