"""One synchronization of one pair, as a sequence of steps: mark and check both roots,
scan both sides once, hash what the decisions need, plan, check the plan's safety, then
carry out both directions of that one plan (SYNC.md)."""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Callable, Iterator

from storsync.clock import Clock, SystemClock, utc_stamp
from storsync.engine.filters import PathFilter
from storsync.engine.reconcile import Delete, Options, Plan, check_safety, reconcile
from storsync.errors import DeletionGuard, Stopped, StorsyncError, UsageError
from storsync.model import (
    EVERYTHING,
    Entry,
    Halt,
    PlanAction,
    PlanItem,
    Scope,
    SessionState,
    Side,
    StopSignal,
    SyncSettings,
)
from storsync.runner import conflicts
from storsync.runner.bandwidth import Throttle
from storsync.runner.context import SessionContext
from storsync.runner.execute import execute
from storsync.runner.hashing import confirm_moves, hash_what_decides
from storsync.runner.markers import check_markers, write_markers
from storsync.runner.observer import NoObserver, ProgressTicker, SessionObserver
from storsync.runner.pairing import SpilledPairing
from storsync.runner.progress import Progress
from storsync.runner.report import Report
from storsync.runner.scan import scan_scope
from storsync.runner.scanned import Scanned
from storsync.runner.session_plan import SessionPlan
from storsync.state.protocol import BaseStore
from storsync.storage.base import Storage

DAY_NS = 86_400 * 10**9
HALT_SAMPLE = 20  # paths a halt shows; the whole plan is stored beside it


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
        observer: SessionObserver | None = None,
        stop: StopSignal | None = None,
        log_session: str | None = None,
        halts: bool = False,
        approves: str | None = None,
        throttle: Throttle | None = None,
        scope: Scope | None = None,
    ) -> None:
        clock = clock or SystemClock()
        self._observed = observer is not None
        self.ctx = SessionContext(
            local,
            remote,
            store,
            repository_id,
            settings,
            clock,
            stop or StopSignal(),
            observer or NoObserver(),
            log_session,
            throttle or Throttle(settings.bwlimit_bps, clock),
        )
        self.halts = halts
        self.approves = approves
        self.scope = scope or EVERYTHING
        self._conflicts: list[conflicts.Candidate] = []  # the conflicts the plan settles
        self._stamp_ns = clock.now_ns()
        self.stamp = utc_stamp(self._stamp_ns)
        if settings.trash:
            self.ctx.trash = f"{self.stamp}-{secrets.token_hex(3)}"

    @property
    def report(self) -> Report:
        return self.ctx.report

    @property
    def progress(self) -> Progress:
        return self.ctx.progress

    @property
    def trash(self) -> str | None:
        """This session's trash folder on each side (None: it keeps no trash)."""
        return self.ctx.trash

    def run(self) -> Report:
        """Run the session; a failure is reported in ``state`` and ``message``."""
        report = self.ctx.report
        with self._ticking():
            try:
                self._run()
            except StorsyncError as exc:
                report.state = _ended_by(exc, halted=report.halt is not None)
                report.message = exc.message
                if isinstance(exc, UsageError):
                    raise
            else:
                report.state = SessionState.PARTIAL if report.errors else SessionState.COMPLETED
                self.ctx.progress.finished = True
        return report

    def stop(self) -> None:
        """Ask the session to stop at the next safe point.

        Safe points: between the entries, listing pages and hashed chunks of the scan and
        hash stage (nothing is changed yet), then between phases and files.
        """
        self.ctx.stop.set()

    def _ticking(self) -> contextlib.AbstractContextManager[object]:
        if not self._observed:
            return contextlib.nullcontext()
        return ProgressTicker(self.ctx.progress.snapshot, self.ctx.observer, self.ctx.clock)

    def _run(self) -> None:
        ctx = self.ctx
        for storage in (ctx.local, ctx.remote):
            storage.start_session()
        # Counted once: a count reads every row of the repository's base.
        recorded = ctx.store.base_count(ctx.repository_id)
        check_markers(ctx, established=recorded > 0)
        if ctx.log_session is not None and not ctx.settings.dry_run:
            # Decisions on conflicts change local files only (not the base): the scan
            # below sees them as local changes, which the plan takes to the remote.
            conflicts.carry_out(ctx, ctx.store.resolutions(ctx.log_session))
        with self._before_changes():
            excluded = PathFilter(ctx.settings.excludes)
            plan = self._plan(scan_scope(ctx, self.scope, excluded, recorded))
            ctx.stop.check()
        if ctx.settings.dry_run:
            ctx.report.plan = plan
            ctx.report.conflicts = list(plan.conflicts)
            return
        write_markers(ctx)
        if ctx.trash is not None:
            cutoff = ctx.clock.now_ns() - int(ctx.settings.trash_days * DAY_NS)
            for storage in (ctx.local, ctx.remote):
                storage.prune_trash(cutoff)
        try:
            execute(ctx, plan)
        finally:  # what was settled before a failure or a stop is an object too
            conflicts.record(ctx, self._conflicts)
            plan.close()

    @contextlib.contextmanager
    def _before_changes(self) -> Iterator[None]:
        """A stop during the scan and hash stage, which has changed nothing yet, says so."""
        try:
            yield
        except Stopped:
            raise Stopped(
                f"the session was stopped while {self.ctx.progress.stage.value}, before it "
                "changed anything; the next run scans again"
            ) from None

    def _plan(self, scanned: Scanned) -> SessionPlan:
        """The plan, window by window of the scan (runner.scanned): each hashed where a
        decision needs it, decided and spilled; then the moves paired across the whole
        plan, and its safety checked on its totals."""
        ctx = self.ctx
        self._fresh_conflict_stamp(scanned)
        settings = ctx.settings
        options = Options(
            mode=settings.mode,
            policy=settings.policy,
            checksum=settings.checksum,
            conflict_stamp=self.stamp,
        )
        caps = {Side.LOCAL: ctx.local.caps, Side.REMOTE: ctx.remote.caps}
        plan, pairing = SessionPlan(), SpilledPairing(caps)
        for window in scanned.windows(ctx.report.skipped):
            hash_what_decides(ctx, window)
            part = reconcile(
                window.local,
                window.remote,
                window.base,
                local_caps=ctx.local.caps,
                remote_caps=ctx.remote.caps,
                options=options,
            )
            pairing.remember(part, window.base)
            # Found while the part is at hand: neither a move nor an approval takes out a
            # step of a conflict.
            self._conflicts += conflicts.candidates(part)
            plan.add(part)
            ctx.stop.check()
        scanned.spill.close()
        found = pairing.candidates(lambda side: plan.steps(Plan.transfer_list(side)))
        plan.apply_moves(confirm_moves(ctx, found))
        if self.approves is not None:
            self._carry_approval(plan)
        elif not settings.force:
            local_total, remote_total, base_total = scanned.totals()
            try:
                check_safety(
                    plan.delete_count(Side.LOCAL),
                    plan.delete_count(Side.REMOTE),
                    local_count=local_total,
                    remote_count=remote_total,
                    base_count=base_total,
                    max_delete_percent=settings.max_delete_percent,
                )
            except DeletionGuard as guard:
                if self.halts:
                    self._halt(plan, guard)
                raise
        return plan

    def _halt(self, plan: SessionPlan, guard: DeletionGuard) -> None:
        """Keep the plan for a person to read and approve; nothing is changed."""
        ctx = self.ctx
        if ctx.log_session is not None:
            ctx.store.record_plan(ctx.log_session, plan_items(plan))
        deletes = (d.path for side in Side for d in plan.steps(Plan.delete_list(side)))
        ctx.report.halt = Halt(
            guard.message,
            plan.delete_count(Side.LOCAL),
            plan.delete_count(Side.REMOTE),
            tuple(sorted(itertools.islice(deletes, HALT_SAMPLE))),  # read by a person
        )

    def _carry_approval(self, plan: SessionPlan) -> None:
        """Delete exactly what the approved halt listed, each only while the scan still
        shows the version it listed; a deletion that appeared since is left for the next
        session, under the guard as usual."""
        approves = self.approves
        assert approves is not None
        store = self.ctx.store
        for side in Side:
            action = PlanAction.deleting(side)

            def approved(action: PlanAction = action) -> Callable[[Delete], bool]:
                # The halt's list read beside the plan's, both in key order: neither held.
                return _Listed(store.plan_deletions(approves, action))

            plan.keep_only(Plan.delete_list(side), approved)

    def _fresh_conflict_stamp(self, scanned: Scanned) -> None:
        """Name this session's conflict copies with a second no existing copy uses.

        A session interrupted after making a copy leaves it under its own second; a rerun
        in that same second would otherwise try to make the copy again under that name.
        """
        names = (scanned.local, scanned.remote, scanned.conflict_names)
        while any(f".conflict-{self.stamp}-" in path for side in names for path in side):
            self._stamp_ns += 10**9
            self.stamp = utc_stamp(self._stamp_ns)


