"""The command line (CLI.md): thin commands over the runner."""

from __future__ import annotations

import gc
import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import platformdirs

from storsync import __version__
from storsync.clock import SystemClock
from storsync.errors import StorsyncError, UsageError
from storsync.model import ConflictPolicy, Mode
from storsync.runner.lock import PairLock
from storsync.runner.session import Report, SyncSession, SyncSettings
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.local import LocalStorage
from storsync.storage.remotes import S3Options, canonical_url, open_remote


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
    help="Days a trashed version is kept under .storsync/trash/.",
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
        trash=not no_trash,
        trash_days=trash_days,
    )
    s3 = S3Options(endpoint=s3_endpoint or None, region=s3_region or None)
    live = not as_json and not dry_run
    report = _run_sync(local_dir, remote, state_dir, settings, s3, live=live)
    if as_json or dry_run:
        click.echo(json.dumps(report.summary(), indent=None if as_json else 2))
    else:
        _print_summary(report)
    sys.exit(0 if report.state == "completed" else 1)


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


def _run_sync(
    local_dir: Path,
    remote: str,
    state_dir: Path | None,
    settings: SyncSettings,
    s3: S3Options,
    *,
    live: bool,
) -> Report:
    local_root = local_dir.expanduser().absolute()
    if not local_root.is_dir():
        raise UsageError(f"local directory {str(local_dir)!r} does not exist")
    remote_url = canonical_url(remote, s3)
    local_url = local_root.as_uri()
    if remote_url == local_url:
        raise UsageError("the local directory and the remote are the same place")
    state_dir = state_dir or _default_state_dir(local_url, remote_url)
    state_dir.mkdir(parents=True, exist_ok=True)
    clock = SystemClock()
    with PairLock(local_root):
        store = SqliteBaseStore(state_dir / "state.db")
        local = LocalStorage(local_root)
        remote_storage = open_remote(remote, s3)
        try:
            repository_id = store.repository_id(local_url, remote_url, now_ns=clock.now_ns())
            session = SyncSession(
                local, remote_storage, store, repository_id, settings, clock=clock
            )
            with _live_progress(session, enabled=live and sys.stderr.isatty()), _no_gc():
                return session.run()
        finally:
            remote_storage.close()
            local.close()
            store.close()


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


@contextmanager
def _live_progress(session: SyncSession, *, enabled: bool) -> Iterator[None]:
    """A progress bar on stderr, refreshed a few times a second from the counters."""
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    done = threading.Event()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.percentage:>3.0f}%",
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=None,
    ) as bar:
        task = bar.add_task("scanning", total=None)

        def tick() -> None:
            while not done.wait(0.2):
                p = session.progress
                planned = p.push.bytes_planned + p.pull.bytes_planned
                finished = p.push.bytes_done + p.pull.bytes_done
                bar.update(task, description=p.phase, total=planned or None, completed=finished)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


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
