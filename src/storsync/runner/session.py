"""One synchronization of one pair: scan both sides once, plan, carry out both directions.

Transfers are staged by a bounded pool of worker threads (reading, hashing and writing
release the GIL); the calling thread publishes them in batches: flush the staged data,
re-check each target and rename it into place, flush the names, then commit the base rows
of the batch in one transaction. A killed process therefore loses at most the batch in
flight, and a rerun finds those files identical on both sides and only records them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, Protocol, TypeVar

from storsync.clock import Clock, SystemClock, utc_stamp
from storsync.engine.compare import needs_hash, untouched
from storsync.engine.filters import PathFilter
from storsync.engine.paths import normalize, parents
from storsync.engine.reconcile import Delete, Options, Plan, Transfer, check_safety, reconcile
from storsync.errors import ChangedError, SafetyError, StorageError, StorsyncError, UsageError
from storsync.model import BaseEntry, ConflictPolicy, Entry, Mode, Side, Skipped
from storsync.runner.progress import Progress, Snapshot
from storsync.state.protocol import BaseStore
from storsync.storage.base import OWN_FORMAT, Source, Staged, Storage, interruptible

T = TypeVar("T")
V = TypeVar("V")
P = ParamSpec("P")

BATCH_FILES = 1000
BATCH_BYTES = 256 << 20
BATCH_SECONDS = 1.0
RETRY_DELAYS = (0.1, 0.5, 2.0)
DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class SyncSettings:
    mode: Mode = Mode.TWO_WAY
    policy: ConflictPolicy = ConflictPolicy.KEEP_BOTH
    checksum: bool = False
    dry_run: bool = False
    excludes: tuple[str, ...] = ()
    max_delete_percent: float = 50.0
    force: bool = False
    transfers: int = 8
    trash: bool = True
    trash_days: float = 30.0


@dataclass
class Report:
    state: str = "completed"
    pushed: int = 0
    pulled: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    conflicts: list[str] = field(default_factory=list)
    bytes_pushed: int = 0
    bytes_pulled: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    plan: Plan | None = None
    message: str | None = None

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def summary(self) -> dict[str, object]:
        """The ``--json`` object of CLI.md, plus the log items of skipped paths."""
        out: dict[str, object] = {
            "state": self.state,
            "pushed": self.pushed,
            "pulled": self.pulled,
            "deleted_local": self.deleted_local,
            "deleted_remote": self.deleted_remote,
            "conflicts": sorted(set(self.conflicts)),
            "bytes_pushed": self.bytes_pushed,
            "bytes_pulled": self.bytes_pulled,
            "errors": self.errors,
            "skipped": [
                {"side": s.side.value, "path": s.path, "reason": s.reason} for s in self.skipped
            ],
        }
        if self.message:
            out["message"] = self.message
        if self.plan is not None:
            out["plan"] = self.plan.as_json()
        return out


class SessionStopped(StorsyncError):
    """Raised at a safe point after ``stop()``; the session's state becomes ``stopped``."""


class SessionObserver(Protocol):
    """Told of each direction's progress and of each batch of files made durable."""

    def phase(self, side: Side, state: str) -> None:
        """``state``: running, then completed, partial, failed or stopped."""

    def items(self, kind: str, items: list[tuple[str, int | None]]) -> None:
        """``kind``: pushed, pulled, deleted-local or deleted-remote; (path, size) each."""


