"""Renames and moves (SYNC.md "Scale", engine/moves.py): a file or directory moved on one
side is moved the same way on the other, on directory and S3 remotes, with nothing
transferred, nothing deleted, the delete guard not tripped, and the base following the
move; a move against an edit or a deletion on the other side keeps what SYNC.md says."""

from __future__ import annotations

import os
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest

from storsync.engine.moves import candidates
from storsync.engine.reconcile import Delete, Plan, Transfer
from storsync.model import BaseEntry, Capabilities, Entry, Side
from storsync.paths import OWN_DIR
from storsync.storage.local import LocalStorage
from tests.conftest import Pair, trash, tree, write
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import sync_s3
from tests.test_service_lifecycle import in_process

FILES = 200


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedS3) -> Any:
    """A boto3 client for the test's own reads and another tool's moves."""
    return s3_server.boto3_client()


@pytest.fixture
def prefix() -> str:
    return f"moves/{uuid.uuid4().hex[:12]}"


def _album(root: Path, files: int = FILES) -> None:
    for i in range(files):
        write(root, f"album/{i:04}.jpg", os.urandom(1000 + i))


def _inodes(root: Path, under: str) -> dict[str, int]:
    return {
        p.relative_to(root / under).as_posix(): p.stat().st_ino
        for p in (root / under).rglob("*")
        if p.is_file()
    }


def _moved_only(report: Any, side: Side, files: int) -> None:
    moved = report.moved_remote if side is Side.REMOTE else report.moved_local
    assert (report.state.value, moved) == ("completed", files), report.summary()
    assert (report.pushed, report.pulled, report.bytes_pushed, report.bytes_pulled) == (0,) * 4
    assert (report.deleted_local, report.deleted_remote, report.errors) == (0, 0, [])


@pytest.mark.parametrize("moved_on", [Side.LOCAL, Side.REMOTE])
def test_a_directory_moved_on_one_side_is_moved_on_the_other(pair: Pair, moved_on: Side) -> None:
    _album(pair.local)
    assert pair.sync().pushed == FILES
    there = pair.remote if moved_on is Side.LOCAL else pair.local
    here = pair.local if moved_on is Side.LOCAL else pair.remote
    kept = _inodes(there, "album")
    (here / "2026").mkdir()
    (here / "album").rename(here / "2026" / "holidays")
    # Without moves, every file would be a deletion: the guard would stop the session.
    report = pair.sync()
    _moved_only(report, moved_on.other, FILES)
    assert tree(pair.local) == tree(pair.remote)
    assert set(tree(pair.local)) == {f"2026/holidays/{i:04}.jpg" for i in range(FILES)}
    # Moved, not written again: the same files (inodes) under their new names.
    assert _inodes(there, "2026/holidays") == kept
    assert not (there / "album").exists()
    quiet = pair.sync()
    assert (quiet.pushed, quiet.pulled, quiet.moved_local, quiet.moved_remote) == (0, 0, 0, 0)


@pytest.mark.parametrize("renamed_on", [Side.LOCAL, Side.REMOTE])
def test_a_rename_against_an_edit_on_the_other_side_is_the_rename_plus_the_edit(
    pair: Pair, renamed_on: Side
) -> None:
    """SYNC.md "Scale": the edited file is moved to the new name on the side that edited
    it, and the edit goes to the other side over the renamed file (kept in its trash)."""
    write(pair.local, "report.txt", "first draft")
    pair.sync()
    renaming, editing = (
        (pair.local, pair.remote) if renamed_on is Side.LOCAL else (pair.remote, pair.local)
    )
    (renaming / "report.txt").rename(renaming / "final.txt")
    write(editing, "report.txt", "edited on the other side")
    report = pair.sync()
    assert report.state.value == "completed", report.summary()
    moved = report.moved_remote if renamed_on is Side.LOCAL else report.moved_local
    carried = report.pulled if renamed_on is Side.LOCAL else report.pushed
    assert (moved, carried, report.deleted_local, report.deleted_remote) == (1, 1, 0, 0)
    assert tree(pair.local) == tree(pair.remote) == {"final.txt": b"edited on the other side"}
    assert trash(renaming) == {"final.txt": [b"first draft"]}
    quiet = pair.sync()
    assert (quiet.pushed, quiet.pulled, quiet.moved_local, quiet.moved_remote) == (0, 0, 0, 0)


