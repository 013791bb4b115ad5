"""Hostile trees and awkward moments: the edge cases SYNC.md says must have an answer."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import stat
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from storsync.errors import PermanentStorageError
from storsync.model import Entry, Side, StopSignal
from storsync.runner.report import Report
from storsync.storage import local as local_storage
from storsync.storage.base import SkipReport, Source, Staged, StoredKeys
from storsync.storage.faulty import FaultyStorage
from storsync.storage.local import LocalStorage
from storsync.storage.memory import MemoryStorage
from tests.conftest import Pair, trash, tree, write


def skipped(report: Report, side: Side) -> dict[str, str]:
    return {s.path: s.reason for s in report.skipped if s.side is side}


def memory_files(storage: MemoryStorage) -> dict[str, bytes]:
    return {k: b.data for k, b in storage.objects.items() if not k.startswith(".storsync/")}


def all_files(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root``, storsync's own included."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the pair that storsync must never touch."""
    d = tmp_path / "outside"
    write(d, "secret.txt", "not yours")
    return d


# -- symbolic links ---------------------------------------------------------------------


@pytest.mark.parametrize("linked_side", ["local", "remote"])
def test_a_symlinked_directory_is_never_written_through(
    pair: Pair, outside: Path, linked_side: str
) -> None:
    linked, other = (
        (pair.local, pair.remote) if linked_side == "local" else (pair.remote, pair.local)
    )
    (linked / "docs").symlink_to(outside, target_is_directory=True)
    (linked / "link.txt").symlink_to(outside / "secret.txt")
    write(other, "docs/x", "would land outside")
    write(other, "plain.txt", "fine")
    for _ in range(2):
        report = pair.sync()
        assert (report.state, report.errors) == ("completed", [])
        assert all_files(outside) == {"secret.txt": b"not yours"}
        assert set(skipped(report, Side(linked_side))) == {"docs", "link.txt"}
        assert (other / "docs" / "x").read_bytes() == b"would land outside"
        assert not (other / "link.txt").exists()
        assert not (other / "docs" / "secret.txt").exists()
        assert tree(linked)["plain.txt"] == b"fine"


class SwapDirForLinkAfterFirstPublish(LocalStorage):
    """Replaces ``docs/`` by a link to ``outside`` once a first file was published in it."""

    outside: Path

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        entry = super().publish(staged, expected=expected, trash=trash)
        docs = self.root / "docs"
        if not docs.is_symlink():
            docs.rename(self.root / "docs-moved")
            docs.symlink_to(self.outside, target_is_directory=True)
        return entry


def test_a_directory_swapped_for_a_link_during_the_session_is_not_written_through(
    pair: Pair, outside: Path
) -> None:
    for name in ("a", "b", "c", "d"):
        write(pair.remote, f"docs/{name}", name)
    local = SwapDirForLinkAfterFirstPublish(pair.local)
    local.outside = outside
    report = pair.sync(local_storage=local, transfers=1)
    assert all_files(outside) == {"secret.txt": b"not yours"}
    assert len(report.errors) == 3, report.errors
    assert tree(pair.remote) == {f"docs/{n}": n.encode() for n in "abcd"}