class SyncSession:
    def __init__(
        self,
        local: Storage,
        remote: Storage,
        store: BaseStore,
        repository_id: str,
        settings: SyncSettings,
        *,
        clock: Clock | None = None,
        on_progress: Callable[[Snapshot], None] | None = None,
        observer: SessionObserver | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.store = store
        self.repository_id = repository_id
        self.settings = settings
        self.clock = clock or SystemClock()
        self.on_progress = on_progress
        self.observer = observer
        self.progress = Progress()
        self.report = Report()
        self.filter = PathFilter(settings.excludes)
        now = self.clock.now_ns()
        self._stamp_ns = now
        self.stamp = utc_stamp(now)
        self.trash = f"{self.stamp}-{secrets.token_hex(3)}" if settings.trash else None
        self._started = self.clock.monotonic()
        self._moved: dict[tuple[Side, str], Entry] = {}
        self._blocked: set[str] = set()
        self._report_lock = threading.Lock()
        # Set by stop() from another thread or a signal handler, read once per scanned entry
        # and hashed chunk: a plain attribute costs half of an Event's is_set() call.
        self._stopping = False

    # -- public -----------------------------------------------------------------------

    def run(self) -> Report:
        """Run the session; a failure is reported in ``state`` and ``message``."""
        try:
            self._run()
        except StorsyncError as exc:
            self.report.state = "stopped" if isinstance(exc, SessionStopped) else "failed"
            self.report.message = exc.message
            if isinstance(exc, UsageError):
                raise
        else:
            self.report.state = "partial" if self.report.errors else "completed"
            self.progress.finished = True
        self._emit(force=True)
        return self.report

    def stop(self) -> None:
        """Ask the session to stop at the next safe point.

        Safe points: between the entries, listing pages and hashed chunks of the scan and
        hash stage (nothing is changed yet), then between phases and files.
        """
        self._stopping = True

    # -- steps ------------------------------------------------------------------------

    def storage(self, side: Side) -> Storage:
        return self.local if side is Side.LOCAL else self.remote

    def _run(self) -> None:
        for storage in (self.local, self.remote):
            storage.start_session()
        base = self.store.load_base(self.repository_id)
        self._check_markers(established=bool(base))
        local, remote = self._scan()
        base = {p: b for p, b in base.items() if not self._filtered(p)}
        self._refuse_case_collisions(local, remote, base)
        self._leave_skipped_alone(local, remote, base)
        self._fresh_conflict_stamp(local, remote)
        self._fill_from_base(Side.LOCAL, local, base)
        self._fill_from_base(Side.REMOTE, remote, base)
        self._hash(local, remote, base)
        plan = reconcile(
            local,
            remote,
            base,
            local_caps=self.local.caps,
            remote_caps=self.remote.caps,
            options=Options(
                mode=self.settings.mode,
                policy=self.settings.policy,
                checksum=self.settings.checksum,
                conflict_stamp=self.stamp,
            ),
        )
        if not self.settings.force:
            check_safety(
                plan,
                local_count=len(local),
                remote_count=len(remote),
                base_count=len(base),
                max_delete_percent=self.settings.max_delete_percent,
            )
        self._stop_before_changes()
        if self.settings.dry_run:
            self.report.plan = plan
            self.report.conflicts = list(plan.conflicts)
            return
        self._write_markers()
        if self.settings.trash:
            cutoff = self.clock.now_ns() - int(self.settings.trash_days * DAY_NS)
            for storage in (self.local, self.remote):
                storage.prune_trash(cutoff)
        self._execute(plan)

    def _filtered(self, path: str) -> bool:
        return bool(self.filter) and self.filter.excluded(path)

    def _refuse_case_collisions(
        self, local: Mapping[str, Entry], remote: Mapping[str, Entry], base: Mapping[str, object]
    ) -> None:
        """Where the local side cannot tell ``A`` from ``a``, one remote spelling per name.

        The spelling kept is the one the local side (else the base) already has, else the
        first in order; the others are refused with a log item, and so left alone.
        """
        if self.local.caps.case_sensitive:
            return
        spellings: dict[str, list[str]] = {}
        for path in remote:
            spellings.setdefault(path.casefold(), []).append(path)
        for paths in spellings.values():
            if len(paths) < 2:
                continue
            paths.sort()
            kept = next((p for p in paths if p in local), None)
            kept = kept or next((p for p in paths if p in base), paths[0])
            for path in paths:
                if path != kept:
                    self.report.skipped.append(
                        Skipped(
                            Side.REMOTE,
                            path,
                            f"differs only by case from {kept}, "
                            "which the local file system cannot tell apart",
                        )
                    )

    def _leave_skipped_alone(self, *maps: dict[str, Entry] | dict[str, BaseEntry]) -> None:
        """Take every path a scan skipped, and what lies under it, out of this session.

        A skipped path (a link, a special file, an unreadable folder, a refused name) is
        not a deletion: its base row and the other side's file stay as they are. Names are
        compared in NFC: a refused spelling also holds back its normalized twin.
        """
        skipped = {normalize(s.path) for s in self.report.skipped}
        if not skipped:
            return
        everything = "." in skipped
        for mapping in maps:
            for path in [
                p
                for p in mapping
                if everything or p in skipped or any(d in skipped for d in parents(p))
            ]:
                del mapping[path]

    def _fill_from_base(
        self, side: Side, entries: dict[str, Entry], base: Mapping[str, BaseEntry]
    ) -> None:
        """Give an object whose ETag is the base's the mtime and bit its listing lacks."""
        if self.storage(side).caps.listing_metadata:
            return
        for path, entry in entries.items():
            known = base.get(path)
            if known is None or entry.size != known.size:
                continue
            then = known.stamp(side)
            if entry.etag is not None and entry.etag == then.etag:
                entries[path] = dataclasses.replace(
                    entry, mtime_ns=then.mtime_ns, executable=then.executable
                )

    def _fresh_conflict_stamp(self, *sides: Mapping[str, Entry]) -> None:
        """Name this session's conflict copies with a second no existing copy uses.

        A session interrupted after making a copy leaves it under its own second; a rerun
        in that same second would otherwise try to make the copy again under that name.
        """
        while any(f".conflict-{self.stamp}-" in path for side in sides for path in side):
            self._stamp_ns += 10**9
            self.stamp = utc_stamp(self._stamp_ns)

    def _check_markers(self, *, established: bool) -> None:
        for side in Side:
            raw = self._retry(self.storage(side).read_own, "format")
            if raw is not None and raw.strip().isdigit() and int(raw) > OWN_FORMAT:
                raise UsageError(
                    f"the {side.value} side was written by a newer storsync "
                    f"(layout format {int(raw)}); upgrade storsync to synchronize it"
                )
            if not established or self.settings.force:
                continue
            marker = self._retry(self.storage(side).read_own, f"repositories/{self.repository_id}")
            if marker is None:
                raise SafetyError(
                    f"the {side.value} root {self.storage(side).url} does not carry this "
                    "repository's marker although it was synchronized before: it may be "
                    "empty, unmounted or a different one; use --force if it is right"
                )

    def _write_markers(self) -> None:
        marker = json.dumps({"repository": self.repository_id}).encode()
        for storage in (self.local, self.remote):
            if self._retry(storage.read_own, "format") is None:
                self._retry(storage.write_own, "format", str(OWN_FORMAT).encode())
            name = f"repositories/{self.repository_id}"
            if self._retry(storage.read_own, name) is None:
                self._retry(storage.write_own, name, marker)

    def _scan(self) -> tuple[dict[str, Entry], dict[str, Entry]]:
        def scan(side: Side) -> dict[str, Entry]:
            skipped: list[Skipped] = []
            with interruptible(self._stop_before_changes):
                found = self._retry(
                    lambda: self.storage(side).scan(
                        lambda p, r: skipped.append(Skipped(side, p, r))
                    )
                )
            with self._report_lock:
                self.report.skipped.extend(skipped)
            if self.filter:
                found = {p: e for p, e in found.items() if not self.filter.excluded(p)}
            return found

        with ThreadPoolExecutor(2) as pool:
            remote = pool.submit(scan, Side.REMOTE)
            local = scan(Side.LOCAL)
            return local, remote.result()

    def _hash(
        self,
        local: dict[str, Entry],
        remote: dict[str, Entry],
        base: Mapping[str, BaseEntry],
    ) -> None:
        """Fill in the content hashes the decisions depend on, and only those."""
        wanted: list[tuple[Side, str, Entry]] = []
        # Paths whose stamps are the base's on both sides need no hash (needs_hash says so
        # too): found in one pass instead of two needs_hash calls each.
        settled: set[str] = set()
        if not self.settings.checksum:
            settled = {p for p, b in base.items() if untouched(local.get(p), remote.get(p), b)}
        for side, mine, theirs in ((Side.LOCAL, local, remote), (Side.REMOTE, remote, local)):
            caps = self.storage(side).caps
            for path, entry in mine.items():
                if path in settled:
                    continue
                if (self.settings.checksum and entry.hash is None) or needs_hash(
                    entry, theirs.get(path), base.get(path), side, caps
                ):
                    wanted.append((side, path, entry))
        if not wanted:
            return

        def digest(item: tuple[Side, str, Entry]) -> Entry | None:
            side, path, entry = item
            storage = self.storage(side)
            self._stop_before_changes()
            try:
                if not storage.caps.listing_metadata:
                    # The decision compares the bit (and, for "newer", the mtime) that a
                    # listing lacks: one HEAD gives them, and the stored hash if any.
                    now = storage.stat(path)
                    if now is None or now.etag != entry.etag:
                        return None
                    entry = dataclasses.replace(
                        entry, mtime_ns=now.mtime_ns, executable=now.executable
                    )
                    if now.hash is not None:
                        return dataclasses.replace(entry, hash=now.hash)
                with interruptible(self._stop_before_changes):
                    return dataclasses.replace(entry, hash=storage.hash(path, entry))
            except (ChangedError, StorageError):
                return None  # decided without the hash: safe, at worst a conflict copy

        self.progress.phase = "hashing"
        # A stop raises SessionStopped out of the files being hashed; the map then cancels
        # those still queued, so the pool's exit waits only for the few in flight.
        with ThreadPoolExecutor(self.settings.transfers) as pool:
            for (side, path, _), value in zip(wanted, pool.map(digest, wanted), strict=True):
                if value is not None:
                    target = local if side is Side.LOCAL else remote
                    target[path] = value

    # -- execution --------------------------------------------------------------------

    def _execute(self, plan: Plan) -> None:
        self.report.conflicts = list(plan.conflicts)
        for side, counters in ((Side.REMOTE, self.progress.push), (Side.LOCAL, self.progress.pull)):
            transfers = plan.transfers(side)
            counters.files_planned = len(transfers) + len(plan.deletes(side))
            counters.bytes_planned = sum(t.source.size for t in transfers)
        self._prelude(plan)
        self._commit([(r.path, BaseEntry.of(r.local, r.remote, r.hash)) for r in plan.record], [])
        self._commit([], plan.forget)
        for side in (Side.REMOTE, Side.LOCAL):
            self._stop_point()
            self.progress.phase = "push" if side is Side.REMOTE else "pull"
            self._phase(side, "running")
            errors_before = len(self.report.errors)
            try:
                self._deletions(side, plan.deletes(side))
                self._transfers(side, plan.transfers(side))
                self._stop_point()
            except SessionStopped:
                self._phase(side, "stopped")
                raise
            except StorsyncError:
                self._phase(side, "failed")
                raise
            self._phase(side, "partial" if len(self.report.errors) > errors_before else "completed")

    def _stop_point(self) -> None:
        if self._stopping:
            raise SessionStopped("the session was stopped before it finished")

    def _stop_before_changes(self) -> None:
        """The stop point of the scan and hash stage, checked per entry and per chunk."""
        if self._stopping:
            raise SessionStopped(
                f"the session was stopped while {self.progress.phase}, before it changed "
                "anything; the next run scans again"
            )

    def _phase(self, side: Side, state: str) -> None:
        if self.observer is not None:
            self.observer.phase(side, state)

    def _logged(self, kind: str, items: list[tuple[str, int | None]]) -> None:
        if self.observer is not None and items:
            self.observer.items(kind, items)

    def _prelude(self, plan: Plan) -> None:
        """Conflict renames and copies, before anything is transferred."""
        forgotten = []
        for rename in plan.renames:
            try:
                moved = self._retry(
                    self.storage(rename.side).move, rename.path, rename.new_path, rename.entry
                )
            except StorsyncError as exc:
                self.report.error(rename.path, exc.message)
                self._blocked.add(rename.new_path)
                continue
            self._moved[(rename.side, rename.new_path)] = moved
            forgotten.append(rename.path)
        for keep in plan.keep_both:
            try:
                copied = self._retry(self.remote.copy, keep.path, keep.copy_path, keep.remote)
            except StorsyncError as exc:
                self.report.error(keep.path, exc.message)
                self._blocked.update((keep.path, keep.copy_path))
                continue
            self._moved[(Side.REMOTE, keep.copy_path)] = copied
        self._commit([], forgotten)

    def _deletions(self, side: Side, deletes: list[Delete]) -> None:
        storage = self.storage(side)
        down: list[StorsyncError] = []

        def one(delete: Delete) -> StorsyncError | None:
            if down:  # the storage is out: the rest waits for the next session
                return down[0]
            try:
                self._retry(storage.remove, delete.path, delete.entry, trash=self.trash)
            except (ChangedError, StorageError) as exc:
                if exc.retryable:
                    down.append(exc)
                return exc
            return None

        forgotten: list[str] = []
        outage: StorsyncError | None = None
        with ThreadPoolExecutor(self.settings.transfers if storage.caps.network else 1) as pool:
            for delete, failure in zip(deletes, pool.map(one, deletes), strict=True):
                if isinstance(failure, StorageError) and failure.retryable:
                    outage = outage or failure
                elif failure is not None:
                    self.report.error(delete.path, failure.message)
                else:
                    forgotten.append(delete.path)
                    self.progress.add_file(side)
        if side is Side.LOCAL:
            self.report.deleted_local += len(forgotten)
        else:
            self.report.deleted_remote += len(forgotten)
        if forgotten:
            self._retry(storage.sync)
            self._commit([], forgotten)
            self._logged(
                "deleted-local" if side is Side.LOCAL else "deleted-remote",
                [(path, None) for path in forgotten],
            )
        if outage is not None:
            raise outage

    def _transfers(self, side: Side, transfers: list[Transfer]) -> None:
        if not transfers:
            return
        batch: list[tuple[Transfer, Entry, Staged]] = []
        batch_bytes = 0
        last_flush = self.clock.monotonic()
        window = max(1, self.settings.transfers) * 4
        with ThreadPoolExecutor(max(1, self.settings.transfers)) as pool:
            for transfer, outcome in _bounded_map(
                pool, lambda t: self._stage(side, t), transfers, window
            ):
                if isinstance(outcome, StorsyncError):
                    if isinstance(outcome, StorageError) and outcome.retryable:
                        self._publish(side, batch, pool)
                        raise outcome
                    self.report.error(transfer.path, outcome.message)
                    continue
                batch.append(outcome)
                batch_bytes += transfer.source.size
                now = self.clock.monotonic()
                if (
                    len(batch) >= BATCH_FILES
                    or batch_bytes >= BATCH_BYTES
                    or now - last_flush >= BATCH_SECONDS
                ):
                    self._publish(side, batch, pool)
                    batch, batch_bytes, last_flush = [], 0, now
                    self._emit()
                if self._stopping:
                    break
            self._publish(side, batch, pool)
        self._emit()

    def _stage(self, side: Side, transfer: Transfer) -> tuple[Transfer, Entry, Staged]:
        src, dst = self.storage(side.other), self.storage(side)
        if transfer.path in self._blocked:
            raise ChangedError(f"{transfer.path}: left alone, its conflict copy could not be made")
        source_entry = self._moved.get((side.other, transfer.path), transfer.source)

        def attempt() -> tuple[Entry, Staged]:
            with src.open(transfer.path, source_entry) as source:
                counted = _CountingSource(source, lambda n: self.progress.add_bytes(side, n))
                read = dataclasses.replace(
                    source_entry,
                    mtime_ns=_known(source.mtime_ns, source_entry.mtime_ns),
                    executable=_known(source.executable, source_entry.executable),
                )
                staged = dst.stage(
                    transfer.path,
                    counted,
                    size=read.size,
                    mtime_ns=read.mtime_ns,
                    executable=read.executable,
                )
                return dataclasses.replace(read, hash=staged.hash), staged

        read, staged = self._retry(attempt)
        return transfer, read, staged

    def _publish(
        self,
        side: Side,
        batch: list[tuple[Transfer, Entry, Staged]],
        pool: ThreadPoolExecutor,
    ) -> None:
        """Flush the staged data, make each version visible, flush, record the batch."""
        if not batch:
            return
        dst = self.storage(side)
        self._retry(dst.sync)
        down: list[StorsyncError] = []

        def one(item: tuple[Transfer, Entry, Staged]) -> Entry | StorsyncError:
            transfer, _, staged = item
            # The storage is out: the rest waits for the next session, and what was staged
            # is kept (an unfinished multipart upload is resumed from its parts; local
            # partial files are dropped at the next start).
            if down:
                return down[0]
            trash = self.trash if transfer.keep_replaced else None
            try:
                return self._retry(dst.publish, staged, expected=transfer.target, trash=trash)
            except StorsyncError as exc:
                if isinstance(exc, StorageError) and exc.retryable:
                    down.append(exc)
                else:
                    dst.discard(staged)
                return exc

        outcomes = pool.map(one, batch) if dst.caps.network else map(one, batch)
        records: list[tuple[str, BaseEntry]] = []
        outage: StorsyncError | None = None
        for (transfer, source_entry, staged), written in zip(batch, outcomes, strict=True):
            if isinstance(written, StorsyncError):
                if isinstance(written, StorageError) and written.retryable:
                    outage = outage or written
                else:
                    self.report.error(transfer.path, written.message)
                continue
            if side is Side.REMOTE:
                records.append((transfer.path, BaseEntry.of(source_entry, written, staged.hash)))
                self.report.pushed += 1
                self.report.bytes_pushed += staged.size
            else:
                records.append((transfer.path, BaseEntry.of(written, source_entry, staged.hash)))
                self.report.pulled += 1
                self.report.bytes_pulled += staged.size
            self.progress.add_file(side)
        self._retry(dst.sync)
        self._commit(records, [])
        self._logged(
            "pushed" if side is Side.REMOTE else "pulled",
            [(path, entry.size) for path, entry in records],
        )
        if outage is not None:
            raise outage

    def _commit(self, records: list[tuple[str, BaseEntry]], forgotten: list[str]) -> None:
        self.store.commit_base(self.repository_id, records, forgotten)

    def _retry(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call again after a transient storage error, with growing delays."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return call(*args, **kwargs)
            except StorageError as exc:
                if not exc.retryable or delay is None:
                    raise
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _emit(self, *, force: bool = False) -> None:
        if self.on_progress is not None:
            snapshot = self.progress.snapshot(self.clock.monotonic() - self._started)
            if force or not self.progress.finished:
                self.on_progress(snapshot)


class _CountingSource:
    def __init__(self, inner: Source, count: Callable[[int], None]) -> None:
        self._inner = inner
        self._count = count
        self.mtime_ns = inner.mtime_ns
        self.executable = inner.executable
        # Bytes a destination kept from an interrupted attempt are not counted: not moved.
        self.resumable = inner.resumable

    def read(self, n: int) -> bytes:
        block = self._inner.read(n)
        self._count(len(block))
        return block

    def finish(self) -> str:
        return self._inner.finish()


def _known(value: V | None, default: V) -> V:
    return default if value is None else value


def _bounded_map(
    pool: ThreadPoolExecutor,
    fn: Callable[[Transfer], tuple[Transfer, Entry, Staged]],
    items: list[Transfer],
    window: int,
) -> Iterator[tuple[Transfer, tuple[Transfer, Entry, Staged] | StorsyncError]]:
    """Run ``fn`` over ``items`` with at most ``window`` in flight, results in order."""
    pending: deque[tuple[Transfer, Future[tuple[Transfer, Entry, Staged]]]] = deque()
    it = iter(items)
    for item in it:
        pending.append((item, pool.submit(fn, item)))
        if len(pending) >= window:
            break
    while pending:
        item, future = pending.popleft()
        try:
            outcome: tuple[Transfer, Entry, Staged] | StorsyncError = future.result()
        except StorsyncError as exc:
            outcome = exc
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(fn, nxt)))
        yield item, outcome
