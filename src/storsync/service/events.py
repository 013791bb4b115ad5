"""The event bus: every event is numbered by this one writer, stored, then handed to the
listeners in order, so ids are gap-free and increasing on any database (API.md section 6)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from storsync.clock import Clock
from storsync.model import EventType
from storsync.state.event_store import EventStore
from storsync.state.records import Detail, Event, Nothing, Session, SessionSnapshot
from storsync.state.session_store import Announce

Listener = Callable[[Event], None]
Forgetter = Callable[[Collection[str]], None]


class EventBus:
    def __init__(self, store: EventStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._next_id = store.last_id() + 1
        self._listeners: list[Listener] = []
        self._forgetters: list[Forgetter] = []

    def about(self, type_: EventType, session: Session, detail: Detail | None = None) -> Event:
        """An event about a session, carrying the session as it is now, so that every
        face renders the event as of its time without reading the store again."""
        with self._lock:
            event = self._about(type_, session, detail)
            self.store.add(event)
            self._hand_on(event)
        return event

    def publish(
        self,
        type_: EventType,
        *,
        repository_id: str | None = None,
        session_id: str | None = None,
        session: SessionSnapshot | None = None,
        detail: Detail | None = None,
    ) -> Event:
        with self._lock:
            event = Event(
                id=self._next_id,
                ts_ns=self.clock.now_ns(),
                type=type_,
                repository_id=repository_id,
                session_id=session_id,
                session=session,
                detail=detail or Nothing(),
            )
            self.store.add(event)
            self._hand_on(event)
        return event

    def with_change(
        self, type_: EventType, change: Callable[[Announce], Session], detail: Detail | None = None
    ) -> Session:
        """Change a session and store the event about it as changed, in the change's own
        transaction (``change`` passes ``Announce`` to the session store): whoever sees a
        session queued, started or ended finds its event in the log, never a moment later."""
        with self._lock:
            made: list[Event] = []

            def announce(changed: Session) -> Event:
                made.append(self._about(type_, changed, detail))
                return made[-1]

            session = change(announce)
            assert len(made) == 1, "the change stored no event"
            self._hand_on(made[0])
        return session

    def _about(self, type_: EventType, session: Session, detail: Detail | None) -> Event:
        """The next event, about the session as it is now (under the lock)."""
        return Event(
            id=self._next_id,
            ts_ns=self.clock.now_ns(),
            type=type_,
            repository_id=session.repository_id,
            session_id=session.id,
            session=SessionSnapshot.of(session),
            detail=detail or Nothing(),
        )

    def _hand_on(self, event: Event) -> None:
        """After the event is stored: the next id, and the listeners. Inside the lock, so
        that every listener sees the events in id order; listeners only hand the event on
        (a bounded queue), they never block."""
        self._next_id += 1
        for listener in self._listeners:
            listener(event)

    def forget(self, session_ids: Collection[str]) -> None:
        """Tell the listeners that these sessions' events left the store (retention),
        so that none of them serves one from memory afterwards."""
        if not session_ids:
            return
        with self._lock:
            for forgetter in self._forgetters:
                forgetter(session_ids)

    def subscribe(
        self, listener: Listener, *, forget: Forgetter | None = None
    ) -> Callable[[], None]:
        """Add a listener (and what it does when sessions are forgotten); the returned
        function removes them."""
        with self._lock:
            self._listeners.append(listener)
            if forget is not None:
                self._forgetters.append(forget)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
                if forget is not None and forget in self._forgetters:
                    self._forgetters.remove(forget)

        return unsubscribe

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next_id - 1
