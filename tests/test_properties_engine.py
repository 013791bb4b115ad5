"""The engine's promises under random edit histories, through the real runner, in memory.

Both sides are ``MemoryStorage`` (the local one edited as a file system would be, the
remote one as an object store that may hold both ``a`` and ``a/b``); the base is a real
SQLite file. After every session the test checks, against the state at its start:

- both sides hold exactly what the three-way table of SYNC.md says (so they converge),
  with no file standing where a directory must be; a modification beats a deletion and,
  under keep-both, differing edits are both kept;
- every version of every file still exists: on a side, as a conflict copy, or in the
  trash of the side it was removed from; the trash of earlier sessions is still there;
- every file on a side is a version that existed at the start, mtime included;
- a session the delete guard stopped changed nothing, and the next session reads,
  hashes and writes nothing.

``test_properties_e2e`` runs the same checks on real directories.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from storsync.clock import SystemClock
from storsync.model import ConflictPolicy, Mode, Side, SyncSettings
from storsync.paths import OWN_DIR, conflict_name, is_own, parents
from storsync.runner import pairing, stream
from storsync.runner.report import Report
from storsync.runner.session import SyncSession
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.base import Storage
from storsync.storage.faulty import FaultyStorage
from storsync.storage.memory import Blob, MemoryStorage

Version = tuple[bytes, bool]  # the bytes and the executable bit
Held = tuple[bytes, bool, int]  # a version and its mtime, as a side holds it
Sides = Mapping[Side, Mapping[str, Held]]

T0 = 1_704_067_200 * 10**9  # 2024-01-01, the sessions' clock
DAY = 86_400 * 10**9
MTIMES = (10**9, T0 - 400 * DAY, T0 - 1, T0 + 7)  # old ones too: tar archives, copies
NAMES = ("a", "b", "c.txt")
PATHS = tuple("/".join(p) for n in (1, 2, 3) for p in itertools.product(NAMES, repeat=n))
CONTENTS = (b"", b"x", b"y", b"xy", b"yx", b"xyz")
OPS = ("create", "modify", "delete", "touch", "chmod", "to_dir")
MOVES = frozenset({"hash", "open", "stage", "publish", "remove", "copy", "move"})
READS = frozenset({"hash", "open"})
QUICK = SyncSettings(transfers=2)  # the default settings, with fewer threads

_pairs = itertools.count()


class StepClock(SystemClock):
    """The session's clock, fixed at one instant (each session gets its own second)."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def now_ns(self) -> int:
        return self.ns

    def monotonic(self) -> float:
        return self.ns / 1e9


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteBaseStore]:
    db = SqliteBaseStore(tmp_path_factory.mktemp("engine") / "state.db")
    yield db
    db.close()


# Paths a window of the scan keeps before it may end (runner.stream): one path, a few, or
# the default, which these small trees never fill (the plan is then never spilled).
WINDOWS = st.sampled_from([1, 3, stream.WINDOW_PATHS])


@contextlib.contextmanager
def windows_of(paths: int) -> Iterator[None]:
    """Sessions whose scans are cut into windows of ``paths`` kept paths, each decided
    alone and spilled (SYNC.md "Scale"), and whose old paths of possible moves are paired
    in partitions past as many (runner.pairing): the same promises must hold."""
    if paths == stream.WINDOW_PATHS:
        yield
        return
    event("the plan decided and spilled window by window")
    with (
        mock.patch.object(stream, "WINDOW_PATHS", paths),
        mock.patch.object(pairing, "PAIRING_HELD", paths),
    ):
        yield


def run(
    local: Storage,
    remote: Storage,
    store: SqliteBaseStore,
    repo: str,
    clock_ns: int,
    settings_: SyncSettings = QUICK,
) -> SyncSession:
    session = SyncSession(local, remote, store, repo, settings_, clock=StepClock(clock_ns))
    session.run()
    return session


# -- what the table says -----------------------------------------------------------------


