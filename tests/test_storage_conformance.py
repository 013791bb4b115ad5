"""One contract, every adapter: what the runner relies on from a Storage.

Add an adapter by adding a factory to ``ADAPTERS``; every test runs against it. Checks that
depend on a capability (nanosecond mtimes, the executable bit, case sensitivity, whether a
scan gives each file's own mtime and bit) follow what the adapter's ``caps`` declare. The S3
adapter runs against the real SeaweedFS of the ``s3_server`` fixture, one key prefix per test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storsync.errors import ChangedError, PreconditionFailed
from storsync.model import Entry, StopSignal
from storsync.storage.base import Storage, chunks
from storsync.storage.content import hash_bytes
from storsync.storage.local import LocalStorage
from storsync.storage.memory import MemoryStorage
from storsync.storage.s3 import S3Settings, S3Storage
from tests.s3_server import SeaweedS3


def local_adapter(_request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    root = tmp_path / "root"
    root.mkdir()
    return LocalStorage(root)


def memory_adapter(_request: pytest.FixtureRequest, _tmp_path: Path) -> Storage:
    return MemoryStorage()


def s3_adapter(request: pytest.FixtureRequest, _tmp_path: Path) -> Storage:
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    return S3Storage(
        S3Settings(
            bucket=server.bucket,
            prefix=f"conformance/{uuid.uuid4().hex[:12]}",
            endpoint=server.endpoint,
            region=server.region,
            access_key_id=server.access_key,
            secret_access_key=server.secret_key,
        )
    )


# Each factory gets the test's request (for fixtures an adapter needs) and a fresh directory.
ADAPTERS: dict[str, Callable[[pytest.FixtureRequest, Path], Storage]] = {
    "local": local_adapter,
    "memory": memory_adapter,
    "s3": s3_adapter,
}
MTIME = 1_700_000_000_123_456_789
DAY_NS = 86_400 * 10**9


@pytest.fixture(params=sorted(ADAPTERS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    made = ADAPTERS[request.param](request, tmp_path)
    made.start_session()
    yield made
    made.close()


class Bytes:
    """A source over fixed bytes; ``changed`` makes it report a change when finished."""

    resumable = None  # read from its first byte, as a local file or a small object is

    def __init__(self, data: bytes, *, changed: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.changed = changed

    def read(self, n: int) -> bytes:
        block = self.data[self.pos : self.pos + n]
        self.pos += len(block)
        return block

    def finish(self) -> str:
        if self.changed:
            raise ChangedError("the source changed while it was read")
        return hash_bytes(self.data)


def put(
    storage: Storage,
    path: str,
    data: bytes,
    *,
    mtime_ns: int = MTIME,
    executable: bool = False,
    expected: Entry | None = None,
    trash: str | None = None,
) -> Entry:
    staged = storage.stage(
        path, Bytes(data), size=len(data), mtime_ns=mtime_ns, executable=executable
    )
    return storage.publish(staged, expected=expected, trash=trash)


def files(storage: Storage) -> dict[str, Entry]:
    skipped: list[tuple[str, str]] = []
    found = storage.scan(lambda path, reason: skipped.append((path, reason)), StopSignal())
    assert not skipped
    return found


def read(storage: Storage, path: str) -> bytes:
    entry = storage.stat(path)
    assert entry is not None, f"{path} is not there"
    with storage.open(path, entry) as source:
        data = b"".join(chunks(source))
        assert source.finish() == hash_bytes(data)
    return data


def same_mtime(storage: Storage, got: int, wanted: int) -> bool:
    return abs(got - wanted) < storage.caps.mtime_precision_ns


def own_stamp(storage: Storage, path: str) -> Entry:
    """The file's own mtime and bit as the side tells them: from a scan where the listing
    carries them (``listing_metadata``), else from ``stat`` (an object listing gives the
    server's time and no bit; the runner then takes them from the base or the object)."""
    entry = files(storage)[path] if storage.caps.listing_metadata else storage.stat(path)
    assert entry is not None, f"{path} is not there"
    return entry


# -- scan, stat, open ---------------------------------------------------------------


def test_an_empty_side_has_no_files(storage: Storage) -> None:
    assert files(storage) == {}
    assert storage.stat("nothing.txt") is None


@pytest.mark.parametrize("executable", [True, False])
def test_a_published_file_keeps_its_bytes_mtime_and_mode(
    storage: Storage, executable: bool
) -> None:
    data = b"hello\n" * 1000
    written = put(storage, "dir/sub/a.txt", data, executable=executable)
    assert written.hash == hash_bytes(data)
    entry = files(storage)["dir/sub/a.txt"]
    assert entry.size == written.size == len(data)
    own = own_stamp(storage, "dir/sub/a.txt")
    assert same_mtime(storage, own.mtime_ns, MTIME)
    if storage.caps.mtime_precision_ns == 1:
        assert own.mtime_ns == MTIME
    if storage.caps.executable_bit:
        assert own.executable is executable
    stat = storage.stat("dir/sub/a.txt")
    assert stat is not None
    assert (stat.size, stat.mtime_ns, stat.executable) == (
        entry.size,
        own.mtime_ns,
        own.executable,
    )
    if not storage.caps.listing_metadata:  # the scan's mtime is the server's: a recent one
        assert abs(entry.mtime_ns - time.time_ns()) < DAY_NS
    if storage.caps.inodes:
        assert entry.inode is not None
        assert entry.inode == stat.inode == written.inode
    if storage.caps.etags:
        assert entry.etag is not None
        assert entry.etag == stat.etag == written.etag
    assert read(storage, "dir/sub/a.txt") == data
    assert storage.hash("dir/sub/a.txt", entry, StopSignal()) == hash_bytes(data)


@pytest.mark.parametrize(
    "mtime_ns", [0, 1, 999_999_999, 1_000_000_000, MTIME, 4_102_444_800 * 10**9]
)
def test_mtimes_survive_to_the_nanosecond(storage: Storage, mtime_ns: int) -> None:
    put(storage, "t", b"x", mtime_ns=mtime_ns)
    got = own_stamp(storage, "t").mtime_ns
    assert same_mtime(storage, got, mtime_ns), (got, mtime_ns)


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (5 << 20) + 3])
def test_sizes_around_the_chunk_size_round_trip(storage: Storage, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    entry = put(storage, "blob.bin", data)
    assert entry.hash == hash_bytes(data)
    assert read(storage, "blob.bin") == data


@pytest.mark.parametrize(
    "path",
    ["café/naïve.txt", "with space/and-dash_and.dots.tar.gz", "x" * 255, "日本語/ファイル"],
)
def test_unusual_but_valid_names_round_trip(storage: Storage, path: str) -> None:
    put(storage, path, path.encode())
    assert list(files(storage)) == [path]
    assert read(storage, path) == path.encode()


def test_names_that_differ_by_case_are_two_files_where_case_sensitive(storage: Storage) -> None:
    if not storage.caps.case_sensitive:
        pytest.skip("the adapter declares itself case-insensitive")
    put(storage, "A.txt", b"upper")
    put(storage, "a.txt", b"lower")
    assert sorted(files(storage)) == ["A.txt", "a.txt"]
    assert read(storage, "A.txt") == b"upper"


def test_open_refuses_a_version_that_is_no_longer_there(storage: Storage) -> None:
    old = put(storage, "a", b"one")
    put(storage, "a", b"two!", expected=old)
    with pytest.raises(ChangedError), storage.open("a", old):
        pass
    with pytest.raises(ChangedError), storage.open("missing", old):
        pass


def test_read_all_reads_each_as_open_does_and_refuses_each_alone(storage: Storage) -> None:
    """``read_all`` (S3: the GETs sent at once): each file's bytes, hash, mtime and bit as
    ``open`` gives them; a version replaced or removed since is refused alone."""
    kept = put(storage, "kept", b"kept bytes", executable=True)
    old = put(storage, "replaced", b"one")
    put(storage, "replaced", b"two!", expected=old)
    gone = put(storage, "gone", b"gone")
    storage.remove("gone", gone, trash=None)
    empty = put(storage, "empty", b"")
    listed = storage.stat("kept")
    assert listed is not None
    reads = [("kept", listed), ("replaced", old), ("gone", gone), ("empty", empty)] * 2
    outcomes = storage.read_all(reads, width=3)
    assert [type(o).__name__ for o in outcomes[4:]] == [type(o).__name__ for o in outcomes[:4]]
    got, replaced, removed, nothing = outcomes[:4]
    assert isinstance(replaced, ChangedError) and isinstance(removed, ChangedError)
    assert not isinstance(got, Exception) and not isinstance(nothing, Exception)
    data = b"".join(chunks(got))
    assert (data, got.finish()) == (b"kept bytes", hash_bytes(b"kept bytes"))
    with storage.open("kept", listed) as alone:
        assert (got.mtime_ns, got.executable) == (alone.mtime_ns, alone.executable)
    assert (b"".join(chunks(nothing)), nothing.finish()) == (b"", hash_bytes(b""))
    assert kept.size == len(b"kept bytes")


def test_a_file_replaced_while_read_gives_one_whole_version_or_a_change(
    storage: Storage,
) -> None:
    first = put(storage, "a", b"1" * 4096)
    with storage.open("a", first) as source:
        head = source.read(100)
        put(storage, "a", b"2" * 4096, expected=first)
        data = head + b"".join(chunks(source))
        try:
            digest = source.finish()
        except ChangedError:
            return
    assert data == b"1" * 4096
    assert digest == hash_bytes(data)


# -- stage and publish ----------------------------------------------------------------


def test_a_staged_version_is_invisible_until_published(storage: Storage) -> None:
    staged = storage.stage("new.txt", Bytes(b"data"), size=4, mtime_ns=MTIME, executable=False)
    assert files(storage) == {}
    assert storage.stat("new.txt") is None
    storage.publish(staged, expected=None, trash=None)
    assert read(storage, "new.txt") == b"data"


def test_a_discarded_version_never_appears(storage: Storage) -> None:
    staged = storage.stage("new.txt", Bytes(b"data"), size=4, mtime_ns=MTIME, executable=False)
    storage.discard(staged)
    storage.start_session()
    assert files(storage) == {}


def test_stage_refuses_a_source_that_changed_and_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(ChangedError):
        storage.stage("a", Bytes(b"data", changed=True), size=4, mtime_ns=MTIME, executable=False)
    with pytest.raises(ChangedError):
        storage.stage("b", Bytes(b"data"), size=5, mtime_ns=MTIME, executable=False)
    assert files(storage) == {}
    if isinstance(storage, LocalStorage):
        assert not list((storage.root / ".storsync" / "partial").iterdir())


def test_publish_to_create_refuses_an_existing_file(storage: Storage) -> None:
    put(storage, "a", b"theirs")
    with pytest.raises(PreconditionFailed):
        put(storage, "a", b"mine")
    assert read(storage, "a") == b"theirs"
    assert list(files(storage)) == ["a"]


def test_publish_refuses_a_stale_expected_version(storage: Storage) -> None:
    first = put(storage, "a", b"one")
    put(storage, "a", b"two", expected=first)  # same size: only the stamp tells
    with pytest.raises(PreconditionFailed):
        put(storage, "a", b"three", expected=first)
    assert read(storage, "a") == b"two"


def test_publish_refuses_when_the_expected_file_was_removed(storage: Storage) -> None:
    first = put(storage, "a", b"one")
    storage.remove("a", first, trash=None)
    with pytest.raises(PreconditionFailed):
        put(storage, "a", b"two", expected=first)
    assert files(storage) == {}


def test_publish_keeps_the_replaced_version_in_the_trash(storage: Storage) -> None:
    first = put(storage, "d/a", b"one")
    put(storage, "d/a", b"two", expected=first, trash="t1")
    assert read(storage, "d/a") == b"two"
    assert storage.read_own("trash/t1/d/a") == b"one"
    second = storage.stat("d/a")
    assert second is not None
    put(storage, "d/a", b"three", expected=second, trash=None)
    assert storage.read_own("trash/t1/d/a") == b"one"
    assert list(files(storage)) == ["d/a"]


# -- remove, copy, move ---------------------------------------------------------------


def test_remove_moves_the_file_to_the_trash(storage: Storage) -> None:
    entry = put(storage, "d/a", b"one")
    put(storage, "d/b", b"other")
    storage.remove("d/a", entry, trash="t1")
    assert storage.stat("d/a") is None
    assert list(files(storage)) == ["d/b"]
    assert storage.read_own("trash/t1/d/a") == b"one"


def test_remove_without_trash_deletes(storage: Storage) -> None:
    entry = put(storage, "a", b"one")
    storage.remove("a", entry, trash=None)
    assert files(storage) == {}
    assert storage.read_own("trash/t1/a") is None


def test_remove_refuses_a_stale_or_missing_file(storage: Storage) -> None:
    first = put(storage, "a", b"one")
    put(storage, "a", b"two", expected=first)
    with pytest.raises(PreconditionFailed):
        storage.remove("a", first, trash="t1")
    assert read(storage, "a") == b"two"
    with pytest.raises(PreconditionFailed):
        storage.remove("missing", first, trash="t1")


def test_copy_makes_a_second_file_with_the_same_bytes(storage: Storage) -> None:
    entry = put(storage, "a", b"one", executable=True)
    copied = storage.copy("a", "sub/b", entry)
    assert read(storage, "a") == read(storage, "sub/b") == b"one"
    found = files(storage)
    assert copied.size == found["sub/b"].size == 3
    own = own_stamp(storage, "sub/b")
    assert same_mtime(storage, own.mtime_ns, MTIME)
    if storage.caps.executable_bit:
        assert own.executable


def test_copy_refuses_an_existing_target_and_a_stale_source(storage: Storage) -> None:
    entry = put(storage, "a", b"one")
    put(storage, "b", b"two")
    with pytest.raises(ChangedError):
        storage.copy("a", "b", entry)
    assert read(storage, "b") == b"two"
    put(storage, "a", b"new", expected=entry)
    with pytest.raises(ChangedError):
        storage.copy("a", "c", entry)
    assert storage.stat("c") is None


def test_move_renames_a_file(storage: Storage) -> None:
    entry = put(storage, "a", b"one")
    moved = storage.move("a", "sub/a.conflict", entry)
    assert moved.size == 3
    assert list(files(storage)) == ["sub/a.conflict"]
    assert read(storage, "sub/a.conflict") == b"one"


def test_move_refuses_an_existing_target_and_clobbers_nothing(storage: Storage) -> None:
    entry = put(storage, "a", b"one")
    put(storage, "b", b"two")
    with pytest.raises(ChangedError):
        storage.move("a", "b", entry)
    assert (read(storage, "a"), read(storage, "b")) == (b"one", b"two")


def test_move_refuses_a_stale_or_missing_source(storage: Storage) -> None:
    entry = put(storage, "a", b"one")
    put(storage, "a", b"two", expected=entry)
    with pytest.raises(ChangedError):
        storage.move("a", "b", entry)
    with pytest.raises(ChangedError):
        storage.move("missing", "c", entry)
    assert list(files(storage)) == ["a"]


# -- storsync's own files ----------------------------------------------------------------


def test_own_files_round_trip_and_are_never_user_files(storage: Storage) -> None:
    assert storage.read_own("format") is None
    storage.write_own("format", b"1")
    storage.write_own("repositories/abc", b'{"repository": "abc"}')
    storage.write_own("format", b"2")
    assert storage.read_own("format") == b"2"
    assert storage.read_own("repositories/abc") == b'{"repository": "abc"}'
    assert files(storage) == {}


def test_a_storsync_folder_at_any_depth_is_not_listed(storage: Storage) -> None:
    put(storage, "inner/.storsync/state", b"inner repository")
    put(storage, "inner/file", b"user")
    assert list(files(storage)) == ["inner/file"]


def test_prune_trash_drops_old_trash_and_keeps_recent_whatever_the_mtime(
    storage: Storage,
) -> None:
    entry = put(storage, "a", b"from 2001", mtime_ns=10**18)
    storage.remove("a", entry, trash="t1")
    now = time.time_ns()
    storage.prune_trash(now - DAY_NS)
    assert storage.read_own("trash/t1/a") == b"from 2001"
    storage.prune_trash(now + DAY_NS)
    assert storage.read_own("trash/t1/a") is None


def test_sync_and_a_new_session_keep_published_files(storage: Storage) -> None:
    put(storage, "a", b"one")
    staged = storage.stage("b", Bytes(b"two"), size=3, mtime_ns=MTIME, executable=False)
    storage.sync()
    storage.discard(staged)
    storage.start_session()
    assert list(files(storage)) == ["a"]
    assert read(storage, "a") == b"one"
