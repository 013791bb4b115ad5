"""Revoking a token by its value (RFC 7009, ``POST /api/v1/auth/revoke``) and the lock-out
of a user name after failed sign-ins (429 with Retry-After, in the native shape and in
OAuth 2's on /v6/token)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from storsync.api.app import create_app
from storsync.clock import SystemClock
from storsync.config import load_settings
from storsync.errors import TooManyAttempts
from storsync.service.auth import (
    FAILURES_KEPT_S,
    LOCKOUT_FIRST_S,
    LOCKOUT_MAX_S,
    LOGIN_FAILURES_ALLOWED,
    THROTTLED_NAMES_MAX,
    LoginThrottle,
)
from storsync.service.core import Service
from tests.api_checks import PLM, Face, error
from tests.api_support import ADMIN_PASSWORD, Api, service_env

PASSWORD = "password-1"
REVOKE = "/api/v1/auth/revoke"
# One route of each face, and one outside the faces' prefixes.
ROUTES: tuple[tuple[str, Face], ...] = (
    ("/api/v1/me", "native"),
    ("/v6/BackupRepositories", "veeam"),
    (PLM, "plm"),
    ("/metrics", "native"),
)


def _user(api: Api, role: str = "viewer") -> str:
    """A new user (a unique name in the shared service) with PASSWORD; its name."""
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    created = api.post("/api/v1/users", json={"name": name, "password": PASSWORD, "role": role})
    assert created.status_code == 201, created.text
    return name


def _sign_in(client: httpx.Client, name: str, password: str = PASSWORD) -> dict[str, Any]:
    answer = client.post("/api/v1/auth/token", json={"username": name, "password": password})
    assert answer.status_code == 200, answer.text
    pair: dict[str, Any] = answer.json()
    return pair


def _veeam_sign_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    return client.post(
        "/v6/token", data={"grant_type": "password", "username": name, "password": password}
    )


def _native_sign_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/token", json={"username": name, "password": password})


def _revoke(api: Api, bearer: str, **body: Any) -> httpx.Response:
    return api.post(REVOKE, token=bearer, **body)


def _works(api: Api, token: str) -> bool:
    return api.get("/api/v1/me", token=token).status_code == 200


def _refused_everywhere(api: Api, token: str) -> None:
    for path, face in ROUTES:
        message = error(api.get(path, token=token), face, 401)
        assert "revoked" in message, message


# -- revocation -------------------------------------------------------------------------


def test_a_revoked_access_token_is_refused_at_once_on_every_face(api: Api) -> None:
    name = _user(api)
    pair = _sign_in(api.client, name)
    other = _sign_in(api.client, name)
    for path, _ in ROUTES:  # each read also puts the token in the catalog's cache
        assert api.get(path, token=pair["access_token"]).status_code == 200, path
    revoked = _revoke(api, pair["access_token"], data={"token": pair["access_token"]})
    assert revoked.status_code == 200, revoked.text
    assert revoked.content == b""
    _refused_everywhere(api, pair["access_token"])
    # The refresh token of that sign-in went with it, on both token endpoints.
    refresh = {"refresh_token": pair["refresh_token"]}
    error(api.client.post("/api/v1/auth/refresh", json=refresh), "native", 401, "unauthorized")
    veeam = api.client.post("/v6/token", data={"grant_type": "refresh_token", **refresh})
    error(veeam, "oauth", 400, "invalid_grant")
    # Another sign-in of the same user, and the admin's, are untouched.
    assert _works(api, other["access_token"])
    assert _works(api, api.token)


def test_revoking_a_refresh_token_ends_its_whole_sign_in(api: Api) -> None:
    name = _user(api, "operator")
    first = _veeam_sign_in(api.client, name, PASSWORD).json()
    again = api.client.post(
        "/v6/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert again.status_code == 200, again.text
    second = again.json()
    other = _sign_in(api.client, name)
    assert _works(api, first["access_token"]) and _works(api, second["access_token"])
    body = {"token": second["refresh_token"], "token_type_hint": "refresh_token"}
    revoked = _revoke(api, first["access_token"], json=body)
    assert revoked.status_code == 200, revoked.text
    # Both access tokens of the sign-in (the first pair's and the refreshed one's).
    _refused_everywhere(api, first["access_token"])
    _refused_everywhere(api, second["access_token"])
    refreshed = api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    error(refreshed, "native", 401, "unauthorized")
    assert _works(api, other["access_token"])


def test_an_api_key_is_revoked_alone(api: Api) -> None:
    pair = _sign_in(api.client, _user(api))
    created = api.post("/api/v1/api-keys", token=pair["access_token"], json={"label": "ci"})
    assert created.status_code == 201, created.text
    key = created.json()
    assert _works(api, key["token"])
    revoked = _revoke(api, pair["access_token"], data={"token": key["token"]})
    assert revoked.status_code == 200, revoked.text
    _refused_everywhere(api, key["token"])
    assert _works(api, pair["access_token"])
    listed = api.get("/api/v1/api-keys", token=pair["access_token"]).json()
    assert [k["revoked"] for k in listed if k["id"] == key["id"]] == [True]


def test_unknown_and_dead_tokens_answer_200(api: Api) -> None:
    own = _sign_in(api.client, _user(api))
    stranger = _sign_in(api.client, _user(api))
    dead = stranger["access_token"]
    assert _revoke(api, dead, data={"token": dead}).status_code == 200
    for token in (
        "ss_forged0000000000000000000000000000000000000",
        "x",
        "x" * 1024,
        own["refresh_token"][:-1],
        dead,  # someone else's, already revoked: nothing to revoke
    ):
        for body in ({"data": {"token": token}}, {"json": {"token": token}}):
            answer = _revoke(api, own["access_token"], **body)
            assert answer.status_code == 200, (token[:10], answer.text)
    extra = {"token": "ss_unknown", "token_type_hint": "access_token", "client_id": "cli"}
    assert _revoke(api, own["access_token"], data=extra).status_code == 200
    # Revoking twice is no error either.
    assert (
        _revoke(api, own["access_token"], json={"token": own["refresh_token"]}).status_code == 200
    )
    assert _revoke(api, api.token, json={"token": own["refresh_token"]}).status_code == 200


def test_only_an_admin_revokes_another_users_token(api: Api) -> None:
    mine = _sign_in(api.client, _user(api, "operator"))
    theirs = _sign_in(api.client, _user(api))
    for token in (theirs["access_token"], theirs["refresh_token"]):
        refused = _revoke(api, mine["access_token"], data={"token": token})
        message = error(refused, "native", 403, "forbidden")
        assert "admin" in message, message
    assert _works(api, theirs["access_token"]) and _works(api, mine["access_token"])
    assert _revoke(api, api.token, data={"token": theirs["refresh_token"]}).status_code == 200
    _refused_everywhere(api, theirs["access_token"])
    assert _works(api, mine["access_token"]) and _works(api, api.token)


def test_bad_revocation_requests_are_refused_and_revoke_nothing(api: Api) -> None:
    pair = _sign_in(api.client, _user(api))
    target = {"token": pair["access_token"]}
    error(api.client.post(REVOKE, data=target), "native", 401, "unauthorized")
    error(_revoke(api, pair["refresh_token"], data=target), "native", 401, "unauthorized")
    for body in (
        {},
        {"data": {}},
        {"data": {"token": ""}},
        {"data": {"token_type_hint": "access_token"}},
        {"data": {"token": "x" * 1025}},
        {"data": {"token": "a\u0000b"}},
        {"data": {**target, "token_type_hint": "x" * 65}},
        {"json": [target]},
        {"json": {"token": 5}},
        {"json": {"token": [pair["access_token"]]}},
        {"json": {**target, "token_type_hint": None}},
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    ):
        error(_revoke(api, pair["access_token"], **body), "native", 400, "invalid")
    assert _works(api, pair["access_token"])


# -- throttling of failed sign-ins ------------------------------------------------------


def _fail(client: httpx.Client, name: str, times: int) -> None:
    """Failed sign-ins, on the native face and the Veeam face in turn."""
    for attempt in range(times):
        if attempt % 2:
            error(_veeam_sign_in(client, name, "wrong password"), "oauth", 400, "invalid_grant")
        else:
            answer = _native_sign_in(client, name, "wrong password")
            error(answer, "native", 401, "unauthorized")


def _retry_after(answer: httpx.Response) -> int:
    value = int(answer.headers["Retry-After"])
    assert 1 <= value <= LOCKOUT_MAX_S, value
    return value


def _locked_out(client: httpx.Client, name: str, password: str = PASSWORD) -> int:
    """Both faces refuse a sign-in for ``name`` with 429; the seconds Retry-After says."""
    native = _native_sign_in(client, name, password)
    message = error(native, "native", 429, "too_many_requests")
    assert "try again in" in message, message
    veeam = _veeam_sign_in(client, name, password)
    error(veeam, "oauth", 429, "slow_down")
    return min(_retry_after(native), _retry_after(veeam))


def test_failed_sign_ins_lock_the_name_out_on_both_faces(api: Api) -> None:
    name, bystander = _user(api), _user(api)
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED)
    # Even the right password is refused now, or the answer would tell a guesser.
    assert _locked_out(api.client, name) <= LOCKOUT_FIRST_S
    assert _locked_out(api.client, name, "wrong password") <= LOCKOUT_FIRST_S
    # Only that name: another user, the admin and the tokens already issued go on.
    assert _veeam_sign_in(api.client, bystander, PASSWORD).status_code == 200
    assert _works(api, api.login("admin", ADMIN_PASSWORD))


class SetClock(SystemClock):
    """The real clock, moved forward by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now_ns(self) -> int:
        return time.time_ns() + int(self.offset * 1e9)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, SetClock]]:
    """A service of its own, in-process on SQLite, on a clock the test moves."""
    tmp = tmp_path_factory.mktemp("clocked")
    root = tmp / "root"
    root.mkdir()
    settings = load_settings({}, service_env(tmp / "data", root, None))
    clock = SetClock()
    service = Service.open(settings, clock=clock)
    try:
        with TestClient(create_app(settings, service=service), base_url="http://127.0.0.1") as c:
            yield Api(c, root, "inprocess"), clock
    finally:
        service.close()


