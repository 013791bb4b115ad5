"""An iterator read ahead in a thread of its own: a remote's listing pages come over the
network while the session merges the pages already there."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

BATCH = 1000  # items handed over at a time: one queue operation per batch, not per item
DEPTH = 8  # batches read ahead at most: memory stays a few batches


class _Done:
    """The end of the items, or the exception that ended them."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


@contextlib.contextmanager
def read_ahead(items: Iterable[T]) -> Iterator[Iterator[T]]:
    """``items``, produced in a thread while the caller consumes them; an exception the
    producer meets is raised to the consumer where it would have met it. Leaving the
    block early stops the producer at its next batch."""
    handed: queue.Queue[list[T] | _Done] = queue.Queue(DEPTH)
    leaving = threading.Event()

    def produce() -> None:
        batch: list[T] = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= BATCH:
                    handed.put(batch)
                    batch = []
                    if leaving.is_set():
                        return
            handed.put(batch)
        except BaseException as exc:  # raised again in the consumer's thread
            handed.put(_Done(exc))
        else:
            handed.put(_Done(None))

    thread = threading.Thread(target=produce, name="storsync-read-ahead", daemon=True)
    thread.start()
    try:
        yield _consumed(handed)
    finally:
        leaving.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                handed.get(timeout=0.05)
        thread.join()


def _consumed(handed: queue.Queue[list[T] | _Done]) -> Iterator[T]:
    while True:
        batch = handed.get()
        if isinstance(batch, _Done):
            if batch.error is not None:
                raise batch.error
            return
        yield from batch
