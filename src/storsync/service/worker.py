"""One session in its own process, so that scanning, hashing and transfers never hold the
API's interpreter (ARCHITECTURE.md). Started by the session manager as
``python -m storsync.service.worker``; what passes in and out is storsync.service.reports.

The end of the input (the service went away) stops the session at its next safe point,
as a ``stop`` line or SIGTERM does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from storsync.clock import SystemClock
from storsync.errors import StorsyncError
from storsync.model import LogKind, Phase, PhaseState, StopSignal
from storsync.runner.bandwidth import Throttle
from storsync.runner.job import SyncJob
from storsync.runner.observer import Planned
from storsync.runner.progress import Snapshot
from storsync.runner.run import run_job
from storsync.service.reports import (
    SPARE_NAME,
    STOP,
    WORKER_NAME,
    FinishedReport,
    ItemsReport,
    PhaseReport,
    PlannedReport,
    ProgressReport,
    WorkerReport,
    WorkerSetup,
    encode,
    parse_bwlimit,
)
from storsync.service.vault import Vault
from storsync.storage.registry import KINDS


class _Out:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, report: WorkerReport) -> None:
        line = encode(report)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class _Reporter:
    """The session's observer: every report goes to the service as a line."""

    def __init__(self, out: _Out) -> None:
        self.out = out

    def planned(self, plan: Planned) -> None:
        self.out.send(PlannedReport(plan))

    def progress(self, snapshot: Snapshot) -> None:
        self.out.send(ProgressReport.of(snapshot))

    def phase(self, phase: Phase, state: PhaseState) -> None:
        self.out.send(PhaseReport(phase, state))

    def items(
        self, kind: LogKind, items: Sequence[tuple[str, int | None]], ids: tuple[int, int] | None
    ) -> None:
        # The runner stored the batch's log items (a 10,000-file sync would otherwise have
        # the API's process insert 10,000 rows, and every request wait on its interpreter
        # meanwhile: docs/benchmarks.md); the service is told where they are.
        assert ids is not None, "a service session keeps its log items"
        self.out.send(ItemsReport(kind, len(items), *ids))


def run(setup: WorkerSetup, job: SyncJob, stdin: IO[str], out: _Out) -> None:
    credentials = None
    if job.remote.sealed_credentials is not None:
        assert setup.vault_key is not None, "sealed credentials come with their key"
        credentials = Vault(setup.vault_key.encode()).unseal(job.remote.sealed_credentials)
    stop = StopSignal()
    throttle = Throttle(job.settings.bwlimit_bps, SystemClock())
    threading.Thread(target=_watch_input, args=(stdin, stop, throttle), daemon=True).start()
    # A service manager that signals the whole group (systemd's default) gets the same
    # orderly stop as the service's own "stop" line.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    report = run_job(
        job, credentials=credentials, observer=_Reporter(out), stop=stop, throttle=throttle
    )
    out.send(FinishedReport.of(report))


def _watch_input(stdin: IO[str], stop: StopSignal, throttle: Throttle) -> None:
    for line in stdin:
        if line.strip() == STOP:
            break
        limits, bytes_per_second = parse_bwlimit(line)
        if limits:
            throttle.set_rate(bytes_per_second)
    stop.set()


def _nicer_group(niceness: int) -> None:
    """The same niceness for the worker's scheduling group. The worker leads a session of
    its own, and where Linux groups tasks by session (autogroup, the default of desktop
    and many server kernels) a niceness only weighs within the group: without this the
    worker would still get as much CPU as the whole service."""
    with contextlib.suppress(OSError):  # no autogroup here: the niceness alone applies
        Path("/proc/self/autogroup").write_text(f"{niceness}\n")


def _named(name: str) -> None:
    """The name ps and top show: a spare waiting for its job, or a session's worker."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name)


def _warm(schemes: Sequence[str]) -> None:
    """What a spare does while it waits: make ahead what a session's start would."""
    for scheme in schemes:
        kind = KINDS.get(scheme)
        if kind is not None:
            kind.warm()


def main() -> None:
    arguments = _arguments()
    # Background work: the service that answers its users comes first. Before any
    # thread starts, as Linux keeps a niceness per thread.
    os.nice(arguments.niceness)
    _nicer_group(arguments.niceness)
    if arguments.spare is not None:
        _named(SPARE_NAME)
        _warm(arguments.spare.split(","))
    first = sys.stdin.readline()
    if not first:  # a spare the service let go, or a service gone before the job came
        return
    _named(WORKER_NAME)
    out = _Out(sys.stdout)
    try:
        setup = WorkerSetup.from_json(first)
        job = SyncJob.from_json(sys.stdin.readline())
        run(setup, job, sys.stdin, out)
    except StorsyncError as exc:
        out.send(FinishedReport.failed(exc.message))
    except Exception as exc:  # the service reports it; the traceback goes to the log
        import traceback

        traceback.print_exc()
        out.send(FinishedReport.failed(f"internal error: {exc!r}"))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m storsync.service.worker")
    parser.add_argument("--niceness", type=int, default=0)
    parser.add_argument(
        "--spare",
        metavar="SCHEMES",
        help="start as a spare: warm up for remotes of these schemes (s3,file), then wait",
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
