"""Carrying out a plan: conflict renames and copies first, then the push direction
(remote deletions, moves, then transfers), then the pull direction, with a stop point
between each step; each direction reports its state to the observer."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from storsync.engine.reconcile import Delete, Move, Plan
from storsync.errors import ChangedError, Stopped, StorageError, StorsyncError
from storsync.model import BaseEntry, LogKind, Phase, PhaseState, Side
from storsync.runner.context import SessionContext
from storsync.runner.observer import Planned
from storsync.runner.progress import Stage
from storsync.runner.retry import transient
from storsync.runner.session_plan import SessionPlan
from storsync.runner.transfers import transfer_all
from storsync.storage.base import Storage

DELETE_BATCH = 10_000  # deletions done, then recorded, at once


def execute(ctx: SessionContext, plan: SessionPlan) -> None:
    ctx.report.conflicts = list(plan.conflicts)
    for side in (Side.REMOTE, Side.LOCAL):
        counters = ctx.progress.counters(side)
        moved = plan.move_count(side)
        counters.files_planned = plan.transfer_count(side) + plan.delete_count(side) + moved
        counters.bytes_planned = plan.bytes(Plan.transfer_list(side))
    progress = ctx.progress
    push, pull = progress.push.frozen(), progress.pull.frozen()
    ctx.observer.planned(Planned(push, pull, tuple(plan.conflicts)))
    _prelude(ctx, plan)
    for records in plan.batches("record"):
        ctx.commit([(r.path, BaseEntry.of(r.local, r.remote, r.hash)) for r in records], [])
    for forgotten in plan.batches("forget"):
        ctx.commit([], forgotten)
    # A move runs in its side's direction, after the deletions there (one may free its
    # new name); but a local move whose edit then goes to the remote runs before the push
    # direction, whose transfer reads the edit under its new name.
    _moves(ctx, Side.LOCAL, (m for m in plan.moves(Side.LOCAL) if m.edited))
    for side in (Side.REMOTE, Side.LOCAL):
        later = (m for m in plan.moves(side) if side is Side.REMOTE or not m.edited)
        _direction(ctx, plan, side, later)


def _direction(ctx: SessionContext, plan: SessionPlan, side: Side, moves: Iterable[Move]) -> None:
    ctx.stop.check()
    phase = Phase.writing(side)
    ctx.progress.stage = Stage(phase.value)
    ctx.observer.phase(phase, PhaseState.RUNNING)
    errors_before = len(ctx.report.errors)
    try:
        deletes = plan.steps(Plan.delete_list(side))
        # In batches of their own, not the plan's parts: a part holds few deletions, and
        # each batch waits for its slowest deletion, then commits.
        while batch := list(itertools.islice(deletes, DELETE_BATCH)):
            _deletions(ctx, side, batch)
        _moves(ctx, side, moves)
        transfer_all(ctx, side, plan.steps(Plan.transfer_list(side)))
        ctx.stop.check()
    except Stopped:
        ctx.observer.phase(phase, PhaseState.STOPPED)
        raise
    except StorsyncError:
        ctx.observer.phase(phase, PhaseState.FAILED)
        raise
    partial = len(ctx.report.errors) > errors_before
    ctx.observer.phase(phase, PhaseState.PARTIAL if partial else PhaseState.COMPLETED)


def _prelude(ctx: SessionContext, plan: SessionPlan) -> None:
    """Conflict renames and copies, before anything is transferred."""
    forgotten = []
    for rename in plan.steps("renames"):
        storage = ctx.storage(rename.side)
        try:
            moved = ctx.retry(storage.move, rename.path, rename.new_path, rename.entry)
        except StorsyncError as exc:
            ctx.report.error(rename.path, exc.message)
            ctx.blocked.add(rename.new_path)
            continue
        ctx.moved[(rename.side, rename.new_path)] = moved
        forgotten.append(rename.path)
    for keep in plan.steps("keep_both"):
        try:
            copied = ctx.retry(ctx.remote.copy, keep.path, keep.copy_path, keep.remote)
        except StorsyncError as exc:
            ctx.report.error(keep.path, exc.message)
            ctx.blocked.update((keep.path, keep.copy_path))
            continue
        ctx.moved[(Side.REMOTE, keep.copy_path)] = copied
    ctx.commit([], forgotten)


class _Step(Protocol):
    @property
    def path(self) -> str: ...


S = TypeVar("S", bound=_Step)
R = TypeVar("R")


def _each(
    ctx: SessionContext, storage: Storage, steps: list[S], do: Callable[[S], R]
) -> tuple[list[tuple[S, R]], StorsyncError | None]:
    """``do`` each step (in parallel on a network storage): the steps done with what they
    returned, each failure reported on its path, and the outage of the storage that
    stopped the rest (they wait for the next session), for the caller to raise once it
    has recorded what was done."""
    down: list[StorsyncError] = []

    def one(step: S) -> R | StorsyncError:
        if down:  # the storage is out: the rest waits for the next session
            return down[0]
        try:
            return do(step)
        except (ChangedError, StorageError) as exc:
            if exc.retryable:
                down.append(exc)
            return exc

    done: list[tuple[S, R]] = []
    with ThreadPoolExecutor(ctx.settings.transfers if storage.caps.network else 1) as pool:
        for step, result in zip(steps, pool.map(one, steps), strict=True):
            if transient(result):
                continue
            if isinstance(result, StorsyncError):
                ctx.report.error(step.path, result.message)
            else:
                done.append((step, result))
    return done, (down[0] if down else None)


def _moves(ctx: SessionContext, side: Side, moves: Iterable[Move]) -> None:
    """Carry out ``moves`` on ``side``, in batches (as deletions go): each batch done,
    then recorded."""
    pending = iter(moves)
    while batch := list(itertools.islice(pending, DELETE_BATCH)):
        _move_batch(ctx, side, batch)


def _move_batch(ctx: SessionContext, side: Side, moves: list[Move]) -> None:
    storage = ctx.storage(side)
    done, outage = _each(
        ctx, storage, moves, lambda m: ctx.retry(storage.move, m.path, m.new_path, m.entry)
    )
    records = []
    for move, moved in done:
        if move.edited:  # not the same bytes on both sides until its edit is transferred
            # The edit's transfer reads the moved file: as it is after the move.
            ctx.moved[(side, move.new_path)] = moved
            continue
        local, remote = (moved, move.source) if side is Side.LOCAL else (move.source, moved)
        records.append((move.new_path, BaseEntry.of(local, remote, move.source.hash)))
    ctx.report.count_moved(side, len(done))
    arrived = [move.new_path for move, _ in done]
    _settle(ctx, side, records, [move.path for move, _ in done], LogKind.moved(side), arrived)
    if outage is not None:
        raise outage


def _deletions(ctx: SessionContext, side: Side, deletes: list[Delete]) -> None:
    storage = ctx.storage(side)
    done, outage = _each(
        ctx, storage, deletes, lambda d: ctx.retry(storage.remove, d.path, d.entry, trash=ctx.trash)
    )
    forgotten = [delete.path for delete, _ in done]
    ctx.report.count_deleted(side, len(forgotten))
    _settle(ctx, side, [], forgotten, LogKind.deleted(side), forgotten)
    if outage is not None:
        raise outage


def _settle(
    ctx: SessionContext,
    side: Side,
    records: list[tuple[str, BaseEntry]],
    forgotten: list[str],
    kind: LogKind,
    logged: list[str],
) -> None:
    """Steps done on ``side``: counted, made durable there, then the base told (new
    rows, paths forgotten) and the paths logged."""
    for _ in logged:
        ctx.progress.add_file(side)
    if logged:
        ctx.retry(ctx.storage(side).sync)
        ctx.commit(records, forgotten)
        ctx.logged(kind, [(path, None) for path in logged])
