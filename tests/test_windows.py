"""A session decided window by window (runner.stream, runner.scanned, runner.session_plan):
what a large session keeps is cut into windows of kept paths, each decided alone and
spilled to a scratch file, and the plan's totals, moves, guard and approvals span them.
The windows here are a few paths long, so that small trees cross many of them."""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storsync.engine.moves import Candidate, Pairing, remembered
from storsync.engine.reconcile import Delete, Plan, Transfer
from storsync.model import (
    BaseEntry,
    Capabilities,
    Entry,
    PlanAction,
    Side,
    StopSignal,
    SyncSettings,
)
from storsync.runner import pairing, stream
from storsync.runner import spill as spill_module
from storsync.runner.session import SyncSession
from storsync.runner.session_plan import SessionPlan
from storsync.runner.spill import Spill
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.base import SkipReport, StoredKeys
from storsync.storage.local import LocalStorage
from tests.conftest import Pair, tree, write


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(stream, "WINDOW_PATHS", 3)
    monkeypatch.setattr(pairing, "PAIRING_HELD", 3)  # moves paired in partitions too
    return 3


def rich_history(pair: Pair) -> None:
    """A synced tree, then on both sides: new files, edits, deletions, a conflict, a
    directory moved, a file against a directory."""
    for i in range(40):
        write(pair.local, f"d{i % 4}/f{i:02d}", f"v{i}")
    write(pair.local, "moved/a", "alpha")
    write(pair.local, "moved/b", "beta")
    write(pair.local, "clash", "a file")
    assert pair.sync().state == "completed"
    for i in range(0, 40, 3):
        write(pair.local, f"d{i % 4}/f{i:02d}", f"local edit {i}")
    for i in range(1, 40, 7):
        (pair.remote / f"d{i % 4}/f{i:02d}").unlink()
    write(pair.local, "d0/f00", "both changed, local")
    write(pair.remote, "d0/f00", "both changed, remote")
    for i in range(10):
        write(pair.remote, f"new/n{i}", f"new {i}")
    (pair.local / "moved").rename(pair.local / "zz-moved")
    write(pair.remote, "moved/b", "beta, edited where it was not moved")
    write(pair.local, "clash", "the file edited")
    (pair.remote / "clash").unlink()
    write(pair.remote, "clash/inside", "a directory now")


def steps(plan: SessionPlan) -> str:
    """A plan's steps, each list in key order, this session's conflict stamp made one:
    two dry runs may fall in two seconds."""
    made = {k: sorted(v, key=str) if isinstance(v, list) else v for k, v in plan.as_json().items()}
    return re.sub(r"conflict-\d{8}-\d{6}", "conflict-STAMP", json.dumps(made, sort_keys=True))


