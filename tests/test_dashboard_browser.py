"""The dashboard in a real browser (API.md section 8): Playwright driving Debian's
`chromium` (scripts/test.sh installs it) against a real `storsync serve` on loopback.

Each test signs in through the page as a person would, finds what it needs by the
accessible names the contract lists, and checks what the page shows against the API. The
screenshots under docs/screenshots/ are made here.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from tests.api_support import ADMIN_PASSWORD, Api, ServerProcess, serving
from tests.conftest import write
from tests.s3_server import SeaweedS3

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
HOSTILE = "<img src=x onerror=\"document.title='owned'\">"


def chromium() -> str:
    found = os.environ.get("STORSYNC_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail(
            "no chromium to drive: scripts/test.sh installs Debian's `chromium` "
            "(apt-get install -y chromium), or set STORSYNC_CHROMIUM"
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """The machine's chromium (no browser download), for this module alone: Playwright's
    sync API runs an event loop in this thread while it is started, and every later
    test's ``asyncio.run`` would refuse to run beside it (so not pytest-playwright's
    session-wide fixtures)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Api]]:
    with serving(tmp_path_factory.mktemp("dashboard")) as served:
        yield served


def sign_in(page: Page, url: str, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    page.goto(f"{url}/")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def outside(requests: list[str], url: str) -> list[str]:
    """The requests not to the service (a ``blob:`` of its origin is the page's own)."""
    return [r for r in requests if not r.removeprefix("blob:").startswith(f"{url}/")]


def test_signing_in_and_a_wrong_password(page: Page, served: tuple[ServerProcess, Api]) -> None:
    server, _ = served
    sign_in(page, server.url, password="not it")
    expect(page.get_by_role("alert")).to_contain_text("the user name or password is wrong")
    sign_in(page, server.url)
    expect(page.get_by_role("heading", name="Repositories")).to_be_visible()


def test_sync_now_shows_the_session_live_and_requests_nothing_outside(
    page: Page, served: tuple[ServerProcess, Api]
) -> None:
    server, api = served
    repository = api.new_repository(name=f"photos-{uuid.uuid4().hex[:6]}")
    for i in range(30):
        write(Path(repository["localPath"]), f"album/{i:02d}.jpg", os.urandom(2000))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    sign_in(page, server.url)
    row = page.get_by_role("row", name=re.compile(re.escape(repository["name"])))
    expect(row.locator(".status")).to_have_text("never synchronized")
    row.get_by_role("button", name="Sync now").click()
    state = row.locator(".state")
    expect(state).to_have_text("completed", timeout=30_000)
    expect(row.locator(".counts")).to_have_text("30 of 30 files")
    # The state at a glance, live: the word a person looks for, and when.
    expect(row.locator(".status")).to_have_text("in sync")
    expect(row.locator(".last-success")).to_contain_text("UTC")
    newest = api.get(f"/api/v1/repositories/{repository['id']}").json()["lastSessionId"]
    assert api.get(f"/api/v1/sessions/{newest}").json()["pushed"] == 30
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "repositories.png", full_page=True)
    state.click()
    expect(page.get_by_role("heading", name=re.compile("Session"))).to_be_visible()
    expect(page.locator("dd.state")).to_have_text("completed")
    page.screenshot(path=SCREENSHOTS / "session.png", full_page=True)
    page.get_by_role("link", name="Sessions").click()
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "sessions.png", full_page=True)
    assert outside(requests, server.url) == []


def test_a_failing_repository_shows_its_reason(
    page: Page, served: tuple[ServerProcess, Api]
) -> None:
    server, api = served
    repository = api.new_repository(name=f"broken-{uuid.uuid4().hex[:6]}")
    remote = Path(repository["remote"])
    remote.parent.mkdir(parents=True, exist_ok=True)
    remote.write_text("a file where the remote folder should be")
    failed = api.sync(repository["id"])
    assert failed["state"] == "failed" and failed["error"]
    sign_in(page, server.url)
    row = page.get_by_role("row", name=re.compile(re.escape(repository["name"])))
    expect(row.locator(".state")).to_have_text("failed")
    expect(row.locator(".status")).to_have_text("failed")
    expect(row.locator(".error")).to_have_text(failed["error"])


