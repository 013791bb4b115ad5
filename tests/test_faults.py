"""Injected faults on the remote: every kind of call fails once, fails for good, or is slow.

A transient fault is retried and the session completes. A persistent one ends the session
with a clear one-line message or per-file errors, loses nothing, and the next session
without faults completes and converges.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from storsync.clock import SystemClock
from storsync.errors import PermanentStorageError, StorageError, StorageUnavailable
from storsync.model import StopSignal, SyncSettings
from storsync.runner.report import Report
from storsync.runner.retry import RETRY_DELAYS, Retry
from storsync.runner.session import SyncSession
from storsync.runner.staging import SMALL_BYTES
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.base import Source, Staged, Storage, chunks
from storsync.storage.faulty import FaultyStorage
from storsync.storage.local import LocalStorage
from storsync.storage.memory import MemoryStorage
from tests.conftest import Pair, trash, tree, write

METHODS = [
    "scan",
    "open",
    "stage",
    "publish",
    "remove",
    "copy",
    "move",
    "sync",
    "read_own",
    "write_own",
]
COPY = re.compile(r"\.conflict-\d{8}-\d{6}-remote")


def remote_tree(storage: Storage) -> dict[str, bytes]:
    """The user's files on a storage, read through its own interface."""
    found = {}
    for path, entry in storage.scan(lambda _path, _reason: None, StopSignal()).items():
        with storage.open(path, entry) as source:
            found[path] = b"".join(chunks(source))
    return found


def remote_trash(storage: Storage) -> set[bytes]:
    if isinstance(storage, MemoryStorage):
        return {b.data for k, b in storage.objects.items() if k.startswith(".storsync/trash/")}
    assert isinstance(storage, LocalStorage)
    return {data for versions in trash(storage.root).values() for data in versions}


@dataclass
class Case:
    """A pair synced once, then changed so that the next session makes every kind of call."""

    pair: Pair
    remote: Storage
    put_remote: Callable[[str, bytes], None]
    versions: set[bytes]

    def everything_kept(self) -> set[bytes]:
        kept = set(tree(self.pair.local).values()) | set(remote_tree(self.remote).values())
        kept |= {d for versions in trash(self.pair.local).values() for d in versions}
        return kept | remote_trash(self.remote)

    def assert_converged(self) -> None:
        local = tree(self.pair.local)
        assert local == remote_tree(self.remote)
        plain = {p: d for p, d in local.items() if not COPY.search(p)}
        kept = {COPY.sub("", p): d for p, d in local.items() if COPY.search(p)}
        assert plain == {
            **{f"bulk/{i}.txt": f"bulk {i}".encode() for i in range(20)},
            "keep.txt": b"keep",
            "edit_local.txt": b"local edit",
            "edit_remote.txt": b"remote edit",
            "conflict.txt": b"conflict: local side",
            "clash/inner.txt": b"inner",
        }
        assert kept == {"conflict.txt": b"conflict: remote side!", "clash": b"a remote file"}
        assert not self.versions - self.everything_kept(), "a version was lost"


def local_remote(tmp_path: Path) -> tuple[Storage, Callable[[str, bytes], None]]:
    root = tmp_path / "remote"
    return LocalStorage(root), lambda path, data: (write(root, path, data), None)[1]


def memory_remote(_tmp_path: Path) -> tuple[Storage, Callable[[str, bytes], None]]:
    storage = MemoryStorage()
    return storage, lambda path, data: storage.put_object(path, data, mtime_ns=time.time_ns())


@pytest.fixture(params=[local_remote, memory_remote], ids=["local", "memory"])
def case(request: pytest.FixtureRequest, pair: Pair, tmp_path: Path) -> Case:
    return make_case(pair, *request.param(tmp_path))


@pytest.fixture
def memory_case(pair: Pair, tmp_path: Path) -> Case:
    return make_case(pair, *memory_remote(tmp_path))