def test_the_lockout_ends_and_grows_with_each_failure(clocked: tuple[Api, SetClock]) -> None:
    api, clock = clocked
    name = _user(api)
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED)
    assert _locked_out(api.client, name) == LOCKOUT_FIRST_S
    clock.advance(LOCKOUT_FIRST_S - 1)
    assert _locked_out(api.client, name) == 1
    clock.advance(1)
    assert _native_sign_in(api.client, name, PASSWORD).status_code == 200
    # The success started the count again; past the limit, each failure doubles the wait.
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED)
    waits = []
    for _ in range(7):
        waits.append(_locked_out(api.client, name))
        clock.advance(waits[-1])
        _fail(api.client, name, 1)
    assert waits == [15, 30, 60, 120, 240, 300, 300]
    # Time alone does not reset the count while the failures go on.
    clock.advance(LOCKOUT_MAX_S)
    _fail(api.client, name, 1)
    assert _locked_out(api.client, name) == LOCKOUT_MAX_S


def test_an_unknown_name_is_locked_out_alike(clocked: tuple[Api, SetClock]) -> None:
    """Else a lock-out would tell which names exist."""
    api, _ = clocked
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED)
    assert _locked_out(api.client, name) == LOCKOUT_FIRST_S


def test_a_successful_sign_in_resets_the_count(clocked: tuple[Api, SetClock]) -> None:
    api, _ = clocked
    name = _user(api)
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED - 1)
    assert _veeam_sign_in(api.client, name, PASSWORD).status_code == 200
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED - 1)
    assert _native_sign_in(api.client, name, PASSWORD).status_code == 200


