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

log = logging.getLogger("storsync.service")


class WorkerProcess:
    def __init__(self, session_id: str, process: subprocess.Popen[str], stderr: IO[bytes]) -> None:
        self.session_id = session_id
        self._process = process
        self._stderr = stderr  # kept for the one line that says why a worker died
        self._reader: threading.Thread | None = None
        self.bwlimit: int | None = None  # the bandwidth limit it was last given

    @classmethod
    def spawn(cls, session_id: str, setup: WorkerSetup, job: SyncJob) -> WorkerProcess:
        """The worker, started and given its job; OSError when it cannot be started."""
        stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed when the worker ends)
        try:
            process = subprocess.Popen(
                [sys.executable, "-u", "-m", "storsync.service.worker"],
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
        worker = cls(session_id, process, stderr)
        worker._tell(setup.to_json(), job.to_json())  # a worker dead at once: its reader says why
        return worker

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
