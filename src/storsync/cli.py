"""The command line (CLI.md): thin commands over the runner."""

from __future__ import annotations

import gc
import hashlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import platformdirs

from storsync import __version__
from storsync.errors import StorsyncError, UsageError
from storsync.model import (
    ConflictPolicy,
    EventType,
    Mode,
    SessionState,
    StopSignal,
    SyncSettings,
)
from storsync.runner.job import SyncJob
from storsync.runner.observer import NoObserver
from storsync.runner.progress import Snapshot
from storsync.runner.report import Report
from storsync.runner.run import run_job
from storsync.state.protocol import sqlite_url
from storsync.storage.registry import RemoteSpec, location, remote_spec

if TYPE_CHECKING:
    from storsync.client import Client


def _default_state_dir(local_url: str, remote_url: str) -> Path:
    key = hashlib.sha256(f"{local_url}\n{remote_url}".encode()).hexdigest()[:16]
    return Path(platformdirs.user_data_dir("storsync")) / "pairs" / key


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="storsync")
def cli() -> None:
    """storsync keeps a local directory and a remote storage synchronized."""


@cli.command()
@click.argument("local_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("remote")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the base lives (default: a per-user data directory keyed by the pair).",
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    default=Mode.TWO_WAY.value,
    show_default=True,
    help="two-way, push-only (the remote mirrors local) or pull-only (local mirrors the remote).",
)
@click.option("--dry-run", is_flag=True, help="Print the plan as JSON; change nothing.")
@click.option("--checksum", is_flag=True, help="Compare contents by hash, not size and mtime.")
@click.option(
    "--conflict",
    type=click.Choice([p.value for p in ConflictPolicy]),
    default=ConflictPolicy.KEEP_BOTH.value,
    show_default=True,
    help="What to do when both sides changed a file differently.",
)
@click.option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="PATTERN",
    help="Skip paths matching this gitignore-style pattern (repeatable).",
)
@click.option(
    "--max-delete",
    type=click.FloatRange(0, 100),
    default=50.0,
    show_default=True,
    metavar="PERCENT",
    help="Refuse to delete more than this share of a side's files.",
)
@click.option("--force", is_flag=True, help="Skip the delete guard and the root-marker check.")
@click.option(
    "--transfers",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Parallel transfers.",
)
@click.option("--no-trash", is_flag=True, help="Delete replaced and removed versions outright.")
@click.option(
    "--trash-days",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Days a trashed version is kept under .storsync/trash/ (0: as --no-trash).",
)
@click.option(
    "--s3-endpoint",
    envvar=["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
    metavar="URL",
    help="S3 endpoint (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS).",
)
@click.option(
    "--s3-region",
    envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
    metavar="REGION",
    help="S3 region (default: $AWS_REGION, else us-east-1).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary at the end.")
def sync(
    local_dir: Path,
    remote: str,
    state_dir: Path | None,
    mode: str,
    dry_run: bool,
    checksum: bool,
    conflict: str,
    excludes: tuple[str, ...],
    max_delete: float,
    force: bool,
    transfers: int,
    no_trash: bool,
    trash_days: float,
    s3_endpoint: str | None,
    s3_region: str | None,
    as_json: bool,
) -> None:
    """Synchronize LOCAL_DIR with REMOTE once.

    REMOTE is a directory path, a file:// URL, or s3://BUCKET/PREFIX (credentials from
    AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    """
    settings = SyncSettings(
        mode=Mode(mode),
        policy=ConflictPolicy(conflict),
        checksum=checksum,
        dry_run=dry_run,
        excludes=excludes,
        max_delete_percent=max_delete,
        force=force,
        transfers=transfers,
        trash_days=0.0 if no_trash else trash_days,
    )
    spec = remote_spec(remote, {"endpoint": s3_endpoint or "", "region": s3_region or ""})
    job = _job(local_dir, spec, state_dir, settings)
    live = not as_json and not dry_run and sys.stderr.isatty()
    report = _run(job, live=live)
    if as_json or dry_run:
        click.echo(json.dumps(report.summary(), indent=None if as_json else 2))
    else:
        _print_summary(report)
    sys.exit(0 if report.state is SessionState.COMPLETED else 1)


def _job(
    local_dir: Path, remote: RemoteSpec, state_dir: Path | None, settings: SyncSettings
) -> SyncJob:
    local_root = local_dir.expanduser().absolute()
    if not local_root.is_dir():
        raise UsageError(f"local directory {str(local_dir)!r} does not exist")
    local_url, remote_url = local_root.as_uri(), location(remote)
    if remote_url == local_url:
        raise UsageError("the local directory and the remote are the same place")
    state_dir = state_dir or _default_state_dir(local_url, remote_url)
    state_dir.mkdir(parents=True, exist_ok=True)
    return SyncJob(local_root, remote, settings, sqlite_url(state_dir / "state.db"))


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 4443).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Database, keys and the embedded default repository ($STORSYNC_DATA_DIR).",
)
@click.option(
    "--local",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local directory of the default repository (with --remote).",
)
@click.option("--remote", default=None, help="Remote of the default repository (with --local).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--tls-self-signed",
    is_flag=True,
    default=None,
    help="Serve HTTPS with a certificate generated once into the data directory.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A TOML file of settings ($STORSYNC_CONFIG).",
)
def serve(config_file: Path | None, **flags: object) -> None:
    """Run the service: the native API, the PLM and Veeam faces (API.md).

    Every setting may also come from a STORSYNC_<NAME> variable (for example
    STORSYNC_DATABASE_URL, STORSYNC_ADMIN_PASSWORD) or the TOML file; flags win.
    """
    import os

    from storsync.api.serve import serve as run_server
    from storsync.config import load_settings

    settings = load_settings(flags, os.environ, config_file=config_file)
    if settings.local is not None:
        settings.local.mkdir(parents=True, exist_ok=True)
    run_server(settings)


