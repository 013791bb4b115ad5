"""The interface every storage implements, and the pieces they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from storsync.errors import StorsyncError
from storsync.model import Capabilities, Entry, StopSignal
from storsync.paths import within
from storsync.storage.content import CHUNK

# Called with (path, reason) for every name a scan refuses or skips: a log item.
SkipReport = Callable[[str, str], None]
# Called with a step, gives every step-th key of the last listing stored (the base), in
# key order: where a storage may cut a large listing into ranges listed at once.
StoredKeys = Callable[[int], Sequence[str]]

OWN_FORMAT = 1


class Resumable(Protocol):
    """A source that can skip the bytes a destination kept from an interrupted transfer.

    ``version`` names the bytes (an ETag): kept bytes are only ever offered back to a source
    of the same version. ``resume`` must come before the first ``read``.
    """

    version: str

    def resume(self, prefix: Iterable[bytes]) -> None:
        """Take ``prefix`` as the version's first bytes, already held by the destination.

        They are hashed (and so covered by ``finish``) but not fetched again; ``read`` goes
        on from their end. The whole iterable is consumed.
        """
        ...


class Source(Protocol):
    """The bytes of one version, read once, hashed on the way.

    ``mtime_ns``/``executable`` are the version's own, when the storage learns them only on
    reading (object metadata); None where the scan already gave them. ``resumable`` is set
    where the source can start at an offset (large remote objects).
    """

    mtime_ns: int | None
    executable: bool | None
    resumable: Resumable | None

    def read(self, n: int) -> bytes: ...

    def finish(self) -> str:
        """The content hash, after checking that the version did not change while read.

        Raises ChangedError when it did; the caller then abandons the write.
        """
        ...


@dataclass(frozen=True, slots=True)
class Staged:
    """A version written to the destination but not yet visible under its name."""

    path: str
    hash: str
    size: int
    token: object  # what the storage needs to publish or discard it


class HeldSource:
    """A version read whole and checked already: its bytes, from memory."""

    resumable: Resumable | None = None

    def __init__(self, data: bytes, digest: str, mtime_ns: int | None, executable: bool | None):
        self._data = memoryview(data)
        self._digest = digest
        self.mtime_ns = mtime_ns
        self.executable = executable

    def read(self, n: int) -> bytes:
        block, self._data = self._data[:n], self._data[n:]
        return bytes(block)

    def finish(self) -> str:
        return self._digest


@dataclass(frozen=True, slots=True)
class Publication:
    """A staged version to publish, what must be at its path now (None: nothing), and the
    trash folder the replaced version goes to (None: none)."""

    staged: Staged
    expected: Entry | None
    trash: str | None


class Storage(ABC):
    """One side of a repository.

    Paths are storsync's keys (NFC, '/'-separated, validated); each adapter maps them to its
    own names and refuses, at scan time, names it cannot map. Writes are two-step: ``stage``
    makes a version durable somewhere invisible, ``publish`` makes it visible atomically,
    after checking that the destination still holds what the plan expected.
    """

    caps: Capabilities
    url: str

    @abstractmethod
    def scan(self, skip: SkipReport, stop: StopSignal) -> dict[str, Entry]:
        """Every file of the side, by key; storsync's own files are never included.

        Checks ``stop`` between entries (or pages of a listing): a stop asked for during
        the scan raises Stopped there.
        """

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        """Every file ``scan`` finds, in the byte order of the UTF-8 of its key (the order
        of engine.merge). This one sorts a whole scan; a storage that lists in that order
        streams it instead, holding no more than a directory at a time. It may raise
        ListingOutOfOrder before giving a key out of order: ``sorted_walk`` then.
        ``expected``: about how many files the caller expects (the base's count), and
        ``stored`` the keys the base holds, for a storage that walks a large tree another
        way."""
        return self.sorted_walk(skip, stop)

    def sorted_walk(self, skip: SkipReport, stop: StopSignal) -> Iterator[tuple[str, Entry]]:
        """``walk`` from a whole scan, sorted: memory grows with the tree."""
        yield from sorted(self.scan(skip, stop).items())

    def scan_under(
        self, tops: Sequence[str], skip: SkipReport, stop: StopSignal
    ) -> dict[str, Entry]:
        """The files at ``tops`` and under them (``tops``: keys none of which lies under
        another), as ``scan`` would list them. This one scans everything and keeps what
        is asked; a storage that can look at a few paths alone does so."""
        wanted = set(tops)
        return {p: e for p, e in self.scan(skip, stop).items() if within(p, wanted)}

    def scan_digested(self, skip: SkipReport, stop: StopSignal) -> tuple[dict[str, Entry], str]:
        """``scan``, and a digest of the listing as it came ("": this storage makes none);
        a storage that makes one makes the same for the same listing."""
        return self.scan(skip, stop), ""

    def walk_digested(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> tuple[Iterator[tuple[str, Entry]], Callable[[], str]]:
        """``walk``, and what gives a digest of the same listing once the walk has ended:
        the one ``scan_digested`` makes, or, from a listing walked another way, one that
        says so before a ``:`` (its kind, for ``listing_digest``)."""
        return self.sorted_walk_digested(skip, stop)

    def sorted_walk_digested(
        self, skip: SkipReport, stop: StopSignal
    ) -> tuple[Iterator[tuple[str, Entry]], Callable[[], str]]:
        """``walk_digested`` from a whole scan, sorted (as ``sorted_walk``)."""
        found, digest = self.scan_digested(skip, stop)
        return iter(sorted(found.items())), lambda: digest

    def listing_digest(
        self,
        stop: StopSignal,
        kind: str = "",
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> str:
        """The digest ``scan_digested`` would give now, or of ``kind`` the one
        ``walk_digested`` would (``expected`` and ``stored`` as it had them), at a fraction
        of its cost ("": none)."""
        return ""

    @abstractmethod
    def stat(self, path: str) -> Entry | None:
        """The file at ``path`` now, or None when there is no file there."""

    @abstractmethod
    def open(self, path: str, expected: Entry) -> AbstractContextManager[Source]:
        """Read ``path``; raises ChangedError when it is no longer ``expected``."""

    def reads_at_once(self, size: int) -> bool:
        """Whether a file of ``size`` bytes is read sooner with others (``read_all``) than
        alone: small objects over a network, their requests sent together."""
        return False

    def read_all(
        self, reads: Sequence[tuple[str, Entry]], width: int
    ) -> list[Source | StorsyncError]:
        """Each of ``reads`` (a path, and the entry it must still be) read whole, once, up to
        ``width`` at once: in their order, a source over its bytes, checked as ``open``'s
        are, or the error that opening or reading it raised. This one reads them one after
        the other; a storage that sends many requests at once from one thread does so."""
        return [self._read_whole(path, expected) for path, expected in reads]

    def _read_whole(self, path: str, expected: Entry) -> Source | StorsyncError:
        try:
            with self.open(path, expected) as source:
                data = b"".join(iter(lambda: source.read(CHUNK), b""))
                return HeldSource(data, source.finish(), source.mtime_ns, source.executable)
        except StorsyncError as exc:
            return exc

    @abstractmethod
    def stage(
        self, path: str, source: Source, *, size: int, mtime_ns: int, executable: bool
    ) -> Staged:
        """Write a version where nobody sees it yet; the source is checked when read."""

    def staged_in_memory(self, size: int) -> int:
        """The bytes a staged file of ``size`` holds in memory until it is published (0:
        it is staged where it is written)."""
        return 0

    def stages_locally(self, size: int) -> bool:
        """Whether staging a file of ``size`` here waits on no network: then a thread a
        core stages as fast as more would."""
        return not self.caps.network

    @abstractmethod
    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        """Make a staged version visible at its path.

        ``expected`` is what must be there now (None: nothing); otherwise PreconditionFailed.
        The replaced version goes to the trash folder ``trash`` unless it is None.
        """

    def publish_all(self, items: Sequence[Publication], width: int) -> list[Entry | StorsyncError]:
        """``publish`` tried once for each of ``items``, up to ``width`` at once where the
        storage is over a network: in their order, each the entry written or the error.
        This one gives each its own thread; a storage that sends many requests from one
        thread does so."""

        def one(item: Publication) -> Entry | StorsyncError:
            try:
                return self.publish(item.staged, expected=item.expected, trash=item.trash)
            except StorsyncError as exc:
                return exc

        if not self.caps.network or width < 2 or len(items) < 2:
            return [one(item) for item in items]
        with ThreadPoolExecutor(min(width, len(items))) as pool:
            return list(pool.map(one, items))

    @abstractmethod
    def discard(self, staged: Staged) -> None:
        """Drop a staged version that will not be published."""

    @abstractmethod
    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        """Delete ``path`` (into the trash folder unless None) if it is still ``expected``."""

    @abstractmethod
    def copy(self, path: str, new_path: str, expected: Entry) -> Entry:
        """Copy a file within the side to a new path that must not exist."""

    def move(self, path: str, new_path: str, expected: Entry) -> Entry:
        """Rename a file within the side to a new path that must not exist."""
        entry = self.copy(path, new_path, expected)
        self.remove(path, expected, trash=None)
        return entry

    def hash(self, path: str, expected: Entry, stop: StopSignal) -> str:
        """The content hash of ``path``, checking ``stop`` between chunks."""
        with self.open(path, expected) as source:
            while source.read(1 << 20):
                stop.check()
            return source.finish()

    @abstractmethod
    def read_own(self, name: str) -> bytes | None:
        """A file of storsync's own under the side's ``.storsync/``, or None."""

    @abstractmethod
    def write_own(self, name: str, data: bytes) -> None:
        """Write one of storsync's own files, atomically."""

    @abstractmethod
    def prune_trash(self, older_than_ns: int) -> None:
        """Drop trash folders made before the given time."""

    def sync(self) -> None:
        """Make everything written so far durable (a no-op where writes are durable)."""

    def start_session(self) -> None:
        """Called once under the pair lock: drop partial files a killed run left."""

    def close(self) -> None:
        """Release what the storage holds."""


def chunks(source: Source, size: int = 1 << 20) -> Iterator[bytes]:
    while block := source.read(size):
        yield block