def test_a_plan_made_in_windows_is_the_plan_made_whole(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    rich_history(pair)
    whole = pair.sync(dry_run=True)
    monkeypatch.setattr(stream, "WINDOW_PATHS", 1)
    windowed = pair.sync(dry_run=True)
    assert whole.plan is not None and windowed.plan is not None
    assert steps(windowed.plan) == steps(whole.plan)
    for plan in (whole.plan, windowed.plan):  # the totals, counted as parts came, exact
        made = plan.as_json()
        for name in ("push", "pull", "delete_local", "delete_remote", "moves", "record"):
            assert plan.count(name) == len(made[name]), name  # type: ignore[arg-type]
        assert (plan.bytes("push"), plan.bytes("pull")) == (made["bytes_push"], made["bytes_pull"])
    assert whole.plan.count("moves") == 2 and whole.plan.count("pull") > 10


def test_a_session_in_windows_converges_as_a_whole_one_does(pair: Pair, window: int) -> None:
    rich_history(pair)
    report = pair.sync()
    assert (report.state, report.errors) == ("completed", []), report.message
    assert report.moved_remote == 2 and report.conflicts == ["clash", "d0/f00"]
    assert tree(pair.local) == tree(pair.remote)
    again = pair.sync()
    assert (again.pushed, again.pulled, again.deleted_local, again.deleted_remote) == (0, 0, 0, 0)


def test_a_directory_moved_across_many_windows_uploads_nothing(pair: Pair, window: int) -> None:
    for i in range(200):
        write(pair.local, f"photos/{i:03d}.jpg", f"picture {i}" * 50)
    assert pair.sync().state == "completed"
    (pair.local / "photos").rename(pair.local / "archive")
    report = pair.sync()
    assert report.state == "completed", report.message
    assert (report.moved_remote, report.pushed, report.bytes_pushed) == (200, 0, 0)
    assert (report.deleted_remote, report.deleted_local) == (0, 0)
    assert tree(pair.local) == tree(pair.remote)


def test_the_guard_counts_the_deletions_of_every_window(pair: Pair, window: int) -> None:
    for i in range(10):
        write(pair.local, f"f{i}", f"{i}")
    assert pair.sync().state == "completed"
    for i in range(6):  # 60% of the files, in two windows and more
        (pair.local / f"f{i}").unlink()
    before = tree(pair.remote)
    report = pair.sync()
    assert report.state == "failed" and "6 of 10" in (report.message or "")
    assert tree(pair.remote) == before


class HidingStorage(LocalStorage):
    """A local side that cannot read one folder: it reports it skipped, lists nothing
    under it, and reports the skip only after the paths that sort after it."""

    hidden = "b"

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        for path, entry in super().walk(skip, stop, expected, stored):
            if not path.startswith(f"{self.hidden}/"):
                yield path, entry
        skip(self.hidden, "permission denied")


def test_a_folder_skipped_across_windows_is_left_alone_on_the_other_side(
    pair: Pair, window: int
) -> None:
    for folder in "abc":
        for i in range(8):
            write(pair.local, f"{folder}/f{i}", f"{folder}{i}")
    assert pair.sync().state == "completed"
    report = pair.sync(local_storage=HidingStorage(pair.local))
    assert report.state == "completed", report.message
    assert report.deleted_remote == 0 and [s.path for s in report.skipped] == ["b"]
    assert sorted(p for p in tree(pair.remote) if p.startswith("b/")) == [
        f"b/f{i}" for i in range(8)
    ]
    # The guard measures against what the session looked at: 5 of the 16 files left.
    for i in range(5):
        (pair.local / f"a/f{i}").unlink()
    guarded = pair.sync(local_storage=HidingStorage(pair.local), max_delete_percent=25)
    assert guarded.state == "failed" and "5 of 16" in (guarded.message or ""), guarded.message


def entry(size: int) -> Entry:
    return Entry(size, 1, False, 7)


def test_a_session_plan_reads_back_its_spilled_parts_in_order() -> None:
    plan = SessionPlan()
    for start in range(0, 9, 3):
        part = Plan()
        part.push = [Transfer(f"p{i}", entry(i), None) for i in range(start, start + 3)]
        part.conflicts = [f"p{start}"]
        plan.add(part)
    assert [t.path for t in plan.steps("push")] == [f"p{i}" for i in range(9)]
    assert (plan.count("push"), plan.bytes("push")) == (9, sum(range(9)))
    assert plan.conflicts == ["p0", "p3", "p6"]
    plan.keep_only("push", lambda: lambda t: t.source.size % 2 == 0)
    assert [t.path for t in plan.steps("push")] == ["p0", "p2", "p4", "p6", "p8"]
    assert (plan.count("push"), plan.bytes("push")) == (5, 20)
    assert [[t.path for t in batch] for batch in plan.batches("push")] == [
        ["p0", "p2"],
        ["p4"],
        ["p6", "p8"],
    ]
    plan.close()


def test_the_spill_file_has_no_name_and_goes_where_large_files_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    spill = Spill()
    handles = [spill.put([(f"p{i}", (i, None, "x" * i))]) for i in range(100)]
    assert [spill.get(h) for h in handles[::-1]] == [
        [(f"p{i}", (i, None, "x" * i))] for i in range(99, -1, -1)
    ]
    assert os.listdir(tmp_path) == []  # unlinked as it was made: nothing left by a crash
    spill.close()
    monkeypatch.delenv("TMPDIR")
    assert spill_module._scratch_dir() == "/var/tmp"  # not /tmp, often held in memory


def test_a_scratch_file_that_cannot_be_written_fails_the_session_before_any_change(
    pair: Pair, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10):
        write(pair.local, f"f{i}", f"{i}")

    def full_disk(**kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spill_module.tempfile, "TemporaryFile", full_disk)
    report = pair.sync()
    assert report.state == "failed" and report.pushed == 0
    assert report.message is not None and report.message.startswith(
        "the session's scratch file in "
    )
    assert "No space left on device" in report.message and "TMPDIR" in report.message
    assert tree(pair.remote) == {}


def session(pair: Pair, store: SqliteBaseStore, **kwargs: Any) -> SyncSession:
    repo = store.repository_id(pair.local.as_uri(), pair.remote.as_uri(), now_ns=0)
    return SyncSession(
        LocalStorage(pair.local), LocalStorage(pair.remote), store, repo, SyncSettings(), **kwargs
    )


def test_a_halt_keeps_and_an_approval_carries_the_deletions_of_every_window(
    pair: Pair, window: int
) -> None:
    for i in range(12):
        write(pair.local, f"f{i:02d}", f"{i}")
    assert pair.sync().state == "completed"
    for i in range(8):  # two thirds, over several windows
        (pair.local / f"f{i:02d}").unlink()
    before = (tree(pair.local), tree(pair.remote))
    store = SqliteBaseStore(pair.state / "state.db")
    try:
        halted = session(pair, store, log_session="halted", halts=True).run()
        assert halted.state == "halted" and halted.halt is not None
        assert (tree(pair.local), tree(pair.remote)) == before  # a halt changes nothing
        assert (halted.halt.delete_local, halted.halt.delete_remote) == (0, 8)
        assert halted.halt.sample == tuple(f"f{i:02d}" for i in range(8))  # sorted, to read
        kept = [item.path for item in store.plan_deletions("halted", PlanAction.DELETE_REMOTE)]
        assert kept == [f"f{i:02d}" for i in range(8)]  # in key order, as the plan was
        assert list(store.plan_deletions("halted", PlanAction.DELETE_LOCAL)) == []
        (pair.local / "f08").unlink()  # deleted after the halt: not approved
        approved = session(pair, store, log_session="approving", approves="halted").run()
    finally:
        store.close()
    assert approved.state == "completed", approved.message
    assert approved.deleted_remote == 8
    assert sorted(tree(pair.remote)) == ["f08", "f09", "f10", "f11"]


def _candidates_of(found: list[Candidate]) -> list[tuple[Side, str, str]]:
    return [(c.side, c.path, c.transfer.path) for c in found]


@pytest.mark.parametrize("held", [1, 2, 5, 1000])
def test_old_paths_paired_in_partitions_pair_as_they_do_held(
    held: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PAIRING_HELD the old paths of possible moves are spilled, and old and new
    paths paired a partition of stamps at a time: the same candidates in the same order,
    a stamp that several old paths share still pairing none, and an old path taken by
    one new path only."""
    monkeypatch.setattr(pairing, "PAIRING_HELD", held)
    caps = {side: Capabilities(inodes=True) for side in Side}
    base = {
        f"old{i}": BaseEntry(3, f"h{i}", False, 10, i, None, 10, 900 + i, None) for i in range(8)
    }
    base["twin"] = BaseEntry(3, "h", False, 10, 5, None, 10, 905, None)  # old5's stamp
    # Two parts of one plan, as two windows give them: deletions on the remote (moved
    # away locally), and the local side's new paths, some with an old path's stamp.
    parts = [
        Plan(delete_remote=[Delete(p, Entry(3, 10, inode=base[p].remote_inode)) for p in names])
        for names in (["old0", "old1", "old2", "old3"], ["old4", "old5", "old6", "old7", "twin"])
    ]
    new = [
        Transfer(f"new{i}-{n}", Entry(3, 10, inode=i), None)
        for n, i in enumerate((7, 0, 5, 3, 9, 7))
    ]

    def transfers(side: Side) -> list[Transfer]:
        return new if side is Side.REMOTE else []

    whole, spilled = Pairing(caps), pairing.SpilledPairing(caps)
    for part in parts:
        whole.add(remembered(part, base, caps))
        spilled.remember(part, base)
    held_whole = [
        candidate for _, _, candidate in whole.candidates(lambda side: enumerate(transfers(side)))
    ]
    assert _candidates_of(spilled.candidates(transfers)) == _candidates_of(held_whole)
    assert _candidates_of(held_whole) == [
        (Side.REMOTE, "old7", "new7-0"),  # the second new path of that stamp finds none left
        (Side.REMOTE, "old0", "new0-1"),
        (Side.REMOTE, "old3", "new3-3"),
    ]
