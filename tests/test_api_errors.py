"""Every error of API.md sections 2-6, on each face, answered in that face's shape with the
right status: unknown and malformed ids, wrong methods, unknown routes, garbage bodies and
queries, the OAuth token endpoint's errors, characters PostgreSQL refuses. Never a 500,
never a traceback, every message one sentence (tests/api_checks.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api_checks import PLM, UNKNOWN, Face, error, new_user
from tests.api_support import ADMIN_PASSWORD, Api

HANG = 20.0  # seconds: an answer slower than this is a hang (the original PLM hung)


def _bounded(api: Api) -> dict[str, float]:
    """A timeout for a real server (the in-process client answers or raises)."""
    return {"timeout": HANG} if api.kind == "server" else {}


JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
XML = {"content-type": "text/xml"}


MANY_FIELDS = b"&".join(b"f%d=1" % i for i in range(5000))


def _multipart(boundary: str | None) -> dict[str, str]:
    return {"content-type": "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")}


# -- PLM Media Manager ------------------------------------------------------------------

PLM_MALFORMED = [
    "abc",
    "$",
    "$+",
    "$abc+def",
    f"${UNKNOWN}",
    f"{UNKNOWN}+{UNKNOWN}",
    f"${UNKNOWN}+",
    f"$+{UNKNOWN}",
    f"${UNKNOWN}+{UNKNOWN}+{UNKNOWN}",
    f"${UNKNOWN}+not-a-uuid",
    f"${UNKNOWN[:-1]}+{UNKNOWN}",
    "$é+ü",
    "$" + "a" * 5000,
    f"${UNKNOWN}%20+{UNKNOWN}",
]


def test_plm_malformed_ids_are_400_code_5(api: Api) -> None:
    for raw in PLM_MALFORMED:
        error(api.get(f"{PLM}/{raw}"), "plm", 400, 5)


def test_plm_unknown_ids_are_404_code_6(api: Api) -> None:
    for raw in (
        f"${UNKNOWN}+{UNKNOWN}",
        f"${UNKNOWN.upper()}+{UNKNOWN}",
        f"${UNKNOWN}+${UNKNOWN}",
    ):
        message = error(api.get(f"{PLM}/{raw}"), "plm", 404, 6)
        assert UNKNOWN in message.lower()


def test_plm_unknown_synchronizer_of_a_real_session(api: Api) -> None:
    repository = api.new_repository()
    created = api.post(f"{PLM}?repositoryId={repository['id']}").json()["synchronizer"]
    push = created["push"]["id"]
    error(api.get(f"{PLM}/{push}+{UNKNOWN}"), "plm", 404, 6)
    assert api.get(f"{PLM}/{created['id']}").status_code == 200


def test_plm_create_and_index_errors(api: Api) -> None:
    error(api.post(f"{PLM}?repositoryId={UNKNOWN}"), "plm", 404, 6)
    error(api.post(f"{PLM}/?repositoryId=not-a-repository"), "plm", 404, 6)
    error(api.post(f"{PLM}?repositoryId={'x' * 65}"), "plm", 400, 5)
    for query in ("limit=0", "limit=abc", "limit=1001", "limit=1.5", f"repositoryId={'x' * 65}"):
        error(api.get(f"{PLM}?{query}"), "plm", 400, 5)


def test_plm_put_and_delete_are_405_in_the_envelope_never_a_hang(api: Api) -> None:
    sync_id = f"${UNKNOWN}+{UNKNOWN}"
    for path, allowed in (
        (PLM, {"POST", "GET", "OPTIONS"}),
        (f"{PLM}/", {"POST", "GET", "OPTIONS"}),
        (f"{PLM}/{sync_id}", {"GET", "OPTIONS"}),
        (f"{PLM}/garbage", {"GET", "OPTIONS"}),
    ):
        for method in ("PUT", "DELETE", "PATCH"):
            answer = api.request(method, path, content=b'{"any": "body"}', **_bounded(api))
            error(answer, "plm", 405, 4)
            assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed
        options = api.request("OPTIONS", path, **_bounded(api))
        assert options.status_code == 204
        assert {m.strip() for m in options.headers["allow"].split(",")} == allowed


# -- Veeam ------------------------------------------------------------------------------

VEEAM_ID_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v6/BackupRepositories/{}", {}),
    ("PUT", "/v6/BackupRepositories/{}", {"json": {"description": "d"}}),
    ("DELETE", "/v6/BackupRepositories/{}", {}),
    ("POST", "/v6/BackupRepositories/{}/Sync", {}),
    ("GET", "/v6/RepositorySynchronizeSessions/{}", {}),
    ("POST", "/v6/RepositorySynchronizeSessions/{}/StopSynchronize", {}),
]
VEEAM_MALFORMED = ["xyz", "123", UNKNOWN[:-1], UNKNOWN + "0", "%20", "x" * 65, "é"]


def test_veeam_unknown_ids_are_404_resource_not_found(api: Api) -> None:
    for method, path, kw in VEEAM_ID_ROUTES:
        for spelling in (path, path.lower()):
            answer = api.request(method, spelling.format(UNKNOWN), **kw)
            error(answer, "veeam", 404, "ResourceNotFound")


def test_veeam_malformed_ids_are_400_parameter_validation_failure(api: Api) -> None:
    for method, path, kw in VEEAM_ID_ROUTES:
        for raw in VEEAM_MALFORMED:
            answer = api.request(method, path.format(raw), **kw)
            error(answer, "veeam", 400, "ParameterValidationFailure")
    for query in (
        "repositoryId=xyz",
        f"repositoryId={'x' * 65}",
        "limit=0",
        "limit=10001",
        "limit=abc",
        "offset=-1",
    ):
        answer = api.get(f"/v6/RepositorySynchronizeSessions?{query}")
        error(answer, "veeam", 400, "ParameterValidationFailure")


def test_veeam_wrong_methods_are_405(api: Api) -> None:
    for method, path, allowed in (
        ("DELETE", "/v6/RepositorySynchronizeSessions", "GET"),
        ("PATCH", "/v6/BackupRepositories", "GET, POST"),
        ("PATCH", f"/v6/BackupRepositories/{UNKNOWN}", "GET, PUT, DELETE"),
        ("GET", f"/v6/BackupRepositories/{UNKNOWN}/Sync", "POST"),
        ("GET", f"/v6/RepositorySynchronizeSessions/{UNKNOWN}/StopSynchronize", "POST"),
        ("PUT", f"/v6/RepositorySynchronizeSessions/{UNKNOWN}", "GET"),
        ("GET", "/v6/token", "POST"),
        ("DELETE", "/V6/TOKEN", "POST"),
    ):
        answer = api.request(method, path, **_bounded(api))
        error(answer, "veeam", 405, "HttpError")
        assert answer.headers["allow"] == allowed, (method, path)


# -- native -----------------------------------------------------------------------------

NATIVE_ID_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/repositories/{}", {}),
    ("PATCH", "/api/v1/repositories/{}", {"json": {"description": "d"}}),
    ("DELETE", "/api/v1/repositories/{}", {}),
    ("POST", "/api/v1/repositories/{}/sync", {}),
    ("GET", "/api/v1/sessions/{}", {}),
    ("POST", "/api/v1/sessions/{}/stop", {}),
    ("GET", "/api/v1/sessions/{}/items", {}),
    ("GET", "/api/v1/sessions/{}/conflicts", {}),
    ("PATCH", "/api/v1/users/{}", {"json": {"role": "viewer"}}),
    ("DELETE", "/api/v1/users/{}", {}),
]


def test_native_unknown_ids_are_404(api: Api) -> None:
    for method, path, kw in NATIVE_ID_ROUTES:
        for raw in (UNKNOWN, "xyz", "$abc+def", "é", "%20"):
            error(api.request(method, path.format(raw), **kw), "native", 404, "not_found")
        error(api.request(method, path.format("x" * 65), **kw), "native", 400, "invalid")


def test_native_unknown_token_is_404_for_its_owner(api: Api) -> None:
    _, viewer = new_user(api, "viewer")
    answer = api.request("DELETE", f"/api/v1/tokens/{UNKNOWN}", token=viewer)
    error(answer, "native", 404, "not_found")


def test_native_unknown_token_is_404_for_an_admin(api: Api) -> None:
    error(api.request("DELETE", f"/api/v1/tokens/{UNKNOWN}"), "native", 404, "not_found")


def test_native_wrong_methods_are_405(api: Api) -> None:
    for method, path, allowed in (
        ("PUT", "/api/v1/repositories", "GET, POST"),
        ("DELETE", "/api/v1/repositories", "GET, POST"),
        ("PUT", f"/api/v1/repositories/{UNKNOWN}", "GET, PATCH, DELETE"),
        ("GET", f"/api/v1/repositories/{UNKNOWN}/sync", "POST"),
        ("DELETE", "/api/v1/sessions", "GET"),
        ("PUT", f"/api/v1/sessions/{UNKNOWN}", "GET"),
        ("GET", f"/api/v1/sessions/{UNKNOWN}/stop", "POST"),
        ("POST", "/api/v1/events", "GET"),
        ("GET", "/api/v1/auth/token", "POST"),
        ("PUT", "/api/v1/me", "GET"),
        ("PUT", "/api/v1/users", "GET, POST"),
        ("POST", "/healthz", "GET"),
        ("POST", "/metrics", "GET"),
    ):
        answer = api.request(method, path, **_bounded(api))
        error(answer, "native", 405, "method_not_allowed")
        assert answer.headers["allow"] == allowed, (method, path)


def test_unknown_routes_are_404_in_each_face(api: Api) -> None:
    for path in (
        "/api/media-manager/v0/nothing",
        "/api/media-manager/v0/storage",
        f"{PLM}/{UNKNOWN}/more",
    ):
        for method in ("GET", "POST"):
            error(api.request(method, path), "plm", 404, 4)
    for path in ("/v6", "/v6/Nothing", "/V6/NOTHING/at/all", f"/v6/BackupRepositories/{UNKNOWN}/x"):
        for method in ("GET", "POST"):
            error(api.request(method, path), "veeam", 404, "ResourceNotFound")
    for path in ("/nothing", "/api/v1", "/api/v2/repositories", "/api/v1/nothing"):
        for method in ("GET", "POST", "DELETE"):
            error(api.request(method, path), "native", 404, "not_found")


# -- garbage bodies ---------------------------------------------------------------------

# Each route that reads a body, with its face and the body's string fields.
BODY_ROUTES: list[tuple[str, str, Face, list[str]]] = [
    ("POST", "/api/v1/repositories", "native", ["name", "localPath", "remote"]),
    ("PATCH", "/api/v1/repositories/{repository}", "native", ["name", "description"]),
    ("POST", "/api/v1/users", "native", ["name", "password"]),
    ("PATCH", "/api/v1/users/{user}", "native", ["password"]),
    ("POST", "/api/v1/api-keys", "native", ["label"]),
    ("POST", "/api/v1/auth/token", "native", ["username", "password"]),
    ("POST", "/api/v1/auth/refresh", "native", ["refresh_token"]),
    ("POST", "/v6/BackupRepositories", "veeam", ["name", "path", "remote"]),
    ("PUT", "/v6/BackupRepositories/{repository}", "veeam", ["name", "description"]),
]


def _nested(field: str, leaf: str, depth: int = 900) -> bytes:
    return f'{{"{field}": {"[" * depth}{leaf}{"]" * depth}}}'.encode()


def _garbage(fields: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Bodies no route may accept, each named."""
    deep = "[" * 100_000 + "]" * 100_000
    return [
        ("not JSON", {"content": b"name=x, not json", "headers": JSON}),
        ("empty", {"content": b"", "headers": JSON}),
        ("empty, no type", {"content": b""}),
        ("array", {"json": [1, 2, 3]}),
        ("string", {"json": "a string"}),
        ("number", {"json": 42}),
        ("null", {"json": None}),
        ("wrong types", {"json": {f: {"nested": [None, 1.5, {"x": []}]} for f in fields}}),
        ("numbers", {"json": dict.fromkeys(fields, 12345)}),
        ("huge values", {"json": dict.fromkeys(fields, "x" * 200_000)}),
        ("deep nesting", {"content": deep.encode(), "headers": JSON}),
        ("deep objects", {"content": b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "headers": JSON}),
        ("huge number", {"content": f'{{"{fields[0]}": 1{"0" * 5000}}}'.encode(), "headers": JSON}),
        ("NaN", {"content": f'{{"{fields[0]}": NaN}}'.encode(), "headers": JSON}),
        ("invalid UTF-8", {"content": b'{"name": "\xff\xfe\xfa"}', "headers": JSON}),
        ("lone surrogate", {"content": f'{{"{fields[0]}": "\\ud800"}}'.encode(), "headers": JSON}),
        ("NUL", {"json": dict.fromkeys(fields, "a\u0000b")}),
        # As deep as the JSON parser still takes: what reads the body must not recurse.
        ("nested 900 deep", {"content": _nested(fields[0], '"x"'), "headers": JSON}),
        ("NUL 900 deep", {"content": _nested(fields[0], '"a\\u0000b"'), "headers": JSON}),
        ("XML", {"content": b"<repository><name>x</name></repository>", "headers": XML}),
        ("form", {"content": f"{fields[0]}=x".encode(), "headers": FORM}),
        ("multipart garbage", {"content": b"--b\r\ngarbage", "headers": _multipart("b")}),
        ("unknown fields only", {"json": {"no_such_field": 1, "nor_this": "x"}}),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "face", "fields"),
    BODY_ROUTES,
    ids=[f"{m} {p}" for m, p, _, _ in BODY_ROUTES],
)
def test_garbage_bodies_are_400(
    api: Api, method: str, path: str, face: Face, fields: list[str]
) -> None:
    repository = api.new_repository()
    me = api.get("/api/v1/me").json()
    target = path.format(repository=repository["id"], user=me["id"])
    for name, kw in _garbage(fields):
        if name == "unknown fields only" and method in ("PATCH", "PUT") and face == "veeam":
            continue  # Veeam clients send fields we do not use: ignored, a valid no-op
        answer = api.request(method, target, **_bounded(api), **kw)
        assert answer.status_code == 400, f"{name}: {answer.status_code} {answer.text[:300]}"
        error(answer, face, 400)
    # Nothing changed behind the errors.
    assert api.get(f"/api/v1/repositories/{repository['id']}").json() == repository
    assert api.get("/api/v1/me").json() == me


