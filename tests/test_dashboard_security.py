"""The dashboard's sign-in and what guards it (API.md sections 5 and 8), over HTTP on each
backend (in-process, a real `storsync serve` on SQLite and on PostgreSQL): the session
cookie's flags, the CSRF token on every state-changing request made with it, other
origins refused, the Content-Security-Policy on every page, roles, names as text.
(Pages in a real browser: tests/test_dashboard_browser.py.)"""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from storsync.api.browser import COOKIE
from tests.api_support import ADMIN_PASSWORD, Api, serving

HOSTILE = '<img src=x onerror="document.title=1">'


def sign_in(api: Api, user: str = "admin", password: str = ADMIN_PASSWORD) -> httpx.Response:
    api.client.cookies.clear()  # the client is shared: each sign-in is given explicitly
    return api.client.post(
        "/signin", data={"username": user, "password": password}, follow_redirects=False
    )


def cookie_of(answer: httpx.Response) -> str:
    found = re.search(f"{COOKIE}=([^;]+)", answer.headers.get("set-cookie", ""))
    assert found, answer.headers
    return found.group(1)


def as_person(api: Api, secret: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """A request a browser would make: the cookie, no bearer token."""
    api.client.cookies.clear()
    headers = {"Cookie": f"{COOKIE}={secret}", **kw.pop("headers", {})}
    return api.client.request(method, path, headers=headers, follow_redirects=False, **kw)


def csrf_of(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
    assert found, page
    return found.group(1)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "action") and v]


def test_a_person_signs_in_with_a_cookie_only_the_service_can_read(api: Api) -> None:
    page = api.client.get("/signin")
    assert page.status_code == 200
    for name in ('for="username">User name<', 'for="password">Password<', ">Sign in</button>"):
        assert name in page.text
    wrong = sign_in(api, password="not the password")
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert "the user name or password is wrong" in wrong.text
    answer = sign_in(api)
    assert (answer.status_code, answer.headers["location"]) == (303, "/")
    flags = answer.headers["set-cookie"].lower()
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP on loopback; set under TLS
    home = as_person(api, cookie_of(answer), "GET", "/")
    assert home.status_code == 200 and "<h1>Repositories</h1>" in home.text
    api.client.cookies.clear()
    assert api.client.get("/", follow_redirects=False).headers["location"] == "/signin"


def test_a_state_change_with_the_cookie_needs_the_pages_token_and_origin(api: Api) -> None:
    repository = api.new_repository()
    secret = cookie_of(sign_in(api))
    csrf = csrf_of(as_person(api, secret, "GET", "/").text)
    sync = f"/api/v1/repositories/{repository['id']}/sync"
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": csrf[::-1]}):
        refused = as_person(api, secret, "POST", sync, headers=headers)
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    other = as_person(
        api, secret, "POST", sync, headers={"X-CSRF-Token": csrf, "Origin": "http://example.org"}
    )
    assert other.status_code == 403 and "another origin" in other.json()["error"]["message"]
    started = as_person(api, secret, "POST", sync, headers={"X-CSRF-Token": csrf})
    assert started.status_code == 202, started.text
    api.wait(started.json()["id"])
    # Reading needs no token; a bearer token needs none either (no cookie: no CSRF).
    assert as_person(api, secret, "GET", "/api/v1/repositories").status_code == 200
    assert api.post(sync).status_code == 202


def test_a_cookie_and_a_bearer_token_are_not_each_other(api: Api) -> None:
    secret = cookie_of(sign_in(api))
    api.client.cookies.clear()
    as_bearer = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert as_bearer.status_code == 401
    assert as_person(api, api.token, "GET", "/").headers["location"] == "/signin"
    assert as_person(api, api.token, "GET", "/api/v1/me").status_code == 401


def test_signing_out_ends_the_cookie_even_replayed(api: Api) -> None:
    secret = cookie_of(sign_in(api))
    csrf = csrf_of(as_person(api, secret, "GET", "/").text)
    refused = as_person(api, secret, "POST", "/signout", data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    out = as_person(api, secret, "POST", "/signout", data={"csrf_token": csrf})
    assert (out.status_code, out.headers["location"]) == (303, "/signin")
    assert as_person(api, secret, "GET", "/").headers["location"] == "/signin"
    assert as_person(api, secret, "GET", "/api/v1/me").status_code == 401


def test_a_viewer_sees_no_action_and_is_refused_one(api: Api) -> None:
    name = f"viewer-{uuid.uuid4().hex[:8]}"
    made = api.post(
        "/api/v1/users", json={"name": name, "password": "viewer-pass-1", "role": "viewer"}
    )
    assert made.status_code == 201, made.text
    repository = api.new_repository()
    secret = cookie_of(sign_in(api, name, "viewer-pass-1"))
    home = as_person(api, secret, "GET", "/")
    assert repository["name"] in home.text and "Sync now" not in home.text
    sync = f"/api/v1/repositories/{repository['id']}/sync"
    refused = as_person(api, secret, "POST", sync, headers={"X-CSRF-Token": csrf_of(home.text)})
    assert refused.status_code == 403 and "operator" in refused.json()["error"]["message"]
    admin = as_person(api, cookie_of(sign_in(api)), "GET", "/")
    assert "Sync now" in admin.text


def test_every_name_is_text_and_every_page_is_guarded(api: Api) -> None:
    repository = api.new_repository(name=f"{HOSTILE} {uuid.uuid4().hex[:6]}")
    session = api.sync(repository["id"])
    secret = cookie_of(sign_in(api))
    pages = [
        "/",
        "/sessions",
        f"/sessions/{session['id']}",
        f"/sessions?repository={repository['id']}",
    ]
    for path in pages:
        page = as_person(api, secret, "GET", path)
        assert page.status_code == 200, (path, page.text)
        assert HOSTILE not in page.text and "&lt;img src=x onerror=" in page.text
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        links = _Links()
        links.feed(page.text)
        assert links.urls and all(u.startswith("/") and not u.startswith("//") for u in links.urls)
        for url in links.urls:
            if url.startswith("/assets/"):
                asset = as_person(api, secret, "GET", url)
                assert asset.status_code == 200 and "content-security-policy" in asset.headers
    for path in ("/signin",):
        assert "content-security-policy" in api.client.get(path).headers


@pytest.mark.parametrize("path", ["/assets/../app.py", "/assets/dashboard.py", "/assets/x.js"])
def test_only_the_dashboards_own_assets_are_served(api: Api, path: str) -> None:
    assert api.client.get(path).status_code == 404


def test_the_event_stream_follows_a_signed_in_person(api: Api) -> None:
    if api.kind == "inprocess":
        pytest.skip("a stream is read over a real connection")
    secret = cookie_of(sign_in(api))
    api.client.cookies.clear()
    headers = {"Cookie": f"{COOKIE}={secret}", "Accept": "text/event-stream"}
    with (
        httpx.Client(base_url=str(api.client.base_url), timeout=10) as person,
        person.stream("GET", "/api/v1/events", headers=headers) as stream,
    ):
        assert stream.status_code == 200
        assert next(stream.iter_lines()).startswith("retry:")


def test_under_tls_the_cookie_is_secure(tmp_path: Path) -> None:
    """API.md section 5: Secure under TLS (a self-signed certificate here)."""
    with serving(tmp_path, args=("--tls-self-signed",), scheme="https") as (_, api):
        answer = sign_in(api)
        assert answer.status_code == 303
        assert "secure" in answer.headers["set-cookie"].lower().split("; ")
