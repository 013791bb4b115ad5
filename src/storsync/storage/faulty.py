"""A storage that fails or slows down on command: real code for fault tests.

It wraps another storage; ``fail_on("publish", nth=3)`` makes the third publish raise,
``slow("open", seconds=0.2)`` delays every open. Calls are counted per method name.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from storsync.clock import Clock, SystemClock
from storsync.errors import StorageError, StorageUnavailable
from storsync.model import Entry, StopSignal
from storsync.storage.base import SkipReport, Source, Staged, Storage

T = TypeVar("T")


class FaultyStorage(Storage):
    def __init__(self, inner: Storage, *, clock: Clock | None = None) -> None:
        self.inner = inner
        self._clock = clock or SystemClock()
        self.caps = inner.caps
        self.url = inner.url
        self.calls: Counter[str] = Counter()
        self._failures: dict[str, tuple[set[int], Callable[[], StorageError]]] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()

    def fail_on(
        self,
        method: str,
        *nth: int,
        error: Callable[[], StorageError] = lambda: StorageUnavailable("injected fault"),
    ) -> None:
        """Make the given calls (1-based, counted from now on) of ``method`` raise."""
        with self._lock:
            base = self.calls[method]
            self._failures[method] = ({base + n for n in nth}, error)

    def slow(self, method: str, seconds: float) -> None:
        self._delays[method] = seconds

    def _gate(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1
            count = self.calls[method]
            failure = self._failures.get(method)
        if method in self._delays:
            self._clock.sleep(self._delays[method])
        if failure is not None and count in failure[0]:
            raise failure[1]()

    def scan(self, skip: SkipReport, stop: StopSignal) -> dict[str, Entry]:
        self._gate("scan")
        return self.inner.scan(skip, stop)

    def stat(self, path: str) -> Entry | None:
        self._gate("stat")
        return self.inner.stat(path)

    def open(self, path: str, expected: Entry) -> AbstractContextManager[Source]:
        self._gate("open")
        return self.inner.open(path, expected)

    def staged_in_memory(self, size: int) -> int:
        return self.inner.staged_in_memory(size)

    def stages_locally(self, size: int) -> bool:
        return self.inner.stages_locally(size)

    def stage(
        self, path: str, source: Source, *, size: int, mtime_ns: int, executable: bool
    ) -> Staged:
        self._gate("stage")
        return self.inner.stage(path, source, size=size, mtime_ns=mtime_ns, executable=executable)

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        self._gate("publish")
        return self.inner.publish(staged, expected=expected, trash=trash)

    def discard(self, staged: Staged) -> None:
        self.inner.discard(staged)

    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        self._gate("remove")
        self.inner.remove(path, expected, trash=trash)

    def copy(self, path: str, new_path: str, expected: Entry) -> Entry:
        self._gate("copy")
        return self.inner.copy(path, new_path, expected)

    def move(self, path: str, new_path: str, expected: Entry) -> Entry:
        self._gate("move")
        return self.inner.move(path, new_path, expected)

    def hash(self, path: str, expected: Entry, stop: StopSignal) -> str:
        self._gate("hash")
        return self.inner.hash(path, expected, stop)

    def read_own(self, name: str) -> bytes | None:
        self._gate("read_own")
        return self.inner.read_own(name)

    def write_own(self, name: str, data: bytes) -> None:
        self._gate("write_own")
        self.inner.write_own(name, data)

    def prune_trash(self, older_than_ns: int) -> None:
        self.inner.prune_trash(older_than_ns)

    def sync(self) -> None:
        self._gate("sync")
        self.inner.sync()

    def start_session(self) -> None:
        self.inner.start_session()

    def close(self) -> None:
        self.inner.close()
