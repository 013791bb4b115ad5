"""A whole session as one ordered pass (SYNC.md "Scale", runner.stream): memory that does
not grow with the tree, every entry merged, and the one order (the byte order of the UTF-8
of each NFC key) from a directory walk of NFD names, from S3 and from a PostgreSQL base
whose default collation is not C."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storsync.errors import ListingOutOfOrder, Stopped, StorageError
from storsync.model import BaseEntry, Entry, StopSignal, SyncSettings
from storsync.runner.session import SyncSession
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.state.store import StateStore
from storsync.storage import local_walk
from storsync.storage.base import SkipReport, StoredKeys
from storsync.storage.local import LocalStorage
from storsync.storage.memory import MemoryStorage
from storsync.storage.s3 import S3Storage
from storsync.storage.s3_folders import Folder
from tests.conftest import Pair, tree, write
from tests.pg_server import PgServer
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import settings_for, sync_s3

GENERATED = Path(__file__).with_name("generated_tree.py")
MiB = 1024


def planned(entries: int, *options: str) -> dict[str, int]:
    """One dry-run session over a generated pair, in a process of its own."""
    done = subprocess.run(
        [sys.executable, str(GENERATED), str(entries), *options],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return dict(json.loads(done.stdout))


@pytest.mark.slow
def test_a_no_op_over_two_million_entries_takes_the_memory_of_one_over_200_000() -> None:
    small, large = planned(200_000), planned(2_000_000)
    # Every entry was merged: the bound is not met by looking at fewer.
    assert small["merged"] == 200_000 and large["merged"] == 2_000_000
    assert small["push"] == large["push"] == small["pull"] == large["pull"] == 0
    assert large["peak_kib"] - small["peak_kib"] < 8 * MiB, (small, large)
    assert large["peak_kib"] < 64 * MiB  # the whole process, interpreter included


@pytest.mark.slow
def test_a_one_percent_change_over_two_million_entries_takes_the_memory_of_one_over_200_000() -> (
    None
):
    """20,000 changed paths against 2,000: the plan is decided window by window and
    spilled, so what is held does not grow with what changed (runner.session_plan)."""
    small = planned(200_000, "--changed-every", "100")
    large = planned(2_000_000, "--changed-every", "100")
    assert small["merged"] == 200_000 and large["merged"] == 2_000_000
    assert (small["push"], large["push"]) == (2_000, 20_000)
    assert large["peak_kib"] - small["peak_kib"] < 8 * MiB, (small, large)


@pytest.mark.slow
def test_moves_of_200_000_files_take_the_memory_of_moves_of_40_000() -> None:
    """Paired a partition at a time, confirmed a thousand at a time, and kept on the
    scratch file with the paths of the steps they replace (sorted runs, merged back as
    the plan is read): what a session holds does not grow with how many files moved
    (runner.pairing, runner.hashing, runner.session_plan). Held whole, 40,000 moves
    took 141 MiB and 200,000 took 617 MiB."""
    small = planned(200_000, "--moved-every", "5")
    large = planned(1_000_000, "--moved-every", "5")
    assert (small["moves"], large["moves"]) == (40_000, 200_000)
    # Each move took out its old path's deletion and its new path's transfer: ten runs
    # of 20,000 sorted paths merged against each list, every one found.
    assert small["push"] == large["push"] == small["pull"] == large["pull"] == 0
    assert small["deletes"] == large["deletes"] == 0
    assert large["peak_kib"] - small["peak_kib"] < 8 * MiB, (small, large)


def test_a_one_percent_change_plans_exactly_the_changed_entries() -> None:
    done = planned(200_000, "--changed-every", "100")
    assert (done["merged"], done["push"], done["pull"]) == (200_000, 2_000, 0)


def keys_walked(storage: LocalStorage | MemoryStorage, expected: int = 0) -> list[str]:
    return [key for key, _ in storage.walk(lambda p, r: None, StopSignal(), expected)]


# Walked in this process, and by a child process as a large tree is.
WALKS = pytest.mark.parametrize("expected", [0, local_walk.CHILD_FROM], ids=["here", "child"])


@WALKS
def test_a_walk_of_names_stored_in_nfd_comes_in_the_order_of_their_nfc_keys(
    pair: Pair, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NFD "e" + U+0301 sorts before "f" by its bytes on disk; its NFC key U+00E9 after.
    names = ["é.txt", "f.txt", "ea.txt", "é/x", "é/y", "e/z", "zz"]
    for name in names:
        write(pair.local, unicodedata.normalize("NFD", name), name)
    walked = keys_walked(LocalStorage(pair.local), expected)
    assert walked == sorted(unicodedata.normalize("NFC", n) for n in names)
    assert walked == sorted(walked, key=lambda k: k.encode())
    monkeypatch.setattr(local_walk, "CHILD_FROM", max(expected, 1))  # sessions likewise
    first = pair.sync()
    assert (first.state, first.pushed) == ("completed", len(names))
    again = pair.sync()
    assert (again.state, again.pushed, again.pulled, again.merged) == ("completed", 0, 0, 7)
    # The walk told the storage each name's spelling on disk: an edit is read from it.
    write(pair.local, unicodedata.normalize("NFD", "é/x"), "edited")
    edited = pair.sync()
    assert (edited.state, edited.pushed, edited.errors) == ("completed", 1, [])
    assert tree(pair.remote)[unicodedata.normalize("NFC", "é/x")] == b"edited"


def walk_of(root: Path, expected: int) -> tuple[list[tuple[str, Entry]], list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    found = list(
        LocalStorage(root).walk(lambda p, r: skipped.append((p, r)), StopSignal(), expected)
    )
    return found, skipped


def test_a_walk_in_a_child_process_finds_and_skips_what_one_here_does(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("a/x", "a.b", "b/c/d", "exec.sh", "same-é", "é/n"):
        write(root, unicodedata.normalize("NFD", name), name)
    write(root, unicodedata.normalize("NFC", "same-é"), "its NFC twin")
    (root / "exec.sh").chmod(0o755)
    (root / "link").symlink_to(root / "a.b")
    (root / "bad\x01name").write_text("refused")
    here, child = walk_of(root, 0), walk_of(root, local_walk.CHILD_FROM)
    assert child == here
    found, skipped = here
    assert len(found) == 6 and len(skipped) == 3
    assert dict(found)["exec.sh"].executable


def walking_child(root: Path) -> int:
    """The pid of this process's child that walks ``root``. One that wrote its whole walk
    into the pipe may have ended already, or be ending: its command line then reads empty,
    as a zombie's, and already while it exits (missed so once in four runs of this module:
    no zombie yet, and no command line to know it by)."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            state, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            line = (proc / "cmdline").read_bytes()
            ending = state == "Z" or not line
            walking = ending or (b"local_walk" in line and os.fsencode(root) in line)
            if int(ppid) == os.getpid() and walking:
                found.append(int(proc.name))
    [pid] = found
    return pid


