"""Live delivery of events to many slow or fast consumers without slowing anyone down.

The bus hands each event to the hub in the publishing thread; the hub appends it to a
bounded ring of recent events and wakes the consumers on the event loop. Each consumer
keeps only a cursor (the last id it has seen) and reads from the ring; one that fell
further behind than the ring reads the gap back from the store. So a stalled consumer
costs nothing but its cursor, publishers never wait, and nobody misses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool

from storsync.service.events import EventBus
from storsync.state.catalog import Catalog
from storsync.state.records import Event

RING_SIZE = 4096
REPLAY_PAGE = 500
# Per-file batches are many and large: only those who ask for them by type get them.
ON_REQUEST_TYPES = frozenset({"items.transferred"})


@dataclass(frozen=True)
class EventFilter:
    repository_id: str | None = None
    session_id: str | None = None
    types: frozenset[str] = field(default_factory=frozenset)

    def matches(self, event: Event) -> bool:
        if self.repository_id is not None and event.repository_id != self.repository_id:
            return False
        if self.session_id is not None and event.session_id != self.session_id:
            return False
        if self.types:
            return event.type in self.types
        return event.type not in ON_REQUEST_TYPES


class EventHub:
    def __init__(self, bus: EventBus, catalog: Catalog, loop: asyncio.AbstractEventLoop) -> None:
        self.catalog = catalog
        self._loop = loop
        self._ring: deque[Event] = deque(maxlen=RING_SIZE)
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._last_id = bus.last_id
        self._closed = False
        self._unsubscribe: Callable[[], None] = bus.subscribe(self._on_event)

    def close_threadsafe(self) -> None:
        """Close from any thread (a signal handler): every follower ends soon after."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.close)

    def close(self) -> None:
        self._unsubscribe()
        self._closed = True
        self._wake_threadsafe()

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._last_id

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._ring.append(event)
            self._last_id = event.id
        self._wake_threadsafe()

    def _wake_threadsafe(self) -> None:
        # A closed loop means nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _recent(self, after_id: int) -> tuple[list[Event], bool]:
        """Events after ``after_id`` from the ring, and whether the ring covers them all."""
        with self._lock:
            if self._last_id <= after_id:
                return [], True
            if not self._ring:
                # Nothing in memory yet (a fresh start), but the store holds older events.
                return [], False
            covered = self._ring[0].id <= after_id + 1
            return [e for e in self._ring if e.id > after_id], covered

    async def wait(self, after_id: int, timeout: float) -> None:
        """Return once an event after ``after_id`` exists, or after ``timeout`` seconds."""
        changed = self._changed
        if self.last_id > after_id or self._closed:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    async def read(self, after_id: int, wanted: EventFilter, *, limit: int = REPLAY_PAGE) -> Batch:
        """Matching events after ``after_id`` (ring, else store) and the new cursor."""
        top = self.last_id  # every event up to here is in the store already
        events, covered = self._recent(after_id)
        if not covered:
            page = await run_in_threadpool(
                functools.partial(
                    self.catalog.events_since,
                    after_id,
                    limit=limit,
                    repository_id=wanted.repository_id,
                    session_id=wanted.session_id,
                    types=wanted.types,
                )
            )
            if len(page) < limit:  # nothing more matches up to ``top`` (or the last read)
                cursor = max(top, page[-1].id if page else after_id)
                return Batch([e for e in page if wanted.matches(e)], cursor, replayed=True)
            return Batch([e for e in page if wanted.matches(e)], page[-1].id, replayed=True)
        events = events[:limit]
        if not events:
            return Batch([], after_id)
        return Batch([e for e in events if wanted.matches(e)], events[-1].id)

    async def follow(
        self, after_id: int, wanted: EventFilter, *, keepalive_s: float = 15.0
    ) -> AsyncIterator[Batch]:
        """Batches of matching events after ``after_id``, until the hub closes; an empty
        batch after ``keepalive_s`` of silence, so the caller can keep its line alive."""
        cursor = after_id
        while not self._closed:
            batch = await self.read(cursor, wanted)
            cursor = batch.cursor
            if batch.events:
                yield batch
                continue
            if cursor < self.last_id:
                continue  # only events for others: read on
            before = self.last_id
            await self.wait(cursor, keepalive_s)
            if self.last_id == before:
                yield batch


@dataclass(frozen=True)
class Batch:
    events: list[Event]
    cursor: int  # the last id read, matching or not
    replayed: bool = False  # read back from the store: the reader had fallen behind
