"""Client commands against a running server (CLI.md): repositories, triggers, sessions,
following a session live. Each is a few lines over storsync.client."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from storsync.cli import s3_options
from storsync.cli.progress import Bar, progress_bar
from storsync.cli.summary import Totals
from storsync.errors import UsageError
from storsync.model import (
    ConflictPolicy,
    EventType,
    Mode,
    PhaseCounters,
    SessionState,
)
from storsync.storage.registry import kind_of

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
            f"{r['id']}  {r['name']}{default}  {r['localPath']} <-> {_remote(r)}  {r['mode']}"
        )


def _remote(repository: dict[str, Any]) -> str:
    """The remote with where it is beyond its URL: ``s3://b/p (endpoint E, region R)``."""
    shown = {"endpoint": "remoteEndpoint", "region": "remoteRegion"}
    where = ", ".join(f"{k} {repository[f]}" for k, f in shown.items() if repository.get(f))
    return f"{repository['remote']} ({where})" if where else str(repository["remote"])


# The remote's fields as storsync.storage.registry names them, to remoteCredentials'.
_WIRE = {
    "endpoint": "endpoint",
    "region": "region",
    "access_key_id": "accessKeyId",
    "secret_access_key": "secretAccessKey",
}


def _remote_fields(
    remote: str, endpoint: str | None, region: str | None, keys: tuple[str | None, str | None]
) -> dict[str, str]:
    """``remoteCredentials`` for REMOTE: the fields given that its kind takes (none for a
    directory); both keys from the shell's AWS variables when neither is given."""
    if not any(keys):
        keys = (os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY"))
    key_id, secret = keys
    given = {
        "endpoint": endpoint,
        "region": region,
        "access_key_id": key_id,
        "secret_access_key": secret,
    }
    taken = kind_of(remote).fields
    return {_WIRE[k]: v for k, v in given.items() if v and k in taken}


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
@s3_options.endpoint("--endpoint")
@s3_options.region("--region")
@click.option(
    "--access-key-id",
    metavar="ID",
    help="S3 access key id (default, when neither key is given: $AWS_ACCESS_KEY_ID).",
)
@click.option(
    "--secret-access-key",
    metavar="SECRET",
    help="S3 secret access key (default, when neither key is given: $AWS_SECRET_ACCESS_KEY).",
)
@client_options
def repo_add(
    name: str,
    local_path: str,
    remote: str,
    mode: str,
    conflict: str,
    excludes: tuple[str, ...],
    s3_endpoint: str | None,
    s3_region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    connection: Connection,
) -> None:
    """Add a repository to the server (LOCAL_PATH on the server's machine).

    For an s3://BUCKET/PREFIX REMOTE, the server signs with the keys given here, else with
    this shell's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (prefer those: an option
    shows in the process list); the server keeps them sealed and never shows them back.
    The endpoint and region options apply to s3:// remotes only.
    """
    body: dict[str, Any] = {
        "name": name,
        "localPath": str(Path(local_path).expanduser().absolute()),
        "remote": remote,
        "mode": mode,
        "conflictPolicy": conflict,
        "excludes": list(excludes),
    }
    fields = _remote_fields(remote, s3_endpoint, s3_region, (access_key_id, secret_access_key))
    if fields:
        body["remoteCredentials"] = fields
    with connect(connection) as client:
        created = client.request("POST", "/api/v1/repositories", json=body)
    click.echo(json.dumps(created) if connection.as_json else created["id"])


@click.command()
@click.argument("repository", required=False)
@click.option(
    "--wait",
    is_flag=True,
    help="Follow the session until it ends: its id at once on stderr, its progress on a "
    "terminal, then one summary line; exit 0 only if it completed.",
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
        answer_session(client, session, connection, wait=wait)


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
        see_to_end(client, session, connection)


def answer_session(
    client: Client, session: dict[str, Any], connection: Connection, *, wait: bool
) -> None:
    """What a command that starts a session prints. Without ``wait``: the session, as
    ``ID STATE``. With it: the id at once on stderr (stdout keeps to the result, one JSON
    object with --json), then as ``watch`` does."""
    if not wait:
        click.echo(
            json.dumps(session) if connection.as_json else f"{session['id']} {session['state']}"
        )
        return
    click.echo(f"session {session['id']} {session['state']}", err=True)
    see_to_end(client, session, connection)


def see_to_end(client: Client, session: dict[str, Any], connection: Connection) -> NoReturn:
    """Follow the session to its end (its progress on a terminal), print the result (the
    session as JSON, or ``result_line``) and exit as CLI.md says: 0 only if it completed."""
    final = follow(client, session, live=not connection.as_json and sys.stderr.isatty())
    click.echo(json.dumps(final) if connection.as_json else result_line(final))
    sys.exit(outcome(final))


def result_line(session: dict[str, Any]) -> str:
    """``ID completed in 3.2 s: pushed 3 (1.5 MiB), ...`` for a session that ran, summed up
    as `storsync sync` does; ``ID STATE`` for one that never started."""
    if session["startedAt"] is None or session["endedAt"] is None:
        return f"{session['id']} {session['state']}"
    took = datetime.fromisoformat(session["endedAt"]) - datetime.fromisoformat(session["startedAt"])
    totals = Totals(
        pushed=session["pushed"],
        bytes_pushed=session["push"]["bytesDone"],
        pulled=session["pulled"],
        bytes_pulled=session["pull"]["bytesDone"],
        deleted_local=session["deletedLocal"],
        deleted_remote=session["deletedRemote"],
        conflicts=session["conflicts"],
        errors=session["errors"],
        moved=session["movedLocal"] + session["movedRemote"],
    )
    return f"{session['id']} {totals.line(session['state'], took.total_seconds())}"


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
    """Read the session's events until it ends; its progress on a terminal."""
    session_id = session["id"]
    if SessionState(session["state"]).active:
        with progress_bar(enabled=live) as bar:
            progressed: dict[str, Any] = {}
            for event in client.events(sessionId=session_id, since=0):
                data = event["data"]
                if event["type"] == EventType.SESSION_PROGRESS:
                    progressed = data
                if bar is not None and "session" in data:
                    _show(bar, data["session"], progressed)
                if event["type"] in _ENDINGS:
                    break
    final: dict[str, Any] = client.request("GET", f"/api/v1/sessions/{session_id}")
    return final


def _show(bar: Bar, snapshot: dict[str, Any], progressed: dict[str, Any]) -> None:
    """The figures an event's session carries; what it does now (scanning, push, ...), its
    rate and time left are those of the last progress event, the only one that has them."""
    running = snapshot["state"] == SessionState.RUNNING
    bar.show(
        progressed.get("phase", snapshot["state"]) if running else snapshot["state"],
        snapshot["progressPercent"],
        _counters(snapshot["push"]),
        _counters(snapshot["pull"]),
        rate_bps=progressed.get("rateBps", 0),
        eta_s=progressed.get("etaSeconds"),
    )


def _counters(phase: dict[str, int]) -> PhaseCounters:
    return PhaseCounters(
        phase["filesPlanned"], phase["filesDone"], phase["bytesPlanned"], phase["bytesDone"]
    )


COMMANDS = (login, repos, repo_add, trigger, sessions, watch)