def test_failures_are_forgotten_after_a_quiet_while(clocked: tuple[Api, SetClock]) -> None:
    api, clock = clocked
    name = _user(api)
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED - 1)
    clock.advance(FAILURES_KEPT_S + 1)
    _fail(api.client, name, LOGIN_FAILURES_ALLOWED - 1)
    assert _veeam_sign_in(api.client, name, PASSWORD).status_code == 200


class StoppedClock(SystemClock):
    def __init__(self) -> None:
        self.now = 1000.0

    def now_ns(self) -> int:
        return int(self.now * 1e9)

    def monotonic(self) -> float:
        return self.now


def test_attempts_count_before_their_password_is_checked() -> None:
    """Concurrent guesses cannot slip past the limit while theirs are being checked."""
    throttle = LoginThrottle(StoppedClock())
    for _ in range(LOGIN_FAILURES_ALLOWED):
        throttle.admit("alice")
    with pytest.raises(TooManyAttempts) as refused:
        throttle.admit("alice")
    assert refused.value.retry_after_s == LOCKOUT_FIRST_S
    throttle.admit("bob")


def test_the_throttle_forgets_the_least_recently_tried_names() -> None:
    """Any string can be tried as a name: the table keeps THROTTLED_NAMES_MAX at most."""
    throttle = LoginThrottle(StoppedClock())
    for _ in range(LOGIN_FAILURES_ALLOWED):
        throttle.admit("early")
        throttle.admit("late")
    for n in range(THROTTLED_NAMES_MAX - 2):
        throttle.admit(f"name-{n}")
    with pytest.raises(TooManyAttempts):  # the table is full, and this moves to its end
        throttle.admit("early")
    throttle.admit("one-more")
    throttle.admit("late")  # the least recently tried, forgotten for "one-more"
    with pytest.raises(TooManyAttempts):
        throttle.admit("early")
