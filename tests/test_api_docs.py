"""/docs and /redoc (API.md sections 5 and 8): they work offline, every asset served by the
service itself and without a token, under a Content-Security-Policy of its own origin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest

from tests.api_support import Api, running_api

PAGES = ("/docs", "/redoc")
TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}
KEYWORDS = {"'self'", "'none'", "data:", "blob:"}


class _Page(HTMLParser):
    """What a page names: the URLs of its src, href and data-*-url attributes, its script
    nonces, and any inline script, style or event handler."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.nonces: list[str] = []
        self.inline: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        for name, value in found.items():
            if name in ("src", "href") or (name.startswith("data-") and name.endswith("-url")):
                self.urls.append(value)
            if name == "style" or name.startswith("on"):
                self.inline.append(f"<{tag} {name}>")
        if tag == "script":
            if "src" not in found:
                self.inline.append("<script> without src")
            if "nonce" in found:
                self.nonces.append(found["nonce"])
        if tag == "style":
            self.inline.append("<style>")


@pytest.fixture(scope="module", params=["inprocess", "server"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """In-process and a real `storsync serve` on loopback; SQLite: the docs read no data."""
    kind: str = request.param
    with running_api(kind, tmp_path_factory.mktemp(kind), None) as client:
        yield client


def _page(api: Api, path: str) -> tuple[_Page, str, str]:
    """The page as a client without a token gets it: parsed, its text, its policy."""
    answer = api.client.get(path)
    assert answer.status_code == 200, (path, answer.text)
    assert answer.headers["content-type"].startswith("text/html"), path
    return _Page(answer.text), answer.text, answer.headers.get("content-security-policy", "")


@pytest.mark.parametrize("path", PAGES)
def test_every_asset_is_served_by_the_service_without_a_token(api: Api, path: str) -> None:
    page, text, _ = _page(api, path)
    assert "http://" not in text
    assert "https://" not in text
    kinds = set()
    for url in page.urls:
        parts = urlsplit(url)
        assert not parts.scheme, url
        assert not parts.netloc, url
        answer = api.client.get(url)
        assert answer.status_code == 200, (url, answer.text[:200])
        suffix = PurePosixPath(parts.path).suffix
        assert TYPES[suffix] in answer.headers["content-type"], (url, answer.headers)
        kinds.add(suffix)
    assert kinds >= {".js", ".css", ".png", ".json"}, page.urls


def test_stylesheets_fetch_nothing_from_elsewhere(api: Api) -> None:
    for path in PAGES:
        page, _, _ = _page(api, path)
        for url in (u for u in page.urls if u.endswith((".css", ".js"))):
            if "/vendor/" in url and url.endswith(".js"):
                continue  # the vendored bundles name links to read; they fetch none
            assert not urlsplit(url).netloc, url
            text = api.client.get(url).text
            for target in re.findall(r"url\(\s*['\"]?([^'\")]*)", text):
                assert target.startswith("data:") or not urlsplit(target).scheme, (url, target)
            if url.endswith(".js"):
                assert "http://" not in text, url
                assert "https://" not in text, url


@pytest.mark.parametrize("path", PAGES)
def test_the_pages_allow_only_the_services_origin(api: Api, path: str) -> None:
    page, _, policy = _page(api, path)
    assert policy, f"{path} sends no Content-Security-Policy"
    directives = {}
    for directive in policy.split(";"):
        name, *sources = directive.split()
        directives[name] = sources
    assert directives["default-src"] == ["'self'"], policy
    for name, sources in directives.items():
        for source in sources:
            nonce = source.startswith("'nonce-") and name == "style-src"
            assert source in KEYWORDS or nonce, (name, source)
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    # Every script is a served file; nothing is inline but the nonce-bearing styles Redoc
    # injects at run time.
    assert page.inline == [], page.inline


def test_redocs_styles_carry_a_fresh_nonce(api: Api) -> None:
    nonces = []
    for _ in range(2):
        page, _, policy = _page(api, "/redoc")
        assert len(page.nonces) == 1, page.nonces
        nonce = page.nonces[0]
        assert len(nonce) >= 22, nonce
        assert f"style-src 'self' 'nonce-{nonce}'" in policy, policy
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    _, _, policy = _page(api, "/docs")
    assert "nonce" not in policy, policy


def test_static_files_stay_in_their_folder(api: Api) -> None:
    for path in ("/static/%2e%2e/docs.py", "/static/..%2fdocs.py", "/static/nothing.js"):
        answer = api.client.get(path)
        assert answer.status_code == 404, (path, answer.text[:200])
        assert "STATIC" not in answer.text
    assert api.client.get("/openapi.json").json()["info"]["title"] == "storsync"