def test_a_viewer_gets_no_button(page: Page, served: tuple[ServerProcess, Api]) -> None:
    server, api = served
    name = f"viewer-{uuid.uuid4().hex[:6]}"
    made = api.post(
        "/api/v1/users", json={"name": name, "password": "viewer-pass-1", "role": "viewer"}
    )
    assert made.status_code == 201, made.text
    api.new_repository(name=f"seen-{uuid.uuid4().hex[:6]}")
    sign_in(page, server.url, name, "viewer-pass-1")
    expect(page.get_by_role("heading", name="Repositories")).to_be_visible()
    expect(page.get_by_role("button", name="Sync now")).to_have_count(0)


def test_names_are_text_and_nothing_runs(page: Page, served: tuple[ServerProcess, Api]) -> None:
    server, api = served
    repository = api.new_repository(name=f"{HOSTILE} {uuid.uuid4().hex[:6]}")
    write(Path(repository["localPath"]), HOSTILE.replace("/", "_"), b"x")
    session = api.sync(repository["id"])
    assert session["pushed"] == 1
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, server.url)
    expect(page.get_by_role("row", name=re.compile(re.escape(HOSTILE)))).to_be_visible()
    page.goto(f"{server.url}/sessions/{session['id']}")
    expect(page.get_by_role("cell", name=HOSTILE.replace("/", "_"))).to_be_visible()
    assert page.title() != "owned" and dialogs == []
    assert page.locator("img").count() == 0


def test_every_response_carries_the_policy(page: Page, served: tuple[ServerProcess, Api]) -> None:
    server, _ = served
    missing: list[str] = []

    def check(request: Request) -> None:
        response = request.response()
        a_page = request.resource_type in ("document", "script", "stylesheet")
        if response is not None and a_page and "content-security-policy" not in response.headers:
            missing.append(request.url)

    page.on("requestfinished", check)
    sign_in(page, server.url)
    page.get_by_role("link", name="Sessions").click()
    expect(page.get_by_role("heading", name="Sessions")).to_be_visible()
    assert missing == []


def test_a_halted_session_approved_from_its_page(
    page: Page, served: tuple[ServerProcess, Api]
) -> None:
    server, api = served
    repository = api.new_repository(name=f"halting-{uuid.uuid4().hex[:6]}")
    local, remote = Path(repository["localPath"]), Path(repository["remote"])
    for i in range(10):
        write(local, f"f{i}.txt", f"file {i}")
    assert api.sync(repository["id"])["pushed"] == 10
    for i in range(6):
        (local / f"f{i}.txt").unlink()
    halted = api.sync(repository["id"])
    assert halted["state"] == "halted"
    sign_in(page, server.url)
    page.goto(f"{server.url}/sessions/{halted['id']}")
    plan = page.get_by_role("region", name="Halted plan")
    expect(plan).to_contain_text("6 remote")
    page.screenshot(path=SCREENSHOTS / "halted.png", full_page=True)
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("dd.state")).to_have_text("completed", timeout=30_000)
    assert sorted(p.name for p in remote.glob("f*.txt")) == [f"f{i}.txt" for i in range(6, 10)]


def test_a_row_follows_its_repository_as_its_sessions_end(
    page: Page, served: tuple[ServerProcess, Api]
) -> None:
    """Last success and next run as the service says them once a session ends: a halt
    holds the schedule (no next run) until it is settled."""
    server, api = served
    repository = api.new_repository(
        name=f"nightly-{uuid.uuid4().hex[:6]}", schedule={"intervalSeconds": 86_400}
    )
    local = Path(repository["localPath"])
    for i in range(10):
        write(local, f"f{i}.txt", f"file {i}")
    sign_in(page, server.url)
    row = page.get_by_role("row", name=re.compile(re.escape(repository["name"])))
    expect(row.locator(".last-success")).to_have_text("\u2014")
    expect(row.locator(".next-run")).to_contain_text("UTC")
    row.get_by_role("button", name="Sync now").click()
    expect(row.locator(".state")).to_have_text("completed", timeout=30_000)
    shown = api.get(f"/api/v1/repositories/{repository['id']}").json()
    success = shown["lastSuccessAt"].replace("T", " ").removesuffix("Z")[:19] + " UTC"
    expect(row.locator(".last-success")).to_have_text(success)
    for i in range(6):
        (local / f"f{i}.txt").unlink()
    row.get_by_role("button", name="Sync now").click()
    expect(row.locator(".status")).to_have_text("halted", timeout=30_000)
    expect(row.locator(".next-run")).to_have_text("\u2014")
    expect(row.locator(".last-success")).to_have_text(success)