def test_huge_body_is_refused(api: Api) -> None:
    body = json.dumps(
        {"name": "x", "localPath": "/x", "remote": "/y", "description": "d" * 5_000_000}
    )
    answer = api.request("POST", "/api/v1/repositories", content=body.encode(), headers=JSON)
    assert answer.status_code in (400, 413), answer.text[:300]
    error(answer, "native", answer.status_code)


# -- queries ----------------------------------------------------------------------------


def test_garbage_queries_are_400(api: Api) -> None:
    session = api.sync(api.new_repository()["id"])
    for path in (
        "/api/v1/sessions?limit=abc",
        "/api/v1/sessions?limit=0",
        "/api/v1/sessions?limit=1001",
        f"/api/v1/sessions?limit={10**30}",
        "/api/v1/sessions?offset=-1",
        f"/api/v1/sessions?offset={10**10}",
        "/api/v1/sessions?state=bogus",
        f"/api/v1/sessions?repositoryId={'x' * 65}",
        "/api/v1/events?since=-1",
        f"/api/v1/events?since={2**63}",
        "/api/v1/events?since=1e3",
        "/api/v1/events?limit=1.5",
        "/api/v1/events?timeout=-1",
        "/api/v1/events?timeout=301",
        "/api/v1/events?timeout=nan",
        "/api/v1/events?" + "&".join(f"type=t{i}" for i in range(65)),
        f"/api/v1/sessions/{session['id']}/items?after={2**31}",
        f"/api/v1/sessions/{session['id']}/items?after=-1",
        f"/api/v1/sessions/{session['id']}/items?kind={'k' * 33}",
        f"/api/v1/sessions/{session['id']}/conflicts?after={10**20}",
        f"/api/v1/sessions/{session['id']}/conflicts?limit=0",
    ):
        error(api.get(path, headers={"Accept": "application/json"}), "native", 400, "invalid")
    # The largest cursor is still a valid one.
    last = f"/api/v1/sessions/{session['id']}/items?after={2**31 - 1}"
    assert api.get(last).json()["items"] == []
    error(
        api.get("/api/v1/events", headers={"Last-Event-ID": "abc", "Accept": "text/event-stream"}),
        "native",
        400,
        "invalid",
    )


