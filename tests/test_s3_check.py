"""A remote check of a large S3 listing, in parts listed at once (SeaweedFS, thresholds
lowered so that a few dozen keys make a large listing):

- the check's digest is made of its parts' own, and a probe that lists the same parts
  (cut at the same keys of the base) finds it, parsing a key a page at most, and finds
  another after any object changed, appeared or went;
- through sessions: a check saves a digest of its kind, the next check finds it by a
  probe in parts and reads no listing whole, and a change on the remote is found.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import pytest

from storsync.model import EVERYTHING, Scope, SessionState, StopSignal
from storsync.runner.scan import _salted
from storsync.service.watches import NOTHING, REMOTE_CHECK
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage import s3_listing, s3_walk
from storsync.storage.local import LocalStorage
from storsync.storage.s3 import S3Storage
from storsync.storage.s3_walk import S3Walk
from tests.api_support import s3_remote
from tests.conftest import tree as files_of
from tests.s3_server import SeaweedS3
from tests.session_support import make_files, sessions_of, wait_for
from tests.test_s3_sync import settings_for
from tests.test_scope import session, tree
from tests.test_service_lifecycle import in_process
from tests.test_watch_service import _settled

FLAT = [f"f{i:03}" for i in range(60)]
FOLDERS = [f"d{i}/f{j:02}" for i in range(6) for j in range(10)] + ["top.txt"]
# Under one folder: too few names at the top to cut at, so the top is listed with a
# delimiter (pages hashed in the walk's thread) and ``photos/`` in ranges within it.
NESTED = [f"photos/d{i}/f{j:02}" for i in range(6) for j in range(10)] + ["top.txt"]


@pytest.fixture
def in_parts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, str | None]]:
    """Every listing large, cut every five keys of the base, four parts at once; returns
    the parts listed, as (prefix, after, until)."""
    monkeypatch.setattr(s3_walk, "SPLIT_FROM", 0)
    monkeypatch.setattr(s3_walk, "RANGE_KEYS", 5)
    monkeypatch.setattr(s3_walk, "SPLIT_WORKERS", 4)
    listed: list[tuple[str, str | None, str | None]] = []
    under = S3Walk._under

    def recorded(self: S3Walk, prefix: str, after: str | None, until: str | None, **kw: Any) -> Any:
        listed.append((prefix, after, until))
        return under(self, prefix, after, until, **kw)

    monkeypatch.setattr(S3Walk, "_under", recorded)
    return listed


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per listed object botocore was handed to parse."""
    found: list[int] = []
    obj = s3_listing._object
    monkeypatch.setattr(s3_listing, "_object", lambda *a: found.append(1) or obj(*a))
    return found


def _stored(names: list[str]) -> Any:
    keys = sorted(names)
    return lambda step: keys[step - 1 :: step]  # as a base's base_every gives them


@pytest.mark.parametrize("names", [FLAT, FOLDERS, NESTED], ids=["flat", "folders", "nested"])
def test_a_probe_lists_the_parts_the_check_walked_and_finds_its_digest(
    s3_server: SeaweedS3,
    in_parts: list[tuple[str, str | None, str | None]],
    parsed: list[int],
    names: list[str],
) -> None:
    prefix = f"check/{uuid.uuid4().hex[:12]}"
    plain = s3_server.boto3_client()
    for name in names:
        plain.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{name}", Body=name.encode())
    storage = S3Storage(settings_for(s3_server, prefix))
    stop, stored, count = StopSignal(), _stored(names), len(names)
    listed_now = set(names)

    def checked() -> str:
        listing, digest = storage.walk_digested(lambda p, r: None, stop, count, stored)
        assert [key for key, _ in listing] == sorted(listed_now)
        return digest()

    def probed() -> str:
        return storage.listing_digest(stop, s3_walk.RANGED, count, stored)

    try:
        check = checked()
        assert check.startswith(f"{s3_walk.RANGED}:") and len(in_parts) > 4
        parts = sorted(in_parts, key=str)
        # Ranges of the whole listing, or (nested) within the one folder at the top.
        assert {prefix for prefix, _, _ in parts} == {"photos/" if names is NESTED else ""}
        in_parts.clear()
        parsed.clear()
        assert probed() == check
        assert sorted(in_parts, key=str) == parts  # the same parts, at once
        # A page's last key at most, and the objects of the folders a cut lists.
        assert len(parsed) <= len(parts) + 1
        before = check
        for change in ("rewritten", "added", "removed"):
            name = sorted(names)[20]
            key = f"{prefix}/{name}"
            if change == "rewritten":
                plain.put_object(Bucket=s3_server.bucket, Key=key, Body=b"X" * len(name))
            elif change == "added":
                plain.put_object(Bucket=s3_server.bucket, Key=f"{key}b", Body=b"new")
                listed_now.add(f"{name}b")
            else:
                plain.delete_object(Bucket=s3_server.bucket, Key=f"{key}b")
                plain.delete_object(Bucket=s3_server.bucket, Key=key)
                listed_now -= {name, f"{name}b"}
            after = probed()
            assert after != before, change
            assert after == checked() and after != check, change
            before = after
    finally:
        storage.close()


