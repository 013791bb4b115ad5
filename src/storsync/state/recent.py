"""Rows read lately, kept for lookups without I/O from the event loop."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from storsync.clock import Clock

V = TypeVar("V")


class Recent(Generic[V]):
    """Write-through: a write through a store forgets what it changed, and a read that
    raced with such a write (it began before, its row may be older) is not kept. The age
    limit only bounds how long a change made behind the store's back (by hand in the
    database, or by another process) goes unseen."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Clock) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, V]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def before_read(self) -> int:
        """Taken before reading the store; handed back to ``keep``."""
        return self._generation

    def keep(self, key: str, value: V, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (self._clock.monotonic(), value)

    def get(self, key: str) -> V | None:
        found = self._entries.get(key)
        if found is None or self._clock.monotonic() - found[0] > self.ttl_s:
            return None
        return found[1]

    def forget(self, key: str | None = None) -> None:
        """After a write: that key (None: every one) is no longer known."""
        with self._lock:
            self._generation += 1
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)
