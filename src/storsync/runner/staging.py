"""How a file is staged for a direction: read from one side (counted, paid for within the
bandwidth limit, checked) and written where the other side will publish it; alone, or
small files read together from a storage that sends many requests from one thread."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

from storsync.engine.reconcile import Transfer
from storsync.errors import ChangedError, StorageError
from storsync.model import Entry, Side
from storsync.runner.bandwidth import Throttle
from storsync.runner.context import SessionContext
from storsync.storage.base import Source, Staged

V = TypeVar("V")
Done = tuple[Transfer, Entry, Staged]  # the transfer, the source as read, what was staged
Waiting = tuple[Transfer, "Future[Done]"]

# A file up to this size costs less to copy than to hand to another thread and back: between
# two local trees it is staged by the thread that publishes it, and read with others from
# a storage that reads many at once (docs/decisions.md "Small files between local trees
# staged on one thread", "Small objects read together").
SMALL_BYTES = 64 << 10
# Small objects are read this many at a time, their requests sent together.
GROUP_FILES = 64


def stage(ctx: SessionContext, side: Side, transfer: Transfer) -> Done:
    """``transfer`` read from the other side and staged on ``side``, tried again after a
    transient error."""
    src = ctx.storage(side.other)
    entry = _source_entry(ctx, side, transfer)

    def attempt() -> tuple[Entry, Staged]:
        with src.open(transfer.path, entry) as source:
            return _staged_from(ctx, side, transfer.path, entry, source)

    read, staged = ctx.retry(attempt)
    return transfer, read, staged


def stage_together(ctx: SessionContext, side: Side, group: Sequence[Waiting], width: int) -> None:
    """The files of ``group`` read at once (``Storage.read_all``, each tried again after a
    transient error as often as alone, in rounds), then each staged: its outcome, a
    failure its own, to its future."""
    src = ctx.storage(side.other)
    reads: list[tuple[str, Entry]] = []
    waiting: list[tuple[Transfer, Future[Done], Entry]] = []
    for transfer, future in group:
        try:
            entry = _source_entry(ctx, side, transfer)
        except ChangedError as exc:
            future.set_exception(exc)
            continue
        reads.append((transfer.path, entry))
        waiting.append((transfer, future, entry))
    try:
        sources = ctx.retry.each(lambda some: src.read_all(some, width), reads)
    except Exception as exc:
        for _, future, _ in waiting:
            future.set_exception(exc)
        return
    # Every file staged before any is handed back: the thread waiting for them wakes once.
    outcomes = [
        _outcome(functools.partial(_staged_read, ctx, side, transfer, entry, source))
        for (transfer, _, entry), source in zip(waiting, sources, strict=True)
    ]
    for (_, future, _), outcome in zip(waiting, outcomes, strict=True):
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _staged_read(
    ctx: SessionContext, side: Side, transfer: Transfer, entry: Entry, source: Source | Exception
) -> Done:
    if isinstance(source, Exception):
        raise source
    try:
        read, staged = _staged_from(ctx, side, transfer.path, entry, source)
    except StorageError as exc:
        if not exc.retryable:
            raise
        return stage(ctx, side, transfer)  # read again, alone, with its retries
    return transfer, read, staged


def _settle(future: Future[Done], make: Callable[[], Done]) -> None:
    outcome = _outcome(make)
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _outcome(make: Callable[[], Done]) -> Done | Exception:
    try:
        return make()
    except Exception as exc:
        return exc


def _source_entry(ctx: SessionContext, side: Side, transfer: Transfer) -> Entry:
    if transfer.path in ctx.blocked:
        raise ChangedError(f"{transfer.path}: left alone, its conflict copy could not be made")
    return ctx.moved.get((side.other, transfer.path), transfer.source)


def _staged_from(
    ctx: SessionContext, side: Side, path: str, entry: Entry, source: Source
) -> tuple[Entry, Staged]:
    counted = _CountingSource(source, lambda n: ctx.progress.add_bytes(side, n), ctx.throttle)
    read = entry._replace(
        mtime_ns=_known(source.mtime_ns, entry.mtime_ns),
        executable=_known(source.executable, entry.executable),
    )
    staged = ctx.storage(side).stage(
        path, counted, size=read.size, mtime_ns=read.mtime_ns, executable=read.executable
    )
    return read._replace(hash=staged.hash), staged


class Here:
    """Transfers staged by the thread that waits for them, when it does: one at a time, so
    that a batch is still published on time and a stop still heard between two files."""

    def __init__(self, ctx: SessionContext, side: Side) -> None:
        self._ctx = ctx
        self._side = side
        self._waiting: dict[Future[Done], Transfer] = {}

    def add(self, transfer: Transfer) -> Future[Done]:
        future: Future[Done] = Future()
        self._waiting[future] = transfer
        return future

    def send_for(self, future: Future[Done]) -> None:
        transfer = self._waiting.pop(future, None)
        if transfer is not None:
            _settle(future, functools.partial(stage, self._ctx, self._side, transfer))


class Together:
    """Transfers gathered ``GROUP_FILES`` at a time, each group handed to ``start``."""

    def __init__(self, start: Callable[[list[Waiting]], object]) -> None:
        self._start = start
        self._waiting: list[Waiting] = []

    def add(self, transfer: Transfer) -> Future[Done]:
        future: Future[Done] = Future()
        self._waiting.append((transfer, future))
        if len(self._waiting) >= GROUP_FILES:
            self.send()
        return future

    def send_for(self, future: Future[Done]) -> None:
        """Send the group being gathered if ``future`` waits in it: the oldest transfer in
        flight is then its first."""
        if self._waiting and self._waiting[0][1] is future:
            self.send()

    def send(self) -> None:
        if self._waiting:
            group, self._waiting = self._waiting, []
            self._start(group)


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
