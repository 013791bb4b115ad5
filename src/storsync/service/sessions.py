"""Sessions: the one-running-one-waiting rule, worker processes, their reports, history.

Per repository at most one session runs and at most one waits (API.md section 6): a
trigger while one runs returns the waiting session, creating it if needed. Each running
session is a worker process (storsync.service.worker); a thread per worker reads its
reports and is the only writer of that session's row, its log items and its events.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from storsync.clock import Clock
from storsync.errors import Conflict, StorsyncError, UnknownObject
from storsync.service.events import EventBus
from storsync.service.vault import Vault
from storsync.state.catalog import Catalog
from storsync.state.records import PhaseCounters, PhaseState, Repository, Session, SessionState

log = logging.getLogger("storsync.service")

DAY_NS = 86_400 * 10**9
SHUTDOWN_GRACE_S = 20.0
SHUTDOWN_MESSAGE = "stopped because the service shut down; it carries on at the next start"
# Log items of a finished session's errors, conflicts and skipped paths beyond this many
# are counted, not stored: the counters stay exact, the history stays small.
MAX_REPORTED_ITEMS = 10_000


@dataclass(frozen=True)
class SessionOptions:
    database_url: str
    transfers: int = 8
    niceness: int = 10
    retention_days: float = 30.0
    allow_private_endpoints: bool = False
    # The S3 endpoint whoever started the server gave (the default repository's): trusted
    # at sync time as it was when the repository was made.
    trusted_endpoint: str | None = None


@dataclass
class _Run:
    session_id: str
    process: subprocess.Popen[str]
    reader: threading.Thread
    stderr: IO[bytes]
    finished: bool = False


class SessionManager:
    def __init__(
        self,
        catalog: Catalog,
        bus: EventBus,
        vault: Vault,
        clock: Clock,
        options: SessionOptions,
    ) -> None:
        self.catalog = catalog
        self.bus = bus
        self.vault = vault
        self.clock = clock
        self.options = options
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}  # by repository id
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------

    def recover(self) -> None:
        """After a start: report what a crash interrupted; start what was waiting."""
        now = self.clock.now_ns()
        for session in self.catalog.list_sessions(states=[SessionState.RUNNING], limit=10_000):
            phases: dict[str, Any] = {}
            for name, state in (
                ("push_state", session.push_state),
                ("pull_state", session.pull_state),
            ):
                if state is PhaseState.RUNNING:
                    phases[name] = PhaseState.FAILED
            message = (
                "the service stopped while this session ran; what had completed is kept "
                "and the next session carries on from there"
            )
            self.catalog.update_session(
                session.id, state=SessionState.FAILED, error=message, ended_ns=now, **phases
            )
            self._publish_end(session.id)
        with self._lock:
            for session in self.catalog.list_sessions(states=[SessionState.QUEUED], limit=10_000):
                if session.repository_id not in self._runs:
                    self._start(session.id)
        self.prune()

    def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop running sessions at a safe point; what they left undone waits for the
        next start as a queued session."""
        with self._lock:
            self._closing = True
            runs = list(self._runs.values())
        for run in runs:
            self._tell(run, "stop")
        # One grace for all of them together, not one each.
        deadline = time.monotonic() + grace_s
        for run in runs:
            run.reader.join(max(0.0, deadline - time.monotonic()))
            if run.reader.is_alive():
                run.process.kill()
        for run in runs:
            run.reader.join()

    def prune(self) -> int:
        cutoff = self.clock.now_ns() - int(self.options.retention_days * DAY_NS)
        pruned = self.catalog.prune_sessions(ended_before_ns=cutoff)
        self.bus.forget(pruned)
        return len(pruned)

    # -- use cases --------------------------------------------------------------------

    def trigger(self, repository_id: str, *, trigger: str) -> Session:
        """The session that will carry this request: started, or the one waiting."""
        with self._lock:
            if self.catalog.get_repository(repository_id) is None:
                raise UnknownObject(f"no repository with id {repository_id!r}")
            waiting = self.catalog.list_sessions(
                repository_id=repository_id, states=[SessionState.QUEUED], limit=1
            )
            if waiting:
                return waiting[0]
            session = self.catalog.create_session(
                repository_id, trigger=trigger, now_ns=self.clock.now_ns()
            )
            self._publish("session.queued", session, {"trigger": trigger})
            if repository_id not in self._runs and not self._closing:
                self._start(session.id)
        found = self.catalog.get_session(session.id)
        assert found is not None
        return found

    def stop(self, session_id: str) -> Session:
        with self._lock:
            session = self.catalog.get_session(session_id)
            if session is None:
                raise UnknownObject(f"no session with id {session_id!r}")
            if session.state is SessionState.QUEUED:
                self.catalog.update_session(
                    session_id,
                    state=SessionState.STOPPED,
                    stop_requested=True,
                    ended_ns=self.clock.now_ns(),
                    error="stopped before it started",
                )
                self._publish_end(session_id)
            elif session.state is SessionState.RUNNING:
                self.catalog.update_session(session_id, stop_requested=True)
                run = self._runs.get(session.repository_id)
                if run is not None and run.session_id == session_id:
                    self._tell(run, "stop")
        found = self.catalog.get_session(session_id)
        assert found is not None
        return found

    def running(self) -> int:
        with self._lock:
            return len(self._runs)

    @contextlib.contextmanager
    def idle(self, repository_id: str, what: str) -> Iterator[None]:
        """Hold off the sessions of a repository while it is ``what`` ("changed",
        "deleted"): Conflict if one is queued or running, else no session of it starts
        until the block has ended. One check and one lock with ``trigger``, so a trigger
        comes wholly before the change (which then conflicts) or wholly after it."""
        with self._lock:
            active = self.catalog.list_sessions(
                repository_id=repository_id,
                states=[SessionState.QUEUED, SessionState.RUNNING],
                limit=1,
            )
            # A worker that has reported its end but not yet exited counts as running.
            if active or repository_id in self._runs:
                state = active[0].state.value if active else SessionState.RUNNING.value
                raise Conflict(
                    f"the repository has a session {state}; it can be {what} "
                    "when it has finished or been stopped"
                )
            yield

    # -- workers ----------------------------------------------------------------------

    def _start(self, session_id: str) -> None:
        """Start the worker of a queued session; the caller holds the lock."""
        session = self.catalog.get_session(session_id)
        assert session is not None
        repository = self.catalog.get_repository(session.repository_id)
        if repository is None:
            self._not_started(session_id, "the repository was deleted")
            return
        # A job that cannot be built (credentials sealed under another secret key) fails
        # this session with the reason: left queued, it would block the repository and,
        # at the next start, the whole service.
        try:
            job = {**self._job(repository), "session_id": session_id}
        except StorsyncError as exc:
            self._not_started(session_id, exc.message)
            return
        # Kept for the one line that says why a worker died; the reader closes it.
        stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "storsync.service.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                bufsize=1,
                # Its own process group: a Ctrl-C meant for the service reaches the workers
                # only through the service's orderly shutdown.
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        except OSError as exc:
            stderr.close()
            self._not_started(
                session_id, f"the session's worker process could not be started: {exc}"
            )
            return
        started = self.catalog.update_session(
            session_id, state=SessionState.RUNNING, started_ns=self.clock.now_ns()
        )
        assert started is not None
        self._publish("session.started", started)
        assert process.stdin is not None
        with contextlib.suppress(OSError):  # a worker dead at once: its reader says why
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
        reader = threading.Thread(
            target=self._read,
            args=(session_id, repository.id, process),
            daemon=True,
            name=f"session-{session_id[:8]}",
        )
        self._runs[repository.id] = _Run(session_id, process, reader, stderr)
        reader.start()

    def _not_started(self, session_id: str, error: str) -> None:
        self.catalog.update_session(
            session_id, state=SessionState.FAILED, ended_ns=self.clock.now_ns(), error=error
        )
        self._publish_end(session_id)

    def _job(self, repository: Repository) -> dict[str, Any]:
        sealed = self.catalog.repository_credentials(repository.id)
        credentials = None if sealed is None else self.vault.unseal(sealed)
        endpoint = (credentials or {}).get("endpoint")
        return {
            "repository_id": repository.id,
            "database_url": self.options.database_url,
            "local_url": repository.local_url,
            "remote_url": repository.remote_url,
            "credentials": credentials,
            "mode": repository.mode,
            "policy": repository.policy,
            "excludes": list(repository.excludes),
            "transfers": self.options.transfers,
            "niceness": self.options.niceness,
            # The worker checks the endpoint's addresses again before it connects.
            "allow_private_endpoints": self.options.allow_private_endpoints
            or (endpoint is not None and endpoint == self.options.trusted_endpoint),
        }

    def _tell(self, run: _Run, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # the worker is gone already
            assert run.process.stdin is not None
            run.process.stdin.write(line + "\n")
            run.process.stdin.flush()

    def _read(self, session_id: str, repository_id: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        finished = False
        try:
            for line in process.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                # A report the store failed to record (a database hiccup) is lost, not
                # the reader: stopping here would leave the worker blocked on a full pipe
                # and the repository wedged until a restart.
                try:
                    self._handle(session_id, repository_id, message)
                except Exception:
                    log.exception("session %s: a report of its worker was not recorded", session_id)
                    continue
                if message.get("type") == "finished":
                    finished = True
        finally:
            status = process.wait()
            with self._lock:
                run = self._runs.pop(repository_id)
                if not finished and self._closing:
                    # Ended by the shutdown, not at a safe point: what it had made durable
                    # is kept; ``_finish`` says so and ``_after`` leaves a resumption.
                    self._handle(
                        session_id,
                        repository_id,
                        {
                            "type": "finished",
                            "state": "stopped",
                            "error": "the session was stopped before it finished",
                        },
                    )
                elif not finished:
                    self._handle(
                        session_id,
                        repository_id,
                        {
                            "type": "finished",
                            "state": "failed",
                            "error": (
                                "the session's worker process ended unexpectedly "
                                f"({_death(status, run.stderr)}); what had completed is kept "
                                "and the next session carries on from there"
                            ),
                        },
                    )
                run.stderr.close()
                if process.stdin is not None:
                    with contextlib.suppress(OSError):
                        process.stdin.close()
                self._after(session_id, repository_id)

    def _after(self, session_id: str, repository_id: str) -> None:
        """Start the waiting session, or leave a resumption for the next service start."""
        ended = self.catalog.get_session(session_id)
        waiting = self.catalog.list_sessions(
            repository_id=repository_id, states=[SessionState.QUEUED], limit=1
        )
        if self._closing:
            interrupted = (
                ended is not None
                and ended.state is SessionState.STOPPED
                and not ended.stop_requested
            )
            if interrupted and not waiting:
                resumption = self.catalog.create_session(
                    repository_id, trigger="resume", now_ns=self.clock.now_ns()
                )
                self._publish("session.queued", resumption, {"trigger": "resume"})
            return
        if waiting:
            self._start(waiting[0].id)

    # -- reports from a worker --------------------------------------------------------

    def _handle(self, session_id: str, repository_id: str, message: dict[str, Any]) -> None:
        kind = message.get("type")
        now = self.clock.now_ns()
        ids = {"repository_id": repository_id, "session_id": session_id}
        if kind == "phase":
            phase, state = str(message["phase"]), PhaseState(message["state"])
            session = self.catalog.update_session(session_id, **{f"{phase}_state": state})
            name = "phase.started" if state is PhaseState.RUNNING else "phase.finished"
            self._publish(name, session, {"phase": phase, "state": state.value})
        elif kind == "progress":
            values: dict[str, Any] = {"percent": int(message["percent"])}
            for phase in ("push", "pull"):
                for key, value in message[phase].items():
                    values[f"{phase}_{key}"] = int(value)
            session = self.catalog.update_session(session_id, **values)
            self._publish(
                "session.progress",
                session,
                {
                    "phase": message["phase"],
                    "rateBps": message["rate_bps"],
                    "etaSeconds": message["eta_s"],
                },
            )
        elif kind == "items":
            # One event per durable batch, delivered only to those who ask for it. The
            # worker stored the batch's log items; the event says where they are, and the
            # event hub reads them for whoever asked (storsync.service.hub).
            self.bus.publish(
                "items.transferred",
                **ids,
                data={
                    "kind": str(message["kind"]),
                    "count": int(message["count"]),
                    "firstItemId": int(message["first"]),
                    "lastItemId": int(message["last"]),
                },
            )
        elif kind == "finished":
            self._finish(session_id, message, now, ids)

    def _finish(
        self, session_id: str, message: dict[str, Any], now: int, ids: dict[str, str]
    ) -> None:
        state = SessionState(message["state"])
        session = self.catalog.get_session(session_id)
        assert session is not None
        summary: dict[str, Any] = message.get("summary") or {}
        errors = list(summary.get("errors", []))
        conflicts = list(summary.get("conflicts", []))
        skipped = list(message.get("skipped", []))
        items = _items(now, "error", ({"path": e["path"], "message": e["message"]} for e in errors))
        items += _items(now, "conflict", ({"path": p, "message": None} for p in conflicts))
        items += _items(now, "skipped", skipped)
        self.catalog.add_log_items(session_id, items[: MAX_REPORTED_ITEMS * 3])
        error = message.get("error")
        if state is SessionState.PARTIAL and not error:
            first = errors[0] if errors else {"path": "", "message": ""}
            error = (
                f"{len(errors)} file(s) could not be synchronized, "
                f"first {first['path']}: {first['message']}"
            )
        if state is SessionState.STOPPED and self._closing and not session.stop_requested:
            error = SHUTDOWN_MESSAGE
        values: dict[str, Any] = {
            "state": state,
            "ended_ns": now,
            "error": error,
            "pushed": int(summary.get("pushed", 0)),
            "pulled": int(summary.get("pulled", 0)),
            "deleted_local": int(summary.get("deleted_local", 0)),
            "deleted_remote": int(summary.get("deleted_remote", 0)),
            "conflicts": len(conflicts),
            "errors": len(errors),
        }
        if state in (SessionState.COMPLETED, SessionState.PARTIAL):
            values["percent"] = 100
        for phase in ("push_state", "pull_state"):
            if getattr(session, phase) is PhaseState.RUNNING:
                values[phase] = (
                    PhaseState.FAILED if state is SessionState.FAILED else PhaseState.STOPPED
                )
        ended = self.catalog.update_session(session_id, **values)
        for path in conflicts[:MAX_REPORTED_ITEMS]:
            self._publish("session.conflict", ended, {"path": path})
        self._publish_end(session_id)

    def _publish_end(self, session_id: str) -> None:
        session = self.catalog.get_session(session_id)
        assert session is not None
        name = {
            SessionState.FAILED: "session.failed",
            SessionState.STOPPED: "session.stopped",
        }.get(session.state, "session.finished")
        self._publish(name, session)

    def _publish(
        self, name: str, session: Session | None, data: dict[str, Any] | None = None
    ) -> None:
        """An event about a session, carrying the session as it is now, so that every
        face renders the event as of its time without reading the store again."""
        assert session is not None
        self.bus.publish(
            name,
            repository_id=session.repository_id,
            session_id=session.id,
            data={**(data or {}), "session": snapshot(session)},
        )


def _death(status: int, stderr: IO[bytes]) -> str:
    """How a worker ended: the signal that killed it, else the last line it wrote."""
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-status).name}"
        return f"killed by signal {-status}"
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {status}"


def _items(now: int, kind: str, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"ts_ns": now, "kind": kind, "path": e["path"], "message": e.get("message"), "size": None}
        for e in entries
    ]


def snapshot(session: Session) -> dict[str, Any]:
    """The session in an event: what any face needs to render it."""

    def counters(c: PhaseCounters) -> dict[str, int]:
        return {
            "filesPlanned": c.files_planned,
            "filesDone": c.files_done,
            "bytesPlanned": c.bytes_planned,
            "bytesDone": c.bytes_done,
        }

    return {
        "id": session.id,
        "repositoryId": session.repository_id,
        "state": session.state.value,
        "started": session.started_ns is not None,
        "pushId": session.push_id,
        "pullId": session.pull_id,
        "pushState": None if session.push_state is None else session.push_state.value,
        "pullState": None if session.pull_state is None else session.pull_state.value,
        "progressPercent": session.percent,
        "push": counters(session.push),
        "pull": counters(session.pull),
        "error": session.error,
    }
