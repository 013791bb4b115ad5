"""Calls to a storage tried again after a transient error, with growing delays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

from storsync.clock import Clock
from storsync.errors import StorageError

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

# Read at each call (not bound at import), so that a test can shorten it.
RETRY_DELAYS = (0.1, 0.5, 2.0)


class Retry:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def __call__(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call``, again after each retryable StorageError while delays are left."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return call(*args, **kwargs)
            except StorageError as exc:
                if not exc.retryable or delay is None:
                    raise
            self._clock.sleep(delay)
        raise AssertionError("unreachable")

    def each(self, call: Callable[[list[T]], Sequence[R]], items: list[T]) -> list[R]:
        """``call`` over ``items`` (an outcome each, a value or an error), then over those
        whose outcome is a retryable StorageError, together, again after each delay: each
        item tried as often as a call alone, and none waits for another's delays."""
        outcomes = list(call(items))
        for delay in RETRY_DELAYS:
            again = [at for at, outcome in enumerate(outcomes) if transient(outcome)]
            if not again:
                break
            self._clock.sleep(delay)
            for at, outcome in zip(again, call([items[at] for at in again]), strict=True):
                outcomes[at] = outcome
        return outcomes


def transient(outcome: object) -> bool:
    """Whether ``outcome`` is a storage's error that may pass: an outage, not a refusal."""
    return isinstance(outcome, StorageError) and outcome.retryable