def test_a_file_written_over_just_after_it_was_put_in_place_is_pushed_next_time(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base records the version storsync wrote, not whatever stands at its name when
    it looks again: a user's edit in between is the next session's change, not taken for
    the version synchronized and never sent."""
    write(pair.remote, "a.txt", "remote version")
    target = str(pair.local / "a.txt")
    rename_new = local_storage.rename_new

    def edited_at_once(src: str, dst: str) -> None:
        rename_new(src, dst)
        if dst == target:
            (pair.local / "edit.tmp").write_text("the user's edit")
            os.rename(pair.local / "edit.tmp", dst)

    monkeypatch.setattr(local_storage, "rename_new", edited_at_once)
    assert pair.sync().pulled == 1
    monkeypatch.setattr(local_storage, "rename_new", rename_new)
    assert (pair.local / "a.txt").read_text() == "the user's edit"

    report = pair.sync()

    assert (report.state, report.pushed) == ("completed", 1)
    assert (pair.remote / "a.txt").read_text() == "the user's edit"


def test_a_file_put_in_place_just_before_a_new_one_is_kept_whole(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the last step before a new file's rename (its folders made) and the
    rename, a user's file put there is never replaced: the new one waits, reported, and
    the next session keeps both versions."""
    write(pair.remote, "a.txt", "remote version")
    ensure = LocalStorage._ensure_dirs

    def raced(self: LocalStorage, path: str) -> None:
        ensure(self, path)
        if self.root == pair.local:
            write(pair.local, path, "the user's own")

    monkeypatch.setattr(LocalStorage, "_ensure_dirs", raced)
    first = pair.sync()
    monkeypatch.setattr(LocalStorage, "_ensure_dirs", ensure)

    assert (first.pulled, len(first.errors)) == (0, 1), first.errors
    assert (pair.local / "a.txt").read_text() == "the user's own"
    assert not any((pair.local / ".storsync" / "partial").iterdir())
    pair.sync()
    kept = sorted(tree(pair.local).values())
    assert kept == sorted(tree(pair.remote).values())
    assert b"the user's own" in kept and b"remote version" in kept


@pytest.mark.parametrize("filled", [False, True])
def test_a_folder_at_a_new_files_name_gives_way_only_when_empty(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, filled: bool
) -> None:
    """A folder made at a new file's name after the scan: empty, it gives way to the file;
    with a file in it, the file waits, reported, and nothing of the folder is lost."""
    write(pair.remote, "a", "remote file")
    ensure = LocalStorage._ensure_dirs

    def folder_made(self: LocalStorage, path: str) -> None:
        ensure(self, path)
        if self.root == pair.local and path == "a":
            (pair.local / "a").mkdir()
            if filled:
                write(pair.local, "a/mine.txt", "the user's own")

    monkeypatch.setattr(LocalStorage, "_ensure_dirs", folder_made)
    report = pair.sync()

    if filled:
        assert (report.pulled, len(report.errors)) == (0, 1), report.errors
        assert "non-empty directory" in report.errors[0]["message"]
        assert (pair.local / "a" / "mine.txt").read_text() == "the user's own"
    else:
        assert (report.state, report.pulled) == ("completed", 1)
        assert (pair.local / "a").read_text() == "remote file"
    assert not any((pair.local / ".storsync" / "partial").iterdir())


def test_a_name_that_stood_at_a_new_files_rename_and_went_again_is_one_files_error(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename refused (a name stood there) and the name gone before it was looked at:
    that file waits, reported as one that appeared, not an outage of the whole side."""
    write(pair.remote, "a.txt", "remote")
    write(pair.remote, "b.txt", "remote too")
    rename_new = local_storage.rename_new

    def refused_once(src: str, dst: str) -> None:
        if dst.endswith("a.txt") and not refused:
            refused.append(dst)
            raise FileExistsError(17, "File exists", dst)
        rename_new(src, dst)

    refused: list[str] = []
    monkeypatch.setattr(local_storage, "rename_new", refused_once)
    report = pair.sync()
    assert (report.state, report.pulled) == ("partial", 1), report.message
    assert [e["path"] for e in report.errors] == ["a.txt"]
    assert "appeared since the scan" in report.errors[0]["message"]
    assert pair.sync().pulled == 1 and tree(pair.local) == tree(pair.remote)


def test_a_synced_file_replaced_by_a_link_is_not_deleted_on_the_other_side(
    pair: Pair, outside: Path
) -> None:
    write(pair.local, "notes.txt", "synced")
    write(pair.local, "other.txt", "x")
    assert pair.sync().state == "completed"
    (pair.local / "notes.txt").unlink()
    (pair.local / "notes.txt").symlink_to(outside / "secret.txt")
    report = pair.sync()
    assert skipped(report, Side.LOCAL) == {"notes.txt": "symbolic link skipped"}
    assert tree(pair.remote) == {"notes.txt": b"synced", "other.txt": b"x"}
    assert report.deleted_remote == 0
    assert all_files(outside) == {"secret.txt": b"not yours"}


# -- names --------------------------------------------------------------------------------


HOSTILE_KEYS = [
    "../x",
    "../../escaped",
    "/abs",
    "a/../../b",
    "./dot",
    "a//b",
    "dir/",
    "ctl\x01.txt",
    "nul\x00.txt",
    "del\x7f.txt",
    "tab\tname",
    "x" * 256,
    "deep/" + "y" * 300,
    "/".join(["d"] * 2100),
    "cafe\u0301.txt",  # NFD: not how storsync names files
]


def test_remote_keys_that_are_not_safe_paths_are_refused_and_the_rest_syncs(
    tmp_path: Path,
) -> None:
    pair = Pair(tmp_path / "a" / "b" / "local", tmp_path / "a" / "b" / "remote", tmp_path / "s")
    for d in (pair.local, pair.state):
        d.mkdir(parents=True)
    remote = MemoryStorage()
    for key in HOSTILE_KEYS:
        remote.put_object(key, b"hostile")
    remote.put_object("ok/file.txt", b"fine")
    report = pair.sync(remote_storage=remote)
    assert report.state == "completed"
    assert set(skipped(report, Side.REMOTE)) == set(HOSTILE_KEYS)
    assert all(skipped(report, Side.REMOTE).values())
    assert tree(pair.local) == {"ok/file.txt": b"fine"}
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p.startswith(("a/b/local/", "s/")) for p in written), written
    assert memory_files(remote) == {
        **dict.fromkeys(HOSTILE_KEYS, b"hostile"),
        "ok/file.txt": b"fine",
    }


def test_local_names_that_are_not_utf8_are_refused(pair: Pair) -> None:
    bad = os.path.join(os.fsencode(pair.local), b"caf\xe9.txt")
    with open(bad, "wb") as fh:
        fh.write(b"latin-1 name")
    os.mkdir(os.path.join(os.fsencode(pair.local), b"dir\xff"))
    with open(os.path.join(os.fsencode(pair.local), b"dir\xff", b"inner"), "wb") as fh:
        fh.write(b"under a bad folder")
    write(pair.local, "good.txt", "fine")
    remote = MemoryStorage()
    report = pair.sync(remote_storage=remote)
    assert report.state == "completed"
    reasons = skipped(report, Side.LOCAL)
    assert sorted(reasons) == sorted([os.fsdecode(b"caf\xe9.txt"), os.fsdecode(b"dir\xff")])
    assert all("UTF-8" in r for r in reasons.values())
    assert memory_files(remote) == {"good.txt": b"fine"}
    assert os.path.exists(bad)


def test_remote_file_names_that_are_not_utf8_are_refused(pair: Pair) -> None:
    with open(os.path.join(os.fsencode(pair.remote), b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"latin-1 name")
    write(pair.remote, "good.txt", "fine")
    report = pair.sync()
    assert list(skipped(report, Side.REMOTE)) == [os.fsdecode(b"caf\xe9.txt")]
    assert tree(pair.local) == {"good.txt": b"fine"}


def test_a_local_name_in_nfd_is_synced_under_its_nfc_key_and_kept_native(pair: Pair) -> None:
    nfd = unicodedata.normalize("NFD", "café.txt")
    write(pair.local, nfd, "v1")
    remote = MemoryStorage()
    assert pair.sync(remote_storage=remote).pushed == 1
    assert memory_files(remote) == {"café.txt": b"v1"}
    remote.put_object("café.txt", b"v2 from remote", mtime_ns=time.time_ns())
    report = pair.sync(remote_storage=remote)
    assert (report.state, report.pulled) == ("completed", 1)
    assert sorted(os.listdir(pair.local)) == sorted([".storsync", nfd])
    assert (pair.local / nfd).read_bytes() == b"v2 from remote"
    again = pair.sync(remote_storage=remote)
    assert (again.pushed, again.pulled) == (0, 0)


def test_two_local_names_equal_after_normalization_are_refused_not_merged(pair: Pair) -> None:
    write(pair.local, unicodedata.normalize("NFD", "é.txt"), "decomposed")
    write(pair.local, unicodedata.normalize("NFC", "é.txt"), "composed")
    write(pair.local, "plain.txt", "plain")
    remote = MemoryStorage()
    report = pair.sync(remote_storage=remote)
    assert (report.state, report.errors) == ("completed", [])
    assert len(skipped(report, Side.LOCAL)) == 1
    assert memory_files(remote) == {"plain.txt": b"plain"}  # neither spelling wins silently
    assert sorted(tree(pair.local).values()) == [b"composed", b"decomposed", b"plain"]


# -- case ---------------------------------------------------------------------------------


def test_local_storage_measures_case_sensitivity(tmp_path: Path) -> None:
    (tmp_path / "Probe").write_bytes(b"")
    insensitive = (tmp_path / "probe").exists()
    for name in ("root", "123"):
        (tmp_path / name).mkdir()
        assert LocalStorage(tmp_path / name).caps.case_sensitive is not insensitive
    assert not (tmp_path / "123" / ".storsync" / "CaseProbe").exists()


def case_insensitive(storage: LocalStorage) -> FaultyStorage:
    """The local side as a case-insensitive file system would present it."""
    wrapped = FaultyStorage(storage)
    wrapped.caps = dataclasses.replace(storage.caps, case_sensitive=False)
    return wrapped


def test_remote_names_that_differ_by_case_are_refused_on_a_case_insensitive_side(
    pair: Pair,
) -> None:
    remote = MemoryStorage()
    remote.put_object("A.txt", b"upper")
    remote.put_object("a.txt", b"lower")
    remote.put_object("b.txt", b"plain")
    report = pair.sync(
        remote_storage=remote, local_storage=case_insensitive(LocalStorage(pair.local))
    )
    assert report.state == "completed", report
    refused = skipped(report, Side.REMOTE)
    assert len(refused) == 1
    assert "case" in next(iter(refused.values()))
    local = tree(pair.local)
    assert len(local) == 2
    assert local["b.txt"] == b"plain"
    assert memory_files(remote) == {"A.txt": b"upper", "a.txt": b"lower", "b.txt": b"plain"}
    again = pair.sync(
        remote_storage=remote, local_storage=case_insensitive(LocalStorage(pair.local))
    )
    assert (again.state, again.pushed, again.pulled, again.deleted_local) == ("completed", 0, 0, 0)


def test_a_case_collision_keeps_the_name_the_local_side_already_has(pair: Pair) -> None:
    remote = MemoryStorage()
    write(pair.local, "readme.md", "synced")
    local = case_insensitive(LocalStorage(pair.local))
    assert pair.sync(remote_storage=remote, local_storage=local).pushed == 1
    remote.put_object("README.md", b"another client's file")
    report = pair.sync(
        remote_storage=remote, local_storage=case_insensitive(LocalStorage(pair.local))
    )
    assert list(skipped(report, Side.REMOTE)) == ["README.md"]
    assert tree(pair.local) == {"readme.md": b"synced"}
    assert report.deleted_local == report.deleted_remote == 0


# -- a file against a directory ----------------------------------------------------------


def test_a_file_against_a_directory_is_a_conflict_that_keeps_both(pair: Pair) -> None:
    write(pair.local, "a", "local file")
    write(pair.remote, "a/b", "remote file in a folder")
    report = pair.sync()
    assert report.state == "completed", report
    assert "a" in report.conflicts
    local = tree(pair.local)
    assert local == tree(pair.remote)
    assert local["a/b"] == b"remote file in a folder"
    copies = [p for p in local if p.startswith("a.conflict-") and p.endswith("-local")]
    assert len(copies) == 1
    assert local[copies[0]] == b"local file"


def test_an_object_store_holding_a_and_a_slash_b_keeps_both(pair: Pair) -> None:
    remote = MemoryStorage()
    remote.put_object("a", b"a file")
    remote.put_object("a/b", b"a file under a")
    report = pair.sync(remote_storage=remote)
    assert report.state == "completed", report
    local = tree(pair.local)
    assert local == memory_files(remote)
    assert local["a/b"] == b"a file under a"
    assert sorted(local.values()) == [b"a file", b"a file under a"]


def test_a_synced_file_replaced_by_a_directory_on_the_other_side(pair: Pair) -> None:
    write(pair.local, "a", "was a file")
    write(pair.local, "b", "stays")
    write(pair.local, "c", "stays too")
    assert pair.sync().state == "completed"
    (pair.remote / "a").unlink()
    write(pair.remote, "a/b", "now a folder")
    report = pair.sync()
    assert report.state == "completed", report
    assert (
        tree(pair.local)
        == tree(pair.remote)
        == {
            "a/b": b"now a folder",
            "b": b"stays",
            "c": b"stays too",
        }
    )
    assert trash(pair.local) == {"a": [b"was a file"]}


# -- special files -----------------------------------------------------------------------


def make_specials(root: Path) -> list[str]:
    os.mkfifo(root / "pipe")
    with contextlib.chdir(root):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind("sock")
        sock.close()
    names = ["pipe", "sock"]
    with contextlib.suppress(PermissionError):
        os.mknod(root / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        names.append("null")
    return names


@pytest.mark.timeout(60)
def test_fifos_sockets_and_devices_are_skipped_never_opened(pair: Pair) -> None:
    local_specials = make_specials(pair.local)
    remote_specials = make_specials(pair.remote)
    write(pair.local, "l.txt", "local")
    write(pair.remote, "r.txt", "remote")
    result = pair.cli("--json")  # a child process: a hang fails on the timeout
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    items = {(s["side"], s["path"]) for s in summary["skipped"]}
    assert items == {("local", n) for n in local_specials} | {
        ("remote", n) for n in remote_specials
    }
    assert tree(pair.local) == tree(pair.remote) == {"l.txt": b"local", "r.txt": b"remote"}
    assert stat.S_ISFIFO(os.lstat(pair.local / "pipe").st_mode)


class FifoAfterScan(LocalStorage):
    """Swaps a regular file for a FIFO right after the scan saw it."""

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        yield from super().walk(skip, stop, expected, stored)
        (self.root / "f.txt").unlink()
        os.mkfifo(self.root / "f.txt")


@pytest.mark.timeout(60)
def test_a_fifo_swapped_in_after_the_scan_does_not_hang_the_run(pair: Pair) -> None:
    write(pair.local, "f.txt", "regular")
    report = pair.sync(local_storage=FifoAfterScan(pair.local))
    assert [e["path"] for e in report.errors] == ["f.txt"]
    assert tree(pair.remote) == {}


# -- hard links, executable bit, own folders ----------------------------------------------


def test_hard_links_are_separate_files(pair: Pair) -> None:
    write(pair.local, "a", "shared inode")
    os.link(pair.local / "a", pair.local / "b")
    assert pair.sync().pushed == 2
    assert os.stat(pair.remote / "a").st_ino != os.stat(pair.remote / "b").st_ino
    write(pair.remote, "a", "edited on the remote")
    report = pair.sync()
    assert (report.pulled, report.pushed) == (1, 0)
    assert tree(pair.local) == {"a": b"edited on the remote", "b": b"shared inode"}
    assert tree(pair.remote) == tree(pair.local)


@pytest.mark.parametrize("remote_kind", ["local", "memory"])
def test_the_executable_bit_survives_a_round_trip(
    pair: Pair, tmp_path: Path, remote_kind: str
) -> None:
    write(pair.local, "run.sh", "#!/bin/sh\n").chmod(0o755)
    write(pair.local, "data.txt", "plain").chmod(0o644)
    remote = LocalStorage(pair.remote) if remote_kind == "local" else MemoryStorage()
    assert pair.sync(remote_storage=remote).pushed == 2
    script, data = remote.stat("run.sh"), remote.stat("data.txt")
    assert script is not None
    assert data is not None
    assert (script.executable, data.executable) == (True, False)
    other = Pair(tmp_path / "second", pair.remote, tmp_path / "state2")
    for d in (other.local, other.state):
        d.mkdir()
    assert other.sync(remote_storage=remote).pulled == 2
    assert os.stat(other.local / "run.sh").st_mode & 0o777 == 0o755
    assert not os.stat(other.local / "data.txt").st_mode & 0o111


def test_a_mode_change_alone_is_synchronized(pair: Pair) -> None:
    write(pair.local, "tool", "#!/bin/sh\n")
    assert pair.sync().pushed == 1
    (pair.remote / "tool").chmod(0o755)
    report = pair.sync()
    assert report.pulled == 1
    assert os.stat(pair.local / "tool").st_mode & stat.S_IXUSR
    (pair.local / "tool").chmod(0o644)
    assert pair.sync().pushed == 1
    assert not os.stat(pair.remote / "tool").st_mode & stat.S_IXUSR


def test_storsync_folders_at_any_depth_are_never_synchronized(pair: Pair) -> None:
    write(pair.local, "sub/.storsync/inner.txt", "an inner repository's state")
    write(pair.local, "sub/deeper/.storsync/lock", "")
    write(pair.remote, "other/.storsync/x", "remote inner state")
    write(pair.local, "sub/file", "user data")
    report = pair.sync()
    assert (report.state, report.pushed, report.pulled) == ("completed", 1, 0)
    assert tree(pair.remote) == tree(pair.local) == {"sub/file": b"user data"}
    assert not (pair.remote / "sub" / ".storsync").exists()
    assert not (pair.local / "other").exists()
    assert (pair.local / "sub/.storsync/inner.txt").read_bytes() == b"an inner repository's state"


# -- files that change under the session --------------------------------------------------


class EditAfterScan(LocalStorage):
    """Edits one file right after the scan saw it, as a user typing at that moment would."""

    victim = "doc.txt"
    edit = b"edited after the scan"

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        yield from super().walk(skip, stop, expected, stored)
        time.sleep(0.001)
        (self.root / self.victim).write_bytes(self.edit)


def test_a_source_edited_after_the_scan_is_not_uploaded_nor_recorded(pair: Pair) -> None:
    write(pair.local, "doc.txt", "first")
    write(pair.local, "other.txt", "x")
    report = pair.sync(local_storage=EditAfterScan(pair.local))
    assert [e["path"] for e in report.errors] == ["doc.txt"]
    assert tree(pair.remote) == {"other.txt": b"x"}
    follow = pair.sync()
    assert (follow.state, follow.pushed) == ("completed", 1)
    assert tree(pair.remote)["doc.txt"] == b"edited after the scan"


def test_a_destination_edited_after_the_scan_is_not_overwritten(pair: Pair) -> None:
    write(pair.local, "doc.txt", "base")
    assert pair.sync().state == "completed"
    write(pair.remote, "doc.txt", "remote edit")
    report = pair.sync(local_storage=EditAfterScan(pair.local))
    assert [e["path"] for e in report.errors] == ["doc.txt"]
    assert (pair.local / "doc.txt").read_bytes() == b"edited after the scan"
    follow = pair.sync()
    assert follow.state == "completed"
    assert follow.conflicts == ["doc.txt"]
    local = tree(pair.local)
    assert local == tree(pair.remote)
    assert local["doc.txt"] == b"edited after the scan"
    assert b"remote edit" in local.values()


def test_a_file_edited_after_the_scan_is_not_deleted_as_stale(pair: Pair) -> None:
    write(pair.local, "doc.txt", "base")
    write(pair.local, "keep.txt", "k")
    write(pair.local, "keep2.txt", "k2")
    assert pair.sync().state == "completed"
    (pair.remote / "doc.txt").unlink()
    report = pair.sync(local_storage=EditAfterScan(pair.local))
    assert [e["path"] for e in report.errors] == ["doc.txt"]
    assert (pair.local / "doc.txt").read_bytes() == b"edited after the scan"
    assert trash(pair.local) == {}
    follow = pair.sync()
    assert (follow.state, follow.pushed) == ("completed", 1)
    assert tree(pair.remote)["doc.txt"] == b"edited after the scan"


class EditWhileRead(LocalStorage):
    """Rewrites the file in place, same size, while the session reads it."""

    @contextlib.contextmanager
    def open(self, path: str, expected: Entry) -> Iterator[Source]:
        with super().open(path, expected) as source:
            first = source.read(4)
            with open(self.root / path, "r+b") as fh:
                fh.write(b"XXXX")
            yield Prefixed(first, source)


class Prefixed:
    def __init__(self, head: bytes, inner: Source) -> None:
        self.head = head
        self.inner = inner
        self.mtime_ns = inner.mtime_ns
        self.executable = inner.executable
        self.resumable = inner.resumable

    def read(self, n: int) -> bytes:
        if self.head:
            head, self.head = self.head, b""
            return head
        return self.inner.read(n)

    def finish(self) -> str:
        return self.inner.finish()


def test_a_file_edited_while_it_is_uploaded_is_not_published(pair: Pair) -> None:
    write(pair.local, "doc.txt", "abcdefgh" * 1000)
    remote = MemoryStorage()
    report = pair.sync(local_storage=EditWhileRead(pair.local), remote_storage=remote)
    assert [e["path"] for e in report.errors] == ["doc.txt"]
    assert memory_files(remote) == {}
    follow = pair.sync(remote_storage=remote)
    assert follow.pushed == 1
    assert memory_files(remote)["doc.txt"] == b"XXXXefgh" + b"abcdefgh" * 999


# -- one pair, one process ----------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
from storsync.runner.lock import PairLock
with PairLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_a_locked_pair_fails_with_a_clear_message(pair: Pair) -> None:
    write(pair.local, "a.txt", "data")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(pair.local)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        result = pair.cli("--json")
        assert result.returncode == 1
        assert f"another storsync process (pid {holder.pid})" in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert tree(pair.remote) == {}
    finally:
        holder.kill()
        holder.wait()
    assert pair.cli().returncode == 0
    assert tree(pair.remote) == {"a.txt": b"data"}


def test_two_runs_started_together_never_run_side_by_side(pair: Pair) -> None:
    for i in range(2000):
        write(pair.local, f"d{i % 20}/f{i}", f"file {i}")
    command = [sys.executable, "-m", "storsync", "sync", str(pair.local), str(pair.remote)]
    command += ["--state-dir", str(pair.state), "--json"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = pair.local / ".storsync" / "lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
        time.sleep(0.005)
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    pushed = json.loads(out)["pushed"]
    if second.returncode == 1:
        assert "another storsync process" in second.stderr
    else:  # it started after the first had finished: nothing left to do
        assert json.loads(second.stdout)["pushed"] == 0
    assert pushed == 2000
    assert len(tree(pair.remote)) == 2000


# -- full disk, permissions ---------------------------------------------------------------


def test_a_full_remote_disk_fails_each_upload_and_loses_nothing(pair: Pair) -> None:
    write(pair.local, "up.txt", "to push")
    write(pair.remote, "down.txt", "to pull")
    remote = FaultyStorage(LocalStorage(pair.remote))
    remote.fail_on(
        "stage",
        *range(1, 100),
        error=lambda: PermanentStorageError("up.txt: No space left on device"),
    )
    report = pair.sync(remote_storage=remote)
    assert report.state == "partial"
    assert report.errors == [{"path": "up.txt", "message": "up.txt: No space left on device"}]
    assert tree(pair.local) == {"up.txt": b"to push", "down.txt": b"to pull"}
    assert tree(pair.remote) == {"down.txt": b"to pull"}
    assert list((pair.remote / ".storsync" / "partial").glob("*")) == []
    assert pair.sync().state == "completed"
    assert tree(pair.remote) == tree(pair.local)


def test_a_remote_refusing_deletions_keeps_the_file_and_retries_next_time(pair: Pair) -> None:
    for name in ("a", "b", "c"):
        write(pair.local, name, name)
    assert pair.sync().state == "completed"
    (pair.local / "a").unlink()
    remote = FaultyStorage(LocalStorage(pair.remote))
    remote.fail_on(
        "remove", *range(1, 100), error=lambda: PermanentStorageError("a: Permission denied")
    )
    report = pair.sync(remote_storage=remote)
    assert (report.state, report.deleted_remote) == ("partial", 0)
    assert report.errors == [{"path": "a", "message": "a: Permission denied"}]
    assert (pair.remote / "a").read_bytes() == b"a"
    follow = pair.sync()
    assert (follow.state, follow.deleted_remote) == ("completed", 1)
    assert trash(pair.remote) == {"a": [b"a"]}


def test_a_local_disk_full_on_download_keeps_the_uploads_going(pair: Pair) -> None:
    write(pair.local, "up.txt", "to push")
    write(pair.remote, "down.txt", "to pull")
    local = FaultyStorage(LocalStorage(pair.local))
    local.fail_on(
        "stage",
        *range(1, 100),
        error=lambda: PermanentStorageError("down.txt: No space left on device"),
    )
    report = pair.sync(local_storage=local)
    assert report.state == "partial"
    assert [e["path"] for e in report.errors] == ["down.txt"]
    assert tree(pair.remote) == {"up.txt": b"to push", "down.txt": b"to pull"}
    assert tree(pair.local) == {"up.txt": b"to push"}
