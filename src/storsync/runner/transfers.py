"""One direction's transfers: staged (``staging``) by a bounded pool of worker threads
(reading, hashing and writing release the GIL), small files by fewer, published by the
calling thread in batches: flush the staged data, re-check each target and make it
visible, flush the names, then commit the batch's base rows in one transaction. A killed
process loses at most the batch in flight, and a rerun finds those files identical on
both sides and only records them."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from storsync.engine.reconcile import Transfer
from storsync.errors import StorsyncError
from storsync.model import BaseEntry, Entry, LogKind, Side
from storsync.runner.context import SessionContext
from storsync.runner.retry import transient
from storsync.runner.staging import (
    SMALL_BYTES,
    Done,
    Here,
    Together,
    stage,
    stage_together,
)
from storsync.storage.base import Publication

BATCH_FILES = 1000
BATCH_BYTES = 256 << 20
BATCH_SECONDS = 1.0
# What staging may hold in memory beyond the batch being gathered: an S3 destination
# stages a file of up to 64 MiB there, and a window counted in files alone would let 64
# such files (16 workers) sit in it. The first file in flight always may, whatever its size.
IN_FLIGHT_BYTES = 256 << 20
# Under a bandwidth limit, a batch waits less: what a remote receives at each publish
# (S3 objects are sent then) stays a small part of any 10-second window of the limit.
LIMITED_BATCH_SECONDS = 0.25


def transfer_all(ctx: SessionContext, side: Side, transfers: Iterable[Transfer]) -> None:
    """Write ``transfers`` (read as they are staged) to ``side``; files that fail alone
    are reported, an outage of a storage ends the direction (what was staged before it is
    still published)."""
    batch: list[Done] = []
    batch_bytes = 0
    last_flush = ctx.clock.monotonic()
    workers = _workers(ctx, side)
    src, dst = ctx.storage(side.other), ctx.storage(side)
    # Staging that waits on no network (a small file read here and held for an S3 PUT)
    # has a thread a core: sixteen would only take turns at the interpreter's lock, each
    # turn a switch of threads (push `small` to S3: 4.4 s of CPU with 16, 3.7 with 2).
    near_workers = min(workers, _cores())
    between_local_trees = not src.caps.network and not dst.caps.network
    # Small objects read together: one group's requests sent while the files of the last
    # are staged by the other thread (the storage sends one group at a time).
    with (
        ThreadPoolExecutor(workers) as far,
        ThreadPoolExecutor(near_workers) as near,
        ThreadPoolExecutor(2) as grouped,
    ):
        together = Together(lambda group: grouped.submit(stage_together, ctx, side, group, workers))
        here = Here(ctx, side)

        def send_for(future: Future[Done]) -> None:
            here.send_for(future)
            together.send_for(future)

        def submit(transfer: Transfer) -> Future[Done]:
            size = transfer.source.size
            if size <= SMALL_BYTES:
                if between_local_trees:
                    return here.add(transfer)
                if src.reads_at_once(size) and not _limited(ctx):
                    return together.add(transfer)
            local = not src.caps.network and dst.stages_locally(size)
            return (near if local else far).submit(stage, ctx, side, transfer)

        staged = _bounded_map(
            submit,
            transfers,
            workers * 4,
            Budget(IN_FLIGHT_BYTES, dst.staged_in_memory),
            send_for,
        )
        for transfer, outcome in staged:
            if isinstance(outcome, StorsyncError):
                if transient(outcome):
                    _publish(ctx, side, batch, workers)
                    raise outcome
                ctx.report.error(transfer.path, outcome.message)
                continue
            batch.append(outcome)
            batch_bytes += transfer.source.size
            now = ctx.clock.monotonic()
            if (
                len(batch) >= BATCH_FILES
                or batch_bytes >= BATCH_BYTES
                or now - last_flush >= _batch_seconds(ctx)
            ):
                _publish(ctx, side, batch, workers)
                batch, batch_bytes, last_flush = [], 0, now
            if ctx.stop.requested:
                break
        _publish(ctx, side, batch, workers)


def _workers(ctx: SessionContext, side: Side) -> int:
    """Threads that stage at once: ``--transfers`` where a side is over the network (they
    wait on round trips), no more than the cores between two local trees, where they
    only take turns at the interpreter's lock (a first sync of 10,000 small files: 2.5 s
    with 2 threads against 3.3 s with 16; docs/decisions.md "Sixteen transfers by
    default"). A tree on a network mount is a local tree here: it says nothing else."""
    wanted = max(1, ctx.settings.transfers)
    if ctx.storage(side).caps.network or ctx.storage(side.other).caps.network:
        return wanted
    return min(wanted, _cores())


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _batch_seconds(ctx: SessionContext) -> float:
    return LIMITED_BATCH_SECONDS if _limited(ctx) else BATCH_SECONDS