# -- client commands against a running server ------------------------------------------


def _client_options(command: Callable[..., None]) -> Callable[..., None]:
    command = click.option(
        "--server",
        envvar="STORSYNC_SERVER",
        metavar="URL",
        help="The server (default: the one logged in to, else http://127.0.0.1:4443).",
    )(command)
    command = click.option(
        "--token", envvar="STORSYNC_TOKEN", help="An access token or API key ($STORSYNC_TOKEN)."
    )(command)
    command = click.option(
        "--insecure", is_flag=True, help="Accept a self-signed TLS certificate."
    )(command)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


@contextmanager
def _client(server: str | None, token: str | None, insecure: bool) -> Iterator[Client]:
    # Imported here: httpx is not needed by `storsync sync`, whose start-up time counts.
    from storsync.client import Client

    client = Client(server, token, verify=not insecure)
    try:
        yield client
    finally:
        client.close()


@cli.command()
@click.option("--user", default="admin", show_default=True)
@click.option(
    "--password",
    envvar="STORSYNC_PASSWORD",
    help="The password ($STORSYNC_PASSWORD; asked for when absent).",
)
@_client_options
def login(
    user: str,
    password: str | None,
    server: str | None,
    token: str | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Sign in to a server; later commands use the saved tokens."""
    if password is None:
        password = click.prompt("password", hide_input=True)
    from storsync.client import save_login

    with _client(server, token, insecure) as client:
        answer = client.login(user, password)
        path = save_login(client.server, answer)
    click.echo(
        json.dumps({"server": client.server, "user": user})
        if as_json
        else f"logged in to {client.server} as {user} (tokens in {path})"
    )


@cli.command()
@_client_options
def repos(server: str | None, token: str | None, insecure: bool, as_json: bool) -> None:
    """List the server's repositories."""
    with _client(server, token, insecure) as client:
        found = client.request("GET", "/api/v1/repositories")
    if as_json:
        click.echo(json.dumps(found))
        return
    for r in found:
        default = " (default)" if r["isDefault"] else ""
        click.echo(
            f"{r['id']}  {r['name']}{default}  {r['localPath']} <-> {r['remote']}  {r['mode']}"
        )


@cli.command("repo-add")
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
@_client_options
def repo_add(
    name: str,
    local_path: str,
    remote: str,
    mode: str,
    conflict: str,
    excludes: tuple[str, ...],
    server: str | None,
    token: str | None,
    insecure: bool,
    as_json: bool,
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
    with _client(server, token, insecure) as client:
        created = client.request("POST", "/api/v1/repositories", json=body)
    click.echo(json.dumps(created) if as_json else created["id"])


@cli.command()
@click.argument("repository", required=False)
@click.option(
    "--wait", is_flag=True, help="Follow the session until it ends; exit 0 only if it completed."
)
@_client_options
def trigger(
    repository: str | None,
    wait: bool,
    server: str | None,
    token: str | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Start a sync of REPOSITORY (an id or a name; default: the default repository)."""
    with _client(server, token, insecure) as client:
        repository_id = _repository_id(client, repository)
        session = client.request("POST", f"/api/v1/repositories/{repository_id}/sync")
        if wait:
            session = _follow(client, session, live=not as_json and sys.stderr.isatty())
    click.echo(json.dumps(session) if as_json else f"{session['id']} {session['state']}")
    if wait:
        sys.exit(0 if session["state"] == SessionState.COMPLETED else 1)


@cli.command()
@click.option("--repository", help="Only this repository's (an id or a name).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@_client_options
def sessions(
    repository: str | None,
    limit: int,
    server: str | None,
    token: str | None,
    insecure: bool,
    as_json: bool,
) -> None:
    """Recent sessions, newest first."""
    with _client(server, token, insecure) as client:
        params: dict[str, object] = {"limit": limit}
        if repository:
            params["repositoryId"] = _repository_id(client, repository)
        page = client.request("GET", "/api/v1/sessions", params=params)
    if as_json:
        click.echo(json.dumps(page["items"]))
        return
    for s in page["items"]:
        error = f"  {s['error']}" if s["error"] else ""
        click.echo(
            f"{s['id']}  {s['createdAt']}  {s['state']:9} {s['progressPercent']:3}%  "
            f"pushed {s['pushed']} pulled {s['pulled']}{error}"
        )


@cli.command()
@click.argument("session_id")
@_client_options
def watch(
    session_id: str, server: str | None, token: str | None, insecure: bool, as_json: bool
) -> None:
    """Follow a session live until it ends; exit 0 only if it completed."""
    with _client(server, token, insecure) as client:
        session = client.request("GET", f"/api/v1/sessions/{session_id}")
        session = _follow(client, session, live=not as_json and sys.stderr.isatty())
    click.echo(json.dumps(session) if as_json else f"{session['id']} {session['state']}")
    sys.exit(0 if session["state"] == SessionState.COMPLETED else 1)


def _repository_id(client: Client, given: str | None) -> str:
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


def _follow(client: Client, session: dict[str, Any], *, live: bool) -> dict[str, Any]:
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


def _run(job: SyncJob, *, live: bool) -> Report:
    stop = StopSignal()
    with _stop_on_signals(stop), _no_gc(), _progress_bar(enabled=live) as bar:
        return run_job(job, observer=bar, stop=stop)


@contextmanager
def _stop_on_signals(stop: StopSignal) -> Iterator[None]:
    """SIGINT and SIGTERM stop the session at its next safe point, reported ``stopped``.

    A KeyboardInterrupt would instead leave the pool threads scanning or hashing to the
    end, and SIGTERM's default ends the process without a summary. The first signal puts
    the previous handlers back: a second one interrupts or ends the process as before.
    """
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def handler(_signum: int, _frame: FrameType | None) -> None:
        restore()
        stop.set()

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        restore()


@contextmanager
def _no_gc() -> Iterator[None]:
    """Run without the cycle collector, which only costs here.

    A session's maps hold millions of small acyclic objects, freed by reference counting
    when the session ends; the collector walks them again and again while they grow
    (0.45 s of a 100,000-file no-op). It is turned back on afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _ProgressBar(NoObserver):
    """The session's progress on stderr (rich), as its observer is told of it."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._task = bar.add_task("scanning", total=None)

    def progress(self, snapshot: Snapshot) -> None:
        planned = snapshot.push.bytes_planned + snapshot.pull.bytes_planned
        done = snapshot.push.bytes_done + snapshot.pull.bytes_done
        self._bar.update(
            self._task, description=snapshot.stage.value, total=planned or None, completed=done
        )


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[_ProgressBar | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.percentage:>3.0f}%",
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=None,
    ) as bar:
        yield _ProgressBar(bar)


def _print_summary(report: Report) -> None:
    line = (
        f"{report.state}: pushed {report.pushed} ({report.bytes_pushed} bytes), "
        f"pulled {report.pulled} ({report.bytes_pulled} bytes), "
        f"deleted {report.deleted_local} local and {report.deleted_remote} remote, "
        f"{len(report.conflicts)} conflicts, {len(report.errors)} errors"
    )
    click.echo(line)
    for path in report.conflicts:
        click.echo(f"conflict: {path}")
    for item in report.skipped:
        click.echo(f"skipped ({item.side.value}): {item.path}: {item.reason}", err=True)
    for error in report.errors:
        click.echo(f"error: {error['path']}: {error['message']}", err=True)
    if report.message:
        click.echo(f"storsync: {report.message}", err=True)


def main() -> None:
    """Entry point: bad usage exits 2 with one line, a failure 1, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("storsync: interrupted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except StorsyncError as exc:
        click.echo(f"storsync: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        click.echo(f"storsync: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, never a traceback
        click.echo(f"storsync: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