def version(held: Held | None) -> Version | None:
    return None if held is None else (held[0], held[1])


def outcome(
    base: Version | None, lo: Held | None, re: Held | None, mode: Mode, policy: ConflictPolicy
) -> tuple[Version | None, Version | None]:
    """The version a path holds after the session, and the remote copy kept beside it."""
    lv, rv = version(lo), version(re)
    if mode is not Mode.TWO_WAY:
        return (lv if mode is Mode.PUSH_ONLY else rv), None
    lc, rc = lv != base, rv != base
    if not rc or (lc and lv == rv):
        return lv, None
    if not lc or lv is None:
        return rv, None
    if rv is None:
        return lv, None
    assert lo is not None and re is not None
    if policy is ConflictPolicy.NEWER:
        policy = ConflictPolicy.LOCAL if lo[2] >= re[2] else ConflictPolicy.REMOTE
    if policy is ConflictPolicy.KEEP_BOTH:
        return lv, rv
    return (lv if policy is ConflictPolicy.LOCAL else rv), None


def expected_tree(
    base: Mapping[str, Version], start: Sides, stamp: str, mode: Mode, policy: ConflictPolicy
) -> dict[str, Version]:
    local, remote = start[Side.LOCAL], start[Side.REMOTE]
    decided = {
        p: outcome(base.get(p), local.get(p), remote.get(p), mode, policy)
        for p in base.keys() | local.keys() | remote.keys()
    }
    survivors = {p for p, (v, _) in decided.items() if v is not None}
    clashing = {q for p in survivors for q in parents(p) if q in survivors}
    tree: dict[str, Version] = {}
    for path, (kept, copy) in decided.items():
        if path in clashing:  # a file where a directory must be: renamed aside on each side
            for side in Side:
                if path in start[side]:
                    tree[conflict_name(path, stamp, side.value)] = start[side][path][:2]
        elif kept is not None:
            tree[path] = kept
        if copy is not None and path not in clashing:
            tree[conflict_name(path, stamp, Side.REMOTE.value)] = copy
    return tree


# -- the promises ------------------------------------------------------------------------


def names(path: str, stamp: str) -> tuple[str, ...]:
    """Where a version of ``path`` may be after a session: its name or a conflict name."""
    return (path, *(conflict_name(path, stamp, side.value) for side in Side))


def check_outcome(
    base: Mapping[str, Version],
    start: Sides,
    end: Sides,
    *,
    stamp: str,
    mode: Mode,
    policy: ConflictPolicy,
) -> dict[str, Version]:
    """Both sides hold what the table says; returns it (the next session's base)."""
    expected = expected_tree(base, start, stamp, mode, policy)
    for side in Side:
        assert {p: h[:2] for p, h in end[side].items()} == expected, f"{side.value} side"
    clashes = [p for p in expected for q in parents(p) if q in expected]
    assert not clashes, f"files stand where directories must be: {clashes}"
    if mode is Mode.TWO_WAY:
        check_named_promises(base, start, end, stamp, policy)
    return expected


def check_named_promises(
    base: Mapping[str, Version], start: Sides, end: Sides, stamp: str, policy: ConflictPolicy
) -> None:
    """A modification beats a deletion; differing edits keep both (said once more, plainly)."""

    def everywhere(path: str, v: Version) -> bool:
        return all(any(version(end[s].get(n)) == v for n in names(path, stamp)) for s in Side)

    for path in start[Side.LOCAL].keys() | start[Side.REMOTE].keys():
        b = base.get(path)
        lv, rv = version(start[Side.LOCAL].get(path)), version(start[Side.REMOTE].get(path))
        if b in (lv, rv) or lv == rv:
            continue
        if lv is None or rv is None:
            modified = rv if lv is None else lv
            assert modified is not None
            assert everywhere(path, modified), f"{path}: a deletion beat a modification"
        elif policy is ConflictPolicy.KEEP_BOTH:
            assert everywhere(path, lv) and everywhere(path, rv), f"{path}: one edit was lost"


