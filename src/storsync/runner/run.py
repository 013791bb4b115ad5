"""Running a job: the one way in to a session, from the command line and the service's
worker alike. It owns what a session needs and nothing outlives it: the pair lock, the
base store, both storages."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from storsync.clock import Clock, SystemClock
from storsync.model import StopSignal
from storsync.runner.bandwidth import Throttle
from storsync.runner.job import SyncJob
from storsync.runner.lock import PairLock
from storsync.runner.observer import SessionObserver
from storsync.runner.report import Report
from storsync.runner.session import SyncSession
from storsync.state.protocol import open_base_store
from storsync.storage import registry
from storsync.storage.local import LocalStorage


def run_job(
    job: SyncJob,
    *,
    credentials: Mapping[str, str] | None = None,
    observer: SessionObserver | None = None,
    stop: StopSignal | None = None,
    clock: Clock | None = None,
    throttle: Throttle | None = None,
) -> Report:
    """Run ``job`` to its end; how it ended is the report's ``state``.

    ``credentials``: the remote's, unsealed by the caller (None: the environment's).
    ``stop``: set it (from any thread, or a signal handler) to end the session at its
    next safe point. ``throttle``: the session's bandwidth limit, when the caller changes
    it while the session runs (default: the job's, fixed). Raises LockedError when
    another process syncs the local root, and UsageError when the job cannot run as given.
    """
    clock = clock or SystemClock()
    job.local_root.mkdir(parents=True, exist_ok=True)
    with PairLock(job.local_root), contextlib.ExitStack() as held:
        store = open_base_store(job.state_url)
        held.callback(store.close)
        local = LocalStorage(job.local_root, clock=clock)
        held.callback(local.close)
        remote = registry.open_remote(job.remote, credentials, clock=clock)
        held.callback(remote.close)
        repository_id = job.repository_id or store.repository_id(
            job.local_root.as_uri(), registry.location(job.remote), now_ns=clock.now_ns()
        )
        session = SyncSession(
            local,
            remote,
            store,
            repository_id,
            job.settings,
            clock=clock,
            observer=observer,
            stop=stop,
            log_session=job.session_id,
            halts=job.halts,
            approves=job.approves,
            throttle=throttle or Throttle(job.settings.bwlimit_bps, clock),
            scope=job.scope,
        )
        return session.run()
