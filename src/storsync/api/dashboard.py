"""The dashboard (API.md section 8): pages for people, rendered on the server.

A person signs in with the service's users; the session cookie and the CSRF token are
``storsync.api.browser``'s. Pages are plain HTML from Jinja2 templates, autoescaped, so
every name (a repository's, a file's, an error's) is text; the one script of the
dashboard (``assets/dashboard.js``) sends actions to the API with the CSRF token and
follows the event stream to show states and progress live. Every page and asset is
served by storsync with a Content-Security-Policy that allows its own origin alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from storsync.api import browser, plots
from storsync.api.render import iso
from storsync.errors import Forbidden, TooManyAttempts, Unauthorized, UnknownObject
from storsync.model import ConflictState, RepositoryStatus, SessionState
from storsync.service.core import Service
from storsync.service.hub import EventHub
from storsync.service.repositories import RepositoryView
from storsync.state.records import ConflictQuery, Role, Session, SessionQuery, Token
from storsync.units import size

router = APIRouter(include_in_schema=False)

HEADERS = {
    "Content-Security-Policy": browser.policy(),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it the browser sends "Origin: null" on its own forms.
    "Referrer-Policy": "same-origin",
}
ASSETS = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
HISTORY = 100  # sessions on the history page
HISTORY_PLOTTED = 50  # of which, for one repository, in its plot
ITEMS = 200  # log items on a session's page

_templates = Environment(
    loader=PackageLoader("storsync.api", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["size"] = size


@dataclass(frozen=True)
class _Visitor:
    token: Token
    secret: str
    # The last event before the page read what it shows: its script follows the events
    # from there, so that a session ending while the page loads is not missed.
    since: int = 0

    @property
    def csrf(self) -> str:
        return browser.csrf_token(self.secret)

    @property
    def can_operate(self) -> bool:
        return self.token.user.role.allows(Role.OPERATOR)

    @property
    def can_admin(self) -> bool:
        return self.token.user.role.allows(Role.ADMIN)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _visitor(request: Request) -> _Visitor | None:
    """Who the session cookie signs in (None: nobody, or a sign-in that ended)."""
    secret = browser.cookie_secret(request)
    if secret is None:
        return None
    accounts = _service(request).accounts
    token = accounts.recently_verified(secret, cookie=True)
    if token is None:
        try:
            token = accounts.authenticate(secret, cookie=True)
        except Unauthorized:
            return None
    return _Visitor(token, secret)


class _NobodySignedIn(Exception):
    """A page asked for without a live sign-in: the answer is the sign-in page."""


def _signed_in(request: Request) -> _Visitor:
    visitor = _visitor(request)
    if visitor is None:
        raise _NobodySignedIn
    hub: EventHub = request.app.state.hub
    return dataclasses.replace(visitor, since=hub.last_id)


# What a page takes: the person signed in (else the sign-in page answers).
Visitor = Annotated[_Visitor, Depends(_signed_in)]


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.add_exception_handler(_NobodySignedIn, lambda request, exc: _to_sign_in())


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers={**HEADERS, "Cache-Control": "no-store"})


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303, headers=HEADERS)


def _visited(
    name: str, visitor: _Visitor, page: str, status: int = 200, **context: Any
) -> HTMLResponse:
    return _page(
        name,
        status,
        user=visitor.token.user,
        csrf=visitor.csrf,
        events_since=visitor.since,
        can_operate=visitor.can_operate,
        can_admin=visitor.can_admin,
        page=page,
        **context,
    )


# -- signing in -------------------------------------------------------------------------


@router.get("/signin")
def sign_in_page(request: Request) -> Response:
    if _visitor(request) is not None:
        return RedirectResponse("/", status_code=303, headers=HEADERS)
    return _page("signin.html", title="Sign in", username="")


@router.post("/signin")
async def sign_in(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    if not browser.same_origin(request):
        raise Forbidden("a request from another origin is refused")
    accounts = _service(request).accounts
    try:
        secret = await run_in_threadpool(accounts.sign_in_browser, username, password)
    except (Unauthorized, TooManyAttempts) as refused:
        status = 429 if isinstance(refused, TooManyAttempts) else 401
        return _page(
            "signin.html", status, title="Sign in", username=username, error=refused.message
        )
    answer = RedirectResponse("/", status_code=303, headers=HEADERS)
    browser.set_cookie(answer, request, secret, accounts.refresh_ttl_s)
    return answer


@router.post("/signout")
async def sign_out(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    visitor = await run_in_threadpool(_visitor, request)
    if visitor is not None:
        browser.check_state_change(request, visitor.secret, csrf_token)
        accounts = _service(request).accounts
        await run_in_threadpool(accounts.revoke, visitor.token.id, by=visitor.token.user)
    answer = _to_sign_in()
    browser.clear_cookie(answer, request)
    return answer


# -- pages ------------------------------------------------------------------------------


@router.get("/")
def repositories_page(request: Request, visitor: Visitor) -> Response:
    service = _service(request)
    conflicts = service.open_conflicts()
    rows = [
        _repository_row(v, conflicts.get(v.repository.id, 0)) for v in service.repositories.list()
    ]
    return _visited("repositories.html", visitor, "repositories", title="Repositories", rows=rows)


@router.get("/sessions")
def sessions_page(
    request: Request,
    visitor: Visitor,
    repository: Annotated[str, Query(max_length=64)] = "",
    state: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    service = _service(request)
    states = tuple(s for s in SessionState if s.value == state)
    sessions = service.sessions.search(SessionQuery(repository or None, states, 0, HISTORY))
    names = service.repositories.names()
    return _visited(
        "sessions.html",
        visitor,
        "sessions",
        title="Sessions",
        rows=[_session_row(s, names) for s in sessions],
        history=plots.history(sessions[:HISTORY_PLOTTED]) if repository else None,
        repositories=[{"id": rid, "name": name} for rid, name in names.items()],
        states=[s.value for s in SessionState],
        chosen={"repository": repository, "state": state},
    )


@router.get("/sessions/{session_id}")
def session_page(request: Request, visitor: Visitor, session_id: str) -> Response:
    service = _service(request)
    try:
        session = service.sessions.get(session_id)
    except UnknownObject as missing:
        return _visited("base.html", visitor, "sessions", title=missing.message, status=404)
    names = service.repositories.names()
    items = service.sessions.items(session_id, kind=None, after_id=0, limit=ITEMS)
    return _visited(
        "session.html",
        visitor,
        "sessions",
        title=f"Session {session.id[:8]}",
        throughput=plots.throughput(service.sessions.moved_per_second(session_id)),
        s=_session_row(session, names),
        halt=session.halt if session.state is SessionState.HALTED else None,
        items=[
            {"kind": i.kind.value, "path": i.path, "size": i.size, "message": i.message or ""}
            for i in items
        ],
    )


@router.get("/repositories/new")
def new_repository_page(visitor: Visitor) -> Response:
    blank = {"name": "", "local": "", "remote": "", "endpoint": "", "region": ""}
    return _visited(
        "repository_form.html",
        visitor,
        "repositories",
        title="Add a repository",
        action="/api/v1/repositories",
        method="POST",
        r={**blank, "watch": False, "interval": "", "cron": "", "has_credentials": False},
    )


@router.get("/repositories/{repository_id}/edit")
def edit_repository_page(request: Request, visitor: Visitor, repository_id: str) -> Response:
    try:
        view = _service(request).repositories.get(repository_id)
    except UnknownObject as missing:
        return _visited("base.html", visitor, "repositories", title=missing.message, status=404)
    r, options = view.repository, view.repository.remote_options
    schedule = r.settings.schedule
    return _visited(
        "repository_form.html",
        visitor,
        "repositories",
        title=f"Edit {r.name}",
        action=f"/api/v1/repositories/{r.id}",
        method="PATCH",
        r={
            "name": r.name,
            "local": view.local_path,
            "remote": view.remote,
            "endpoint": options.get("endpoint", ""),
            "region": options.get("region", ""),
            "watch": r.settings.watch,
            "interval": "" if schedule is None else (schedule.interval_s or ""),
            "cron": "" if schedule is None else (schedule.cron or ""),
            "timezone": "" if schedule is None else schedule.timezone,
            "has_credentials": r.has_credentials,
        },
    )


@router.get("/conflicts")
def conflicts_page(request: Request, visitor: Visitor) -> Response:
    service = _service(request)
    found = service.conflicts.search(ConflictQuery(None, ConflictState.OPEN, 0, HISTORY))
    names = service.repositories.names()
    rows = [
        {
            "id": c.id,
            "path": c.path,
            "copy": c.copy_path or "",
            "repository": names.get(c.repository_id, c.repository_id),
            "found": _when(c.found_ns),
            "pending": f"keeping {c.resolving.value}…" if c.resolving else "",
        }
        for c in found
    ]
    return _visited("conflicts.html", visitor, "conflicts", title="Conflicts", rows=rows)


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    kind = ASSETS.get(name)
    if kind is None:
        raise UnknownObject(f"no asset {name!r}")
    body = resources.files("storsync.api").joinpath("assets", name).read_bytes()
    return Response(body, media_type=kind, headers={**HEADERS, "Cache-Control": "no-cache"})


# -- rows -------------------------------------------------------------------------------


def _repository_row(view: RepositoryView, conflicts: int) -> dict[str, Any]:
    r = view.repository
    last = view.last_session
    shown = None if last is None else _session_row(last, {})
    settings = r.settings
    running = [("watched" if settings.watch else ""), ("scheduled" if settings.schedule else "")]
    return {
        "id": r.id,
        "name": r.name or "(unnamed)",
        "local": view.local_path,
        "remote": view.remote,
        "health": _health(view),
        "session": shown,
        "last_success": _when(r.last_success_ns),
        "next_run": _when(view.next_run_ns),
        "left_running": ", ".join(x for x in running if x) or "by hand",
        "paused": settings.paused,
        "conflicts": conflicts,
    }


def _health(view: RepositoryView) -> str:
    """How a repository is doing, in the word a person wants first: its status when it is
    anything but idle, else what its newest session says ("in sync" when it completed)."""
    if view.status is not RepositoryStatus.IDLE:
        return view.status.value
    last = view.last_session
    if last is None:
        return "never synchronized"
    return "in sync" if last.state is SessionState.COMPLETED else last.state.value


def _session_row(s: Session, names: dict[str, str]) -> dict[str, Any]:
    files = s.push.files_done + s.pull.files_done
    planned = s.push.files_planned + s.pull.files_planned
    return {
        "id": s.id,
        "short": s.id[:8],
        "repository": names.get(s.repository_id, s.repository_id),
        "trigger": s.trigger.value,
        "state": s.state.value,
        "active": s.state in (SessionState.QUEUED, SessionState.RUNNING),
        "percent": s.percent,
        "counts": f"{files} of {planned} files" if planned else "",
        "created": _when(s.created_ns),
        "pushed": s.pushed,
        "pulled": s.pulled,
        "deleted": f"{s.deleted_local} local, {s.deleted_remote} remote",
        "moved": f"{s.moved_local} local, {s.moved_remote} remote",
        "conflicts": s.conflicts,
        "errors": s.errors,
        "error": s.error or "",
    }


def _when(ns: int | None) -> str:
    shown = iso(ns)
    return "—" if shown is None else shown.replace("T", " ").removesuffix("Z")[:19] + " UTC"