def check_nothing_lost(
    stamp: str, start: Sides, end: Sides, trashed: Mapping[Side, Mapping[str, Version]]
) -> None:
    """Every version at the start is on a side, a conflict copy, or in its side's trash,
    or is the very file (bytes, bit and its own mtime) still on its side under the name
    it was moved to, as the other side moved it."""
    for side, files in start.items():
        moved = set(end[side].values())
        for path, held in files.items():
            v = version(held)
            kept = any(version(end[s].get(n)) == v for s in Side for n in names(path, stamp))
            kept = kept or held in moved
            assert kept or trashed[side].get(path) == v, f"{side.value} {path} {v} was lost"


def check_provenance(stamp: str, start: Sides, end: Sides) -> None:
    """Every file on a side is a version that existed, with its bytes, bit and mtime, at
    that path, or the side's own file of another path moved there."""
    origins: dict[str, set[Held]] = {}
    for files in start.values():
        for path, held in files.items():
            for name in names(path, stamp):
                origins.setdefault(name, set()).add(held)
    for side, files in end.items():
        own = set(start[side].values())
        for path, held in files.items():
            known = held in origins.get(path, set()) or held in own
            assert known, f"{side.value} {path} {held} is new"


def check_quiet(
    report: Report, watched: tuple[FaultyStorage, FaultyStorage], *, checksum: bool = False
) -> None:
    """A session after a converged one moves nothing: no write, and no read unless asked."""
    assert (report.state, report.pushed, report.pulled, report.conflicts) == (
        "completed",
        0,
        0,
        [],
    )
    assert (report.deleted_local, report.deleted_remote, report.errors) == (0, 0, [])
    for side in watched:
        assert not (MOVES - (READS if checksum else set())) & set(side.calls), side.calls


def note(report: Report, mode: Mode, start: Sides) -> None:
    """Say what the examples covered (``--hypothesis-show-statistics``)."""
    event(f"{mode.value}: {'a conflict' if report.conflicts else 'no conflict'}")
    for side, files in start.items():
        if any(q in files for p in files for q in parents(p)):
            event(f"the {side.value} side held both a file and a directory of its name")
        if any(q in files for p in start[side.other] for q in parents(p)):
            event(f"a {side.value} file where the {side.other.value} side had a directory")


# -- the sides in memory -----------------------------------------------------------------


def held(side: MemoryStorage) -> dict[str, Held]:
    return {k: (b.data, b.executable, b.mtime_ns) for k, b in side.objects.items() if not is_own(k)}


def user_objects(objects: Mapping[str, Blob]) -> dict[str, Blob]:
    return {k: b for k, b in objects.items() if not is_own(k)}


def trash(side: MemoryStorage, folder: str = "") -> dict[str, Blob]:
    """The whole trash by key, or one session's trash folder by original path."""
    prefix = f"{OWN_DIR}/trash/{folder}/" if folder else f"{OWN_DIR}/trash/"
    return {k.removeprefix(prefix): b for k, b in side.objects.items() if k.startswith(prefix)}


def put(side: MemoryStorage, path: str, data: bytes, exe: bool, mtime: int, *, fs: bool) -> None:
    """Write a file; on a file system, first remove what stands in the way."""
    if fs:
        for key in list(side.objects):
            if not is_own(key) and (key in parents(path) or key.startswith(path + "/")):
                del side.objects[key]
    side.put_object(path, data, mtime_ns=mtime, executable=exe)