def test_a_file_edited_just_after_it_was_moved_is_pushed_next_time(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base records the version the move checked and moved, not a second look at the
    new name: an edit in between is the next session's change, not taken as synchronized."""
    write(pair.local, "report.txt", "first draft")
    pair.sync()
    (pair.remote / "report.txt").rename(pair.remote / "final.txt")
    prune = LocalStorage._prune_empty_parents  # runs once the file has moved

    def edited_at_once(self: LocalStorage, path: str) -> None:
        prune(self, path)
        if self.root == pair.local and path == "report.txt":
            (pair.local / "edit.tmp").write_text("edited at once")
            os.rename(pair.local / "edit.tmp", pair.local / "final.txt")

    monkeypatch.setattr(LocalStorage, "_prune_empty_parents", edited_at_once)
    assert pair.sync().moved_local == 1
    monkeypatch.setattr(LocalStorage, "_prune_empty_parents", prune)

    report = pair.sync()

    assert (report.state.value, report.pushed) == ("completed", 1)
    assert tree(pair.local) == tree(pair.remote) == {"final.txt": b"edited at once"}


def test_a_rename_against_a_deletion_on_the_other_side_keeps_the_renamed_file(
    pair: Pair,
) -> None:
    write(pair.local, "report.txt", "first draft")
    pair.sync()
    (pair.local / "report.txt").rename(pair.local / "final.txt")
    (pair.remote / "report.txt").unlink()
    report = pair.sync()
    assert (report.moved_remote, report.pushed) == (0, 1)
    assert tree(pair.local) == tree(pair.remote) == {"final.txt": b"first draft"}


def test_a_moved_file_that_was_also_edited_is_not_a_move(pair: Pair) -> None:
    _album(pair.local, 10)  # so that one deletion is within the guard
    write(pair.local, "a.txt", "abc")
    pair.sync()
    stamp = (pair.local / "a.txt").stat()
    (pair.local / "a.txt").rename(pair.local / "b.txt")
    with (pair.local / "b.txt").open("r+b") as f:  # same inode, size and mtime: other bytes
        f.write(b"xyz")
    os.utime(pair.local / "b.txt", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    report = pair.sync()
    assert report.state.value == "completed", report.summary()
    assert (report.moved_remote, report.pushed, report.deleted_remote) == (0, 1, 1)
    assert tree(pair.local) == tree(pair.remote)
    assert tree(pair.remote)["b.txt"] == b"xyz" and "a.txt" not in tree(pair.remote)


def test_a_dry_run_lists_the_moves_and_changes_nothing(pair: Pair) -> None:
    _album(pair.local, 3)
    pair.sync()
    (pair.local / "album").rename(pair.local / "photos")
    result = pair.cli("--dry-run")
    assert result.returncode == 0, result.stderr
    assert "move remote   album/0000.jpg -> photos/0000.jpg" in result.stdout
    assert "would push 0 (0 B), pull 0 (0 B), move 3, delete 0 local" in result.stdout
    assert set(tree(pair.remote)) == {f"album/{i:04}.jpg" for i in range(3)}
    done = pair.cli()
    assert done.returncode == 0 and "moved 3, deleted 0 local and 0 remote" in done.stdout


def test_on_s3_a_move_is_a_server_side_copy_both_ways(
    pair: Pair, s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    _album(pair.local, 50)
    assert sync_s3(pair, s3_server, prefix).pushed == 50
    (pair.local / "album").rename(pair.local / "photos")
    _moved_only(sync_s3(pair, s3_server, prefix), Side.REMOTE, 50)
    assert _user_keys(s3, s3_server, prefix) == {f"photos/{i:04}.jpg" for i in range(50)}
    # Moved on the store by another tool (copy, then delete): moved locally, by the
    # hash the objects carry.
    for i in range(10):
        old, new = f"{prefix}/photos/{i:04}.jpg", f"{prefix}/archive/{i:04}.jpg"
        s3.copy_object(
            Bucket=s3_server.bucket, Key=new, CopySource={"Bucket": s3_server.bucket, "Key": old}
        )
        s3.delete_object(Bucket=s3_server.bucket, Key=old)
    before = _inodes(pair.local, "photos")
    _moved_only(sync_s3(pair, s3_server, prefix), Side.LOCAL, 10)
    after = _inodes(pair.local, "archive")
    assert after == {name: before[name] for name in after}
    assert len(after) == 10
    quiet = sync_s3(pair, s3_server, prefix)
    assert (quiet.pushed, quiet.pulled, quiet.moved_local, quiet.moved_remote) == (0, 0, 0, 0)


def test_on_s3_a_move_onto_the_name_of_an_emptied_folder_is_made(
    pair: Pair, s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    """SeaweedFS keeps a folder after its last object is deleted and refuses a create of
    its name (the copy's ``If-None-Match: *``) with 412: found by the random histories, a
    move onto such a name failed in every session."""
    write(pair.local, "a", "moved")
    assert sync_s3(pair, s3_server, prefix).pushed == 1
    s3.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/c.txt/a/a", Body=b"")
    s3.delete_object(Bucket=s3_server.bucket, Key=f"{prefix}/c.txt/a/a")  # by someone else
    (pair.local / "a").rename(pair.local / "c.txt")
    _moved_only(sync_s3(pair, s3_server, prefix), Side.REMOTE, 1)
    assert _user_keys(s3, s3_server, prefix) == {"c.txt"}


# -- pairing, in the engine --------------------------------------------------------------

DIRECTORY = Capabilities(inodes=True)


def _base(inode: int) -> BaseEntry:
    return BaseEntry(3, "h", False, 10, inode, None, 10, 900 + inode, None)


def test_a_stamp_several_deleted_paths_share_pairs_none() -> None:
    """Two deleted paths with one stamp (hard links moved apart) are not guessed at."""
    base = {"a": _base(1), "b": _base(1), "c": _base(2)}
    plan = Plan(
        push=[
            Transfer("x", Entry(3, 10, inode=1), None),
            Transfer("y", Entry(3, 10, inode=2), None),
        ],
        # The remote still holds each deleted path as the base recorded it.
        delete_remote=[Delete(p, Entry(3, 10, inode=base[p].remote_inode)) for p in "abc"],
    )
    found = candidates(plan, base, {Side.LOCAL: DIRECTORY, Side.REMOTE: DIRECTORY})
    assert [(c.path, c.transfer.path) for c in found] == [("c", "y")]


def test_through_the_service_a_move_is_listed_in_the_sessions_items(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (_, api):
        repository = api.new_repository()
        local = Path(repository["localPath"])
        _album(local, 20)
        assert api.sync(repository["id"])["pushed"] == 20
        (local / "album").rename(local / "photos")
        session = api.sync(repository["id"])
        shown = (session["state"], session["pushed"], session["deletedRemote"])
        assert shown == ("completed", 0, 0)
        assert (session["movedLocal"], session["movedRemote"]) == (0, 20)
        answer = api.get(f"/api/v1/sessions/{session['id']}/items?kind=moved-remote&limit=100")
        assert answer.status_code == 200, answer.text
        moved = {item["path"] for item in answer.json()["items"]}
        assert moved == {f"photos/{i:04}.jpg" for i in range(20)}
        assert set(tree(Path(repository["remote"]))) == moved


def test_a_file_larger_than_the_side_moves_is_transferred_again() -> None:
    """On S3 one CopyObject copies at most 5 GiB: a larger moved file is not paired."""
    base = {"a": _base(1)}
    plan = Plan(
        push=[Transfer("x", Entry(3, 10, inode=1), None)],
        delete_remote=[Delete("a", Entry(3, 10, inode=901))],
    )
    caps = {Side.LOCAL: DIRECTORY, Side.REMOTE: DIRECTORY}
    assert len(candidates(plan, base, caps)) == 1
    small = Capabilities(inodes=True, move_limit=2)
    assert candidates(plan, base, {**caps, Side.REMOTE: small}) == []


def test_on_s3_a_move_cut_between_its_copy_and_its_delete_converges(
    pair: Pair, s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    """A kill between the CopyObject and the DeleteObject of moves leaves both keys: the
    next session finds the same bytes at the new names (recorded, not uploaded) and
    deletes the old ones; nothing is lost."""
    _album(pair.local, 10)
    sync_s3(pair, s3_server, prefix)
    (pair.local / "album").rename(pair.local / "photos")
    for i in range(10):  # what the killed session had done: every copy, no delete
        s3.copy_object(
            Bucket=s3_server.bucket,
            Key=f"{prefix}/photos/{i:04}.jpg",
            CopySource={"Bucket": s3_server.bucket, "Key": f"{prefix}/album/{i:04}.jpg"},
        )
    report = sync_s3(pair, s3_server, prefix)
    assert report.state.value == "completed", report.summary()
    assert (report.bytes_pushed, report.pulled, report.deleted_remote) == (0, 0, 10)
    assert _user_keys(s3, s3_server, prefix) == {f"photos/{i:04}.jpg" for i in range(10)}
    quiet = sync_s3(pair, s3_server, prefix)
    assert (quiet.pushed, quiet.pulled, quiet.deleted_remote) == (0, 0, 0)


def _user_keys(s3: Any, server: SeaweedS3, prefix: str) -> set[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=server.bucket, Prefix=f"{prefix}/")
    keys = {o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", [])}
    return {k for k in keys if not k.startswith(f"{OWN_DIR}/")}


def test_the_steps_moves_replace_are_taken_out_across_runs_and_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The paths of the steps moves replace are sorted in runs on the scratch file and
    merged against each list as it is read (runner.session_plan): with runs of three
    paths, read back two at a time, across three parts whose lists came unsorted (a part
    lists one side's paths first), exactly the paired steps go; a conflict's transfer, its
    name a copy's that sorts past its part, neither goes nor stops the merge."""
    from storsync.engine.reconcile import Move
    from storsync.runner import session_plan

    monkeypatch.setattr(session_plan, "MOVES_HELD", 2)
    monkeypatch.setattr(session_plan, "RUN_PATHS", 3)
    monkeypatch.setattr(session_plan, "_RUN_READ", 2)
    entry = Entry(1, 1, False, 1)
    names = [f"{letter}{i}" for letter in "abc" for i in range(6)]
    plan = session_plan.SessionPlan()
    for letter in "abc":
        part = Plan()
        mine = [n for n in names if n.startswith(letter)]
        part.push = [Transfer(n, entry, None) for n in reversed(mine)]
        part.delete_remote = [Delete(n, entry) for n in reversed(mine)]
        part.push.insert(1, Transfer(f"{letter}0 (conflict)", entry, entry, conflict=True))
        part.push.append(Transfer(f"z-copy of {letter}", entry, None, conflict=True))
        plan.add(part)
    paired = names[::2]  # a0, a2, a4, b0, ...: each new path moved from a deleted one
    gone = names[1::2]
    moves = [
        Move(Side.REMOTE, old, new, entry, entry) for old, new in zip(gone, paired, strict=True)
    ]
    plan.apply_moves(iter(moves))

    # The new paths' transfers go, and the old paths' deletions; every other step stays,
    # in key order but for the conflicts' transfers.
    conflicts = [f"{letter}0 (conflict)" for letter in "abc"]
    copies = [f"z-copy of {letter}" for letter in "abc"]
    kept = [t.path for t in plan.steps("push")]
    assert [p for p in kept if p not in conflicts + copies] == gone
    assert sorted(p for p in kept if p in conflicts + copies) == conflicts + copies
    assert [d.path for d in plan.steps("delete_remote")] == paired
    assert (plan.count("push"), plan.count("delete_remote")) == (15, 9)
    assert [m.new_path for m in plan.moves(Side.REMOTE)] == paired
    plan.close()


def test_the_transfers_of_edited_moves_wait_on_the_scratch_file() -> None:
    """An edited move's transfer under its new name (the edit taken to the other side over
    the moved file) is spilled with its chunk of moves, and read back in the order found:
    what the plan holds does not grow with them (held in a list, 50,000 took 6.9 MiB)."""
    from storsync.engine.reconcile import Move
    from storsync.runner import session_plan

    entry = Entry(1, 1, False, 1)
    plan = session_plan.SessionPlan()
    plan.add(Plan())
    moves = (
        Move(Side.REMOTE, f"old/{i:06}", f"new/{i:06}", entry, entry, edited=True)
        for i in range(50_000)
    )
    tracemalloc.start()
    try:
        plan.apply_moves(moves)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert held < 2 << 20, held
        assert (plan.count("pull"), plan.count("push")) == (50_000, 0)
        pulls = [t.path for batch in plan.batches("pull") for t in batch]
        assert pulls == [f"new/{i:06}" for i in range(50_000)]
    finally:
        plan.close()
