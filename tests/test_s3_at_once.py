"""A batch of S3 publications sent at once (``S3Storage.publish_all``: the PUTs of small
files from one thread through libcurl's multi interface), on the real SeaweedFS: each
publication as ``publish`` alone makes it, refused alone, whatever else the batch holds;
and a session whose PUT meets a transient failure tries it again. The same for small
objects read at once (``S3Storage.read_all``, their GETs)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from storsync.errors import ChangedError, PreconditionFailed
from storsync.model import Entry, StopSignal
from storsync.storage import s3_curl, s3_multipart
from storsync.storage.base import Publication, Staged, chunks
from storsync.storage.content import new_hasher
from storsync.storage.s3 import META_HASH, S3Storage
from storsync.storage.s3_client import NoAnswer
from tests.conftest import Pair, tree, write
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import objects, settings_for, sync_s3


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedS3) -> Any:
    return s3_server.boto3_client()


class _Bytes:
    mtime_ns = None
    executable = None
    resumable = None

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._hasher = new_hasher()

    def read(self, n: int) -> bytes:
        block, self._data = self._data[:n], self._data[n:]
        self._hasher.update(block)
        return block

    def finish(self) -> str:
        return self._hasher.hexdigest()


def _staged(storage: S3Storage, path: str, data: bytes) -> Staged:
    return storage.stage(path, _Bytes(data), size=len(data), mtime_ns=7, executable=False)


def test_a_batch_is_published_as_one_by_one_each_refused_alone(
    s3_server: SeaweedS3, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storsync.storage.s3.MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(s3_multipart, "PART_SIZE", 5 << 20)
    prefix = f"at-once/{uuid.uuid4().hex[:12]}"
    storage = S3Storage(settings_for(s3_server, prefix))
    bucket = s3_server.bucket
    try:
        first = {
            name: _staged(storage, name, b"v1 " + name.encode())
            for name in ("kept", "stale", "trashed")
        }
        old = {
            name: storage.publish(staged, expected=None, trash=None)
            for name, staged in first.items()
        }
        # SeaweedFS keeps a folder its last object left: in the way of a file's create.
        s3.put_object(Bucket=bucket, Key=f"{prefix}/emptied/inner", Body=b"x")
        s3.delete_object(Bucket=bucket, Key=f"{prefix}/emptied/inner")
        big = bytes(7 << 20)
        items = [
            *(
                Publication(_staged(storage, f"new/{i}", b"new %d" % i), None, None)
                for i in range(30)
            ),
            Publication(_staged(storage, "kept", b"v2 kept"), old["kept"], None),
            Publication(
                _staged(storage, "stale", b"v2 stale"), old["stale"]._replace(etag="0123"), None
            ),
            Publication(_staged(storage, "trashed", b"v2 trashed"), old["trashed"], "t1"),
            Publication(_staged(storage, "big.bin", big), None, None),  # multipart
            Publication(_staged(storage, "emptied", b"a file now"), None, None),
            Publication(_staged(storage, "new/3", b"taken meanwhile"), None, None),
        ]

        outcomes = storage.publish_all(items, 8)

        assert len(outcomes) == len(items)
        refused = [at for at, outcome in enumerate(outcomes) if not isinstance(outcome, Entry)]
        assert refused == [31, 35]  # the stale overwrite, the second create of new/3
        assert all(isinstance(outcomes[at], PreconditionFailed) for at in refused)
        listed = objects(s3, bucket, prefix)
        for item, outcome in zip(items, outcomes, strict=True):
            if not isinstance(outcome, Entry):
                continue
            key = f"{prefix}/{item.staged.path}"
            head = s3.head_object(Bucket=bucket, Key=key)
            assert (
                outcome.etag
                == head["ETag"].strip('"')
                == listed[item.staged.path]["ETag"].strip('"')
            )
            assert outcome.hash == item.staged.hash
            if item.staged.path != "big.bin":  # a multipart upload's is not known at its start
                assert head["Metadata"][META_HASH] == item.staged.hash
            assert (outcome.size, outcome.mtime_ns) == (item.staged.size, 7)
        got = {
            path: s3.get_object(Bucket=bucket, Key=f"{prefix}/{path}")["Body"].read()
            for path in ("new/3", "kept", "stale", "trashed", "emptied")
        }
        assert got == {
            "new/3": b"new 3",
            "kept": b"v2 kept",
            "stale": b"v1 stale",
            "trashed": b"v2 trashed",
            "emptied": b"a file now",
        }
        assert listed[".storsync/trash/t1/trashed"]["Size"] == len(b"v1 trashed")
    finally:
        storage.close()


def test_a_put_that_fails_once_in_a_batch_is_tried_again(
    s3_server: SeaweedS3, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No connection for one PUT of the first batch: the session sends that one again
    (after the retry's first delay) and completes."""
    send_all = s3_curl.CurlPool.send_all
    failed: list[str] = []

    def one_cut_off(
        self: s3_curl.CurlPool, requests: Any, width: int
    ) -> list[s3_curl.Answer | Exception]:
        if failed:
            return send_all(self, requests, width)
        failed.append(requests[5].url)  # not sent: no connection to send it on
        answers = send_all(self, [r for at, r in enumerate(requests) if at != 5], width)
        answers.insert(5, s3_curl.Unanswered(NoAnswer.UNREACHABLE, "injected: refused"))
        return answers

    monkeypatch.setattr(s3_curl.CurlPool, "send_all", one_cut_off)
    monkeypatch.setattr("storsync.runner.retry.RETRY_DELAYS", (0.01,))
    for i in range(20):
        write(pair.local, f"f{i:02}", f"file {i}")
    prefix = f"at-once/{uuid.uuid4().hex[:12]}"

    report = sync_s3(pair, s3_server, prefix)

    assert failed, "no batch went through send_all"
    assert (report.state, report.errors, report.pushed) == ("completed", [], 20)
    fresh = Pair(pair.local.parent / "fresh", pair.remote, pair.state.parent / "fresh-state")
    fresh.local.mkdir()
    fresh.state.mkdir()
    assert sync_s3(fresh, s3_server, prefix).pulled == 20
    assert tree(fresh.local) == tree(pair.local)