def edit(data: st.DataObject, side: MemoryStorage, *, fs: bool) -> None:
    existing = sorted(held(side))
    op = data.draw(st.sampled_from(OPS))
    mtime = data.draw(st.sampled_from(MTIMES))
    if op == "create" or not existing:
        path, exe = data.draw(st.sampled_from(PATHS)), data.draw(st.booleans())
        put(side, path, data.draw(st.sampled_from(CONTENTS)), exe, mtime, fs=fs)
        return
    path = data.draw(st.sampled_from(existing))
    blob = side.objects[path]
    if op == "modify":  # may write the same bytes again: a save without a change
        put(side, path, data.draw(st.sampled_from(CONTENTS)), blob.executable, mtime, fs=fs)
    elif op == "delete":
        del side.objects[path]
    elif op == "touch":
        side.put_object(path, blob.data, mtime_ns=mtime, executable=blob.executable)
    elif op == "chmod":
        side.put_object(path, blob.data, mtime_ns=blob.mtime_ns, executable=not blob.executable)
    else:  # the file becomes a directory (an object store may keep both)
        if fs or data.draw(st.booleans()):
            del side.objects[path]
        child = f"{path}/{data.draw(st.sampled_from(NAMES))}"
        put(side, child, data.draw(st.sampled_from(CONTENTS)), False, mtime, fs=fs)


def check_trash_kept(before: tuple[dict[str, Blob], ...], sides: tuple[MemoryStorage, ...]) -> None:
    """Trash is kept for its retention (30 days; the clock moves by seconds here)."""
    for old, side in zip(before, sides, strict=True):
        kept = {k: b for k, b in old.items() if k.startswith(f"{OWN_DIR}/trash/")}
        assert kept.items() <= side.objects.items(), "an earlier session's trash was dropped"