def test_a_walking_process_that_dies_fails_the_walk_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "root", "a", "")
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a child that ends at once
    walk = LocalStorage(tmp_path / "root").walk(
        lambda p, r: None, StopSignal(), local_walk.CHILD_FROM
    )
    with pytest.raises(StorageError, match=r"the walking process ended before its walk did$"):
        list(walk)


def test_a_walking_process_that_fails_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "root", "a", "")
    failing = tmp_path / "failing-python"
    failing.write_text(
        "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
        "echo 'MemoryError: out of memory' >&2\nexit 1\n"
    )
    failing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(failing))
    walk = LocalStorage(tmp_path / "root").walk(
        lambda p, r: None, StopSignal(), local_walk.CHILD_FROM
    )
    with pytest.raises(StorageError) as failed:
        list(walk)
    assert str(failed.value).endswith(
        "the walking process ended before its walk did: MemoryError: out of memory"
    )


def test_a_stop_ends_the_walking_process(tmp_path: Path) -> None:
    for i in range(3 * local_walk.BATCH):
        write(tmp_path / "root", f"d/{i:05}", "")
    stop = StopSignal()
    walk = LocalStorage(tmp_path / "root").walk(lambda p, r: None, stop, local_walk.CHILD_FROM)
    next(walk)
    child = walking_child(tmp_path / "root")
    stop.set()
    with pytest.raises(Stopped):
        list(walk)
    assert not Path(f"/proc/{child}").exists()  # killed and reaped


