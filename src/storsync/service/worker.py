"""One session in its own process, so that scanning, hashing and transfers never hold the
API's interpreter (ARCHITECTURE.md). Started by the session manager as
``python -m storsync.service.worker``.

In: one JSON line, the job; then ``stop`` lines. The end of the input (the service went
away) also stops the session at its next safe point.
Out: JSON lines: ``phase``, ``progress`` (at most 5 a second), ``items`` (per durable
batch: its log items are written here, the line says which ids they got), then exactly
one ``finished``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from storsync.errors import StorsyncError
from storsync.model import ConflictPolicy, Mode, Side
from storsync.runner.lock import PairLock
from storsync.runner.progress import Snapshot
from storsync.runner.session import SyncSession, SyncSettings
from storsync.service import endpoints
from storsync.state.protocol import SessionLogStore
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.local import LocalStorage
from storsync.storage.remotes import S3Options, open_remote

PROGRESS_INTERVAL_S = 0.2


class _Out:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class _Observer:
    def __init__(self, out: _Out, store: SessionLogStore, session_id: str) -> None:
        self.out = out
        self.store = store
        self.session_id = session_id

    def phase(self, side: Side, state: str) -> None:
        self.out.send({"type": "phase", "phase": _phase(side), "state": state})

    def items(self, kind: str, items: list[tuple[str, int | None]]) -> None:
        # Written here, not sent: a 10,000-file sync would otherwise have the API's
        # process insert 10,000 rows, and every request wait on its interpreter meanwhile
        # (docs/benchmarks.md). The service is told where the batch is.
        first, last = self.store.record_items(self.session_id, kind, time.time_ns(), items)
        self.out.send(
            {"type": "items", "kind": kind, "count": len(items), "first": first, "last": last}
        )


def _phase(side: Side) -> str:
    return "push" if side is Side.REMOTE else "pull"


def _progress(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "type": "progress",
        "phase": snapshot.phase,
        "percent": snapshot.percent,
        "push": vars(snapshot.push),
        "pull": vars(snapshot.pull),
        "rate_bps": round(snapshot.rate_bps),
        "eta_s": None if snapshot.eta_s is None else round(snapshot.eta_s, 1),
    }


def run(job: dict[str, Any], stdin: IO[str], out: _Out) -> None:
    settings = SyncSettings(
        mode=Mode(job["mode"]),
        policy=ConflictPolicy(job["policy"]),
        excludes=tuple(job["excludes"]),
        transfers=int(job["transfers"]),
    )
    local_root = Path(unquote(urlsplit(job["local_url"]).path))
    credentials = job.get("credentials") or {}
    s3 = S3Options(
        endpoint=credentials.get("endpoint"),
        region=credentials.get("region"),
        access_key_id=credentials.get("accessKeyId"),
        secret_access_key=credentials.get("secretAccessKey"),
    )
    if job["remote_url"].startswith("s3://") and s3.endpoint and not job["allow_private_endpoints"]:
        # Resolved again now, and held to that answer: the name may have been made to
        # point at a private address since the repository was checked (DNS rebinding).
        endpoints.pin(s3.endpoint, endpoints.check(s3.endpoint))
    local_root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with PairLock(local_root):
        store = _base_store(job["database_url"])
        local = LocalStorage(local_root)
        remote = open_remote(job["remote_url"], s3)
        try:
            session = SyncSession(
                local,
                remote,
                store,
                job["repository_id"],
                settings,
                observer=_Observer(out, store, job["session_id"]),
            )
            threading.Thread(target=_watch_input, args=(stdin, session), daemon=True).start()
            # A service manager that signals the whole group (systemd's default) gets the
            # same orderly stop as the service's own "stop" line.
            signal.signal(signal.SIGTERM, lambda _signum, _frame: session.stop())
            done = threading.Event()
            ticker = threading.Thread(target=_tick, args=(session, out, done, started), daemon=True)
            ticker.start()
            try:
                report = session.run()
            finally:
                done.set()
                ticker.join()
        finally:
            remote.close()
            local.close()
            store.close()
    out.send(_progress(session.progress.snapshot(time.monotonic() - started)))
    out.send(
        {
            "type": "finished",
            "state": report.state,
            "error": report.message,
            "summary": {k: v for k, v in report.summary().items() if k not in ("plan", "skipped")},
            "skipped": [{"path": s.path, "message": s.reason} for s in report.skipped],
        }
    )


def _base_store(url: str) -> SessionLogStore:
    """SQLite through the standard library (SQLAlchemy's import costs a worker ~0.7 s
    before it does anything); other databases through SQLAlchemy."""
    if url.startswith("sqlite:///"):
        return SqliteBaseStore(Path(url.removeprefix("sqlite:///")))
    from storsync.state.store import StateStore

    return StateStore(url)


def _watch_input(stdin: IO[str], session: SyncSession) -> None:
    for line in stdin:
        if line.strip() == "stop":
            break
    session.stop()


def _tick(session: SyncSession, out: _Out, done: threading.Event, started: float) -> None:
    last: dict[str, Any] | None = None
    while not done.wait(PROGRESS_INTERVAL_S):
        message = _progress(session.progress.snapshot(time.monotonic() - started))
        if message != last:
            out.send(message)
            last = message


def _nicer_group(niceness: int) -> None:
    """The same niceness for the worker's scheduling group. The worker leads a session of
    its own, and where Linux groups tasks by session (autogroup, the default of desktop
    and many server kernels) a niceness only weighs within the group: without this the
    worker would still get as much CPU as the whole service."""
    with contextlib.suppress(OSError):  # no autogroup here: the niceness alone applies
        Path("/proc/self/autogroup").write_text(f"{niceness}\n")


def main() -> None:
    out = _Out(sys.stdout)
    job: dict[str, Any] = {}
    try:
        job = json.loads(sys.stdin.readline())
        # Background work: the service that answers its users comes first. Before any
        # thread starts, as Linux keeps a niceness per thread.
        os.nice(int(job["niceness"]))
        _nicer_group(int(job["niceness"]))
        run(job, sys.stdin, out)
    except StorsyncError as exc:
        out.send({"type": "finished", "state": "failed", "error": exc.message})
    except Exception as exc:  # the service reports it; the traceback goes to the log
        import traceback

        traceback.print_exc()
        out.send({"type": "finished", "state": "failed", "error": f"internal error: {exc!r}"})


if __name__ == "__main__":
    main()