# -- NUL: what PostgreSQL refuses in text ------------------------------------------------


def test_nul_characters_are_400_on_every_face(api: Api) -> None:
    repository = api.new_repository()
    rid = repository["id"]
    for method, path in (
        ("GET", "/api/v1/repositories/%00"),
        ("GET", "/api/v1/repositories/a%00b"),
        ("GET", "/api/v1/sessions/%00"),
        ("GET", "/api/v1/sessions/%00/items"),
        ("POST", "/api/v1/sessions/%00/stop"),
        ("POST", "/api/v1/repositories/%00/sync"),
        ("DELETE", "/api/v1/users/%00"),
        ("DELETE", "/api/v1/tokens/%00"),
        ("GET", "/api/v1/sessions?repositoryId=%00"),
        ("GET", "/api/v1/events?repositoryId=a%00&sessionId=%00&type=%00"),
        ("GET", f"/api/v1/sessions/{UNKNOWN}/items?kind=%00"),
    ):
        error(api.request(method, path), "native", 400, "invalid")
    for method, path in (
        ("GET", f"{PLM}?repositoryId=%00"),
        ("POST", f"{PLM}?repositoryId=%00"),
        ("GET", f"{PLM}/$%00+%00"),
    ):
        error(api.request(method, path), "plm", 400, 5)
    for method, path in (
        ("GET", "/v6/BackupRepositories/%00"),
        ("GET", "/v6/RepositorySynchronizeSessions?repositoryId=%00"),
    ):
        error(api.request(method, path), "veeam", 400, "ParameterValidationFailure")
    for method, path, body in (
        ("PATCH", f"/api/v1/repositories/{rid}", {"description": "a\u0000b"}),
        ("POST", "/api/v1/api-keys", {"label": "a\u0000b"}),
        ("POST", "/api/v1/users", {"name": "nul", "password": "a\u0000bcdefghij"}),
        ("POST", "/api/v1/auth/token", {"username": "a\u0000b", "password": "x"}),
        ("POST", "/api/v1/auth/refresh", {"refresh_token": "a\u0000b"}),
    ):
        error(api.request(method, path, json=body), "native", 400, "invalid")
    answer = api.request("PUT", f"/v6/BackupRepositories/{rid}", json={"description": "a\u0000"})
    error(answer, "veeam", 400, "ParameterValidationFailure")
    for form in (
        {"username": "a\u0000b", "password": "x"},
        {"grant_type": "refresh_token", "refresh_token": "a\u0000b"},
    ):
        error(api.client.post("/v6/token", data=form), "oauth", 400, "invalid_request")
    assert api.get(f"/api/v1/repositories/{rid}").json() == repository


