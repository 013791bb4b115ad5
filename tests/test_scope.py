"""Sessions of a few paths (``Scope``): what a watch's notifications named, or what a
remote check found different from the base (SYNC.md promise 9 lets them look at no more).

The promise tried here: a session scoped to every path that changed leaves nothing for a
full session to do, on random histories; and it looks at nothing else (an edit outside
its scope waits for a later session).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storsync.errors import UsageError
from storsync.model import EVERYTHING, Entry, Scope, SessionState, StopSignal, SyncSettings
from storsync.paths import outermost, within
from storsync.runner.job import SyncJob
from storsync.runner.session import SyncSession
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.base import SkipReport, StoredKeys
from storsync.storage.faulty import FaultyStorage
from storsync.storage.local import LocalStorage
from storsync.storage.memory import MemoryStorage
from storsync.storage.registry import RemoteSpec
from storsync.storage.s3 import S3Storage
from tests.s3_server import SeaweedS3
from tests.test_properties_e2e import Editor, scan
from tests.test_properties_engine import T0, StepClock, check_quiet
from tests.test_s3_sync import settings_for

QUICK = SyncSettings(transfers=2)


def session(
    local: LocalStorage | FaultyStorage,
    remote: LocalStorage | FaultyStorage | S3Storage | MemoryStorage,
    store: SqliteBaseStore,
    repo: str,
    scope: Scope = EVERYTHING,
    settings_: SyncSettings = QUICK,
    clock_ns: int = T0,
) -> SyncSession:
    ran = SyncSession(local, remote, store, repo, settings_, clock=StepClock(clock_ns), scope=scope)
    ran.run()
    return ran


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteBaseStore]:
    db = SqliteBaseStore(tmp_path / "state.db")
    yield db
    db.close()


def tree(root: Path, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


# -- names ------------------------------------------------------------------------------


def test_outermost_keeps_the_paths_nothing_else_holds() -> None:
    assert outermost(["a/b", "a", "c", "a-b", "a/b/c", "b/x", "b/xy", "b/x/y"]) == [
        "a",
        "a-b",
        "b/x",
        "b/xy",
        "c",
    ]
    assert within("a/b/c", {"a/b"}) and within("a", {"a"}) and not within("a-b", {"a"})


def test_scopes_join_and_grow_into_everything() -> None:
    watch = Scope.named(["d/x", "d/y"])
    check = Scope.named(["e"], remote_whole=True)
    assert watch.joined(check) == Scope(frozenset({"d/x", "d/y", "e"}), remote_whole=True)
    assert watch.joined(EVERYTHING).whole and EVERYTHING.joined(watch).whole
    assert Scope.named(["d", "d/x"]).paths == frozenset({"d"})
    assert Scope.named(f"f{i}" for i in range(Scope.MAX_PATHS + 1)).whole
    assert not Scope.named(f"f{i}" for i in range(Scope.MAX_PATHS)).whole
    # A name the scans refuse is reported (and left alone) by a whole scan only.
    assert Scope.named(["ok", "new\nline"]).whole and Scope.named(["a/.storsync/x"]).whole


def test_a_job_carries_its_scope_and_refuses_a_path_that_is_not_one(tmp_path: Path) -> None:
    job = SyncJob(
        tmp_path,
        RemoteSpec("file:///r", {}, None, False),
        QUICK,
        "sqlite:///x",
        scope=Scope.named(["a/b", "c"], remote_whole=True),
    )
    assert SyncJob.from_json(job.to_json()) == job
    plain = SyncJob(tmp_path, RemoteSpec("file:///r", {}, None, False), QUICK, "sqlite:///x")
    assert SyncJob.from_json(plain.to_json()).scope == EVERYTHING
    for bad in ("../up", "/abs", "a/.storsync/x", "cafe\u0301", ""):
        text = job.to_json().replace('"a/b"', f'"{bad}"')
        with pytest.raises(UsageError, match="not a sync job"):
            SyncJob.from_json(text)


# -- storages ---------------------------------------------------------------------------


def test_a_local_scan_of_some_paths_is_the_whole_scan_filtered(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    tree(outside, {"secret": b"s"})
    tree(
        root,
        {
            "d/a": b"1",
            "d/sub/b": b"2",
            "d-x": b"3",
            "d0/c": b"4",
            "e/f": b"5",
            "e/g": b"6",
            "file": b"7",
            "d/.storsync/own": b"8",
        },
    )
    os.symlink(outside, root / "link")
    os.symlink(outside / "secret", root / "e/lnk")
    os.mkfifo(root / "e/fifo")
    storage = LocalStorage(root)
    tops = ["d", "e/f", "e/fifo", "file/under", "link/secret", "missing", "e/lnk"]
    whole_skips: list[tuple[str, str]] = []
    wanted = set(tops)
    whole = {
        p: e
        for p, e in storage.scan(lambda p, r: whole_skips.append((p, r)), StopSignal()).items()
        if within(p, wanted)
    }
    skips: list[tuple[str, str]] = []
    some = storage.scan_under(tops, lambda p, r: skips.append((p, r)), StopSignal())
    assert some == whole
    assert sorted(some) == ["d/a", "d/sub/b", "e/f"]
    # What lies behind a link is skipped as the walk skips it: it never reads as deleted.
    assert sorted(skips) == sorted(s for s in whole_skips if within(s[0], wanted | {"link"}))


def test_an_s3_listing_of_some_paths_is_the_whole_listing_filtered(s3_server: SeaweedS3) -> None:
    prefix = f"scope-{os.getpid()}"
    client = s3_server.boto3_client()
    for key in ("d/a", "d/sub/b", "d-x", "d0/c", "dd", "e/f", "e/g", "d/.storsync/own"):
        client.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{key}", Body=key.encode())
    storage = S3Storage(settings_for(s3_server, prefix))
    tops = ["d", "e/f", "missing"]
    whole = storage.scan(lambda p, r: None, StopSignal())
    some = storage.scan_under(tops, lambda p, r: None, StopSignal())
    assert some == {p: e for p, e in whole.items() if within(p, set(tops))}
    assert sorted(some) == ["d/a", "d/sub/b", "e/f"]


# -- sessions ---------------------------------------------------------------------------


@pytest.fixture
def synced(tmp_path: Path, store: SqliteBaseStore) -> tuple[Path, Path, str]:
    local, remote = tmp_path / "local", tmp_path / "remote"
    tree(local, {f"d{i}/f{j}": f"{i}.{j}".encode() for i in range(10) for j in range(10)})
    remote.mkdir()
    repo = store.repository_id(local.as_uri(), remote.as_uri(), now_ns=0)
    assert session(LocalStorage(local), LocalStorage(remote), store, repo).report.pushed == 100
    return local, remote, repo


def test_a_scoped_session_carries_what_it_names_and_nothing_else(
    synced: tuple[Path, Path, str], store: SqliteBaseStore
) -> None:
    local, remote, repo = synced
    (local / "d1/f1").write_bytes(b"named")
    (local / "d2/f2").write_bytes(b"not named")
    shutil.rmtree(local / "d3")
    (remote / "d4/f4").write_bytes(b"remote, not named")
    ran = session(
        LocalStorage(local), LocalStorage(remote), store, repo, Scope.named(["d1/f1", "d3"])
    )
    assert ran.report.state is SessionState.COMPLETED
    assert (ran.report.pushed, ran.report.deleted_remote, ran.report.pulled) == (1, 10, 0)
    assert (remote / "d1/f1").read_bytes() == b"named"
    assert (remote / "d2/f2").read_bytes() == b"2.2"  # outside the scope: not yet
    assert (local / "d4/f4").read_bytes() == b"4.4"
    ran = session(LocalStorage(local), LocalStorage(remote), store, repo, clock_ns=T0 + 10**9)
    assert (ran.report.pushed, ran.report.pulled) == (1, 1)  # the full session finds both


def test_a_remote_check_finds_every_remote_change_and_only_named_local_ones(
    synced: tuple[Path, Path, str], store: SqliteBaseStore
) -> None:
    local, remote, repo = synced
    (remote / "d4/f4").write_bytes(b"changed remotely")
    (remote / "d5/f5").unlink()
    tree(remote, {"new/x": b"new remotely"})
    (local / "d6/f6").write_bytes(b"named locally")
    (local / "d7/f7").write_bytes(b"not named")
    scope = Scope.named(["d6/f6"], remote_whole=True)
    ran = session(LocalStorage(local), LocalStorage(remote), store, repo, scope)
    assert (ran.report.pulled, ran.report.deleted_local, ran.report.pushed) == (2, 1, 1)
    assert (local / "d4/f4").read_bytes() == b"changed remotely"
    assert not (local / "d5/f5").exists()
    assert (remote / "d6/f6").read_bytes() == b"named locally"
    assert (remote / "d7/f7").read_bytes() == b"7.7"


def test_a_scoped_session_guards_against_the_whole_base(
    synced: tuple[Path, Path, str], store: SqliteBaseStore
) -> None:
    """Deleting a named folder of 10 of 100 files is 10%: carried. Six such folders are
    60% of the pair: the guard stops it, though 100% of what the session looked at."""
    local, remote, repo = synced
    shutil.rmtree(local / "d0")
    ran = session(LocalStorage(local), LocalStorage(remote), store, repo, Scope.named(["d0"]))
    assert (ran.report.state, ran.report.deleted_remote) == (SessionState.COMPLETED, 10)
    for i in range(1, 7):
        shutil.rmtree(local / f"d{i}")
    named = Scope.named([f"d{i}" for i in range(1, 7)])
    ran = session(LocalStorage(local), LocalStorage(remote), store, repo, named)
    assert ran.report.state is SessionState.FAILED
    assert "60 of 90 files" in (ran.report.message or "")
    assert len(scan(remote)) == 90


def test_a_remote_check_that_finds_the_remote_empty_changes_nothing(
    synced: tuple[Path, Path, str], store: SqliteBaseStore
) -> None:
    """SYNC.md's empty-side guard holds for a remote check too: a remote found empty
    (unmounted, the wrong prefix) deletes nothing locally, however few files it had."""
    local, remote, repo = synced
    for folder in remote.glob("d*"):  # its files gone, its .storsync marker kept
        shutil.rmtree(folder)
    scope = Scope.named([], remote_whole=True)
    ran = session(LocalStorage(local), LocalStorage(remote), store, repo, scope)
    assert ran.report.state is SessionState.FAILED
    assert "remote side is empty" in (ran.report.message or "")
    assert len(scan(local)) == 100


class Digesting(LocalStorage):
    """A directory remote that digests its listings as S3's does (every byte of what it
    lists), and counts the whole listings it reads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read_whole = 0

    def scan_digested(self, skip: SkipReport, stop: StopSignal) -> tuple[dict[str, Entry], str]:
        self.read_whole += 1
        found = self.scan(skip, stop)
        return found, digest_of(found)

    def listing_digest(
        self,
        stop: StopSignal,
        kind: str = "",
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> str:
        return digest_of(self.scan(lambda p, r: None, stop))


def digest_of(found: dict[str, Entry]) -> str:
    return hashlib.sha256(repr(sorted(found.items())).encode()).hexdigest()


def test_a_remote_check_reads_an_unchanged_listing_no_more(
    synced: tuple[Path, Path, str], store: SqliteBaseStore
) -> None:
    """The first check that finds the remote equal to the base saves its listing's
    digest; the next one that gets the same digest reads none of its keys; a write to
    the base forgets the digest, and a change on the remote is found as before."""
    local, remote_root, repo = synced
    remote = Digesting(remote_root)
    check = Scope.named([], remote_whole=True)
    clock = T0

    def checked(scope: Scope = check) -> SyncSession:
        nonlocal clock
        clock += 10**9
        ran = session(LocalStorage(local), remote, store, repo, scope, clock_ns=clock)
        assert ran.report.state is SessionState.COMPLETED, ran.report.message
        return ran

    checked()
    assert (remote.read_whole, store.listing_digest(repo) != "") == (1, True)
    (local / "d1/f1").write_bytes(b"named")
    assert checked(Scope.named(["d1/f1"], remote_whole=True)).report.pushed == 1
    assert (remote.read_whole, store.listing_digest(repo)) == (1, "")  # the upload forgot it
    checked()
    checked()
    assert remote.read_whole == 2  # once after the upload, which saved the digest again
    (remote_root / "d2/f2").write_bytes(b"2.X")  # the same size
    assert checked().report.pulled == 1
    assert (local / "d2/f2").read_bytes() == b"2.X"
    assert remote.read_whole == 3


def test_a_digest_saved_under_other_filters_is_not_trusted(
    synced: tuple[Path, Path, str], store: SqliteBaseStore
) -> None:
    """A file a pattern kept out when the digest was saved is found once the pattern is
    gone, though the listing is the same."""
    local, remote_root, repo = synced
    remote = Digesting(remote_root)
    tree(remote_root, {"x/new.tmp": b"remote"})
    check = Scope.named([], remote_whole=True)
    filtered = SyncSettings(transfers=2, excludes=("*.tmp",))
    ran = session(LocalStorage(local), remote, store, repo, check, filtered, T0 + 10**9)
    assert (ran.report.pulled, store.listing_digest(repo) != "") == (0, True)
    ran = session(LocalStorage(local), remote, store, repo, check, clock_ns=T0 + 2 * 10**9)
    assert ran.report.pulled == 1 and (local / "x/new.tmp").read_bytes() == b"remote"


# -- the promise on random histories ----------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_session_scoped_to_what_changed_leaves_nothing_for_a_full_one(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each round: both sides edited at random; a session scoped to the paths the local
    side's notifications would name, with the remote listed whole (a remote check) or,
    when only the local side changed, maybe not at all (a watch); then a full session
    must find nothing to do. The remote digests its listings as S3 does."""
    pair = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    roots = (pair / "local", pair / "remote")
    for root in roots:
        root.mkdir()
    db = SqliteBaseStore(pair / "state.db")
    try:
        repo = db.repository_id(roots[0].as_uri(), roots[1].as_uri(), now_ns=0)
        editors = [Editor(root, data) for root in roots]
        for _ in range(data.draw(st.integers(0, 4))):
            editors[0].edit()
        settings_ = SyncSettings(transfers=2, force=True, checksum=data.draw(st.booleans()))
        clock = T0
        session(
            LocalStorage(roots[0]),
            LocalStorage(roots[1]),
            db,
            repo,
            settings_=settings_,
            clock_ns=clock,
        )
        for _ in range(data.draw(st.integers(1, 3))):
            before = scan(roots[0])
            for _ in range(data.draw(st.integers(0, 4))):
                editors[0].edit()
            remote_edits = data.draw(st.integers(0, 2))
            for _ in range(remote_edits):
                editors[1].edit()
            after = scan(roots[0])
            named = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
            clock += 10**9
            # A remote check also when only the local side changed: the one after it may
            # trust the listing's digest it saved.
            checked = remote_edits > 0 or data.draw(st.booleans())
            scope = Scope.named(named, remote_whole=checked)
            local = LocalStorage(roots[0])
            ran = session(local, Digesting(roots[1]), db, repo, scope, settings_, clock)
            assert ran.report.state is SessionState.COMPLETED, ran.report.message
            if data.draw(st.booleans()):  # a check with nothing named: it saves the digest
                clock += 10**9
                nothing = Scope.named([], remote_whole=True)
                ran = session(local, Digesting(roots[1]), db, repo, nothing, settings_, clock)
                assert ran.report.state is SessionState.COMPLETED, ran.report.message
            watched = FaultyStorage(LocalStorage(roots[0])), FaultyStorage(LocalStorage(roots[1]))
            clock += 10**9
            again = session(*watched, db, repo, settings_=settings_, clock_ns=clock)
            check_quiet(again.report, watched, checksum=settings_.checksum)
    finally:
        db.close()
        shutil.rmtree(pair)


def test_a_remote_check_that_finds_more_than_a_few_paths_changed_is_a_whole_session(
    synced: tuple[Path, Path, str], store: SqliteBaseStore
) -> None:
    local, remote, repo = synced
    tree(remote, {f"new/{i:03}": b"n" for i in range(Scope.MAX_PATHS + 1)})
    (local / "d7/f7").write_bytes(b"not named, found by the whole session")
    check = Scope.named([], remote_whole=True)
    ran = session(LocalStorage(local), LocalStorage(remote), store, repo, check)
    assert ran.report.state is SessionState.COMPLETED, ran.report.message
    assert (ran.report.pulled, ran.report.pushed) == (Scope.MAX_PATHS + 1, 1)
    assert ran.report.merged == 100 + Scope.MAX_PATHS + 1
    contents = [{p: held[0] for p, held in scan(root).items()} for root in (local, remote)]
    assert contents[0] == contents[1]


def test_a_remote_check_keeps_what_lies_under_a_changed_object(
    tmp_path: Path, store: SqliteBaseStore
) -> None:
    """An object ``d`` appears beside ``d/y``, which did not change: the check's session
    of ``d`` holds ``d/y`` too, or ``d/y`` would read as deleted on the remote."""
    local = tmp_path / "local"
    tree(local, {"d/y": b"unchanged"})
    remote = MemoryStorage()
    repo = store.repository_id(local.as_uri(), remote.url, now_ns=0)
    assert session(LocalStorage(local), remote, store, repo).report.pushed == 1
    remote.put_object("d", b"a file named like the directory")
    check = Scope.named([], remote_whole=True)
    ran = session(LocalStorage(local), remote, store, repo, check, clock_ns=T0 + 10**9)
    assert (ran.report.state, ran.report.conflicts) == (SessionState.COMPLETED, ["d"])
    assert (local / "d/y").read_bytes() == b"unchanged"
    [copy] = [p for p in local.iterdir() if p.name.startswith("d.conflict-")]
    assert copy.read_bytes() == b"a file named like the directory"
    assert remote.objects["d/y"].data == b"unchanged" and "d" not in remote.objects