def test_a_conflict_resolved_from_the_page(page: Page, served: tuple[ServerProcess, Api]) -> None:
    server, api = served
    repository = api.new_repository(name=f"torn-{uuid.uuid4().hex[:6]}")
    local, remote = Path(repository["localPath"]), Path(repository["remote"])
    write(local, "report.txt", "first")
    api.sync(repository["id"])
    write(local, "report.txt", "local edit")
    write(remote, "report.txt", "remote edit, longer")
    assert api.sync(repository["id"])["conflicts"] == 1
    [conflict] = api.get(f"/api/v1/conflicts?repositoryId={repository['id']}").json()["items"]
    sign_in(page, server.url)
    page.get_by_role("link", name="Conflicts").click()
    row = page.get_by_role("row", name=re.compile("report.txt"))
    page.screenshot(path=SCREENSHOTS / "conflicts.png", full_page=True)
    row.get_by_role("button", name="Keep local").click()
    expect(page.locator("dd.state")).to_have_text("completed", timeout=30_000)
    assert api.get(f"/api/v1/conflicts/{conflict['id']}").json()["state"] == "resolved"
    assert (local / "report.txt").read_text() == (remote / "report.txt").read_text() == "local edit"


@pytest.mark.parametrize(
    ("path", "shown"), [("/docs", "/api/v1/repositories"), ("/redoc", "storsync")]
)
def test_the_api_docs_render_offline(
    page: Page, served: tuple[ServerProcess, Api], path: str, shown: str
) -> None:
    """Every request the page makes goes to the service (nothing else is reachable here
    anyway: a page that needed a CDN would render blank)."""
    server, _ = served
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{server.url}{path}")
    expect(page.get_by_text(shown).first).to_be_visible(timeout=20_000)
    assert outside(requests, server.url) == []


def test_an_s3_repository_added_from_the_page_syncs(
    page: Page, served: tuple[ServerProcess, Api], s3_server: SeaweedS3
) -> None:
    server, api = served
    name, prefix = f"bucket-{uuid.uuid4().hex[:6]}", f"page-{uuid.uuid4().hex[:8]}"
    local = api.root / name
    write(local, "notes/today.txt", "written before the repository existed")
    sign_in(page, server.url)
    page.get_by_role("link", name="Add a repository").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Local folder", exact=True).fill(str(local))
    page.get_by_label("Remote", exact=True).fill(f"s3://{s3_server.bucket}/{prefix}")
    page.get_by_label("S3 endpoint").fill(s3_server.endpoint)
    page.get_by_label("S3 region").fill(s3_server.region)
    page.get_by_label("Access key id").fill(s3_server.access_key)
    page.get_by_label("Secret access key").fill(s3_server.secret_key)
    page.screenshot(path=SCREENSHOTS / "add-repository.png", full_page=True)
    page.get_by_role("button", name="Save").click()
    row = page.get_by_role("row", name=re.compile(re.escape(name)))
    row.get_by_role("button", name="Sync now").click()
    expect(row.locator(".state")).to_have_text("completed", timeout=30_000)
    assert f"{prefix}/notes/today.txt" in s3_server.objects(prefix=f"{prefix}/")
    [shown] = [r for r in api.get("/api/v1/repositories").json() if r["name"] == name]
    assert shown["remoteEndpoint"] == s3_server.endpoint and shown["hasCredentials"]
    page.get_by_role("link", name=f"Edit {name}").click()
    expect(page.get_by_label("S3 endpoint")).to_have_value(s3_server.endpoint)
    expect(page.get_by_label("Secret access key")).to_have_value("")  # write-only
    page.get_by_label("Watch for changes").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Repositories")).to_be_visible()
    edited = api.get(f"/api/v1/repositories/{shown['id']}").json()
    assert edited["watch"] and edited["hasCredentials"]
