"""When repositories synchronize by themselves (API.md section 7): the instants of a
schedule, and how long a failing repository waits.

Interval instants are counted from the epoch, so they are the same after a restart and on
any node; cron instants are read in the schedule's time zone by cronsim, which does what
cron does across a daylight-saving change (a skipped time fires at the first instant after
the gap, a repeated one once).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from storsync.errors import InvalidRequest
from storsync.model import Schedule

MIN_INTERVAL_S = 10
MAX_INTERVAL_S = 366 * 86_400
# After this many failures in a row a repository is ``failing``: its schedule and watch
# wait BACKOFF_FIRST_S, doubling with each further failure up to BACKOFF_MAX_S.
BACKOFF_AFTER = 3
BACKOFF_FIRST_S = 60
BACKOFF_MAX_S = 3600
_US = timedelta(microseconds=1)


def check(schedule: Schedule) -> None:
    """InvalidRequest, in one sentence, for a schedule that cannot fire."""
    if (schedule.interval_s is None) == (schedule.cron is None):
        raise InvalidRequest("a schedule is either {intervalSeconds} or {cron, timezone}")
    if schedule.interval_s is not None:
        if not MIN_INTERVAL_S <= schedule.interval_s <= MAX_INTERVAL_S:
            raise InvalidRequest(
                f"intervalSeconds must be from {MIN_INTERVAL_S} to {MAX_INTERVAL_S}"
            )
        return
    zone = _zone(schedule.timezone)
    try:
        next(CronSim(schedule.cron or "", datetime(2000, 1, 1, tzinfo=zone)))
    except (CronSimError, StopIteration) as exc:
        raise InvalidRequest(f"cron {schedule.cron!r} is not valid: {exc}") from None


@functools.cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"timezone {name!r} is not an IANA time zone name") from None


def _when(ns: int, schedule: Schedule) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC).astimezone(_zone(schedule.timezone))


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def next_after(schedule: Schedule, t_ns: int) -> int:
    """The first instant of the schedule strictly after ``t_ns``."""
    if schedule.interval_s is not None:
        step = schedule.interval_s * 10**9
        return (t_ns // step + 1) * step
    return _ns(next(CronSim(schedule.cron or "", _when(t_ns, schedule))))


def latest_at_or_before(schedule: Schedule, t_ns: int) -> int:
    """The last instant of the schedule at or before ``t_ns``."""
    if schedule.interval_s is not None:
        step = schedule.interval_s * 10**9
        return t_ns // step * step
    start = _when(t_ns, schedule) + _US  # cronsim steps back from strictly before it
    return _ns(next(CronSim(schedule.cron or "", start, reverse=True)))


def backoff_until(failures: int, last_failure_ns: int | None) -> int | None:
    """Until when a repository with ``failures`` in a row waits (None: it does not)."""
    if failures < BACKOFF_AFTER or last_failure_ns is None:
        return None
    doublings = min(failures - BACKOFF_AFTER, 16)
    wait_s: int = min(BACKOFF_FIRST_S << doublings, BACKOFF_MAX_S)
    return last_failure_ns + wait_s * 10**9