def make_case(pair: Pair, remote: Storage, put_remote: Callable[[str, bytes], None]) -> Case:
    for i in range(20):
        write(pair.local, f"bulk/{i}.txt", f"bulk {i}")
    for name in ("keep", "edit_local", "edit_remote", "conflict", "gone"):
        write(pair.local, f"{name}.txt", name)
    assert pair.sync(remote_storage=remote).state == "completed"

    write(pair.local, "edit_local.txt", "local edit")  # push: stage, publish, sync
    put_remote("edit_remote.txt", b"remote edit")  # pull: open
    write(pair.local, "conflict.txt", "conflict: local side")  # keep both: copy
    put_remote("conflict.txt", b"conflict: remote side!")
    (pair.local / "gone.txt").unlink()  # remove
    put_remote("clash", b"a remote file")  # a file against a directory: move
    write(pair.local, "clash/inner.txt", "inner")
    if isinstance(remote, MemoryStorage):  # a missing layout marker: write_own
        del remote.objects[".storsync/format"]
    else:
        assert isinstance(remote, LocalStorage)
        (remote.root / ".storsync" / "format").unlink()
    versions = set(tree(pair.local).values()) | set(remote_tree(remote).values())
    return Case(pair, remote, put_remote, versions)


@pytest.mark.parametrize("method", METHODS)
def test_a_transient_fault_is_retried_and_the_session_completes(case: Case, method: str) -> None:
    faulty = FaultyStorage(case.remote)
    faulty.fail_on(method, 1)
    report = case.pair.sync(remote_storage=faulty)
    assert faulty.calls[method] >= 2, f"{method} was not called again after its fault"
    assert (report.state, report.message, report.errors) == ("completed", None, [])
    case.assert_converged()
    again = case.pair.sync(remote_storage=case.remote)
    assert (again.state, again.pushed, again.pulled) == ("completed", 0, 0)


def unavailable() -> StorageError:
    return StorageUnavailable("the remote storage did not answer")


def refused() -> StorageError:
    return PermanentStorageError("the remote storage refused the request: permission denied")


@pytest.mark.parametrize("method", METHODS)
def test_a_persistent_refusal_fails_clearly_loses_nothing_and_the_next_run_converges(
    case: Case, method: str
) -> None:
    assert_fails_clearly_then_converges(case, method, refused)


@pytest.mark.parametrize("method", METHODS)
def test_a_persistent_outage_fails_after_retries_and_the_next_run_converges(
    memory_case: Case, method: str
) -> None:
    """Retried with the real delays (seconds each): run against one remote only."""
    began = time.monotonic()
    assert_fails_clearly_then_converges(memory_case, method, unavailable)
    assert time.monotonic() - began > sum(RETRY_DELAYS)


def assert_fails_clearly_then_converges(
    case: Case, method: str, error: Callable[[], StorageError]
) -> None:
    faulty = FaultyStorage(case.remote)
    faulty.fail_on(method, *range(1, 1000), error=error)
    report = case.pair.sync(remote_storage=faulty)
    assert faulty.calls[method] >= 1
    expected = error().message
    if report.state == "failed":
        assert report.message is not None
        assert expected in report.message
        assert "\n" not in report.message
    else:
        assert report.state == "partial"
        assert report.message is None
        assert all(e["path"] and e["message"] for e in report.errors)
        assert any(expected in e["message"] for e in report.errors), report.errors
    assert not case.versions - case.everything_kept(), "a version was lost"
    assert not [p for p in tree(case.pair.local) if p.endswith(".part")]

    retry = case.pair.sync(remote_storage=case.remote)
    assert (retry.state, retry.errors) == ("completed", []), retry
    case.assert_converged()
    again = case.pair.sync(remote_storage=case.remote)
    assert (again.state, again.pushed, again.pulled) == ("completed", 0, 0)


