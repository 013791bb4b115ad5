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
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field

from storsync.model import EventType
from storsync.service.events import EventBus
from storsync.state.event_store import EventStore
from storsync.state.log_store import LogItemStore
from storsync.state.records import Event, ItemBatch

RING_SIZE = 4096
REPLAY_PAGE = 500
# Per-file batches are many and large: only those who ask for them by type get them.
ON_REQUEST_TYPES = frozenset({EventType.ITEMS_TRANSFERRED})
ITEMS_CACHED = 64  # batches kept with their items: many subscribers, one read


@dataclass(frozen=True)
class EventFilter:
    repository_id: str | None = None
    session_id: str | None = None
    types: frozenset[EventType] = field(default_factory=frozenset)

    def matches(self, event: Event) -> bool:
        if self.repository_id is not None and event.repository_id != self.repository_id:
            return False
        if self.session_id is not None and event.session_id != self.session_id:
            return False
        if self.types:
            return event.type in self.types
        return event.type not in ON_REQUEST_TYPES


class EventHub:
    def __init__(
        self,
        bus: EventBus,
        events: EventStore,
        log_items: LogItemStore,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.events = events
        self.log_items = log_items
        self._loop = loop
        self._ring: deque[Event] = deque(maxlen=RING_SIZE)
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._last_id = bus.last_id
        self._closed = False
        self._items: OrderedDict[int, Event] = OrderedDict()
        self._unsubscribe: Callable[[], None] = bus.subscribe(
            self._on_event, forget=self._on_forget
        )

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

    def _on_forget(self, session_ids: Collection[str]) -> None:
        gone = set(session_ids)
        with self._lock:
            newest = self._ring[-1] if self._ring else None
            # The newest event stays, as in the store (Catalog.prune_sessions).
            kept = [e for e in self._ring if e.session_id not in gone or e is newest]
            self._ring = deque(kept, maxlen=RING_SIZE)
            self._items = OrderedDict(
                (i, e) for i, e in self._items.items() if e.session_id not in gone
            )

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
            page = await asyncio.to_thread(
                functools.partial(
                    self.events.since,
                    after_id,
                    limit=limit,
                    repository_id=wanted.repository_id,
                    session_id=wanted.session_id,
                    types=wanted.types,
                )
            )
            matching = await self._with_items([e for e in page if wanted.matches(e)])
            if len(page) < limit:  # nothing more matches up to ``top`` (or the last read)
                cursor = max(top, page[-1].id if page else after_id)
                return Batch(matching, cursor, replayed=True)
            return Batch(matching, page[-1].id, replayed=True)
        events = events[:limit]
        if not events:
            return Batch([], after_id)
        return Batch(
            await self._with_items([e for e in events if wanted.matches(e)]), events[-1].id
        )

    async def _with_items(self, events: list[Event]) -> list[Event]:
        """Per-file batches as delivered: with the paths and sizes that the worker stored
        as log items (the stored event only says where), read once per batch."""
        if not any(_unloaded(e) for e in events):
            return events
        with self._lock:
            wanted = [e for e in events if _unloaded(e) and e.id not in self._items]
        loaded = await asyncio.to_thread(self._load_items, wanted) if wanted else []
        with self._lock:  # a retention pass may forget sessions meanwhile, in its thread
            cached = self._items
            for event in loaded:
                cached[event.id] = event
                if len(cached) > ITEMS_CACHED:
                    cached.popitem(last=False)
            return [cached.get(e.id, e) if _unloaded(e) else e for e in events]

    def _load_items(self, events: list[Event]) -> list[Event]:
        loaded = []
        for event in events:
            batch = event.detail
            assert isinstance(batch, ItemBatch)
            rows = self.log_items.batch(
                event.session_id or "", batch.kind, batch.first_id, batch.last_id
            )
            loaded.append(event.with_items(tuple(rows)))
        return loaded

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


def _unloaded(event: Event) -> bool:
    """A per-file batch without its items (as stored): read them for the consumer."""
    return isinstance(event.detail, ItemBatch) and event.detail.items is None


@dataclass(frozen=True)
class Batch:
    events: list[Event]
    cursor: int  # the last id read, matching or not
    replayed: bool = False  # read back from the store: the reader had fallen behind