def test_a_walking_process_starts_before_its_first_entry_is_asked_and_ends_when_dropped(
    tmp_path: Path,
) -> None:
    """A session starts both sides' walks at once (runner.stream): the second must not
    wait for the merge to ask it."""
    write(tmp_path / "root", "a", "")
    walk = LocalStorage(tmp_path / "root").walk(
        lambda p, r: None, StopSignal(), local_walk.CHILD_FROM
    )
    child = walking_child(tmp_path / "root")  # running, nothing read yet
    del walk  # dropped unread, as when the other side's walk fails to start
    assert not Path(f"/proc/{child}").exists()  # killed and reaped


def test_a_directory_swapped_for_a_link_while_walked_is_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root, "a", "")
    write(root, "b/mine", "")
    write(outside, "secret", "not under the root")
    skipped: list[tuple[str, str]] = []
    walk = local_walk.ordered(
        str(root), lambda p, r: skipped.append((p, r)), StopSignal(), lambda k, n: None
    )
    assert next(walk)[0] == "a"  # the root is listed: "b" is known as a directory
    (root / "b" / "mine").unlink()
    (root / "b").rmdir()
    (root / "b").symlink_to(outside)
    assert [key for key, _ in walk] == []
    assert [p for p, _ in skipped] == ["b"]


@WALKS
def test_a_root_that_is_a_link_to_a_directory_is_walked(tmp_path: Path, expected: int) -> None:
    write(tmp_path / "data", "d/x", "")
    (tmp_path / "root").symlink_to(tmp_path / "data")
    assert keys_walked(LocalStorage(tmp_path / "root"), expected) == ["d/x"]


def test_a_walk_puts_a_directory_where_its_name_and_a_slash_sort(pair: Pair) -> None:
    # "a-b" and "a.b" sort before "a/", "a0" after it: not where "a" alone would sort.
    for name in ("a/x", "a-b", "a.b", "a0", "a/b/c", "a!"):
        write(pair.local, name, name)
    walked = keys_walked(LocalStorage(pair.local))
    assert walked == ["a!", "a-b", "a.b", "a/b/c", "a/x", "a0"]


class Unordered(MemoryStorage):
    """Lists its keys in reverse: a server that breaks the order the merge needs."""

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        yield from reversed(list(super().walk(skip, stop, expected, stored)))


def test_a_listing_out_of_order_fails_the_session_before_anything_changes(pair: Pair) -> None:
    write(pair.local, "a.txt", "local")
    remote = Unordered()
    remote.put_object("b.txt", b"remote")
    remote.put_object("c.txt", b"remote")
    report = pair.sync(remote_storage=remote)
    assert report.state == "failed"
    assert report.message == (
        "the remote listing gave 'b.txt' after 'c.txt', out of the order the session "
        "merges in; nothing was changed"
    )
    assert tree(pair.local) == {"a.txt": b"local"}
    assert sorted(remote.objects) == ["b.txt", "c.txt"]


class UnorderedBase(SqliteBaseStore):
    """Reads its base in reverse: a database whose collation the read did not override."""

    def walk_base(self, repository_id: str) -> Iterator[tuple[str, BaseEntry]]:
        yield from reversed(list(super().walk_base(repository_id)))


def test_a_base_read_out_of_order_fails_the_session_before_anything_changes(
    pair: Pair,
) -> None:
    for name in ("a.txt", "b.txt"):
        write(pair.local, name, name)
    assert pair.sync().pushed == 2
    write(pair.local, "a.txt", "edited")
    (pair.remote / "b.txt").unlink()
    store = UnorderedBase(pair.state / "state.db")
    try:
        repo = store.repository_id(pair.local.as_uri(), pair.remote.as_uri(), now_ns=0)
        settings = SyncSettings()
        report = SyncSession(
            LocalStorage(pair.local), LocalStorage(pair.remote), store, repo, settings
        ).run()
    finally:
        store.close()
    assert (report.state, report.message) == (
        "failed",
        "the base gave 'a.txt' after 'b.txt', out of the order the session merges in; "
        "nothing was changed",
    )
    assert tree(pair.remote) == {"a.txt": b"a.txt"}  # neither pushed nor deleted
    assert tree(pair.local) == {"a.txt": b"edited", "b.txt": b"b.txt"}


