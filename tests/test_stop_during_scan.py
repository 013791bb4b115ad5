"""A stop asked for during the scan and hash stage is honoured there, not after it.

The scan stops between directory entries (local) and listing pages (S3), a hash between
chunks of a file; the session ends ``stopped``, the base and both sides are as they were,
and the next session converges. Each test counts what was read after the stop, so a scan
or hash that ran to its end fails it. The command line (SIGINT, SIGTERM) and the service's
worker (a ``stop`` line, SIGTERM) are checked in child processes whose scan is slowed
down, so that the signal always lands in the middle of it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from storsync.errors import Stopped
from storsync.model import Entry, StopSignal, SyncSettings
from storsync.runner.job import SyncJob
from storsync.runner.report import Report
from storsync.runner.session import SyncSession
from storsync.service.reports import WorkerSetup
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.base import Resumable, Source, Storage
from storsync.storage.content import hash_bytes
from storsync.storage.local import LocalStorage
from storsync.storage.registry import RemoteSpec
from storsync.storage.s3 import MULTIPART_THRESHOLD, S3Settings, S3Storage
from tests.conftest import Pair, trash, tree, write

FILES = 3000
FOLDERS = 30
MiB = 1 << 20


def many_files(root: Path) -> None:
    for i in range(FILES):
        write(root, f"big/d{i % FOLDERS:02d}/f{i:05d}.txt", f"file {i}")


@contextlib.contextmanager
def session(
    pair: Pair, local: Storage | None = None, remote: Storage | None = None
) -> Iterator[tuple[SyncSession, SqliteBaseStore, str]]:
    store = SqliteBaseStore(pair.state / "state.db")
    try:
        repo = store.repository_id(pair.local.as_uri(), pair.remote.as_uri(), now_ns=0)
        yield (
            SyncSession(
                local or LocalStorage(pair.local),
                remote or LocalStorage(pair.remote),
                store,
                repo,
                SyncSettings(),
            ),
            store,
            repo,
        )
    finally:
        store.close()


def stop_from_another_thread(target: SyncSession) -> None:
    """Ask for the stop the way the worker's input watcher does, and wait until it has."""
    stopper = threading.Thread(target=target.stop)
    stopper.start()
    stopper.join()


def assert_stopped_before_changes(report: Report) -> None:
    assert report.state == "stopped", report.summary()
    assert report.message is not None
    assert "before it changed anything" in report.message
    assert report.pushed == report.pulled == 0
    assert report.deleted_local == report.deleted_remote == 0


# -- the local scan -----------------------------------------------------------------------


class _CountedEntries:
    """An ``os.scandir`` iterator that tells ``seen`` of every entry it hands out."""

    def __init__(self, inner: Any, seen: Callable[[], None]) -> None:
        self._inner = inner
        self._seen = seen

    def __enter__(self) -> _CountedEntries:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __iter__(self) -> _CountedEntries:
        return self

    def __next__(self) -> os.DirEntry[str]:
        item: os.DirEntry[str] = next(self._inner)
        self._seen()
        return item


