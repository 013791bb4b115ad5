"""The only place that reads the wall clock, so that tests can set the time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


def utc_stamp(ns: int) -> str:
    """``YYYYMMDD-HHMMSS`` in UTC, as used in conflict names and trash folders."""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y%m%d-%H%M%S")