def test_a_file_against_a_directory_whose_files_did_not_change_is_kept_aside(
    pair: Pair,
) -> None:
    """An object ``d`` appears on the remote beside ``d/y``, which neither side changed:
    the ordered scan keeps ``d/y`` (it makes ``d`` a directory) though it is unchanged."""
    remote = MemoryStorage()
    write(pair.local, "d/y", "unchanged")
    assert pair.sync(remote_storage=remote).pushed == 1
    remote.put_object("d", b"a file named like the directory")
    report = pair.sync(remote_storage=remote)
    assert (report.state, report.errors) == ("completed", [])
    assert report.conflicts == ["d"]
    local = tree(pair.local)
    assert local.pop("d/y") == b"unchanged"
    [(copy, data)] = local.items()
    assert copy.startswith("d.conflict-") and data == b"a file named like the directory"
    assert "d" not in remote.objects and remote.objects[copy].data == data


def test_seaweedfs_lists_folder_by_folder_and_the_session_sorts_its_listing(
    pair: Pair, s3_server: SeaweedS3
) -> None:
    """SeaweedFS lists ``a/x`` before ``a.txt`` (folder by folder): its walk stops at the
    first key out of order, and the session lists it again folder by folder, each folder
    sorted (storage.s3_folders), in the byte order of the keys."""
    prefix = f"scale/{uuid.uuid4().hex[:12]}"
    names = ["a/x", "a.txt", "a-b/y", "b", "a/b/c", "a/b.c", "a/b-c/d", "a0", "é/x", "a b/y"]
    for name in names:
        write(pair.local, name, name)
    assert sync_s3(pair, s3_server, prefix).pushed == len(names)
    remote = S3Storage(settings_for(s3_server, prefix))
    try:
        with pytest.raises(ListingOutOfOrder):
            list(remote.walk(lambda p, r: None, StopSignal()))
        listed: list[str] = []
        folder = remote._listings._folder

        def recorded(at: str, **kwargs: Any) -> Folder:
            listed.append(at)
            return folder(at, **kwargs)

        remote._listings._folder = recorded  # type: ignore[method-assign]
        walk = remote.sorted_walk(lambda p, r: None, StopSignal())
        first = next(walk)
        assert first[0] == "a b/y" and listed == ["", "a b/"]  # no more than its way
        walked = [first, *walk]
        assert sorted(listed) == ["", "a b/", "a-b/", "a/", "a/b-c/", "a/b/", "é/"]
        assert [key for key, _ in walked] == sorted(names)
        assert dict(walked) == remote.scan(lambda p, r: None, StopSignal())
    finally:
        remote.close()
    write(pair.local, "a.txt", "edited")
    report = sync_s3(pair, s3_server, prefix)
    assert (report.state, report.pushed, report.pulled) == ("completed", 1, 0)
    assert report.merged == len(names)
    quiet = sync_s3(pair, s3_server, prefix)
    assert (quiet.state, quiet.pushed, quiet.pulled) == ("completed", 0, 0)


def base_entry(size: int) -> BaseEntry:
    return BaseEntry(size, "h", False, 1, 2, None, 3, 4, None)


ORDER_NAMES = ["a_b", "a-b", "a.b", "a/b", "ab", "aB", "B", "é", "z/é", "Z"]


@pytest.fixture
def icu_postgres_url(postgres_server: PgServer) -> Iterator[str]:
    """A database whose default collation is ICU's en-US, not C."""
    name = postgres_server.create_database(icu_locale="en-US")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


def test_the_base_on_a_postgresql_database_collating_otherwise_is_read_in_byte_order(
    icu_postgres_url: str,
) -> None:
    store = StateStore(icu_postgres_url)
    try:
        repo = store.repository_id("file:///a", "file:///b", now_ns=1)
        store.commit_base(repo, [(n, base_entry(i)) for i, n in enumerate(ORDER_NAMES)], [])
        with store.engine.connect() as conn:
            collated = [r[0] for r in conn.exec_driver_sql("SELECT path FROM base ORDER BY path")]
        assert collated != sorted(ORDER_NAMES)  # the database's own order is not bytes
        walked = [path for path, _ in store.walk_base(repo)]
        assert walked == sorted(ORDER_NAMES, key=lambda n: n.encode())
        assert store.base_every(repo, 3) == walked[2::3]  # where a listing is cut
    finally:
        store.close()
