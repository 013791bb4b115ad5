"""Client commands for a service left running (API.md section 7): pause and resume a
repository, approve or reject a halt, list and resolve conflicts, stop a session, remove
a repository, log out. Each is a few lines over storsync.client."""

from __future__ import annotations

import json

import click

from storsync.cli.control import (
    Connection,
    answer_session,
    client_options,
    connect,
    repository_id_of,
)
from storsync.model import ConflictState, Keep

_WAIT = click.option(
    "--wait",
    is_flag=True,
    help="Follow the session until it ends: its id at once on stderr, its progress on a "
    "terminal, then one summary line; exit 0 only if it completed.",
)


def _paused(repository: str | None, connection: Connection, action: str) -> None:
    with connect(connection) as client:
        repository_id = repository_id_of(client, repository)
        found = client.request("POST", f"/api/v1/repositories/{repository_id}/{action}")
    click.echo(json.dumps(found) if connection.as_json else f"{found['name']} {found['status']}")


@click.command()
@click.argument("repository", required=False)
@client_options
def pause(repository: str | None, connection: Connection) -> None:
    """Pause REPOSITORY (an id or a name; default: the default repository): neither its
    schedule nor its watch starts a session; triggers still do."""
    _paused(repository, connection, "pause")


@click.command()
@click.argument("repository", required=False)
@client_options
def resume(repository: str | None, connection: Connection) -> None:
    """Resume a paused REPOSITORY (a fire its schedule missed meanwhile runs once)."""
    _paused(repository, connection, "resume")


@click.command()
@click.argument("session_id")
@_WAIT
@client_options
def approve(session_id: str, wait: bool, connection: Connection) -> None:
    """Approve a halted session: exactly the deletions its plan listed are carried out
    (each only while the file is still the version listed); prints the session that
    carries them."""
    with connect(connection) as client:
        session = client.request("POST", f"/api/v1/sessions/{session_id}/approve")
        answer_session(client, session, connection, wait=wait)


@click.command()
@click.argument("session_id")
@client_options
def reject(session_id: str, connection: Connection) -> None:
    """Reject a halted session's plan: nothing of it is done, and its repository is
    paused until resumed."""
    with connect(connection) as client:
        session = client.request("POST", f"/api/v1/sessions/{session_id}/reject")
    click.echo(json.dumps(session) if connection.as_json else f"{session['id']} rejected")


@click.command()
@click.option("--repository", help="Only this repository's (an id or a name).")
@click.option(
    "--state",
    type=click.Choice([*(s.value for s in ConflictState), "all"]),
    default=ConflictState.OPEN.value,
    show_default=True,
)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@client_options
def conflicts(repository: str | None, state: str, limit: int, connection: Connection) -> None:
    """Conflicts, oldest first: an open one keeps the local version at its path and the
    remote one at its copy until `storsync resolve` decides."""
    with connect(connection) as client:
        params: dict[str, object] = {"limit": limit}
        if repository:
            params["repositoryId"] = repository_id_of(client, repository)
        if state != "all":
            params["state"] = state
        page = client.request("GET", "/api/v1/conflicts", params=params)
    if connection.as_json:
        click.echo(json.dumps(page["items"]))
        return
    for c in page["items"]:
        if c["resolution"] is not None:
            how = f"kept {c['resolution']['keep']} (by {c['resolution']['by']})"
        else:
            how = f"copy {c['copyPath']}"
        click.echo(f"{c['id']}  {c['state']:8} {c['path']}  {how}")


@click.command()
@click.argument("conflict_id")
@click.option(
    "--keep",
    type=click.Choice([k.value for k in Keep]),
    required=True,
    help="local: the path's version stays, the copy goes to the trash; remote: the copy's "
    "bytes replace the path (the replaced version to the trash); both: both files stay.",
)
@_WAIT
@client_options
def resolve(conflict_id: str, keep: str, wait: bool, connection: Connection) -> None:
    """Decide an open conflict; prints the session that carries the decision out."""
    with connect(connection) as client:
        body = {"keep": keep}
        session = client.request("POST", f"/api/v1/conflicts/{conflict_id}/resolve", json=body)
        answer_session(client, session, connection, wait=wait)


@click.command()
@click.argument("session_id")
@client_options
def stop(session_id: str, connection: Connection) -> None:
    """Stop a queued or running session at its next safe point."""
    with connect(connection) as client:
        session = client.request("POST", f"/api/v1/sessions/{session_id}/stop")
    click.echo(json.dumps(session) if connection.as_json else f"{session['id']} {session['state']}")


@click.command("repo-rm")
@click.argument("repository")
@client_options
def repo_rm(repository: str, connection: Connection) -> None:
    """Remove REPOSITORY (an id or a name) from the server, with its history; the files
    on both sides stay as they are."""
    with connect(connection) as client:
        repository_id = repository_id_of(client, repository)
        client.request("DELETE", f"/api/v1/repositories/{repository_id}")
    click.echo(json.dumps({"removed": repository_id}) if connection.as_json else repository_id)


@click.command()
@client_options
def logout(connection: Connection) -> None:
    """End the saved sign-in on the server and forget its tokens here."""
    with connect(connection) as client:
        ended = client.logout()
    message = f"logged out of {client.server}" if ended else "not logged in"
    click.echo(json.dumps({"loggedOut": ended}) if connection.as_json else message)


COMMANDS = (pause, resume, approve, reject, conflicts, resolve, stop, repo_rm, logout)
