"""Carrying out a plan: conflict renames and copies first, then the push direction
(remote deletions, then transfers), then the pull direction, with a stop point between
each step; each direction reports its state to the observer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from storsync.engine.reconcile import Delete, Plan
from storsync.errors import ChangedError, Stopped, StorageError, StorsyncError
from storsync.model import BaseEntry, LogKind, Phase, PhaseState, Side
from storsync.runner.context import SessionContext
from storsync.runner.observer import Planned
from storsync.runner.progress import Stage
from storsync.runner.transfers import transfer_all


def execute(ctx: SessionContext, plan: Plan) -> None:
    ctx.report.conflicts = list(plan.conflicts)
    for side in (Side.REMOTE, Side.LOCAL):
        counters = ctx.progress.counters(side)
        transfers = plan.transfers(side)
        counters.files_planned = len(transfers) + len(plan.deletes(side))
        counters.bytes_planned = sum(t.source.size for t in transfers)
    progress = ctx.progress
    push, pull = progress.push.frozen(), progress.pull.frozen()
    ctx.observer.planned(Planned(push, pull, tuple(plan.conflicts)))
    _prelude(ctx, plan)
    ctx.commit([(r.path, BaseEntry.of(r.local, r.remote, r.hash)) for r in plan.record], [])
    ctx.commit([], plan.forget)
    for side in (Side.REMOTE, Side.LOCAL):
        _direction(ctx, plan, side)


def _direction(ctx: SessionContext, plan: Plan, side: Side) -> None:
    ctx.stop.check()
    phase = Phase.writing(side)
    ctx.progress.stage = Stage(phase.value)
    ctx.observer.phase(phase, PhaseState.RUNNING)
    errors_before = len(ctx.report.errors)
    try:
        _deletions(ctx, side, plan.deletes(side))
        transfer_all(ctx, side, plan.transfers(side))
        ctx.stop.check()
    except Stopped:
        ctx.observer.phase(phase, PhaseState.STOPPED)
        raise
    except StorsyncError:
        ctx.observer.phase(phase, PhaseState.FAILED)
        raise
    partial = len(ctx.report.errors) > errors_before
    ctx.observer.phase(phase, PhaseState.PARTIAL if partial else PhaseState.COMPLETED)


def _prelude(ctx: SessionContext, plan: Plan) -> None:
    """Conflict renames and copies, before anything is transferred."""
    forgotten = []
    for rename in plan.renames:
        storage = ctx.storage(rename.side)
        try:
            moved = ctx.retry(storage.move, rename.path, rename.new_path, rename.entry)
        except StorsyncError as exc:
            ctx.report.error(rename.path, exc.message)
            ctx.blocked.add(rename.new_path)
            continue
        ctx.moved[(rename.side, rename.new_path)] = moved
        forgotten.append(rename.path)
    for keep in plan.keep_both:
        try:
            copied = ctx.retry(ctx.remote.copy, keep.path, keep.copy_path, keep.remote)
        except StorsyncError as exc:
            ctx.report.error(keep.path, exc.message)
            ctx.blocked.update((keep.path, keep.copy_path))
            continue
        ctx.moved[(Side.REMOTE, keep.copy_path)] = copied
    ctx.commit([], forgotten)


def _deletions(ctx: SessionContext, side: Side, deletes: list[Delete]) -> None:
    storage = ctx.storage(side)
    down: list[StorsyncError] = []

    def one(delete: Delete) -> StorsyncError | None:
        if down:  # the storage is out: the rest waits for the next session
            return down[0]
        try:
            ctx.retry(storage.remove, delete.path, delete.entry, trash=ctx.trash)
        except (ChangedError, StorageError) as exc:
            if exc.retryable:
                down.append(exc)
            return exc
        return None

    forgotten: list[str] = []
    outage: StorsyncError | None = None
    with ThreadPoolExecutor(ctx.settings.transfers if storage.caps.network else 1) as pool:
        for delete, failure in zip(deletes, pool.map(one, deletes), strict=True):
            if isinstance(failure, StorageError) and failure.retryable:
                outage = outage or failure
            elif failure is not None:
                ctx.report.error(delete.path, failure.message)
            else:
                forgotten.append(delete.path)
                ctx.progress.add_file(side)
    if side is Side.LOCAL:
        ctx.report.deleted_local += len(forgotten)
    else:
        ctx.report.deleted_remote += len(forgotten)
    if forgotten:
        ctx.retry(storage.sync)
        ctx.commit([], forgotten)
        ctx.logged(LogKind.deleted(side), [(path, None) for path in forgotten])
    if outage is not None:
        raise outage