@pytest.mark.parametrize("big_side", ["local", "remote"])
def test_a_stop_during_the_scan_ends_it_between_entries_and_changes_nothing(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, big_side: str
) -> None:
    # An established pair (a base, the markers), then thousands of new files on one side
    # (scanned by the calling thread, or by the pool's) and a deletion on the other.
    for name in ("a", "b", "c"):
        write(pair.local, f"kept/{name}.txt", name)
    assert pair.sync().state == "completed"
    big, other = (pair.local, pair.remote) if big_side == "local" else (pair.remote, pair.local)
    many_files(big)
    (other / "kept" / "a.txt").unlink()
    before = (tree(pair.local), tree(pair.remote), trash(pair.local), trash(pair.remote))

    stop_after = 100
    visited = 0
    lock = threading.Lock()
    real_scandir = os.scandir
    with session(pair) as (stopped, store, repo):
        base_before = store.load_base(repo)

        def seen() -> None:
            nonlocal visited
            with lock:
                visited += 1
                now = visited
            if now == stop_after:
                stop_from_another_thread(stopped)

        with monkeypatch.context() as patch:
            patch.setattr(os, "scandir", lambda path: _CountedEntries(real_scandir(path), seen))
            started = time.monotonic()
            report = stopped.run()
            elapsed = time.monotonic() - started
        # Of the FILES + FOLDERS + 10 entries of both sides, only those handed out when the
        # stop came: the first checked after it ends the scan.
        assert stop_after <= visited <= stop_after + 5, visited
        assert store.load_base(repo) == base_before

    assert_stopped_before_changes(report)
    assert "while scanning" in (report.message or "")
    assert (tree(pair.local), tree(pair.remote), trash(pair.local), trash(pair.remote)) == before
    print(f"stopped after {visited} entries, {elapsed:.3f} s")

    # The next session knows nothing of the stopped one.
    report = pair.sync()
    assert report.state == "completed", report.summary()
    assert tree(pair.local) == tree(pair.remote)
    assert len(tree(pair.local)) == FILES + 2
    assert "kept/a.txt" in trash(big)


# -- hashing a large file -----------------------------------------------------------------


class _CountedSource:
    def __init__(self, inner: Source, count: Callable[[int], None]) -> None:
        self._inner = inner
        self._count = count
        self.mtime_ns = inner.mtime_ns
        self.executable = inner.executable
        self.resumable: Resumable | None = inner.resumable

    def read(self, n: int) -> bytes:
        block = self._inner.read(n)
        self._count(len(block))
        return block

    def finish(self) -> str:
        return self._inner.finish()


class CountedReads(LocalStorage):
    """A directory whose reads are counted; ``on_read`` is told of each block."""

    def __init__(self, root: Path, on_read: Callable[[int], None]) -> None:
        super().__init__(root)
        self._on_read = on_read

    @contextlib.contextmanager
    def open(self, path: str, expected: Entry) -> Iterator[Source]:
        with super().open(path, expected) as source:
            yield _CountedSource(source, self._on_read)


def test_a_stop_while_hashing_a_large_file_ends_it_between_chunks(pair: Pair) -> None:
    size = 256 * MiB
    for root in (pair.local, pair.remote):
        # Sparse: the same new bytes on both sides and no base, so both must be hashed.
        with open(root / "big.bin", "wb") as fh:
            fh.truncate(size)
    read = 0
    lock = threading.Lock()
    holder: list[SyncSession] = []

    def on_read(n: int) -> None:
        nonlocal read
        with lock:
            first = read == 0
            read += n
        if first:
            stop_from_another_thread(holder[0])

    local, remote = CountedReads(pair.local, on_read), CountedReads(pair.remote, on_read)
    with session(pair, local, remote) as (stopped, store, repo):
        holder.append(stopped)
        started = time.monotonic()
        report = stopped.run()
        elapsed = time.monotonic() - started
        # A chunk or two per side, not 2 x 256 MiB.
        assert 0 < read <= 8 * MiB, read
        assert store.load_base(repo) == {}

    assert_stopped_before_changes(report)
    assert "while hashing" in (report.message or "")
    assert not (pair.remote / ".storsync").exists()  # not even the markers
    print(f"read {read / MiB:.0f} MiB of {2 * size / MiB:.0f} MiB, {elapsed:.3f} s")

    report = pair.sync()
    assert report.state == "completed", report.summary()
    assert report.pushed == report.pulled == 0  # the same bytes: only recorded
    with session(pair) as (_, store, repo):
        assert set(store.load_base(repo)) == {"big.bin"}


# -- S3: between listing pages, and between chunks of a hash --------------------------