@pytest.mark.parametrize("method", ["scan", "open", "stage", "publish", "copy", "move", "sync"])
def test_slow_calls_only_cost_time(case: Case, method: str) -> None:
    faulty = FaultyStorage(case.remote)
    faulty.slow(method, 0.1)
    report = case.pair.sync(remote_storage=faulty)
    assert (report.state, report.errors) == ("completed", [])
    assert faulty.calls[method] >= 1
    case.assert_converged()


class _Unavailable(MemoryStorage):
    """Over the network; its ``publish`` of one path meets ``left`` outages first."""

    def __init__(self, path: str, left: int) -> None:
        super().__init__()
        self.caps = replace(self.caps, network=True)
        self.path, self.left, self.attempts = path, left, 0

    def publish(self, staged: Staged, *, expected: Any, trash: str | None) -> Any:
        if staged.path == self.path:
            self.attempts += 1
            if self.left > 0:
                self.left -= 1
                raise unavailable()
        return super().publish(staged, expected=expected, trash=trash)


class _Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_a_batch_is_retried_together_each_item_as_often_as_a_call_alone() -> None:
    """``Retry.each``: the items that met a transient error go again together after
    each delay (a delay a round, not one an item: a thousand throttled PUTs do not wait
    a thousand times); a refusal is not tried again."""
    clock = _Sleeps()
    left = {"ok": 0, "twice": 2, "always": 99, "refused": 0}
    tried: list[list[str]] = []

    def call(items: list[str]) -> list[str | StorageError]:
        tried.append(items)
        outcomes: list[str | StorageError] = []
        for item in items:
            if item == "refused":
                outcomes.append(refused())
            elif left[item] > 0:
                left[item] -= 1
                outcomes.append(unavailable())
            else:
                outcomes.append(f"{item} done")
        return outcomes

    outcomes = Retry(clock).each(call, list(left))
    assert outcomes[:2] == ["ok done", "twice done"]
    assert isinstance(outcomes[2], StorageUnavailable) and isinstance(
        outcomes[3], PermanentStorageError
    )
    assert tried == [
        ["ok", "twice", "always", "refused"],
        ["twice", "always"],
        ["twice", "always"],
        ["always"],
    ]
    assert clock.slept == list(RETRY_DELAYS)


