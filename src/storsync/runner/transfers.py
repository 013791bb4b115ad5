"""One direction's transfers: staged by a bounded pool of worker threads (reading, hashing
and writing release the GIL), published by the calling thread in batches: flush the staged
data, re-check each target and make it visible, flush the names, then commit the batch's
base rows in one transaction. A killed process loses at most the batch in flight, and a
rerun finds those files identical on both sides and only records them."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from storsync.engine.reconcile import Transfer
from storsync.errors import ChangedError, StorageError, StorsyncError
from storsync.model import BaseEntry, Entry, LogKind, Side
from storsync.runner.bandwidth import Throttle
from storsync.runner.context import SessionContext
from storsync.storage.base import Publication, Source, Staged

V = TypeVar("V")
Done = tuple[Transfer, Entry, Staged]  # the transfer, the source as read, what was staged

BATCH_FILES = 1000
BATCH_BYTES = 256 << 20
BATCH_SECONDS = 1.0
# What staging may hold in memory beyond the batch being gathered: an S3 destination
# stages a file of up to 64 MiB there, and a window counted in files alone would let 64
# such files (16 workers) sit in it. The first file in flight always may, whatever its size.
IN_FLIGHT_BYTES = 256 << 20
# Between two local trees a file up to this size is staged by the thread that publishes
# it: handing it to a worker and back costs more than its copy (a first sync of 10,000
# files of 4 KiB: 2.2 s with two workers, 1.6 s on one thread; docs/decisions.md
# "Small files between local trees staged on one thread").
HERE_BYTES = 64 << 10
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
    with ThreadPoolExecutor(workers) as far, ThreadPoolExecutor(near_workers) as near:

        def submit(transfer: Transfer) -> Future[Done]:
            size = transfer.source.size
            if between_local_trees and size <= HERE_BYTES:
                return _staged_here(ctx, side, transfer)
            local = not src.caps.network and dst.stages_locally(size)
            return (near if local else far).submit(_stage, ctx, side, transfer)

        staged = _bounded_map(
            submit, transfers, workers * 4, Budget(IN_FLIGHT_BYTES, dst.staged_in_memory)
        )
        for transfer, outcome in staged:
            if isinstance(outcome, StorsyncError):
                if isinstance(outcome, StorageError) and outcome.retryable:
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
    limited = ctx.throttle is not None and ctx.throttle.rate is not None
    return LIMITED_BATCH_SECONDS if limited else BATCH_SECONDS


def _stage(ctx: SessionContext, side: Side, transfer: Transfer) -> Done:
    src, dst = ctx.storage(side.other), ctx.storage(side)
    if transfer.path in ctx.blocked:
        raise ChangedError(f"{transfer.path}: left alone, its conflict copy could not be made")
    source_entry = ctx.moved.get((side.other, transfer.path), transfer.source)

    def attempt() -> tuple[Entry, Staged]:
        with src.open(transfer.path, source_entry) as source:
            counted = _CountingSource(
                source, lambda n: ctx.progress.add_bytes(side, n), ctx.throttle
            )
            read = source_entry._replace(
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
            return read._replace(hash=staged.hash), staged

    read, staged = ctx.retry(attempt)
    return transfer, read, staged


def _staged_here(ctx: SessionContext, side: Side, transfer: Transfer) -> Future[Done]:
    """``_stage`` run in this thread, its outcome as a worker's would be."""
    future: Future[Done] = Future()
    try:
        future.set_result(_stage(ctx, side, transfer))
    except Exception as exc:
        future.set_exception(exc)
    return future


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
            if _transient(outcome):
                down.append(outcome)
            else:
                dst.discard(item.staged)
    records: list[tuple[str, BaseEntry]] = []
    for (transfer, source_entry, staged), written in zip(batch, outcomes, strict=True):
        if isinstance(written, StorsyncError):
            if not _transient(written):
                ctx.report.error(transfer.path, written.message)
            continue
        records.append((transfer.path, _recorded(side, source_entry, written, staged.hash)))
        _count(ctx, side, staged.size)
    ctx.retry(dst.sync)
    ctx.commit(records, [])
    ctx.logged(LogKind.written(side), [(path, entry.size) for path, entry in records])
    if down:
        raise down[0]


def _transient(outcome: object) -> bool:
    return isinstance(outcome, StorageError) and outcome.retryable


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


class _CountingSource:
    """A source whose bytes are counted as they are read, and paid for within the
    session's bandwidth limit."""

    def __init__(
        self, inner: Source, count: Callable[[int], None], throttle: Throttle | None
    ) -> None:
        self._inner = inner
        self._count = count
        self._throttle = throttle
        self.mtime_ns = inner.mtime_ns
        self.executable = inner.executable
        # Bytes a destination kept from an interrupted attempt are not counted: not moved.
        self.resumable = inner.resumable

    def read(self, n: int) -> bytes:
        block = self._inner.read(n)
        self._count(len(block))
        if self._throttle is not None:
            self._throttle.take(len(block))
        return block

    def finish(self) -> str:
        return self._inner.finish()


def _known(value: V | None, default: V) -> V:
    return default if value is None else value


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
) -> Iterator[tuple[Transfer, Done | StorsyncError]]:
    """``submit`` each of ``items``, results in order: at most a batch in flight, so that
    the next batch is staged while one is published; of them at most ``window`` staged
    outside memory (partial files, multipart uploads: the disk they take, the wait for
    them at a stop); past the first, within the ``budget``."""
    pending: deque[tuple[Transfer, Future[Done], int, bool]] = deque()
    it = iter(items)
    upcoming = next(it, None)
    held = outside = 0

    def fill() -> None:
        nonlocal upcoming, held, outside
        while upcoming is not None:
            size = upcoming.source.size
            cost = budget.held(size)
            out = cost == 0 and size > 0
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
        try:
            outcome: Done | StorsyncError = future.result()
        except StorsyncError as exc:
            outcome = exc
        fill()
        yield item, outcome