def session_keeps_the_promises(
    local: MemoryStorage,
    remote: MemoryStorage,
    store: SqliteBaseStore,
    repo: str,
    base: dict[str, Version],
    *,
    clock_ns: int,
    settings_: SyncSettings,
) -> dict[str, Version]:
    """Run one session, check every promise, and return the new base (what both hold)."""
    mode, policy = settings_.mode, settings_.policy
    sides = (local, remote)
    start = {Side.LOCAL: held(local), Side.REMOTE: held(remote)}
    objects = tuple(dict(s.objects) for s in sides)
    session = run(local, remote, store, repo, clock_ns, settings_)
    if session.report.state == "failed":
        # Only the delete guard may stop a session here, and before it changes anything.
        assert "delete" in (session.report.message or ""), session.report.message
        assert tuple(s.objects for s in sides) == objects
        event("the delete guard stopped a session")
        session = run(local, remote, store, repo, clock_ns, replace(settings_, force=True))
    report = session.report
    assert (report.state, report.errors, report.skipped) == ("completed", [], [])
    note(report, mode, start)
    end = {Side.LOCAL: held(local), Side.REMOTE: held(remote)}
    stamp = session.stamp
    base = check_outcome(base, start, end, stamp=stamp, mode=mode, policy=policy)
    trashed = {
        side: {p: (b.data, b.executable) for p, b in trash(s, session.trash or "-").items()}
        for side, s in zip(Side, sides, strict=True)
    }
    check_nothing_lost(stamp, start, end, trashed)
    check_provenance(stamp, start, end)
    check_trash_kept(objects, sides)
    if mode is not Mode.TWO_WAY:  # the master side is only read
        i = 0 if mode is Mode.PUSH_ONLY else 1
        assert user_objects(sides[i].objects) == user_objects(objects[i]), "master written"

    objects = tuple(dict(s.objects) for s in sides)
    watched = FaultyStorage(local), FaultyStorage(remote)  # no faults: it counts the calls
    again = run(*watched, store, repo, clock_ns + 10**9 // 2, settings_)
    check_quiet(again.report, watched, checksum=settings_.checksum)
    assert (held(local), held(remote)) == (end[Side.LOCAL], end[Side.REMOTE])
    check_trash_kept(objects, sides)
    return base


def check_history(data: st.DataObject, store: SqliteBaseStore, *, remote_fs: bool) -> None:
    n = next(_pairs)
    local, remote = MemoryStorage(f"memory://local/{n}"), MemoryStorage(f"memory://remote/{n}")
    repo = store.repository_id(local.url, remote.url, now_ns=0)
    policy = data.draw(st.sampled_from(ConflictPolicy))
    base: dict[str, Version] = {}
    with windows_of(data.draw(WINDOWS)):
        _history(data, store, local, remote, repo, base, policy, remote_fs=remote_fs)


def _history(
    data: st.DataObject,
    store: SqliteBaseStore,
    local: MemoryStorage,
    remote: MemoryStorage,
    repo: str,
    base: dict[str, Version],
    policy: ConflictPolicy,
    *,
    remote_fs: bool,
) -> None:
    modes = list(Mode) if remote_fs else [Mode.TWO_WAY]
    # Sessions a second apart, or all in one second (their conflict names must not clash).
    same_second, checksum = data.draw(st.booleans()), data.draw(st.booleans())
    for round_ in range(data.draw(st.integers(1, 3))):
        for side, fs in ((local, True), (remote, remote_fs)):
            for _ in range(data.draw(st.integers(0, 5 if round_ == 0 else 3))):
                edit(data, side, fs=fs)
        mode = data.draw(st.sampled_from(modes))
        clock = T0 + (0 if same_second else (round_ + 1) * 10**9)
        options = SyncSettings(mode=mode, policy=policy, checksum=checksum, transfers=2)
        base = session_keeps_the_promises(
            local, remote, store, repo, base, clock_ns=clock, settings_=options
        )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_two_way_histories_against_an_object_store(
    data: st.DataObject, store: SqliteBaseStore
) -> None:
    check_history(data, store, remote_fs=False)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_histories_mixing_two_way_push_only_and_pull_only(
    data: st.DataObject, store: SqliteBaseStore
) -> None:
    check_history(data, store, remote_fs=True)


# -- the checks themselves can fail ------------------------------------------------------


def test_the_loss_check_sees_a_version_dropped_behind_the_runner(tmp_path: Path) -> None:
    start: Sides = {Side.LOCAL: {"f": (b"one", False, 1)}, Side.REMOTE: {}}
    end: Sides = {Side.LOCAL: {"f": (b"two", False, 2)}, Side.REMOTE: {"f": (b"two", False, 2)}}
    with pytest.raises(AssertionError, match="was lost"):
        check_nothing_lost("20240101-000000", start, end, {Side.LOCAL: {}, Side.REMOTE: {}})
    check_nothing_lost(
        "20240101-000000", start, end, {Side.LOCAL: {"f": (b"one", False)}, Side.REMOTE: {}}
    )
    with pytest.raises(AssertionError, match="was lost"):  # only its own side's trash counts
        check_nothing_lost(
            "20240101-000000", start, end, {Side.LOCAL: {}, Side.REMOTE: {"f": (b"one", False)}}
        )


def test_the_outcome_check_sees_a_deletion_that_beat_a_modification() -> None:
    base = {"f": (b"one", False)}
    start: Sides = {Side.LOCAL: {}, Side.REMOTE: {"f": (b"two", False, 5)}}
    end: Sides = {Side.LOCAL: {}, Side.REMOTE: {}}
    with pytest.raises(AssertionError):
        check_outcome(
            base, start, end, stamp="s", mode=Mode.TWO_WAY, policy=ConflictPolicy.KEEP_BOTH
        )
    with pytest.raises(AssertionError, match="a deletion beat a modification"):
        check_named_promises(base, start, end, "s", ConflictPolicy.KEEP_BOTH)


def test_the_provenance_check_sees_a_changed_mtime() -> None:
    start: Sides = {Side.LOCAL: {"f": (b"one", True, 5)}, Side.REMOTE: {}}
    with pytest.raises(AssertionError, match="is new"):
        check_provenance(
            "s", start, {Side.LOCAL: start[Side.LOCAL], Side.REMOTE: {"f": (b"one", True, 6)}}
        )