def _limited(ctx: SessionContext) -> bool:
    """Whether the session is held to a bandwidth limit now: then files are read one by
    one (a group of 64 read at once would arrive, and be published, long after its first
    file, and a stop would wait for it)."""
    return ctx.throttle is not None and ctx.throttle.rate is not None


def _publish(ctx: SessionContext, side: Side, batch: list[Done], width: int) -> None:
    """Flush the staged data, make each version visible, flush, record the batch."""
    if not batch:
        return
    dst = ctx.storage(side)
    ctx.retry(dst.sync)
    items = [
        Publication(staged, transfer.target, ctx.trash if transfer.keep_replaced else None)
        for transfer, _, staged in batch
    ]
    outcomes = ctx.retry.each(lambda some: dst.publish_all(some, width), items)
    # Files the storage still failed for an outage after the retries wait for the next
    # session, their staged versions kept (an unfinished multipart upload is resumed
    # from its parts, local partial files are dropped at the next start); any other
    # failure's staged version is dropped.
    down: list[StorsyncError] = []
    for item, outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, StorsyncError):
            if transient(outcome):
                down.append(outcome)
            else:
                dst.discard(item.staged)
    records: list[tuple[str, BaseEntry]] = []
    for (transfer, source_entry, staged), written in zip(batch, outcomes, strict=True):
        if isinstance(written, StorsyncError):
            if not transient(written):
                ctx.report.error(transfer.path, written.message)
            continue
        records.append((transfer.path, _recorded(side, source_entry, written, staged.hash)))
        _count(ctx, side, staged.size)
    ctx.retry(dst.sync)
    ctx.commit(records, [])
    ctx.logged(LogKind.written(side), [(path, entry.size) for path, entry in records])
    if down:
        raise down[0]


def _recorded(side: Side, source: Entry, written: Entry, content_hash: str) -> BaseEntry:
    if side is Side.REMOTE:
        return BaseEntry.of(source, written, content_hash)
    return BaseEntry.of(written, source, content_hash)


def _count(ctx: SessionContext, side: Side, size: int) -> None:
    report = ctx.report
    if side is Side.REMOTE:
        report.pushed += 1
        report.bytes_pushed += size
    else:
        report.pulled += 1
        report.bytes_pulled += size
    ctx.progress.add_file(side)


@dataclass(frozen=True)
class Budget:
    """At most ``limit`` bytes held in memory by the transfers in flight, as ``held`` says
    a transfer of so many bytes holds them."""

    limit: int
    held: Callable[[int], int]


def _bounded_map(
    submit: Callable[[Transfer], Future[Done]],
    items: Iterable[Transfer],
    window: int,
    budget: Budget,
    send_for: Callable[[Future[Done]], None],
) -> Iterator[tuple[Transfer, Done | StorsyncError]]:
    """``submit`` each of ``items``, results in order: at most a batch in flight, so that
    the next batch is staged while one is published; of them at most ``window`` larger
    than ``SMALL_BYTES`` staged outside memory (partial files, multipart uploads: the disk
    they take, the wait for them at a stop); past the first, within the ``budget``.
    ``send_for`` is told of each future before it is waited for (one gathered with others
    is not started until then)."""
    pending: deque[tuple[Transfer, Future[Done], int, bool]] = deque()
    it = iter(items)
    upcoming = next(it, None)
    held = outside = 0

    def fill() -> None:
        nonlocal upcoming, held, outside
        while upcoming is not None:
            size = upcoming.source.size
            cost = budget.held(size)
            out = cost == 0 and size > SMALL_BYTES
            if pending and (
                len(pending) >= BATCH_FILES
                or (out and outside >= window)
                or held + cost > budget.limit
            ):
                return
            pending.append((upcoming, submit(upcoming), cost, out))
            held += cost
            outside += out
            upcoming = next(it, None)

    fill()
    while pending:
        item, future, cost, out = pending.popleft()
        held -= cost
        outside -= out
        send_for(future)
        try:
            outcome: Done | StorsyncError = future.result()
        except StorsyncError as exc:
            outcome = exc
        fill()
        yield item, outcome