def test_control_characters_in_paths_are_400(api: Api) -> None:
    """Not an id; and without the check ``/x%0A`` would be routed as ``/x``."""
    for char in ("%0A", "%0D", "%09", "%1F", "%7F"):
        cases: list[tuple[str, str, Face, int | str]] = [
            ("GET", f"/api/v1/repositories{char}", "native", "invalid"),
            ("GET", f"/api/v1/repositories/{char}", "native", "invalid"),
            ("POST", f"/api/v1/repositories/{UNKNOWN}/sync{char}", "native", "invalid"),
            ("GET", f"{PLM}/{char}", "plm", 5),
            ("POST", f"{PLM}{char}", "plm", 5),
            ("GET", f"/v6/BackupRepositories{char}", "veeam", "ParameterValidationFailure"),
        ]
        for method, path, face, code in cases:
            error(api.request(method, path), face, 400, code)


# -- the token endpoints ----------------------------------------------------------------


def test_oauth_token_endpoint_errors(api: Api) -> None:
    def token(**kw: Any) -> Any:
        return api.client.post("/v6/token", **kw)

    good = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
    for path in ("/v6/token", "/V6/Token"):
        answer = api.client.post(path, data={**good, "password": "wrong password"})
        error(answer, "oauth", 400, "invalid_grant")
    cases: list[tuple[str, dict[str, Any]]] = [
        ("invalid_grant", {"data": {**good, "username": "nobody-at-all"}}),
        ("invalid_grant", {"json": {**good, "password": "wrong password"}}),
        ("invalid_grant", {"data": {"grant_type": "refresh_token", "refresh_token": "ss_forged"}}),
        ("invalid_grant", {"data": {**good, "password": "x" * 100_000}}),
        ("unsupported_grant_type", {"data": {**good, "grant_type": "client_credentials"}}),
        ("unsupported_grant_type", {"data": {"grant_type": "x" * 10_000}}),
        ("unsupported_grant_type", {"json": {**good, "grant_type": "authorization_code"}}),
        ("invalid_request", {"data": {"grant_type": "password"}}),
        ("invalid_request", {"data": {"grant_type": "password", "username": "admin"}}),
        ("invalid_request", {"data": {"grant_type": "password", "password": "x"}}),
        ("invalid_request", {"data": {"grant_type": "refresh_token"}}),
        ("invalid_request", {"data": {}}),
        ("invalid_request", {}),
        ("invalid_request", {"json": [good]}),
        ("invalid_request", {"json": "grant_type=password"}),
        ("invalid_request", {"json": {"grant_type": 5, "username": ["admin"], "password": {}}}),
        ("invalid_request", {"content": b"{not json", "headers": JSON}),
        ("invalid_request", {"content": b"[" * 100_000, "headers": JSON}),
        ("invalid_request", {"content": b"\xff\xfe\x00", "headers": JSON}),
        ("invalid_request", {"content": b"garbage\xff", "headers": FORM}),
        ("invalid_request", {"content": b"%%%&&&===", "headers": FORM}),
        ("invalid_request", {"content": b"garbage", "headers": _multipart("xyz")}),
        ("invalid_request", {"content": b"garbage", "headers": _multipart(None)}),
        ("invalid_request", {"content": b"a=" + b"x" * 2_000_000, "headers": FORM}),
        ("invalid_request", {"content": MANY_FIELDS, "headers": FORM}),
        ("invalid_request", {"content": b"<token/>", "headers": XML}),
    ]  # fmt: skip
    for expected, kw in cases:
        error(token(**kw), "oauth", 400, expected)
    # The native token endpoints answer in the native shape.
    for body in (
        {"username": "admin", "password": "wrong password"},
        {"username": "nobody", "password": "x"},
    ):
        error(api.client.post("/api/v1/auth/token", json=body), "native", 401, "unauthorized")
    error(
        api.client.post("/api/v1/auth/refresh", json={"refresh_token": "ss_forged"}),
        "native",
        401,
        "unauthorized",
    )
    for kw in (
        {"json": {}},
        {"data": good},
        {"content": b"{", "headers": JSON},
        {"json": {**good, "extra": 1}},
    ):
        error(api.client.post("/api/v1/auth/token", **kw), "native", 400, "invalid")
    # After all of that, the right password still works.
    assert token(data=good).status_code == 200
