"""A session's bandwidth limit (SYNC.md "Modes and options", API.md section 7): every
byte a transfer reads from its source is paid for before the next read, by all of the
session's transfer threads together.

The limit is a running total, not a sleep per read: bytes are granted in the order asked
for, and each taker waits until the total the limit allows since it was set reaches its
grant. A changed limit (the service sends one when its total or the repository's changes)
bends that total from the moment of the change, and waiters look again at least every
``LOOK_S``, so a change holds within a fraction of a second however many bytes were
granted. An idle session saves at most ``BURST_S`` of the limit for later.
"""

from __future__ import annotations

import threading

from storsync.clock import Clock

LOOK_S = 0.1
BURST_S = 0.1


class Throttle:
    def __init__(self, bytes_per_second: int | None, clock: Clock) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._rate = bytes_per_second
        self._at = clock.monotonic()
        self._allowed = 0.0  # bytes the limit allowed up to self._at
        self._granted = 0.0  # bytes handed out

    @property
    def rate(self) -> int | None:
        return self._rate

    def set_rate(self, bytes_per_second: int | None) -> None:
        """Change the limit (None: none) for every transfer of the session, now."""
        with self._cond:
            self._advance(self.clock.monotonic())
            if self._rate is None:  # a limit that starts now owes nothing from before
                self._allowed = self._granted
            self._rate = bytes_per_second
            self._cond.notify_all()

    def take(self, n: int) -> None:
        """Wait until ``n`` more bytes fit within the limit."""
        if self._rate is None or n <= 0:
            return
        with self._cond:
            self._granted += n
            end = self._granted
            while True:
                self._advance(self.clock.monotonic())
                rate = self._rate
                if rate is None or self._allowed >= end:
                    return
                self._cond.wait(min(LOOK_S, (end - self._allowed) / rate))

    def _advance(self, now: float) -> None:
        rate = self._rate
        if rate is not None:
            grown = self._allowed + (now - self._at) * rate
            # Time nobody used saves at most a short burst.
            self._allowed = min(grown, max(self._allowed, self._granted) + rate * BURST_S)
        self._at = now