class _PagedBucket:
    """The few client calls S3Storage.scan and hash make, with counts of what was asked."""

    def __init__(self, pages: int, body_size: int) -> None:
        self.pages = pages
        self.body_size = body_size
        self.pages_fetched = 0
        self.bytes_sent = 0
        self.stop = StopSignal()

    def get_paginator(self, name: str) -> _PagedBucket:
        assert name == "list_objects_v2"
        return self

    def paginate(self, **_: object) -> Iterator[dict[str, Any]]:
        when = datetime(2025, 1, 1, tzinfo=UTC)
        for page in range(self.pages):
            self.pages_fetched += 1
            self.stop.set()  # asked for while the first page is on its way
            yield {
                "Contents": [
                    {"Key": f"p/{page}/{i}", "Size": 1, "ETag": '"e"', "LastModified": when}
                    for i in range(1000)
                ]
            }

    def head_object(self, **_: object) -> dict[str, Any]:
        return {"Metadata": {}}  # written by another tool: no stored hash

    def get_object(self, **_: object) -> dict[str, Any]:
        return {"Metadata": {}, "Body": _Zeros(self)}


class _Zeros:
    def __init__(self, bucket: _PagedBucket) -> None:
        self._bucket = bucket

    def read(self, n: int) -> bytes:
        n = min(n, self._bucket.body_size - self._bucket.bytes_sent)
        self._bucket.bytes_sent += n
        if self._bucket.bytes_sent > MiB:
            self._bucket.stop.set()
        return bytes(n)

    def close(self) -> None:
        pass


class _NoStoredHash:
    """The signed HEAD of an object another tool wrote: no hash among its metadata."""

    def head(self, path: str, key: str, headers: object) -> dict[str, str]:
        return {}


class _PagedS3(S3Storage):
    @functools.cached_property
    def _signed(self) -> Any:
        return _NoStoredHash()


def test_an_s3_scan_and_hash_stop_between_pages_and_chunks() -> None:
    # An object above the multipart threshold: read through the client, by ranges
    # (a smaller one is read by a signed GET, which this client cannot answer).
    bucket = _PagedBucket(pages=5, body_size=MULTIPART_THRESHOLD + MiB)
    storage = _PagedS3(S3Settings(bucket="b", prefix="p"), client=bucket)

    with pytest.raises(Stopped):
        storage.scan(lambda _path, _reason: None, bucket.stop)
    assert bucket.pages_fetched == 1  # not the four others

    bucket.stop = StopSignal()
    entry = Entry(bucket.body_size, 0, False, None, "e")
    with pytest.raises(Stopped):
        storage.hash("big.bin", entry, bucket.stop)
    assert bucket.bytes_sent <= 3 * MiB, bucket.bytes_sent

    # With a signal nobody sets (any caller but a session) both run to their end.
    bucket.pages_fetched = bucket.bytes_sent = 0
    never = StopSignal()
    assert len(storage.scan(lambda _path, _reason: None, never)) == 5 * 1000
    assert storage.hash("big.bin", entry, never) == hash_bytes(bytes(bucket.body_size))
    assert bucket.pages_fetched == 5


# -- the command line and the service's worker, in child processes ---------------------

# Runs ``main()`` of the module $SLOW_SCAN_MAIN with every directory entry under
# $SLOW_SCAN_ROOT handed out 2 ms late (a slow file system: a scan of several seconds);
# says "scan started" on stderr at the first, and "visited N" when the process ends.
SLOW_SCAN = """
import atexit, importlib, os, sys, time

root = os.environ["SLOW_SCAN_ROOT"]
real_scandir = os.scandir
visited = 0


class Slow:
    def __init__(self, inner):
        self.inner = inner

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.inner.close()

    def __iter__(self):
        return self

    def __next__(self):
        global visited
        item = next(self.inner)
        visited += 1
        if visited == 1:
            print("scan started", file=sys.stderr, flush=True)
        time.sleep(0.002)
        return item


def scandir(path="."):
    inner = real_scandir(path)
    # The walk lists a directory through its descriptor: all of those are the scan's.
    walked = isinstance(path, int) or os.fspath(path).startswith(root)
    return Slow(inner) if walked else inner


os.scandir = scandir
atexit.register(lambda: print(f"visited {visited}", file=sys.stderr, flush=True))
sys.argv[0] = "storsync"
importlib.import_module(os.environ["SLOW_SCAN_MAIN"]).main()
"""
SLOW_SCAN_SECONDS = FILES * 0.002


