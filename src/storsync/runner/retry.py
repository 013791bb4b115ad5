"""Calls to a storage tried again after a transient error, with growing delays."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from storsync.clock import Clock
from storsync.errors import StorageError

T = TypeVar("T")
P = ParamSpec("P")

# Read at each call (not bound at import), so that a test can shorten it.
RETRY_DELAYS = (0.1, 0.5, 2.0)


class Retry:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def __call__(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call``, again after each retryable StorageError while delays are left."""
        try:
            return call(*args, **kwargs)
        except StorageError as exc:
            if not exc.retryable:
                raise
            return self.again(exc, call, *args, **kwargs)

    def again(
        self, failed: StorageError, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``call`` after a first attempt made elsewhere failed with the retryable
        ``failed``: the attempts ``__call__`` makes after its first."""
        for delay in RETRY_DELAYS:
            self._clock.sleep(delay)
            try:
                return call(*args, **kwargs)
            except StorageError as exc:
                if not exc.retryable:
                    raise
                failed = exc
        raise failed
