"""Records stored by the version before typed jobs and events are read as they were meant:
a repository whose remote options were sealed with its credentials gets them apart at the
next start, and an event stored in the old camelCase shape is served unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from storsync.api.app import create_app
from storsync.config import Settings, load_settings
from storsync.service.core import Service
from storsync.service.repositories import RepositorySpec
from storsync.state import schema
from tests.api_support import ADMIN_PASSWORD, service_env


def _settings(tmp_path: Path) -> Settings:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    return load_settings({}, service_env(tmp_path / "data", root, None))


def test_options_sealed_with_the_credentials_are_stored_apart_at_the_next_start(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    legacy = {
        "accessKeyId": "AKIAOLD",
        "secretAccessKey": "old-secret",
        "endpoint": "http://127.0.0.1:9000",
        "region": "eu-north-1",
    }
    service = Service.open(settings)
    try:
        spec = RepositorySpec("old", str(settings.roots[0] / "old"), "s3://bucket/prefix")
        made = service.repositories.create(spec).repository
        plain = service.repositories.create(
            RepositorySpec("plain", str(settings.roots[0] / "p"), str(settings.roots[0] / "r"))
        ).repository
        # As 0005 stored them: everything sealed together, in the API's names.
        with service.catalog.database.engine.begin() as conn:
            table = schema.repositories
            conn.execute(
                table.update()
                .where(table.c.id == made.id)
                .values(remote_options=None, credentials=service.vault.seal(legacy))
            )
            conn.execute(table.update().where(table.c.id == plain.id).values(remote_options=None))
    finally:
        service.close()

    service = Service.open(settings)
    try:
        upgraded = service.catalog.repositories.get(made.id)
        assert upgraded is not None and upgraded.has_credentials
        assert upgraded.remote_options == {"endpoint": legacy["endpoint"], "region": "eu-north-1"}
        sealed = service.catalog.repositories.credentials(made.id)
        assert sealed is not None
        assert service.vault.unseal(sealed) == {
            "access_key_id": "AKIAOLD",
            "secret_access_key": "old-secret",
        }
        other = service.catalog.repositories.get(plain.id)
        assert other is not None and other.remote_options == {} and not other.has_credentials
        assert service.catalog.repositories.without_options() == []
    finally:
        service.close()


LEGACY_EVENTS = [
    ("session.queued", {"trigger": "api"}),
    ("phase.finished", {"phase": "push", "state": "partial"}),
    ("session.progress", {"phase": "push", "rateBps": 1234, "etaSeconds": 2.5}),
    ("session.conflict", {"path": "a/b.txt"}),
    ("session.finished", {}),
]


def _snapshot(session_id: str) -> dict[str, object]:
    counters = {"filesPlanned": 3, "filesDone": 2, "bytesPlanned": 30, "bytesDone": 20}
    return {
        "id": session_id,
        "repositoryId": "r1",
        "state": "running",
        "started": True,
        "pushId": "p1",
        "pullId": "q1",
        "pushState": "running",
        "pullState": None,
        "progressPercent": 42,
        "push": counters,
        "pull": counters,
        "error": None,
    }


def test_events_stored_in_the_old_shape_are_served_unchanged(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    service = Service.open(settings)
    try:
        first = service.bus.last_id + 1
        stored = []
        with service.catalog.database.engine.begin() as conn:
            for offset, (kind, data) in enumerate(LEGACY_EVENTS):
                body = {**data, "session": _snapshot("s1")}
                stored.append((kind, body))
                conn.execute(
                    schema.events.insert().values(
                        id=first + offset,
                        ts_ns=1_700_000_000 * 10**9,
                        type=kind,
                        repository_id="r1",
                        session_id="s1",
                        data=json.dumps(body),
                    )
                )
            batch = {"kind": "pushed", "count": 2, "firstItemId": 7, "lastItemId": 8}
            conn.execute(
                schema.events.insert().values(
                    id=first + len(LEGACY_EVENTS),
                    ts_ns=1,
                    type="items.transferred",
                    repository_id="r1",
                    session_id="s1",
                    data=json.dumps(batch),
                )
            )
    finally:
        service.close()
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        token = client.post(
            "/v6/token", data={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        page = client.get(
            f"/api/v1/events?since={first - 1}&type=items.transferred"
            + "".join(f"&type={kind}" for kind, _ in LEGACY_EVENTS),
            headers={"Authorization": f"Bearer {token}"},
        ).json()
    served = [(e["type"], e["data"]) for e in page["items"]]
    assert served[: len(stored)] == stored
    # A per-file batch is served with its items (none stored here under those ids).
    assert served[-1] == ("items.transferred", {**batch, "items": []})
