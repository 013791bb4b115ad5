"""The only place that reads the wall clock or sleeps, so that tests can set the time.

``Clock`` is what every layer is handed; ``SystemClock`` is the real one, ``ManualClock``
a fake whose time moves only when a test says so (real code for tests, never used by
``src/``). The build refuses ``time.time``, ``time.sleep`` and ``datetime.now`` elsewhere
(ruff's banned-api rule in pyproject.toml).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

# A wait for an instant re-reads the wall clock at least this often, so that a clock set
# forward or back (NTP, a suspended machine) is noticed within this long.
REREAD_S = 60.0


class Clock(Protocol):
    def now_ns(self) -> int:
        """The wall clock: nanoseconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: for intervals."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def wait_until(self, instant_ns: int, wake: threading.Event) -> bool:
        """Block until the wall clock reaches ``instant_ns`` or ``wake`` is set; whether
        ``wake`` was set (False: the instant came)."""
        ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait_until(self, instant_ns: int, wake: threading.Event) -> bool:
        while (left := (instant_ns - self.now_ns()) / 1e9) > 0:
            if wake.wait(min(left, REREAD_S)):
                return True
        return wake.is_set()


class ManualClock:
    """A clock for tests: its time stands still until ``advance`` moves it; sleepers and
    waiters wake when it passes their instant. ``monotonic`` moves with it."""

    def __init__(self, now_ns: int = 1_800_000_000 * 10**9) -> None:
        self._now = now_ns
        self._start = now_ns
        self._changed = threading.Condition()

    def now_ns(self) -> int:
        with self._changed:
            return self._now

    def monotonic(self) -> float:
        with self._changed:
            return (self._now - self._start) / 1e9

    def advance(self, seconds: float) -> None:
        with self._changed:
            self._now += int(seconds * 1e9)
            self._changed.notify_all()

    def sleep(self, seconds: float) -> None:
        self.wait_until(self.now_ns() + int(seconds * 1e9), threading.Event())

    def wait_until(self, instant_ns: int, wake: threading.Event) -> bool:
        with self._changed:
            while self._now < instant_ns and not wake.is_set():
                # ``wake`` is an Event, which cannot notify this condition: look again
                # every few milliseconds of real time.
                self._changed.wait(0.005)
            return wake.is_set()


def utc_stamp(ns: int) -> str:
    """``YYYYMMDD-HHMMSS`` in UTC, as used in conflict names and trash folders."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y%m%d-%H%M%S")


def utc_datetime(ns: int) -> datetime:
    """An instant of ``now_ns`` as an aware UTC datetime (for libraries that take one)."""
    return datetime.fromtimestamp(ns / 1e9, UTC)