# SeaweedFS lists ``a/b/c`` before ``a/b.txt``: the check's walk finds its listing out of
# order, and checks it by the sorted walk, which reads it whole.
OUT_OF_ORDER = ["a.txt", "a/x", "a/b.txt", "a/b/c", "a/y/z", "a0", "b/c", "d3/f"]


@pytest.mark.parametrize(
    ("names", "kind"), [(FOLDERS, s3_walk.RANGED), (OUT_OF_ORDER, "")], ids=["parts", "whole"]
)
def test_a_remote_check_of_a_large_listing_is_probed_as_it_was_listed(
    s3_server: SeaweedS3,
    in_parts: list[tuple[str, str | None, str | None]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    names: list[str],
    kind: str,
) -> None:
    walked: list[int] = []
    walk_digested = S3Walk.walk_digested

    def counted(self: S3Walk, *args: Any) -> Any:
        walked.append(1)
        return walk_digested(self, *args)

    monkeypatch.setattr(S3Walk, "walk_digested", counted)
    if not kind:  # the folder ``a/`` a part of its own, whose listing comes out of order
        monkeypatch.setattr(s3_walk, "SPLIT_WORKERS", 2)
    prefix = f"check/{uuid.uuid4().hex[:12]}"
    local = tmp_path / "local"
    tree(local, {name: name.encode() for name in names})
    store = SqliteBaseStore(tmp_path / "state.db")
    repo = store.repository_id(local.as_uri(), f"s3://{s3_server.bucket}/{prefix}", now_ns=0)
    check = Scope.named([], remote_whole=True)

    def run(scope: Scope = check) -> Any:
        remote = S3Storage(settings_for(s3_server, prefix))
        try:
            ran = session(LocalStorage(local), remote, store, repo, scope).report
        finally:
            remote.close()
        assert ran.state is SessionState.COMPLETED, ran.message
        return ran

    try:
        assert run(EVERYTHING).pushed == len(names)
        assert store.listing_digest(repo) == ""
        run()
        assert walked == [1] and store.listing_digest(repo).rpartition(":")[0] == kind
        in_parts.clear()
        quiet = run()
        assert (walked, quiet.pulled) == ([1], 0)  # the probe found the digest
        assert (len(in_parts) > 4) == (kind == s3_walk.RANGED)  # listed as the check was
        plain = s3_server.boto3_client()
        plain.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/d3/new", Body=b"remote")
        found = run()
        assert (walked, found.pulled) == ([1, 1], 1)
        assert (local / "d3/new").read_bytes() == b"remote"
    finally:
        store.close()


def test_the_service_probes_a_large_listing_in_the_parts_its_check_listed(
    s3_server: SeaweedS3,
    in_parts: list[tuple[str, str | None, str | None]],
    tmp_path: Path,
) -> None:
    """The service probes a watched repository's remote before a schedule starts a
    worker for its check: a digest of a listing in parts (made here, where the thresholds
    are lowered, as a worker's check makes it), probed in the same parts, cut at the keys
    of the service's base; found unchanged, then changed."""
    prefix = f"check/{uuid.uuid4().hex[:12]}"
    with in_process(tmp_path, None) as (service, api):
        local = api.root / prefix
        make_files(local, 40, seed=4)
        repository = api.new_repository(
            localPath=str(local), **s3_remote(s3_server, prefix), watch=True
        )
        rid = repository["id"]
        wait_for(lambda: sessions_of(api, rid), "the session the watch starts with")
        assert _settled(api, rid)[0]["pushed"] == 40
        base = service.watches._base
        remote = S3Storage(settings_for(s3_server, prefix))
        try:
            count = base.base_count(rid)
            listing, digest = remote.walk_digested(
                lambda p, r: None, StopSignal(), count, functools.partial(base.base_every, rid)
            )
            assert len(list(listing)) == count == 40
            saved = _salted(digest(), repository["excludes"])
        finally:
            remote.close()
        base.save_listing_digest(rid, saved, 1)
        in_parts.clear()
        assert service.watches.scope_of_fire(rid) == NOTHING
        assert len(in_parts) > 4  # the probe listed in parts
        path = sorted(files_of(local))[7]
        s3 = s3_server.boto3_client()
        s3.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{path}", Body=b"changed")
        assert service.watches.scope_of_fire(rid) == REMOTE_CHECK
