"""Security (API.md section 5): bearer tokens on every route but health, the token
endpoints and the docs; missing, forged, expired and revoked tokens; roles; the allowed
roots and private S3 endpoints; the generated admin password; hashed passwords; no token
in the server log."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from storsync.api.app import create_app
from storsync.clock import SystemClock
from storsync.config import Settings, load_settings
from storsync.service.core import Service
from tests.api_checks import PLM, UNKNOWN, Face, error, new_user
from tests.api_support import ADMIN_PASSWORD, Api, ServerProcess, service_env

PUBLIC = {
    ("GET", "/healthz"),
    ("POST", "/v6/token"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
}
SYNC_ID = f"${UNKNOWN}+{UNKNOWN}"


def _face(path: str) -> Face:
    if path.lower().startswith("/api/media-manager"):
        return "plm"
    if path.lower().startswith("/v6"):
        return "veeam"
    return "native"


def _routes() -> list[tuple[str, str]]:
    """Every HTTP route of the application (the schema's and the hidden PLM spellings),
    ids filled with well-formed ones that name nothing."""
    schema = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
    found = [(m.upper(), p) for p, item in schema["paths"].items() for m in item]
    found += [("POST", PLM), ("GET", PLM)]  # without the trailing slash, not in the schema
    filled = []
    for method, path in found:
        plm_filled = path.replace("{synchronizer_id}", SYNC_ID)
        filled.append((method, re.sub(r"\{[a-z_]+\}", UNKNOWN, plm_filled)))
    return sorted(filled)


ROUTES = _routes()


# -- a token on every route -------------------------------------------------------------


def test_the_schema_secures_every_route_but_the_public_ones() -> None:
    schema = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            public = (method.upper(), path) in PUBLIC
            assert bool(operation.get("security")) != public, (method, path)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer ss_forged0000000000000000000000000000000000000",
        "Bearer",
        "Basic YWRtaW46YWRtaW4tcGFzc3dvcmQtMQ==",
        "ss_forged-without-a-scheme",
    ],
    ids=["missing", "forged", "scheme-only", "basic", "no-scheme"],
)
def test_every_route_needs_a_valid_token(api: Api, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in ROUTES:
        answer = api.client.request(method, path, headers=headers)
        if (method, path) in PUBLIC:
            assert answer.status_code != 401, (method, path, answer.text)
            continue
        code = {"plm": 7, "veeam": "ResourceAccessDenied", "native": "unauthorized"}
        message = error(answer, _face(path), 401, code[_face(path)])
        assert "token" in message, message


def test_public_routes_answer_without_a_token(api: Api) -> None:
    assert api.client.get("/healthz").json()["status"] == "ok"
    assert api.client.get("/openapi.json").json()["info"]["title"] == "storsync"
    assert api.client.get("/docs").status_code == 200
    assert api.client.post("/v6/token", data={}).status_code == 400
    assert api.client.post("/api/v1/auth/token", json={}).status_code == 400


def test_other_token_kinds_and_places(api: Api) -> None:
    pair = api.client.post(
        "/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()
    # A refresh token is not an access token.
    for path in ("/api/v1/me", "/v6/BackupRepositories", PLM):
        error(api.get(path, token=pair["refresh_token"]), _face(path), 401)
    # The scheme is case-insensitive (RFC 7235); the token is not.
    lower = {"Authorization": f"bearer {pair['access_token']}"}
    assert api.client.get("/api/v1/me", headers=lower).status_code == 200
    changed = pair["access_token"][:-1] + ("A" if pair["access_token"][-1] != "A" else "B")
    error(api.get("/api/v1/me", token=changed), "native", 401)
    # On HTTP routes the token goes in the header only; ?access_token= is for WebSockets.
    answer = api.client.get(f"/api/v1/me?access_token={pair['access_token']}")
    error(answer, "native", 401)


def test_websocket_needs_a_token(api: Api) -> None:
    if api.kind != "server":
        pytest.skip("a real server answers the WebSocket handshake")
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    base = str(api.client.base_url).replace("http://", "ws://")
    for path in ("/notifications", "/v0/notifications", "/api/media-manager/v0/notifications"):
        for query in ("", "?access_token=ss_forged", f"?access_token={UNKNOWN}"):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{base}{path}{query}", open_timeout=10).close()
            assert refused.value.response.status_code == 401
            body = json.loads(refused.value.response.body or b"{}")
            assert body.get("status") == 1 and body.get("error_code") == 7, body
    with connect(f"{base}/notifications?access_token={api.token}", open_timeout=10) as ws:
        assert '"connection.established"' in str(ws.recv(timeout=10))


# -- revocation -------------------------------------------------------------------------


def test_revoked_api_key_is_refused_on_every_face_at_once(api: Api) -> None:
    created = api.post("/api/v1/api-keys", json={"label": "automation"})
    assert created.status_code == 201, created.text
    key = created.json()
    for path in ("/api/v1/me", "/v6/BackupRepositories", PLM, "/metrics"):
        assert api.get(path, token=key["token"]).status_code == 200, path
    listed = {k["id"]: k for k in api.get("/api/v1/api-keys").json()}
    assert listed[key["id"]]["revoked"] is False and listed[key["id"]].get("token") is None
    assert api.request("DELETE", f"/api/v1/tokens/{key['id']}").status_code == 204
    for path in ("/api/v1/me", "/v6/BackupRepositories", PLM, "/metrics"):
        message = error(api.get(path, token=key["token"]), _face(path), 401)
        assert "revoked" in message
    assert {k["id"]: k for k in api.get("/api/v1/api-keys").json()}[key["id"]]["revoked"]


def test_a_user_cannot_revoke_anothers_key(api: Api) -> None:
    key = api.post("/api/v1/api-keys", json={"label": "admin's"}).json()
    _, viewer = new_user(api, "viewer")
    answer = api.request("DELETE", f"/api/v1/tokens/{key['id']}", token=viewer)
    error(answer, "native", 404, "not_found")
    assert api.get("/api/v1/me", token=key["token"]).status_code == 200


def test_deleted_user_and_demoted_role_take_effect_at_once(api: Api) -> None:
    repository = api.new_repository()
    user_id, operator = new_user(api, "operator")
    assert api.get("/api/v1/me", token=operator).json()["role"] == "operator"
    assert api.get(f"{PLM}?limit=1", token=operator).status_code == 200  # cached now
    patched = api.request("PATCH", f"/api/v1/users/{user_id}", json={"role": "viewer"})
    assert patched.status_code == 200, patched.text
    trigger = api.post(f"/api/v1/repositories/{repository['id']}/sync", token=operator)
    error(trigger, "native", 403, "forbidden")
    assert api.request("DELETE", f"/api/v1/users/{user_id}").status_code == 204
    for path in ("/api/v1/me", "/v6/BackupRepositories", PLM):
        error(api.get(path, token=operator), _face(path), 401)


# -- roles ------------------------------------------------------------------------------


def _forbidden(api: Api, token: str, method: str, path: str, **kw: Any) -> None:
    answer = api.request(method, path, token=token, **kw)
    code = {"plm": 8, "veeam": "ResourceAccessDenied", "native": "forbidden"}[_face(path)]
    message = error(answer, _face(path), 403, code)
    assert "role" in message, message


def test_viewer_reads_but_cannot_trigger_stop_or_change(api: Api) -> None:
    rid = api.new_repository()["id"]
    session = api.sync(rid)
    # As it stands after its session (its status moves with its sessions).
    repository = api.get(f"/api/v1/repositories/{rid}").json()
    _, viewer = new_user(api, "viewer")
    for path in (
        "/api/v1/repositories",
        f"/api/v1/repositories/{rid}",
        f"/api/v1/sessions?repositoryId={rid}",
        f"/api/v1/sessions/{session['id']}",
        f"/api/v1/sessions/{session['id']}/items",
        "/api/v1/events?limit=1",
        "/metrics",
        "/v6/BackupRepositories",
        f"/v6/RepositorySynchronizeSessions/{session['id']}",
        PLM,
    ):
        assert api.get(path, token=viewer).status_code == 200, path
    folder = api.root / uuid.uuid4().hex[:12]
    new = {"name": "v", "localPath": str(folder / "l"), "remote": str(folder / "r")}
    veeam_new = {"name": "v", "path": new["localPath"], "remote": new["remote"]}
    for method, path, kw in (
        ("POST", f"/api/v1/repositories/{rid}/sync", {}),
        ("POST", f"/api/v1/sessions/{session['id']}/stop", {}),
        ("POST", "/api/v1/repositories", {"json": new}),
        ("PATCH", f"/api/v1/repositories/{rid}", {"json": {"description": "v"}}),
        ("DELETE", f"/api/v1/repositories/{rid}", {}),
        ("GET", "/api/v1/users", {}),
        ("POST", "/api/v1/users", {"json": {"name": "x", "password": "password-1"}}),
        ("POST", f"/v6/BackupRepositories/{rid}/Sync", {}),
        ("POST", f"/v6/RepositorySynchronizeSessions/{session['id']}/StopSynchronize", {}),
        ("POST", "/v6/BackupRepositories", {"json": veeam_new}),
        ("PUT", f"/v6/BackupRepositories/{rid}", {"json": {"description": "v"}}),
        ("DELETE", f"/v6/BackupRepositories/{rid}", {}),
        ("POST", f"{PLM}?repositoryId={rid}", {}),
        ("POST", f"{PLM}/?repositoryId={rid}", {}),
    ):
        _forbidden(api, viewer, method, path, **kw)
    # Nothing happened behind the refusals.
    assert api.get(f"/api/v1/repositories/{rid}").json() == repository
    sessions = api.get(f"/api/v1/sessions?repositoryId={rid}").json()["items"]
    assert [s["id"] for s in sessions] == [session["id"]]
    assert not folder.exists()


def test_operator_triggers_and_stops_but_cannot_create(api: Api) -> None:
    repository = api.new_repository()
    rid = repository["id"]
    user_id, operator = new_user(api, "operator")
    triggered = api.post(f"/api/v1/repositories/{rid}/sync", token=operator)
    assert triggered.status_code == 202, triggered.text
    stopped = api.post(f"/api/v1/sessions/{triggered.json()['id']}/stop", token=operator)
    assert stopped.status_code == 200, stopped.text
    api.wait(triggered.json()["id"])
    veeam = api.post(f"/v6/BackupRepositories/{rid}/Sync", token=operator)
    assert veeam.status_code == 200, veeam.text
    stop = f"/v6/RepositorySynchronizeSessions/{veeam.json()['id']}/StopSynchronize"
    assert api.post(stop, token=operator).status_code == 200
    api.wait(veeam.json()["id"])
    plm = api.post(f"{PLM}?repositoryId={rid}", token=operator)
    assert plm.status_code == 200 and plm.json()["status"] == 0, plm.text
    api.wait(api.get(f"/api/v1/sessions?repositoryId={rid}&limit=1").json()["items"][0]["id"])
    # As it stands after its sessions (its status moves with its sessions).
    repository = api.get(f"/api/v1/repositories/{rid}").json()
    folder = api.root / uuid.uuid4().hex[:12]
    new = {"name": "o", "localPath": str(folder / "l"), "remote": str(folder / "r")}
    for method, path, kw in (
        ("POST", "/api/v1/repositories", {"json": new}),
        ("PATCH", f"/api/v1/repositories/{rid}", {"json": {"description": "o"}}),
        ("DELETE", f"/api/v1/repositories/{rid}", {}),
        ("GET", "/api/v1/users", {}),
        ("POST", "/api/v1/users", {"json": {"name": "y", "password": "password-1"}}),
        ("PATCH", f"/api/v1/users/{user_id}", {"json": {"role": "admin"}}),
        ("DELETE", f"/api/v1/users/{user_id}", {}),
        (
            "POST",
            "/v6/BackupRepositories",
            {"json": {"name": "o", "path": new["localPath"], "remote": new["remote"]}},
        ),
        ("PUT", f"/v6/BackupRepositories/{rid}", {"json": {"description": "o"}}),
        ("DELETE", f"/v6/BackupRepositories/{rid}", {}),
    ):
        _forbidden(api, operator, method, path, **kw)
    assert api.get("/api/v1/me", token=operator).json()["role"] == "operator"
    assert api.get(f"/api/v1/repositories/{rid}").json() == repository
    assert not folder.exists()


# -- where a repository may point -------------------------------------------------------


def test_local_paths_outside_the_allowed_roots_are_refused(
    api: Api, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    inside = api.root / uuid.uuid4().hex[:12]
    inside.mkdir()
    (inside / "escape").symlink_to(outside, target_is_directory=True)
    (inside / "real").mkdir()
    (inside / "real" / "deeper").symlink_to(outside / "deeper-target")

    def create(local: str, remote: str, face: str = "native") -> httpx.Response:
        if face == "veeam":
            return api.post(
                "/v6/BackupRepositories", json={"name": "x", "path": local, "remote": remote}
            )
        return api.post(
            "/api/v1/repositories", json={"name": "x", "localPath": local, "remote": remote}
        )

    ok_remote = str(inside / "remote")
    for local in (
        str(outside / "l"),
        "/",
        "/etc",
        str(api.root.parent),
        f"{api.root}/{os.path.relpath(outside / 'l', api.root)}",  # root/../../outside/l
        str(inside / "escape"),
        str(inside / "escape" / "l"),
        str(inside / "real" / "deeper"),
        str(inside / "real" / "deeper" / "l"),
    ):
        error(create(local, ok_remote), "native", 403, "forbidden")
        error(create(local, ok_remote, "veeam"), "veeam", 403, "ResourceAccessDenied")
    ok_local = str(inside / "local")
    for remote in (
        str(outside / "r"),
        (outside / "r").as_uri(),
        str(inside / "escape" / "r"),
        (inside / "escape" / "r").as_uri(),
        "file:///etc",
    ):
        error(create(ok_local, remote), "native", 403, "forbidden")
    error(create("relative/path", ok_remote), "native", 400, "invalid")
    error(create(ok_local, "file://otherhost/x"), "native", 400, "invalid")
    # An existing repository cannot be moved out either, on either face.
    repository = api.new_repository()
    moves: list[tuple[Face, str, str, dict[str, str]]] = [
        (
            "native",
            "PATCH",
            f"/api/v1/repositories/{repository['id']}",
            {"localPath": str(outside)},
        ),
        (
            "native",
            "PATCH",
            f"/api/v1/repositories/{repository['id']}",
            {"remote": str(inside / "escape")},
        ),
        (
            "veeam",
            "PUT",
            f"/v6/BackupRepositories/{repository['id']}",
            {"path": str(inside / "escape")},
        ),
    ]
    for face, method, path, body in moves:
        error(api.request(method, path, json=body), face, 403)
    assert api.get(f"/api/v1/repositories/{repository['id']}").json() == repository
    assert sorted(p.name for p in outside.iterdir()) == [], "something was made outside"


class ManualClock(SystemClock):
    def __init__(self) -> None:
        self.ns = time.time_ns()

    def now_ns(self) -> int:
        return self.ns

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


class Strict:
    """A service of its own, in-process on SQLite, as deployed by default: no private S3
    endpoints, a 60-second token lifetime and a clock the test sets."""

    def __init__(self, client: TestClient, clock: ManualClock, root: Path) -> None:
        self.client = client
        self.clock = clock
        self.root = root

    def token(self) -> str:
        answer = self.client.post(
            "/v6/token", data={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def request(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Strict]:
    tmp = tmp_path_factory.mktemp("strict")
    root = tmp / "root"
    root.mkdir()
    env = service_env(tmp / "data", root, None)
    del env["STORSYNC_ALLOW_PRIVATE_ENDPOINTS"]
    env["STORSYNC_TOKEN_TTL_S"] = "60"
    settings = load_settings({}, env)
    clock = ManualClock()
    service = Service.open(settings, clock=clock)
    try:
        with TestClient(create_app(settings, service=service), base_url="http://127.0.0.1") as c:
            yield Strict(c, clock, root)
    finally:
        service.close()


def test_expired_tokens_are_refused_on_every_face(strict: Strict) -> None:
    pair = strict.client.post(
        "/v6/token", data={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()
    assert pair["expires_in"] == 60
    key = strict.request("POST", "/api/v1/api-keys", pair["access_token"], json={}).json()
    for path in ("/api/v1/me", "/v6/BackupRepositories", PLM):
        assert strict.request("GET", path, pair["access_token"]).status_code == 200
    strict.clock.advance(59)
    assert strict.request("GET", "/api/v1/me", pair["access_token"]).status_code == 200
    strict.clock.advance(2)
    for path in ("/api/v1/me", "/v6/BackupRepositories", PLM):
        message = error(strict.request("GET", path, pair["access_token"]), _face(path), 401)
        assert "expired" in message
    # The refresh token outlives it, once; an API key does not expire.
    refreshed = strict.client.post(
        "/v6/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert strict.request("GET", "/api/v1/me", refreshed.json()["access_token"]).status_code == 200
    strict.clock.advance(15 * 86_400)
    later = strict.client.post(
        "/v6/token",
        data={"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]},
    )
    error(later, "oauth", 400, "invalid_grant")
    assert strict.request("GET", "/api/v1/me", key["token"]).status_code == 200


PRIVATE_ENDPOINTS = [
    "http://127.0.0.1:9000",
    "http://localhost:9000",
    "http://10.1.2.3",
    "http://172.16.0.1:9000",
    "http://192.168.1.1",
    "http://169.254.169.254",
    "http://[::1]:9000",
    "http://[::ffff:127.0.0.1]:9000",
    "http://[fd00::1]",
    "http://0.0.0.0:9000",
    "http://2130706433",
    "http://127.1",
]


def test_private_s3_endpoints_are_refused_by_default(strict: Strict) -> None:
    token = strict.token()
    for endpoint in PRIVATE_ENDPOINTS:
        credentials = {"endpoint": endpoint}
        local = str(strict.root / uuid.uuid4().hex[:8])
        body = {"name": "s3", "remote": "s3://bucket/prefix", "remoteCredentials": credentials}
        native = strict.request(
            "POST", "/api/v1/repositories", token, json={**body, "localPath": local}
        )
        error(native, "native", 403, "forbidden")
        veeam = strict.request(
            "POST", "/v6/BackupRepositories", token, json={**body, "path": local}
        )
        error(veeam, "veeam", 403, "ResourceAccessDenied")
        assert not Path(local).exists()
    # A public address is fine, and a repository cannot be moved to a private one after.
    local = str(strict.root / uuid.uuid4().hex[:8])
    public = {
        "name": "s3",
        "localPath": local,
        "remote": "s3://bucket/prefix",
        "remoteCredentials": {"endpoint": "http://8.8.8.8:9000"},  # an address: no DNS needed
    }
    created = strict.request("POST", "/api/v1/repositories", token, json=public)
    assert created.status_code == 201, created.text
    moved = strict.request(
        "PATCH",
        f"/api/v1/repositories/{created.json()['id']}",
        token,
        json={"remoteCredentials": {"endpoint": "http://127.0.0.1:9000"}},
    )
    error(moved, "native", 403, "forbidden")


def test_private_s3_endpoints_with_the_setting(api: Api) -> None:
    """The shared service has allow_private_endpoints on: a loopback endpoint is fine."""
    folder = api.root / uuid.uuid4().hex[:8]
    allowed = api.post(
        "/api/v1/repositories",
        json={
            "name": "s3",
            "localPath": str(folder),
            "remote": "s3://bucket/prefix",
            "remoteCredentials": {"endpoint": PRIVATE_ENDPOINTS[0]},
        },
    )
    assert allowed.status_code == 201, allowed.text


# -- the admin password, hashes, the log ------------------------------------------------


def _server_env(tmp: Path) -> dict[str, str]:
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    env = service_env(tmp / "data", root, None)
    env["STORSYNC_LOG_LEVEL"] = "info"  # the access log too
    return env


@contextlib.contextmanager
def _serving(env: dict[str, str], log: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(env, log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _db_bytes(data: Path) -> bytes:
    """Every byte the service keeps in its data directory (database, WAL, keys)."""
    return b"".join(p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file())


def test_generated_admin_password_is_printed_once_and_stored_hashed(tmp_path: Path) -> None:
    env = _server_env(tmp_path)
    del env["STORSYNC_ADMIN_PASSWORD"]
    env["STORSYNC_ADMIN_USER"] = "boss"
    first = tmp_path / "first.log"
    secrets: list[str] = []
    with _serving(env, first) as server:
        printed = re.findall(r"created user 'boss' with password (\S+)", first.read_text())
        assert len(printed) == 1, first.read_text()
        password = printed[0]
        assert len(password) >= 16
        login = httpx.post(
            f"{server.url}/v6/token", data={"username": "boss", "password": password}
        )
        assert login.status_code == 200, login.text
        pair = login.json()
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        user = httpx.post(
            f"{server.url}/api/v1/users",
            json={"name": "alice", "password": "alice-secret-password", "role": "viewer"},
            headers=headers,
        )
        assert user.status_code == 201, user.text
        key = httpx.post(f"{server.url}/api/v1/api-keys", json={}, headers=headers).json()
        folder = tmp_path / "root" / "s3"
        repo = httpx.post(
            f"{server.url}/api/v1/repositories",
            json={
                "name": "s3",
                "localPath": str(folder),
                "remote": "s3://bucket/prefix",
                "remoteCredentials": {
                    "accessKeyId": "AKIA-HASHED-TEST",
                    "secretAccessKey": "s3-secret-value-1",
                },
            },
            headers=headers,
        )
        assert repo.status_code == 201, repo.text
        secrets = [
            password,
            "alice-secret-password",
            pair["access_token"],
            pair["refresh_token"],
            key["token"],
            "s3-secret-value-1",
        ]
    assert first.read_text().count(password) == 1
    stored = _db_bytes(tmp_path / "data")
    for secret in secrets:
        assert secret.encode() not in stored, f"{secret[:6]}... is stored in clear"
    with sqlite3.connect(tmp_path / "data" / "storsync.db") as db:
        hashes = dict(db.execute("SELECT name, password_hash FROM users"))
    assert set(hashes) == {"boss", "alice"}
    assert all(h.startswith("$argon2id$") for h in hashes.values()), hashes
    # The second start neither makes nor prints a password; the first one still works.
    second = tmp_path / "second.log"
    with _serving(env, second) as server:
        again = httpx.post(
            f"{server.url}/v6/token", data={"username": "boss", "password": password}
        )
        assert again.status_code == 200, again.text
    assert "created user" not in second.read_text() and password not in second.read_text()


def test_tokens_never_reach_the_server_log(tmp_path: Path) -> None:
    env = _server_env(tmp_path)
    log = tmp_path / "server.log"
    with _serving(env, log) as server:
        url = server.url
        pair = httpx.post(
            f"{url}/v6/token", data={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()
        access, refresh = pair["access_token"], pair["refresh_token"]
        headers = {"Authorization": f"Bearer {access}"}
        key = httpx.post(f"{url}/api/v1/api-keys", json={}, headers=headers).json()["token"]
        for query in (
            f"?access_token={access}",
            f"?limit=1&access_token={access}",
            f"?ACCESS_TOKEN={key}",
            f"?access%5Ftoken={access}",
            f"?token={refresh}",
        ):
            httpx.get(f"{url}/api/v1/me{query}", headers=headers)
            httpx.get(f"{url}/api/v1/me{query}")  # refused: logged as a 401
        httpx.get(f"{url}/api/v1/sessions/{access}", headers=headers)
        httpx.post(f"{url}/api/v1/auth/refresh", json={"refresh_token": refresh})
        httpx.get(f"{url}/v6/BackupRepositories", headers={"Authorization": f"Bearer {key}"})
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://")
        with connect(f"{ws_url}/notifications?access_token={access}", open_timeout=10) as ws:
            ws.recv(timeout=10)
        with contextlib.suppress(Exception):
            connect(f"{ws_url}/notifications?access_token={refresh}", open_timeout=10).close()
    text = log.read_text()
    assert "/api/v1/me?access_token=[redacted]" in text, text[-3000:]
    assert "/notifications?access_token=[redacted]" in text, text[-3000:]
    for secret in (access, refresh, key, ADMIN_PASSWORD):
        assert secret not in text, f"{secret[:6]}... is in the log"
