"""An object store held in memory: a fake for tests, with the semantics of S3.

Keys are kept as given, so a test can plant hostile ones; every write gets a new ETag and
writes are conditional, as on a store with ``If-Match``/``If-None-Match``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from storsync.clock import Clock, SystemClock
from storsync.errors import ChangedError, PreconditionFailed
from storsync.model import Capabilities, Entry, StopSignal
from storsync.paths import OWN_DIR, is_own, normalize, refusal
from storsync.storage.base import Resumable, SkipReport, Source, Staged, Storage
from storsync.storage.content import hash_bytes


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    mtime_ns: int
    executable: bool
    etag: str


class _BytesSource:
    mtime_ns: int | None = None
    executable: bool | None = None
    resumable: Resumable | None = None

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, n: int) -> bytes:
        block = self._data[self._pos : self._pos + n]
        self._pos += len(block)
        return block

    def finish(self) -> str:
        return hash_bytes(self._data)


class MemoryStorage(Storage):
    def __init__(self, url: str = "memory://", *, clock: Clock | None = None) -> None:
        self.url = url
        self._clock = clock or SystemClock()
        self.caps = Capabilities(
            etags=True,
            executable_bit=True,
        )
        self.objects: dict[str, Blob] = {}
        self._lock = threading.Lock()
        self._etags = itertools.count(1)
        # When each trash key was written: retention runs from then, as an object's
        # LastModified does on S3, not from the mtime the version carries.
        self._trashed_ns: dict[str, int] = {}

    def put_object(
        self, key: str, data: bytes, *, mtime_ns: int = 0, executable: bool = False
    ) -> None:
        """Write as another client would: no checks, any key."""
        with self._lock:
            self.objects[key] = Blob(data, mtime_ns, executable, f"e{next(self._etags)}")

    def _entry(self, blob: Blob) -> Entry:
        return Entry(len(blob.data), blob.mtime_ns, blob.executable, None, blob.etag)

    def _current(self, path: str, expected: Entry | None) -> Blob | None:
        blob = self.objects.get(path)
        if expected is None:
            if blob is not None:
                raise PreconditionFailed(f"{path} appeared since the scan")
        elif blob is None or blob.etag != expected.etag:
            raise PreconditionFailed(f"{path} changed since the scan")
        return blob

    def scan(self, skip: SkipReport, stop: StopSignal) -> dict[str, Entry]:
        with self._lock:
            items = list(self.objects.items())
        found: dict[str, Entry] = {}
        for key, blob in items:
            stop.check()
            if is_own(key):
                continue
            reason = refusal(key)
            if reason:
                skip(key, reason)
                continue
            name = normalize(key)
            if name != key:
                skip(key, "name is not in Unicode NFC")
                continue
            found[name] = self._entry(blob)
        return found

    def stat(self, path: str) -> Entry | None:
        blob = self.objects.get(path)
        return None if blob is None else self._entry(blob)

    @contextlib.contextmanager
    def open(self, path: str, expected: Entry) -> Iterator[Source]:
        blob = self.objects.get(path)
        if blob is None or blob.etag != expected.etag:
            raise ChangedError(f"{path} changed since the scan")
        yield _BytesSource(blob.data)

    def staged_in_memory(self, size: int) -> int:
        return size

    def stage(
        self, path: str, source: Source, *, size: int, mtime_ns: int, executable: bool
    ) -> Staged:
        data = b"".join(iter(lambda: source.read(1 << 20), b""))
        digest = source.finish()
        if len(data) != size:
            raise ChangedError(f"{path}: read {len(data)} bytes where {size} were expected")
        return Staged(path, digest, size, Blob(data, mtime_ns, executable, ""))

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        assert isinstance(staged.token, Blob)
        with self._lock:
            old = self._current(staged.path, expected)
            if old is not None and trash is not None:
                self._keep_in_trash(f"{OWN_DIR}/trash/{trash}/{staged.path}", old)
            blob = Blob(
                staged.token.data,
                staged.token.mtime_ns,
                staged.token.executable,
                f"e{next(self._etags)}",
            )
            self.objects[staged.path] = blob
        entry = self._entry(blob)
        return Entry(entry.size, entry.mtime_ns, entry.executable, None, entry.etag, staged.hash)

    def discard(self, staged: Staged) -> None:
        pass

    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        with self._lock:
            old = self._current(path, expected)
            assert old is not None
            del self.objects[path]
            if trash is not None:
                self._keep_in_trash(f"{OWN_DIR}/trash/{trash}/{path}", old)

    def _keep_in_trash(self, key: str, blob: Blob) -> None:
        self.objects[key] = blob
        self._trashed_ns[key] = self._clock.now_ns()

    def copy(self, path: str, new_path: str, expected: Entry) -> Entry:
        with self._lock:
            old = self._current(path, expected)
            self._current(new_path, None)
            assert old is not None
            blob = Blob(old.data, old.mtime_ns, old.executable, f"e{next(self._etags)}")
            self.objects[new_path] = blob
        return self._entry(blob)

    def read_own(self, name: str) -> bytes | None:
        blob = self.objects.get(f"{OWN_DIR}/{name}")
        return None if blob is None else blob.data

    def write_own(self, name: str, data: bytes) -> None:
        self.put_object(f"{OWN_DIR}/{name}", data)

    def prune_trash(self, older_than_ns: int) -> None:
        with self._lock:
            for key in [k for k in self.objects if k.startswith(f"{OWN_DIR}/trash/")]:
                # A key planted with put_object is dated by the mtime it was given.
                if self._trashed_ns.get(key, self.objects[key].mtime_ns) < older_than_ns:
                    del self.objects[key]
                    self._trashed_ns.pop(key, None)
