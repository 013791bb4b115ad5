"""Client commands against a running server (CLI.md): repositories, triggers, sessions,
following a session live. Each is a few lines over storsync.client."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from storsync.errors import UsageError
from storsync.model import (
    ConflictPolicy,
    EventType,
    Mode,
    SessionState,
)

if TYPE_CHECKING:
    from storsync.client import Client


@dataclass(frozen=True)
class Connection:
    """How a client command reaches the server, and how it answers (``as_json``)."""

    server: str | None
    token: str | None
    insecure: bool
    as_json: bool


def client_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every client command takes, handed to it as one ``connection``."""

    @functools.wraps(command)
    def connected(
        *, server: str | None, token: str | None, insecure: bool, as_json: bool, **kw: Any
    ) -> None:
        command(connection=Connection(server, token, insecure, as_json), **kw)

    options = (
        click.option(
            "--server",
            envvar="STORSYNC_SERVER",
            metavar="URL",
            help="The server (default: the one logged in to, else http://127.0.0.1:4443).",
        ),
        click.option(
            "--token", envvar="STORSYNC_TOKEN", help="An access token or API key ($STORSYNC_TOKEN)."
        ),
        click.option("--insecure", is_flag=True, help="Accept a self-signed TLS certificate."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    )
    decorated: Callable[..., None] = connected
    for option in options:
        decorated = option(decorated)
    return decorated


@contextmanager
def connect(connection: Connection) -> Iterator[Client]:
    # Imported here: httpx is not needed by `storsync sync`, whose start-up time counts.
    from storsync.client import Client

    client = Client(connection.server, connection.token, verify=not connection.insecure)
    try:
        yield client
    finally:
        client.close()


@click.command()
@click.option("--user", default="admin", show_default=True)
@click.option(
    "--password",
    envvar="STORSYNC_PASSWORD",
    help="The password ($STORSYNC_PASSWORD; asked for when absent).",
)
@client_options
def login(
    user: str,
    password: str | None,
    connection: Connection,
) -> None:
    """Sign in to a server; later commands use the saved tokens."""
    if password is None:
        password = click.prompt("password", hide_input=True)
    from storsync.client import save_login

    with connect(connection) as client:
        answer = client.login(user, password)
        path = save_login(client.server, answer)
    click.echo(
        json.dumps({"server": client.server, "user": user})
        if connection.as_json
        else f"logged in to {client.server} as {user} (tokens in {path})"
    )


@click.command()
@client_options
def repos(connection: Connection) -> None:
    """List the server's repositories."""
    with connect(connection) as client:
        found = client.request("GET", "/api/v1/repositories")
    if connection.as_json:
        click.echo(json.dumps(found))
        return
    for r in found:
        default = " (default)" if r["isDefault"] else ""
        click.echo(
            f"{r['id']}  {r['name']}{default}  {r['localPath']} <-> {r['remote']}  {r['mode']}"
        )


@click.command("repo-add")
@click.argument("name")
@click.argument("local_path")
@click.argument("remote")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default=Mode.TWO_WAY.value)
@click.option(
    "--conflict",
    type=click.Choice([p.value for p in ConflictPolicy]),
    default=ConflictPolicy.KEEP_BOTH.value,
)
@click.option("--exclude", "excludes", multiple=True, metavar="PATTERN")
@client_options
def repo_add(
    name: str,
    local_path: str,
    remote: str,
    mode: str,
    conflict: str,
    excludes: tuple[str, ...],
    connection: Connection,
) -> None:
    """Add a repository to the server (LOCAL_PATH on the server's machine)."""
    body = {
        "name": name,
        "localPath": str(Path(local_path).expanduser().absolute()),
        "remote": remote,
        "mode": mode,
        "conflictPolicy": conflict,
        "excludes": list(excludes),
    }
    with connect(connection) as client:
        created = client.request("POST", "/api/v1/repositories", json=body)
    click.echo(json.dumps(created) if connection.as_json else created["id"])


@click.command()
@click.argument("repository", required=False)
@click.option(
    "--wait", is_flag=True, help="Follow the session until it ends; exit 0 only if it completed."
)
@client_options
def trigger(
    repository: str | None,
    wait: bool,
    connection: Connection,
) -> None:
    """Start a sync of REPOSITORY (an id or a name; default: the default repository)."""
    with connect(connection) as client:
        repository_id = repository_id_of(client, repository)
        session = client.request("POST", f"/api/v1/repositories/{repository_id}/sync")
        if wait:
            session = follow(client, session, live=not connection.as_json and sys.stderr.isatty())
    click.echo(json.dumps(session) if connection.as_json else f"{session['id']} {session['state']}")
    if wait:
        sys.exit(outcome(session))


@click.command()
@click.option("--repository", help="Only this repository's (an id or a name).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@client_options
def sessions(
    repository: str | None,
    limit: int,
    connection: Connection,
) -> None:
    """Recent sessions, newest first."""
    with connect(connection) as client:
        params: dict[str, object] = {"limit": limit}
        if repository:
            params["repositoryId"] = repository_id_of(client, repository)
        page = client.request("GET", "/api/v1/sessions", params=params)
    if connection.as_json:
        click.echo(json.dumps(page["items"]))
        return
    for s in page["items"]:
        error = f"  {s['error']}" if s["error"] else ""
        click.echo(
            f"{s['id']}  {s['createdAt']}  {s['state']:9} {s['progressPercent']:3}%  "
            f"pushed {s['pushed']} pulled {s['pulled']}{error}"
        )


@click.command()
@click.argument("session_id")
@client_options
def watch(session_id: str, connection: Connection) -> None:
    """Follow a session live until it ends; exit 0 only if it completed."""
    with connect(connection) as client:
        session = client.request("GET", f"/api/v1/sessions/{session_id}")
        session = follow(client, session, live=not connection.as_json and sys.stderr.isatty())
    click.echo(json.dumps(session) if connection.as_json else f"{session['id']} {session['state']}")
    sys.exit(outcome(session))


def outcome(session: dict[str, Any]) -> int:
    """The exit status for a session that ended: 0 only if it completed; else 1, and why
    on stderr (a halt's reason, a failure's error)."""
    if session["state"] == SessionState.COMPLETED:
        return 0
    if session.get("error"):
        click.echo(f"storsync: {session['state']}: {session['error']}", err=True)
    return 1


def repository_id_of(client: Client, given: str | None) -> str:
    found = client.request("GET", "/api/v1/repositories")
    for r in found:
        if given is None and r["isDefault"]:
            return str(r["id"])
        if given is not None and given in (r["id"], r["name"]):
            return str(r["id"])
    raise UsageError(
        "the server has no default repository" if given is None else f"no repository {given!r}"
    )


_ENDINGS = {EventType.ending(state) for state in SessionState if not state.active}


def follow(client: Client, session: dict[str, Any], *, live: bool) -> dict[str, Any]:
    """Read the session's events until it ends; a progress line on a terminal."""
    session_id = session["id"]
    if SessionState(session["state"]).active:
        for event in client.events(sessionId=session_id, since=0):
            snapshot = event["data"].get("session", {})
            if live and snapshot:
                click.echo(
                    f"\r{snapshot['state']:9} {snapshot['progressPercent']:3}%", nl=False, err=True
                )
            if event["type"] in _ENDINGS:
                break
        if live:
            click.echo("", err=True)
    final: dict[str, Any] = client.request("GET", f"/api/v1/sessions/{session_id}")
    return final


COMMANDS = (login, repos, repo_add, trigger, sessions, watch)