def slow_scan(
    module: str, root: Path, args: list[str], *, stdin: int | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "SLOW_SCAN_ROOT": str(root), "SLOW_SCAN_MAIN": module}
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_SCAN, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_scan(proc: subprocess.Popen[str]) -> list[str]:
    """The child's stderr lines up to "scan started"."""
    assert proc.stderr is not None
    lines: list[str] = []
    while (line := proc.stderr.readline()) != "scan started\n":
        assert line, f"the child ended before its scan: {''.join(lines)}"
        lines.append(line)
    return lines


def visited(stderr: str) -> int:
    [count] = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("visited ")]
    return count


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_command_line_stops_during_the_scan_on_a_signal(
    pair: Pair, signum: signal.Signals
) -> None:
    many_files(pair.local)
    before = tree(pair.local)
    args = ["sync", str(pair.local), str(pair.remote), "--state-dir", str(pair.state), "--json"]
    proc = slow_scan("storsync.cli", pair.local, args)
    wait_for_scan(proc)
    time.sleep(0.2)  # well inside the scan
    signalled = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - signalled

    assert proc.returncode == 1, (out, err)  # CLI.md: not completed
    assert visited(err) < FILES // 2, err
    assert elapsed < SLOW_SCAN_SECONDS / 2, elapsed
    summary = json.loads(out)  # the summary of a session that ended, not an interruption
    assert summary["state"] == "stopped", summary
    assert "before it changed anything" in summary["message"]
    assert tree(pair.local) == before
    assert list(pair.remote.iterdir()) == []  # not even the markers

    again = pair.cli("--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["pushed"] == FILES
    assert tree(pair.remote) == before


@pytest.mark.parametrize("how", ["stop line", "SIGTERM"])
def test_the_service_worker_stops_during_the_scan(pair: Pair, how: str) -> None:
    many_files(pair.local)
    before = tree(pair.local)
    database = pair.state / "state.db"
    store = SqliteBaseStore(database)
    repo = store.repository_id(pair.local.as_uri(), pair.remote.as_uri(), now_ns=0)
    store.close()
    job = SyncJob(
        local_root=pair.local,
        remote=RemoteSpec(pair.remote.as_uri(), private_endpoint_allowed=False),
        settings=SyncSettings(transfers=4),
        state_url=f"sqlite:///{database}",
        repository_id=repo,
        session_id="stopped-during-the-scan",
    )
    proc = slow_scan("storsync.service.worker", pair.local, [], stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(WorkerSetup().to_json() + "\n" + job.to_json() + "\n")
    proc.stdin.flush()
    wait_for_scan(proc)
    time.sleep(0.2)
    signalled = time.monotonic()
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
        # Before communicate() closes the input, which would stop the session as well.
        proc.wait(timeout=60)
    else:
        proc.stdin.write("stop\n")
        proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - signalled

    assert proc.returncode == 0, err
    assert visited(err) < FILES // 2, err
    assert elapsed < SLOW_SCAN_SECONDS / 2, elapsed
    messages = [json.loads(line) for line in out.splitlines()]
    [finished] = [m for m in messages if m["type"] == "finished"]
    assert finished["state"] == "stopped", finished
    assert "before it changed anything" in finished["error"]
    assert tree(pair.local) == before
    assert list(pair.remote.iterdir()) == []
    store = SqliteBaseStore(database)
    try:
        assert store.load_base(repo) == {}
    finally:
        store.close()