def test_objects_read_at_once_are_checked_as_one_read_alone(s3_server: SeaweedS3, s3: Any) -> None:
    """A body longer than listed, bytes that do not match their stored hash: each refused
    alone, with the words a read alone has, whatever else the group holds."""
    prefix = f"at-once/{uuid.uuid4().hex[:12]}"
    storage = S3Storage(settings_for(s3_server, prefix))
    bucket = s3_server.bucket
    try:
        for name in ("fine", "longer", "forged"):
            storage.publish(_staged(storage, name, b"0123456789"), expected=None, trash=None)
        listed = storage.scan(lambda *_: None, StopSignal())
        s3.put_object(Bucket=bucket, Key=f"{prefix}/longer", Body=b"x" * (70 << 10))
        longer = storage.stat("longer")
        assert longer is not None
        s3.put_object(
            Bucket=bucket,
            Key=f"{prefix}/forged",
            Body=b"9876543210",
            Metadata={META_HASH: storage.stat("fine").hash or ""},  # type: ignore[union-attr]
        )
        forged = storage.stat("forged")
        assert forged is not None
        reads = [("fine", listed["fine"]), ("longer", longer._replace(size=10)), ("forged", forged)]
        fine, too_long, wrong = storage.read_all(reads, width=2)
        assert isinstance(too_long, ChangedError) and "more than the 10 bytes" in str(too_long)
        assert not isinstance(fine, Exception) and not isinstance(wrong, Exception)
        assert b"".join(chunks(fine)) == b"0123456789"
        fine.finish()
        assert b"".join(chunks(wrong)) == b"9876543210"
        with pytest.raises(ChangedError, match="do not match their stored hash"):
            wrong.finish()
    finally:
        storage.close()


def test_a_get_that_fails_once_in_a_group_is_tried_again(
    s3_server: SeaweedS3, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No connection for one GET of the first group read at once: the session sends that
    one again (after the retry's first delay) and completes, every file pulled."""
    prefix = f"at-once/{uuid.uuid4().hex[:12]}"
    for i in range(20):
        write(pair.local, f"f{i:02}", f"file {i}")
    assert sync_s3(pair, s3_server, prefix).pushed == 20
    send_all = s3_curl.CurlPool.send_all
    failed: list[str] = []

    def one_cut_off(
        self: s3_curl.CurlPool, requests: Any, width: int
    ) -> list[s3_curl.Answer | Exception]:
        if failed or requests[0].method != "GET":
            return send_all(self, requests, width)
        failed.append(requests[5].url)
        answers = send_all(self, [r for at, r in enumerate(requests) if at != 5], width)
        answers.insert(5, s3_curl.Unanswered(NoAnswer.UNREACHABLE, "injected: refused"))
        return answers

    monkeypatch.setattr(s3_curl.CurlPool, "send_all", one_cut_off)
    monkeypatch.setattr("storsync.runner.retry.RETRY_DELAYS", (0.01,))
    fresh = Pair(pair.local.parent / "fresh", pair.remote, pair.state.parent / "fresh-state")
    fresh.local.mkdir()
    fresh.state.mkdir()

    report = sync_s3(fresh, s3_server, prefix)

    assert failed, "no group went through send_all"
    assert (report.state, report.errors, report.pulled) == ("completed", [], 20)
    assert tree(fresh.local) == tree(pair.local)
