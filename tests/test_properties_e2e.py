"""The engine's promises end to end: random edit histories on two real directories.

The same checks as ``test_properties_engine`` (the table, nothing lost, provenance, a quiet
second session), through ``LocalStorage`` on both sides and real files, plus what only a
file system shows: executable bits and nanosecond mtimes survive the round trip, no
partial file is left behind, no directory is left empty, and a quiet session leaves every
inode in place.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from storsync.model import ConflictPolicy, Mode, Side, SyncSettings
from storsync.paths import OWN_DIR, parents
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.faulty import FaultyStorage
from storsync.storage.local import LocalStorage
from tests.test_properties_engine import (
    CONTENTS,
    NAMES,
    OPS,
    PATHS,
    T0,
    WINDOWS,
    Held,
    Sides,
    Version,
    check_nothing_lost,
    check_outcome,
    check_provenance,
    check_quiet,
    note,
    run,
    version,
    windows_of,
)

Stat = tuple[bytes, bool, int, int]  # bytes, executable bit, mtime, inode

# Each write gets an mtime of its own, nanoseconds included (change detection is by size,
# mtime and inode; an edit that keeps all three is invisible by design, as in rsync).
MTIME_BASE = 1_600_000_000_123_456_789
_TICKS = itertools.count(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def store(workdir: Path) -> Iterator[SqliteBaseStore]:
    db = SqliteBaseStore(workdir / "state.db")
    yield db
    db.close()


# -- reading a directory -----------------------------------------------------------------


def scan(root: Path) -> dict[str, Stat]:
    """Every user file under ``root`` with its bytes, bit, mtime and inode."""
    found: dict[str, Stat] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != OWN_DIR]
        for name in filenames:
            full = Path(dirpath, name)
            st_ = full.lstat()
            exe = bool(st_.st_mode & stat.S_IXUSR)
            rel = full.relative_to(root).as_posix()
            found[rel] = (full.read_bytes(), exe, st_.st_mtime_ns, st_.st_ino)
    return found


def held(files: dict[str, Stat]) -> dict[str, Held]:
    return {p: (s[0], s[1], s[2]) for p, s in files.items()}


def trash(root: Path, folder: str) -> dict[str, Version]:
    kept = root / OWN_DIR / "trash" / folder
    return {p: (s[0], s[1]) for p, s in scan(kept).items()} if kept.is_dir() else {}


def empty_dirs(root: Path) -> list[str]:
    return [
        d
        for d, dirs, files in os.walk(root)
        if OWN_DIR not in Path(d).relative_to(root).parts and not dirs and not files
        if Path(d) != root
    ]


# -- editing a directory -----------------------------------------------------------------


class Editor:
    """A user at work in one directory; every write carries a fresh nanosecond mtime."""

    def __init__(self, root: Path, data: st.DataObject) -> None:
        self.root = root
        self.data = data
        self.ticks = itertools.count(1)

    def mtime(self) -> int:
        # A drawn order (so either side may be the newer) and a low part unique across
        # all editors: a new file never takes the stamp of one the other side wrote,
        # even where it gets a freed inode back (it would read as that file, moved).
        return MTIME_BASE + self.data.draw(st.integers(0, 99)) * 10**9 + next(_TICKS) * 7

    def write(self, path: str, content: bytes, exe: bool, *, replace: bool = False) -> None:
        full = self.root / path
        for parent in parents(path):  # a file in the way of a directory goes
            if (self.root / parent).is_file():
                (self.root / parent).unlink()
        if full.is_dir():  # a directory in the way of a file goes, with its files
            shutil.rmtree(full)
        full.parent.mkdir(parents=True, exist_ok=True)
        if replace:  # as editors save: a new file renamed over the old one (a new inode)
            tmp = full.with_name(full.name + ".~tmp")
            tmp.write_bytes(content)
            os.replace(tmp, full)
        else:  # rewritten in place (the same inode)
            full.write_bytes(content)
        full.chmod(0o755 if exe else 0o644)
        mtime = self.mtime()
        os.utime(full, ns=(mtime, mtime))

    def swap(self, path: str) -> None:
        full = self.root / path
        old = full.stat()
        # The old file stays linked outside the root, so that its inode is not reused: a
        # version of the same path, size, mtime and inode is invisible without --checksum.
        attic = self.root.with_name(self.root.name + ".attic")
        attic.mkdir(exist_ok=True)
        os.link(full, attic / str(next(self.ticks)))
        size = len(full.read_bytes())
        content = self.data.draw(st.sampled_from([c for c in CONTENTS if len(c) == size]))
        tmp = full.with_name(full.name + ".~tmp")
        tmp.write_bytes(content)
        tmp.chmod(stat.S_IMODE(old.st_mode))
        os.utime(tmp, ns=(old.st_atime_ns, old.st_mtime_ns))
        os.replace(tmp, full)

    def delete(self, path: str) -> None:
        (self.root / path).unlink()
        for parent in reversed(parents(path)):  # like ``rm`` and a file manager's cleanup
            if any((self.root / parent).iterdir()):
                break
            (self.root / parent).rmdir()

    def move(self, path: str, *, whole_directory: bool) -> None:
        """A rename or move as a file manager makes it: the same file (inode, mtime, bits)
        under a free name, or the file's whole top directory renamed; nothing happens
        when the name drawn is taken."""
        if whole_directory and "/" in path:
            path = path.split("/", maxsplit=1)[0]
        target = self.data.draw(st.sampled_from(PATHS if not whole_directory else NAMES))
        taken = (self.root / target).exists() or any(
            (self.root / parent).is_file() for parent in parents(target)
        )
        if taken or target == path or target.startswith(f"{path}/"):
            return
        (self.root / target).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.root / path, self.root / target)
        for parent in reversed(parents(path)):  # the directories it left, if emptied
            if any((self.root / parent).iterdir()):
                break
            (self.root / parent).rmdir()

    def edit(self) -> None:
        draw = self.data.draw
        existing = sorted(held(scan(self.root)))
        op = draw(st.sampled_from((*OPS, "swap", "move", "move_directory")))
        if op == "create" or not existing:
            path = draw(st.sampled_from(PATHS))
            self.write(path, draw(st.sampled_from(CONTENTS)), draw(st.booleans()))
            return
        path = draw(st.sampled_from(existing))
        full = self.root / path
        exe = bool(full.stat().st_mode & stat.S_IXUSR)
        if op == "modify":
            content = draw(st.sampled_from(CONTENTS))
            self.write(path, content, exe, replace=draw(st.booleans()))
        elif op == "delete":
            self.delete(path)
        elif op == "touch":
            mtime = self.mtime()
            os.utime(full, ns=(mtime, mtime))
        elif op == "chmod":  # the mtime stays; only the mode (and ctime) change
            full.chmod(0o644 if exe else 0o755)
        elif op == "swap":  # another version of the same size and mtime: only the inode moves
            self.swap(path)
        elif op in ("move", "move_directory"):
            self.move(path, whole_directory=op == "move_directory")
        else:
            self.delete(path)
            self.write(f"{path}/{draw(st.sampled_from(NAMES))}", b"d", False)


# -- one session -------------------------------------------------------------------------


def sides(roots: tuple[Path, Path]) -> tuple[LocalStorage, LocalStorage]:
    return LocalStorage(roots[0]), LocalStorage(roots[1])


def renamed_against_edits(
    base: Mapping[str, Version],
    last: Mapping[str, Stat],
    now: Mapping[str, Stat],
    other: Mapping[str, Held],
) -> list[tuple[str, str]]:
    """(old, new) for each file a side moved since the last session (``last``: its files
    then, ``now``: at this session's start, the same bytes, bit, mtime and inode under
    another name, which a new file may also have when it reuses a freed inode) whose old
    name the other side edited meanwhile: the session moves the edit (SYNC.md "Scale"),
    which the table, path by path, cannot say. Not where either name is a file against a
    directory: the session renames that file aside instead of transferring it."""
    identity = {file: path for path, file in last.items()}
    paths = set(now) | set(other)
    folders = {folder for path in paths for folder in parents(path)}

    def clashes(path: str) -> bool:  # a file against a directory: renamed aside instead
        return path in folders

    found = []
    for new, file in now.items():
        old = identity.get(file)
        if old is None or old == new or old in now or new in other or old not in base:
            continue
        if clashes(old) or clashes(new):
            continue
        if old in other and version(other[old]) != base[old]:
            found.append((old, new))
    return found


def as_renamed(
    base: Mapping[str, Version], start: Sides, renamed: Mapping[Side, list[tuple[str, str]]]
) -> tuple[dict[str, Version], Sides]:
    """The base and the start as the table sees them once each rename against an edit is
    applied to the other side too: the edit then stands at the new name."""
    base_, start_ = dict(base), {side: dict(files) for side, files in start.items()}
    for mover, pairs in renamed.items():
        for old, new in pairs:
            base_[new] = base_.pop(old)
            start_[mover.other][new] = start_[mover.other].pop(old)
    return base_, start_


def session_keeps_the_promises(
    roots: tuple[Path, Path],
    store: SqliteBaseStore,
    repo: str,
    base: dict[str, Version],
    last: tuple[dict[str, Stat], dict[str, Stat]],
    *,
    clock_ns: int,
    settings_: SyncSettings,
) -> tuple[dict[str, Version], tuple[dict[str, Stat], dict[str, Stat]]]:
    """One session and its checks; the next base and both sides' files after it."""
    mode, policy = settings_.mode, settings_.policy
    files = tuple(scan(r) for r in roots)
    trashes = tuple(scan(r / OWN_DIR / "trash") for r in roots)
    start = {side: held(f) for side, f in zip(Side, files, strict=True)}
    if mode is Mode.TWO_WAY:
        renamed = {
            side: renamed_against_edits(base, last[i], files[i], start[side.other])
            for i, side in enumerate(Side)
        }
        if any(renamed.values()):
            event("a rename against an edit on the other side")
        base, start = as_renamed(base, start, renamed)
    session = run(*sides(roots), store, repo, clock_ns, settings_)
    if session.report.state == "failed":
        assert "delete" in (session.report.message or ""), session.report.message
        assert tuple(scan(r) for r in roots) == files, "a stopped session changed a file"
        assert tuple(scan(r / OWN_DIR / "trash") for r in roots) == trashes
        event("the delete guard stopped a session")
        session = run(*sides(roots), store, repo, clock_ns, replace(settings_, force=True))
    report = session.report
    assert (report.state, report.errors, report.skipped) == ("completed", [], [])
    if report.moved_local or report.moved_remote:
        event("files moved as the other side moved them")
    note(report, mode, start)
    after = tuple(scan(r) for r in roots)
    end = {side: held(f) for side, f in zip(Side, after, strict=True)}
    stamp = session.stamp
    base = check_outcome(base, start, end, stamp=stamp, mode=mode, policy=policy)
    trashed = {side: trash(r, session.trash or "-") for side, r in zip(Side, roots, strict=True)}
    check_nothing_lost(stamp, start, end, trashed)
    check_provenance(stamp, start, end)  # bytes, executable bit and mtime (ns)
    for root, before in zip(roots, trashes, strict=True):
        kept = scan(root / OWN_DIR / "trash")
        assert before.items() <= kept.items(), "an earlier session's trash was dropped"
    if mode is not Mode.TWO_WAY:  # the master side is only read
        i = 0 if mode is Mode.PUSH_ONLY else 1
        assert after[i] == files[i], "a one-way session wrote to its master side"
    for root in roots:
        assert not any((root / OWN_DIR / "partial").glob("*")), "a partial file was left"
        assert empty_dirs(root) == [], "a directory storsync emptied was left behind"

    watched = FaultyStorage(LocalStorage(roots[0])), FaultyStorage(LocalStorage(roots[1]))
    again = run(*watched, store, repo, clock_ns + 10**9 // 2, settings_)
    check_quiet(again.report, watched, checksum=settings_.checksum)
    assert tuple(scan(r) for r in roots) == after, "a quiet session touched a file"
    return base, (after[0], after[1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_histories_on_real_directories(
    data: st.DataObject, store: SqliteBaseStore, workdir: Path
) -> None:
    pair = Path(tempfile.mkdtemp(dir=workdir))
    try:
        roots = (pair / "local", pair / "remote")
        for root in roots:
            root.mkdir()
        repo = store.repository_id(roots[0].as_uri(), roots[1].as_uri(), now_ns=0)
        policy, checksum = data.draw(st.sampled_from(ConflictPolicy)), data.draw(st.booleans())
        same_second = data.draw(st.booleans())  # conflict names must not clash then either
        editors = [Editor(root, data) for root in roots]
        base: dict[str, Version] = {}
        last: tuple[dict[str, Stat], dict[str, Stat]] = ({}, {})
        with windows_of(data.draw(WINDOWS)):
            for round_ in range(data.draw(st.integers(1, 3))):
                for editor in editors:
                    for _ in range(data.draw(st.integers(0, 4 if round_ == 0 else 3))):
                        editor.edit()
                mode = data.draw(st.sampled_from(Mode))
                clock = T0 + (0 if same_second else (round_ + 1) * 10**9)
                options = SyncSettings(mode=mode, policy=policy, checksum=checksum, transfers=2)
                base, last = session_keeps_the_promises(
                    roots, store, repo, base, last, clock_ns=clock, settings_=options
                )
    finally:
        shutil.rmtree(pair)


def test_executable_bit_and_ns_mtime_survive_a_round_trip(tmp_path: Path) -> None:
    """The plainest case, spelled out: push, pull back into a fresh directory, compare."""
    local, remote, back = tmp_path / "l", tmp_path / "r", tmp_path / "b"
    for d in (local, remote, back):
        d.mkdir()
    script, doc = local / "bin" / "run.sh", local / "doc.txt"
    script.parent.mkdir()
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o755)
    doc.write_bytes(b"text")
    doc.chmod(0o644)
    os.utime(script, ns=(1, MTIME_BASE + 1))
    os.utime(doc, ns=(1, MTIME_BASE + 999_999_999))
    store = SqliteBaseStore(tmp_path / "state.db")
    assert run(LocalStorage(local), LocalStorage(remote), store, "a", T0).report.state == (
        "completed"
    )
    assert run(LocalStorage(back), LocalStorage(remote), store, "b", T0).report.state == (
        "completed"
    )
    store.close()
    want = {p: s[:3] for p, s in scan(local).items()}
    assert want == {
        "bin/run.sh": (b"#!/bin/sh\n", True, MTIME_BASE + 1),
        "doc.txt": (b"text", False, MTIME_BASE + 999_999_999),
    }
    for root in (remote, back):
        assert {p: s[:3] for p, s in scan(root).items()} == want
