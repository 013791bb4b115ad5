"""What the steps of one session share: both sides, the store, the settings, the stop
signal, the report and counters they fill in, and the few things a step leaves for the
next (where the trash goes, which conflict copies were made)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from storsync.clock import Clock
from storsync.model import BaseEntry, Entry, LogKind, Side, StopSignal, SyncSettings
from storsync.runner.bandwidth import Throttle
from storsync.runner.observer import SessionObserver
from storsync.runner.progress import Progress
from storsync.runner.report import Report
from storsync.runner.retry import Retry
from storsync.state.protocol import BaseStore
from storsync.storage.base import Storage


@dataclass
class SessionContext:
    local: Storage
    remote: Storage
    store: BaseStore
    repository_id: str
    settings: SyncSettings
    clock: Clock
    stop: StopSignal
    observer: SessionObserver
    # The service's session whose log items the durable batches are stored under; None
    # on the command line, which keeps no log items.
    log_session: str | None = None
    throttle: Throttle | None = None  # the session's bandwidth limit, if it has one
    report: Report = field(default_factory=Report)
    progress: Progress = field(default_factory=Progress)
    trash: str | None = None  # this session's trash folder; None: removed outright
    # Conflict renames and copies made before the transfers, by (side, new path): what
    # the transfers then read instead of the scanned entry.
    moved: dict[tuple[Side, str], Entry] = field(default_factory=dict)
    blocked: set[str] = field(default_factory=set)  # paths whose conflict copy failed

    def __post_init__(self) -> None:
        self.retry = Retry(self.clock)

    def storage(self, side: Side) -> Storage:
        return self.local if side is Side.LOCAL else self.remote

    def commit(self, records: Sequence[tuple[str, BaseEntry]], forgotten: Sequence[str]) -> None:
        self.store.commit_base(self.repository_id, records, forgotten)

    def logged(self, kind: LogKind, items: Sequence[tuple[str, int | None]]) -> None:
        """A batch made durable: stored as log items (in the service), then told."""
        if not items:
            return
        ids = None
        if self.log_session is not None:
            ids = self.store.record_items(self.log_session, kind, self.clock.now_ns(), items)
        self.observer.items(kind, items, ids)