def _ended_by(exc: StorsyncError, *, halted: bool) -> SessionState:
    if isinstance(exc, Stopped):
        return SessionState.STOPPED
    if halted and isinstance(exc, DeletionGuard):
        return SessionState.HALTED
    return SessionState.FAILED


class _Listed:
    """Whether a deletion is one a halt listed, at the version it listed; asked of the
    deletions in key order, the listed ones read in that order, each once."""

    def __init__(self, listed: Iterator[PlanItem]) -> None:
        self._listed = listed
        self._next = next(listed, None)

    def __call__(self, delete: Delete) -> bool:
        while self._next is not None and self._next.path < delete.path:
            self._next = next(self._listed, None)
        return (
            self._next is not None
            and self._next.path == delete.path
            and _version(self._next.entry) == _version(delete.entry)
        )


def _version(entry: Entry | None) -> tuple[object, ...] | None:
    """What tells one version of a file from another, as a scan sees it."""
    if entry is None:
        return None
    return (entry.size, entry.mtime_ns, entry.inode, entry.etag)


def plan_items(plan: SessionPlan) -> Iterator[PlanItem]:
    """A plan, step by step, as a halt keeps it."""
    for t in plan.steps("push"):
        yield PlanItem(PlanAction.PUSH, t.path, t.source)
    for t in plan.steps("pull"):
        yield PlanItem(PlanAction.PULL, t.path, t.source)
    for side in Side:
        action = PlanAction.deleting(side)
        for d in plan.steps(Plan.delete_list(side)):
            yield PlanItem(action, d.path, d.entry)
    for path in plan.conflicts:
        yield PlanItem(PlanAction.CONFLICT, path, None)
