"""A session's worker process, seen from the service: started with its job, told to stop,
and read by a thread of its own until it ends."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import IO

from storsync.runner.job import SyncJob
from storsync.service.reports import (
    STOP,
    FinishedReport,
    WorkerReport,
    WorkerSetup,
    bwlimit_line,
    decode,
)
from storsync.storage.registry import kind_of

log = logging.getLogger("storsync.service")


class WorkerProcess:
    def __init__(self, session_id: str, process: subprocess.Popen[str], stderr: IO[bytes]) -> None:
        self.session_id = session_id
        self._process = process
        self._stderr = stderr  # kept for the one line that says why a worker died
        self._reader: threading.Thread | None = None
        self.bwlimit: int | None = None  # the bandwidth limit it was last given

    @classmethod
    def start(cls, niceness: int, spare_for: str | None = None) -> WorkerProcess:
        """A worker process, waiting for its job (a spare warms up for remotes of the
        scheme ``spare_for`` meanwhile); OSError when it cannot be started."""
        command = [sys.executable, "-u", "-m", "storsync.service.worker", "--niceness"]
        command += [str(niceness), *(["--spare", spare_for] if spare_for else [])]
        stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed when the worker ends)
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
                # Its own process group: a Ctrl-C meant for the service reaches the workers
                # only through the service's orderly shutdown.
                start_new_session=True,
            )
        except OSError:
            stderr.close()
            raise
        return cls("", process, stderr)

    def alive(self) -> bool:
        return self._process.poll() is None

    def give(self, session_id: str, setup: WorkerSetup, job: SyncJob) -> None:
        """Its session's job (a worker dead already: its reader says why)."""
        self.session_id = session_id
        self._tell(setup.to_json(), job.to_json())

    def let_go(self) -> None:
        """A spare no longer needed: the end of its input ends it."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)
        self._stderr.close()

    def follow(
        self, on_report: Callable[[WorkerReport], None], on_end: Callable[[str | None], None]
    ) -> None:
        """Read the worker's reports in a thread of their own, handing each to
        ``on_report``; when it has ended, ``on_end(None)``, or ``on_end(how it died)`` if it
        ended without reporting its end."""
        self._reader = threading.Thread(
            target=self._read,
            args=(on_report, on_end),
            daemon=True,
            name=f"session-{self.session_id[:8]}",
        )
        self._reader.start()

    def limit(self, bytes_per_second: int | None) -> None:
        """Change the session's bandwidth limit while it runs."""
        self.bwlimit = bytes_per_second
        self._tell(bwlimit_line(bytes_per_second))

    def stop(self) -> None:
        """Ask for a stop at the next safe point."""
        self._tell(STOP)

    def kill(self) -> None:
        self._process.kill()

    def wait(self, timeout: float | None) -> bool:
        """Whether the worker has ended and its reports are all handled (within timeout)."""
        assert self._reader is not None
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def _tell(self, *lines: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the worker is gone already
            assert self._process.stdin is not None
            self._process.stdin.write("".join(f"{line}\n" for line in lines))
            self._process.stdin.flush()

    def _read(
        self, on_report: Callable[[WorkerReport], None], on_end: Callable[[str | None], None]
    ) -> None:
        assert self._process.stdout is not None
        finished = False
        try:
            for line in self._process.stdout:
                try:
                    report = decode(line)
                except (ValueError, KeyError, TypeError):
                    continue
                # A report the store failed to record (a database hiccup) is lost, not the
                # reader: stopping here would leave the worker blocked on a full pipe and
                # the repository wedged until a restart.
                try:
                    on_report(report)
                except Exception:
                    log.exception(
                        "session %s: a report of its worker was not recorded", self.session_id
                    )
                    continue
                finished = finished or isinstance(report, FinishedReport)
        finally:
            status = self._process.wait()
            death = None if finished else self._death(status)
            self._stderr.close()
            if self._process.stdin is not None:
                with contextlib.suppress(OSError):
                    self._process.stdin.close()
            on_end(death)

    def _death(self, status: int) -> str:
        """How a worker ended: the signal that killed it, else the last line it wrote."""
        if status < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-status).name}"
            return f"killed by signal {-status}"
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {status}"


class Workers:
    """Starts the workers of sessions. With ``spare``, one more process is kept started
    ahead, its imports done and its S3 client library ready: a small session's start
    was 1.1 s, a third of it the worker's own start (docs/benchmarks.md). The spare
    costs its memory while the service is idle (61 MiB resident for S3, 33 otherwise)."""

    def __init__(self, niceness: int, *, spare: bool) -> None:
        self.niceness = niceness
        self.spare = spare
        self._spare: WorkerProcess | None = None
        self._scheme: str | None = None  # the remote of the last session started
        self._closed = False
        self._lock = threading.Lock()

    def start(self, session_id: str, setup: WorkerSetup, job: SyncJob) -> WorkerProcess:
        """The session's worker, given its job: the spare if one waits, else a new one;
        OSError when none can be started."""
        with self._lock:
            worker, self._spare = self._spare, None
            self._scheme = kind_of(job.remote.url).scheme
        if worker is not None and not worker.alive():  # killed, or its start failed
            worker.let_go()
            worker = None
        if worker is None:
            worker = WorkerProcess.start(self.niceness)
        worker.give(session_id, setup, job)
        return worker

    def keep_spare(self) -> None:
        """A spare ready for the next session, warmed for the remote of the last one
        started (the likeliest next)."""
        with self._lock:
            if not self.spare or self._closed or self._scheme is None:
                return
            if self._spare is not None and self._spare.alive():
                return
            try:
                self._spare = WorkerProcess.start(self.niceness, spare_for=self._scheme)
            except OSError:
                log.warning("no spare worker could be started; sessions start without one")
                self._spare = None

    def close(self) -> None:
        """Let the spare go; none is started after this."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.let_go()
