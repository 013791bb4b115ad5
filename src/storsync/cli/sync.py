"""`storsync sync`: one synchronization without a server, built as a SyncJob from its
flags and run with a progress bar and an orderly stop on SIGINT/SIGTERM."""

from __future__ import annotations

import gc
import hashlib
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click
import platformdirs

from storsync.cli import s3_options
from storsync.cli.dry_run import print_plan
from storsync.cli.progress import Bar, progress_bar
from storsync.cli.rates import ByteRate
from storsync.cli.summary import Totals
from storsync.clock import SystemClock
from storsync.errors import UsageError
from storsync.model import (
    ConflictPolicy,
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
from storsync.storage.registry import RemoteSpec, kind_of, location, overlapping, remote_spec


def _default_state_dir(local_url: str, remote_url: str) -> Path:
    key = hashlib.sha256(f"{local_url}\n{remote_url}".encode()).hexdigest()[:16]
    return Path(platformdirs.user_data_dir("storsync")) / "pairs" / key


@click.command()
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
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the plan (one line per action, then the totals; with --json, all of it as "
    "JSON); change nothing.",
)
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
    default=16,
    show_default=True,
    help="Parallel transfers (between two local trees, at most one a core).",
)
@click.option("--no-trash", is_flag=True, help="Delete replaced and removed versions outright.")
@click.option(
    "--trash-days",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Days a trashed version is kept under .storsync/trash/ (0: as --no-trash).",
)
@s3_options.endpoint()
@s3_options.region()
@click.option(
    "--bwlimit",
    type=ByteRate(),
    default=None,
    help="Limit the transfers to this many bytes per second, all together: 512K, 2M, 1G "
    "(K, M, G: 1024, 1024², 1024³).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep the pair synchronized: local changes start a session after --watch-delay, "
    "the remote is checked every --interval, both are rescanned at least hourly; one "
    "summary line per session; SIGINT or SIGTERM ends it (exit 0).",
)
@click.option(
    "--interval",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: how often the remote is checked.",
)
@click.option(
    "--watch-delay",
    type=click.FloatRange(0.1, 3600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="With --watch: the quiet period after a local change.",
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
    bwlimit: int | None,
    watch: bool,
    interval: float,
    watch_delay: float,
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
        bwlimit_bps=bwlimit,
    )
    spec = remote_spec(remote, {"endpoint": s3_endpoint or "", "region": s3_region or ""})
    _refuse_overlap(local_dir, spec)
    job = _job(local_dir, spec, state_dir, settings)
    if watch:
        if dry_run:
            raise UsageError("--watch and --dry-run do not go together")
        keep(job, as_json=as_json, delay_s=watch_delay, remote_s=interval)
        sys.exit(0)
    live = not as_json and not dry_run and sys.stderr.isatty()
    clock = SystemClock()
    began = clock.monotonic()
    report = _run(job, live=live)
    if as_json:
        click.echo(json.dumps(report.summary()))
    elif dry_run and report.plan is not None:
        print_plan(report.plan)
        _print_notes(report)
    else:
        _print_summary(report, clock.monotonic() - began)
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
    """The session's progress on stderr, as its observer is told of it."""

    def __init__(self, bar: Bar) -> None:
        self._bar = bar

    def progress(self, snapshot: Snapshot) -> None:
        self._bar.show(
            snapshot.stage.value,
            snapshot.percent,
            snapshot.push,
            snapshot.pull,
            rate_bps=snapshot.rate_bps,
            eta_s=snapshot.eta_s,
        )


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[_ProgressBar | None]:
    with progress_bar(enabled=enabled) as bar:
        yield None if bar is None else _ProgressBar(bar)


def _refuse_overlap(local_dir: Path, spec: RemoteSpec) -> None:
    """A remote folder inside the local one (or the reverse) is bad usage, as the service
    refuses it: each run would copy the tree into itself one level deeper."""
    directory = kind_of(spec.url).directory(spec.url)
    if directory is not None and overlapping(local_dir.resolve(), directory.resolve()):
        raise UsageError(
            f"the local directory {str(local_dir)!r} and the remote directory "
            f"{str(directory)!r} overlap: one lies inside the other"
        )


def summary_line(report: Report, seconds: float | None = None) -> str:
    """What the session did in one line, sizes for people (``--json`` has the bytes)."""
    totals = Totals(
        pushed=report.pushed,
        bytes_pushed=report.bytes_pushed,
        pulled=report.pulled,
        bytes_pulled=report.bytes_pulled,
        deleted_local=report.deleted_local,
        deleted_remote=report.deleted_remote,
        conflicts=len(report.conflicts),
        errors=len(report.errors),
        moved=report.moved_local + report.moved_remote,
    )
    return totals.line(report.state.value, seconds)


def _print_summary(report: Report, seconds: float | None = None) -> None:
    click.echo(summary_line(report, seconds))
    for path in report.conflicts:
        click.echo(f"conflict: {path}")
    _print_notes(report)


def _print_notes(report: Report) -> None:
    """On stderr: what was skipped, what failed, and why the session ended so."""
    for item in report.skipped:
        click.echo(f"skipped ({item.side.value}): {item.path}: {item.reason}", err=True)
    for error in report.errors:
        click.echo(f"error: {error['path']}: {error['message']}", err=True)
    if report.message:
        click.echo(f"storsync: {report.message}", err=True)


def keep(job: SyncJob, *, as_json: bool, delay_s: float, remote_s: float) -> None:
    """``--watch``: a session now, then whenever the cadence says, until SIGINT/SIGTERM."""
    # Imported here: inotify's bindings and asyncio would add 15 ms to every other start.
    from storsync.runner.watching import WatchTimes, keep_job_synchronized

    def reported(why: str, report: Report) -> None:
        if as_json:
            click.echo(json.dumps({**report.summary(), "reason": why}))
        else:
            click.echo(f"{why}: {summary_line(report)}")
            if report.message:
                click.echo(f"storsync: {report.message}", err=True)

    stop = StopSignal()
    with _stop_on_signals(stop):
        keep_job_synchronized(
            job,
            times=WatchTimes(delay_s=delay_s, remote_s=remote_s),
            reported=reported,
            stop=stop,
            quiet=_no_gc,
        )