@pytest.mark.parametrize("failures", [3, 4])
def test_a_publication_is_tried_four_times_though_its_first_went_in_a_batch(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    """A batch's attempts go together (``publish_all``); a file whose attempt met a
    transient error is tried as often as a call alone is: four in all."""
    monkeypatch.setattr("storsync.runner.retry.RETRY_DELAYS", (0.01, 0.01, 0.01))
    remote = _Unavailable("f3", failures)
    for i in range(8):
        write(pair.local, f"f{i}", str(i))
    report = pair.sync(remote_storage=remote, transfers=4)
    assert remote.attempts == 4
    if failures == 3:
        assert (report.state, report.pushed) == ("completed", 8)
    else:  # the storage taken for out after the last attempt
        assert (report.state, report.pushed) == ("failed", 7)
        assert pair.sync(remote_storage=remote).pushed == 1


def test_slow_transfers_run_in_parallel(pair: Pair) -> None:
    over_the_network = MemoryStorage()  # each call a round trip, worth waiting on in parallel
    over_the_network.caps = replace(over_the_network.caps, network=True)
    remote = FaultyStorage(over_the_network)
    for i in range(16):
        write(pair.local, f"f{i}", str(i))
    remote.slow("stage", 0.25)
    began = time.monotonic()
    report = pair.sync(remote_storage=remote, transfers=8)
    assert (report.state, report.pushed) == ("completed", 16)
    assert time.monotonic() - began < 16 * 0.25 / 2


class _CountedStaging(LocalStorage):
    """A local tree that counts how many of its stagings run at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.running = self.most = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def stage(self, path: str, source: Source, **kw: Any) -> Staged:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        try:
            time.sleep(0.05)  # long enough for every thread to take one
            return super().stage(path, source, **kw)
        finally:
            with self._lock:
                self.running -= 1


def test_between_two_local_trees_no_more_threads_stage_than_there_are_cores(pair: Pair) -> None:
    """More would only take turns at the interpreter's lock (docs/decisions.md "Sixteen
    transfers by default"); files past SMALL_BYTES, which are worth a worker."""
    for i in range(40):
        write(pair.local, f"f{i}", str(i) * (SMALL_BYTES + 1))
    remote = _CountedStaging(pair.remote)
    report = pair.sync(remote_storage=remote, transfers=16)
    assert (report.state, report.pushed) == ("completed", 40)
    cores = len(os.sched_getaffinity(0))
    assert remote.most <= min(16, cores)
    assert remote.most > 1 or cores == 1  # still in parallel


def test_between_two_local_trees_small_files_are_staged_by_the_publishing_thread(
    pair: Pair,
) -> None:
    """Handing a small file to a worker and back costs more than its copy (docs/decisions.md
    "Small files between local trees staged on one thread"); a failure still stays its own."""
    for i in range(40):
        write(pair.local, f"f{i}", str(i) * SMALL_BYTES if i == 7 else str(i))
    write(pair.local, "big", "x" * (SMALL_BYTES + 1))
    remote = FaultyStorage(_CountedStaging(pair.remote))
    remote.fail_on("stage", 3, error=lambda: PermanentStorageError("injected fault"))
    report = pair.sync(remote_storage=remote, transfers=16)
    assert (report.state, report.pushed, len(report.errors)) == ("partial", 40, 1)
    counted = remote.inner
    assert isinstance(counted, _CountedStaging)
    assert threading.get_ident() in counted.threads
    assert len(counted.threads) == 2  # the big file went to a worker
    assert remote.calls["stage"] == 41


def test_a_failing_hash_is_decided_without_it_and_keeps_both_versions(pair: Pair) -> None:
    remote = FaultyStorage(MemoryStorage())
    write(pair.local, "same.txt", "identical")
    remote.inner.put_object("same.txt", b"identical")  # type: ignore[attr-defined]
    remote.fail_on("hash", *range(1, 100))
    report = pair.sync(remote_storage=remote)
    assert report.state == "completed"
    assert tree(pair.local) == remote_tree(remote.inner)
    assert set(tree(pair.local).values()) == {b"identical"}


class FixedClock(SystemClock):
    """Every session of a test starts in the same second."""

    def now_ns(self) -> int:
        return 1_800_000_000 * 10**9

    def monotonic(self) -> float:
        return time.monotonic()


def sync_at_fixed_time(pair: Pair, remote: Storage) -> Report:
    store = SqliteBaseStore(pair.state / "state.db")
    try:
        repo = store.repository_id(pair.local.as_uri(), pair.remote.as_uri(), now_ns=0)
        session = SyncSession(
            LocalStorage(pair.local), remote, store, repo, SyncSettings(), clock=FixedClock()
        )
        return session.run()
    finally:
        store.close()


def test_a_conflict_copy_left_by_a_failed_session_does_not_block_a_rerun_in_that_second(
    pair: Pair,
) -> None:
    remote = MemoryStorage()
    write(pair.local, "doc.txt", "base")
    assert sync_at_fixed_time(pair, remote).state == "completed"
    write(pair.local, "doc.txt", "local edit")
    remote.put_object("doc.txt", b"remote edit!", mtime_ns=1)
    faulty = FaultyStorage(remote)
    faulty.fail_on("stage", *range(1, 100), error=refused)  # the copy is made, then the push fails
    first = sync_at_fixed_time(pair, faulty)
    assert first.state == "partial"
    assert any(COPY.search(k) for k in remote.objects)
    again = sync_at_fixed_time(pair, remote)
    assert (again.state, again.errors) == ("completed", [])
    local = tree(pair.local)
    assert local == remote_tree(remote)
    assert local["doc.txt"] == b"local edit"
    assert {d for p, d in local.items() if COPY.search(p)} == {b"remote edit!"}
