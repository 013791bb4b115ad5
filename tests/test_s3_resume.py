"""Resumable downloads of large objects from a real SeaweedFS (issue 3).

A pull of an object larger than the multipart threshold writes into
``.storsync/partial/<name of (path, ETag)>.resume`` with a checksum line per chunk in
``<name>.sums``. An interrupted pull (a killed process, a connection lost mid-body) leaves
them; the next attempt hands the kept bytes that still match their checksums to the source
and fetches only the rest with a ranged GET carrying ``If-Match``. These tests count what
was asked for and read (the ``Range`` of each GET, the body bytes read), never timings.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ResponseStreamingError

import storsync.runner.retry as retry_module
import storsync.storage.s3 as s3_module
from storsync.clock import SystemClock
from storsync.errors import StorageUnavailable
from storsync.model import StopSignal
from storsync.paths import OWN_DIR
from storsync.runner.report import Report
from storsync.storage import local_resume
from storsync.storage.base import Resumable
from storsync.storage.content import hash_bytes
from storsync.storage.local import LocalStorage
from storsync.storage.local_resume import RESUME_CHUNK
from storsync.storage.s3 import META_HASH, S3Settings, S3Storage
from tests.conftest import Pair, tree
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import settings_for, url

MiB = 1 << 20
CHUNK = RESUME_CHUNK  # 8 MiB


@pytest.fixture
def prefix() -> str:
    return f"resume/{random.Random().getrandbits(48):012x}"


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedS3) -> Any:
    """A boto3 client for the test's own writes, as another tool would make them."""
    return s3_server.boto3_client()


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects over 16 MiB are read resumably (in-process runs only), so 40 MiB will do."""
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 16 * MiB)


class _Body:
    def __init__(self, inner: Any, owner: WatchedS3) -> None:
        self._inner = inner
        self._owner = owner
        self._seen = 0

    def read(self, n: int = -1) -> bytes:
        block: bytes = self._inner.read(n)
        limit = self._owner.fail_after
        if limit is not None and self._seen + len(block) > limit:
            raise ResponseStreamingError(error="injected: the connection was lost")
        self._seen += len(block)
        self._owner.body_bytes += len(block)
        return block

    def close(self) -> None:
        self._inner.close()


class _Client:
    """The storage's own boto3 client, with the GETs of the watched key observed."""

    def __init__(self, inner: Any, owner: WatchedS3) -> None:
        self._inner = inner
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_object(self, **kw: Any) -> Any:
        owner = self._owner
        if not kw["Key"].endswith(f"/{owner.watched}"):
            return self._inner.get_object(**kw)
        owner.ranges.append(kw.get("Range"))
        if "Range" in kw and owner.before_ranged_get is not None:
            owner.before_ranged_get()
        if owner.ignore_range:
            kw.pop("Range", None)
        got = self._inner.get_object(**kw)
        got["Body"] = _Body(got["Body"], owner)
        return got


class WatchedS3(S3Storage):
    """S3 where the GETs of one object are recorded: ``ranges`` (the ``Range`` header of each,
    None for a whole GET) and ``body_bytes`` (bytes read from their bodies). ``fail_after``
    makes every body of that object fail after so many bytes; ``ignore_range`` plays an
    endpoint that ignores ``Range``; ``before_ranged_get`` runs just before a ranged GET."""

    def __init__(self, settings: S3Settings, watched: str) -> None:
        super().__init__(settings)
        self.watched = watched
        self.ranges: list[str | None] = []
        self.body_bytes = 0
        self.fail_after: int | None = None
        self.ignore_range = False
        self.before_ranged_get: Any = None
        self._client = _Client(self._client, self)


def pull(pair: Pair, remote: S3Storage, **settings: object) -> Report:
    try:
        return pair.sync(remote_storage=remote, transfers=2, **settings)
    finally:
        remote.close()


def put(s3: Any, server: SeaweedS3, prefix: str, path: str, data: bytes, **meta: str) -> None:
    s3.put_object(Bucket=server.bucket, Key=f"{prefix}/{path}", Body=data, Metadata=meta)


def partials(root: Path) -> dict[str, Path]:
    """The files in ``root``'s partial folder, by suffix (one resumable download at most)."""
    folder = root / OWN_DIR / "partial"
    return {p.suffix: p for p in folder.iterdir()} if folder.is_dir() else {}


def interrupt(
    pair: Pair, server: SeaweedS3, prefix: str, path: str, after: int, monkeypatch: Any
) -> Report:
    """One session whose download of ``path`` loses its connection after ``after`` bytes,
    with no retry: the partial file and its checksums stay for the next session."""
    remote = WatchedS3(settings_for(server, prefix), path)
    remote.fail_after = after
    with monkeypatch.context() as patch:
        patch.setattr(retry_module, "RETRY_DELAYS", ())
        report = pull(pair, remote)
    assert report.state == "failed", report
    assert server.endpoint in (report.message or "")
    assert path not in tree(pair.local), "a partial download became a user file"
    return report


def test_a_lost_connection_is_resumed_by_the_retries_and_by_the_next_session(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, small_threshold: None
) -> None:
    size = 40 * MiB + 123
    data = random.Random(1).randbytes(size)
    # the BLAKE3 as storsync stores it: the final bytes are checked against it too
    put(s3, s3_server, prefix, "big.bin", data, **{META_HASH: hash_bytes(data)})

    # Every body fails after 10 MiB: each of the 4 attempts (the session's retries) starts
    # after the chunks the previous one completed (8 MiB each), then the session gives up.
    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    remote.fail_after = 10 * MiB
    report = pull(pair, remote)
    assert report.state == "failed", report
    assert remote.ranges == [None, f"bytes={CHUNK}-", f"bytes={2 * CHUNK}-", f"bytes={3 * CHUNK}-"]
    assert remote.body_bytes == 4 * 10 * MiB
    kept = partials(pair.local)
    assert sorted(kept) == [".resume", ".sums"]
    assert kept[".resume"].read_bytes() == data[: 4 * CHUNK + 2 * MiB]
    assert "big.bin" not in tree(pair.local)

    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert (report.state, report.pulled, report.bytes_pulled) == ("completed", 1, size), report
    assert remote.ranges == [f"bytes={4 * CHUNK}-"]
    assert remote.body_bytes == size - 4 * CHUNK
    assert (pair.local / "big.bin").read_bytes() == data
    assert partials(pair.local) == {}


def test_a_version_replaced_since_the_interruption_is_fetched_from_zero(
    s3_server: SeaweedS3,
    s3: Any,
    pair: Pair,
    prefix: str,
    small_threshold: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(2)
    old, new = rng.randbytes(40 * MiB), rng.randbytes(40 * MiB)  # same size, other bytes
    put(s3, s3_server, prefix, "big.bin", old)
    interrupt(pair, s3_server, prefix, "big.bin", 20 * MiB, monkeypatch)
    stale = partials(pair.local)
    assert stale[".resume"].stat().st_size == 20 * MiB

    put(s3, s3_server, prefix, "big.bin", new)  # another ETag: the kept bytes are useless
    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert (report.state, report.pulled) == ("completed", 1), report
    assert remote.ranges == [None]
    assert remote.body_bytes == len(new)
    assert (pair.local / "big.bin").read_bytes() == new
    assert partials(pair.local) == {}, "the old version's partial file was left"


def test_a_version_replaced_just_before_the_ranged_get_is_never_spliced(
    s3_server: SeaweedS3,
    s3: Any,
    pair: Pair,
    prefix: str,
    small_threshold: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(3)
    old, new = rng.randbytes(40 * MiB), rng.randbytes(40 * MiB)
    put(s3, s3_server, prefix, "big.bin", old)
    interrupt(pair, s3_server, prefix, "big.bin", 20 * MiB, monkeypatch)

    # scanned as the old version; replaced between the HEAD and the GET of the rest
    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    remote.before_ranged_get = lambda: put(s3, s3_server, prefix, "big.bin", new)
    report = pull(pair, remote)
    assert remote.ranges == [f"bytes={2 * CHUNK}-"]
    assert report.state == "partial", report
    assert [e["path"] for e in report.errors] == ["big.bin"]
    assert remote.body_bytes == 0  # If-Match: 412, not the new version's bytes
    assert "big.bin" not in tree(pair.local)
    assert partials(pair.local) == {}, "the replaced version's bytes were kept"

    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert (report.state, report.pulled, remote.ranges) == ("completed", 1, [None]), report
    assert (pair.local / "big.bin").read_bytes() == new


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "torn checksum line"])
def test_a_damaged_partial_file_is_trusted_only_up_to_its_first_bad_chunk(
    s3_server: SeaweedS3,
    s3: Any,
    pair: Pair,
    prefix: str,
    small_threshold: None,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
) -> None:
    data = random.Random(4).randbytes(40 * MiB)
    put(s3, s3_server, prefix, "big.bin", data)  # no stored hash: the checksums alone
    interrupt(pair, s3_server, prefix, "big.bin", 30 * MiB, monkeypatch)
    kept = partials(pair.local)
    if damage == "flipped byte":  # in the second chunk
        with open(kept[".resume"], "r+b") as fh:
            fh.seek(CHUNK + 12345)
            byte = fh.read(1)
            fh.seek(CHUNK + 12345)
            fh.write(bytes([byte[0] ^ 1]))
    elif damage == "truncated":  # a power cut lost the end of the second chunk's bytes
        os.truncate(kept[".resume"], CHUNK + 5 * MiB)
    else:  # the second checksum line only half written
        lines = kept[".sums"].read_text().split("\n")
        kept[".sums"].write_text("\n".join([*lines[:2], lines[2][:20]]))

    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert (report.state, report.pulled) == ("completed", 1), report
    assert remote.ranges == [f"bytes={CHUNK}-"]  # the first chunk only was still good
    assert remote.body_bytes == len(data) - CHUNK
    assert (pair.local / "big.bin").read_bytes() == data
    assert partials(pair.local) == {}


def test_forged_kept_bytes_fail_the_stored_hash_and_never_become_a_user_file(
    s3_server: SeaweedS3,
    s3: Any,
    pair: Pair,
    prefix: str,
    small_threshold: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = random.Random(5).randbytes(40 * MiB)
    put(s3, s3_server, prefix, "big.bin", data, **{META_HASH: hash_bytes(data)})
    interrupt(pair, s3_server, prefix, "big.bin", 20 * MiB, monkeypatch)
    kept = partials(pair.local)
    # the second chunk changed, and its checksum line made to match the change
    forged = bytearray(kept[".resume"].read_bytes())
    forged[CHUNK + 7] ^= 0xFF
    kept[".resume"].write_bytes(forged)
    lines = kept[".sums"].read_text().split("\n")
    lines[2] = hash_bytes(bytes(forged[CHUNK : 2 * CHUNK]))
    kept[".sums"].write_text("\n".join(lines))

    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert remote.ranges == [f"bytes={2 * CHUNK}-"]
    assert report.state == "partial", report
    assert [e["path"] for e in report.errors] == ["big.bin"]
    assert "stored hash" in report.errors[0]["message"]
    assert "big.bin" not in tree(pair.local)
    assert partials(pair.local) == {}, "bytes that failed the check were kept"

    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert (report.state, report.pulled, remote.ranges) == ("completed", 1, [None]), report
    assert (pair.local / "big.bin").read_bytes() == data


def test_an_endpoint_that_ignores_range_still_gives_the_right_bytes(
    s3_server: SeaweedS3,
    s3: Any,
    pair: Pair,
    prefix: str,
    small_threshold: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = random.Random(6).randbytes(40 * MiB)
    put(s3, s3_server, prefix, "big.bin", data)
    interrupt(pair, s3_server, prefix, "big.bin", 20 * MiB, monkeypatch)
    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    remote.ignore_range = True  # a 200 with the whole object: the kept part is skipped
    report = pull(pair, remote)
    assert (report.state, report.pulled) == ("completed", 1), report
    assert remote.ranges == [f"bytes={2 * CHUNK}-"]
    assert remote.body_bytes == len(data)
    assert (pair.local / "big.bin").read_bytes() == data


def test_a_download_kept_whole_before_its_publish_is_not_fetched_again(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, small_threshold: None
) -> None:
    """A kill after staging, before the rename: every chunk is kept, no GET is needed."""
    data = random.Random(7).randbytes(20 * MiB + 5)
    put(s3, s3_server, prefix, "big.bin", data)
    local = LocalStorage(pair.local)
    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    [entry] = remote.scan(lambda path, reason: None, StopSignal()).values()
    with remote.open("big.bin", entry) as source:
        local.stage("big.bin", source, size=len(data), mtime_ns=1, executable=False)
    assert remote.ranges == [None]
    assert sorted(partials(pair.local)) == [".resume", ".sums"]

    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert (report.state, report.pulled) == ("completed", 1), report
    assert (remote.ranges, remote.body_bytes) == ([], 0)
    assert (pair.local / "big.bin").read_bytes() == data


# -- a real `storsync sync` killed while it downloads --------------------------------------


class StallingProxy:
    """A TCP proxy to the S3 server that passes ``budget`` bytes of answers, then stalls.

    The storsync process behind it sees an endpoint that stops sending in the middle of a
    download, and so has written a known amount when it is killed.
    """

    def __init__(self, upstream: int, budget: int) -> None:
        self._upstream = upstream
        self._budget = budget
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, limited: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if limited:
                    with self._lock:
                        allowed = min(len(data), self._budget)
                        self._budget -= allowed
                    if allowed < len(data):
                        dst.sendall(data[:allowed])
                        self._closed.wait()
                        return
                dst.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def test_a_killed_sync_resumes_its_download_from_the_kept_bytes(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str
) -> None:
    size = s3_module.MULTIPART_THRESHOLD + 16 * MiB + 99  # read resumably by the real CLI
    data = random.Random(8).randbytes(size)
    put(s3, s3_server, prefix, "big.bin", data)
    proxy = StallingProxy(s3_server.port, budget=40 * MiB)
    command = [sys.executable, "-m", "storsync", "sync", str(pair.local), url(s3_server, prefix)]
    proc = subprocess.Popen(
        [*command, "--state-dir", str(pair.state), "--s3-endpoint", proxy.endpoint, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **s3_server.env()},
    )
    try:
        deadline = time.monotonic() + 120
        grown = 0
        while proc.poll() is None and time.monotonic() < deadline and grown < 32 * MiB:
            grown = sum(p.stat().st_size for p in partials(pair.local).values())
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        assert grown >= 32 * MiB, "the download did not get under way"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        proxy.close()
    assert "big.bin" not in tree(pair.local), "a partial download became a user file"
    kept = partials(pair.local)
    lines = kept[".sums"].read_text().splitlines()[1:]  # after the header: one per chunk
    resumed_at = len(lines) * CHUNK
    assert 3 * CHUNK <= resumed_at <= kept[".resume"].stat().st_size

    remote = WatchedS3(settings_for(s3_server, prefix), "big.bin")
    report = pull(pair, remote)
    assert (report.state, report.pulled, report.bytes_pulled) == ("completed", 1, size), report
    assert remote.ranges == [f"bytes={resumed_at}-"]
    assert remote.body_bytes == size - resumed_at
    assert (pair.local / "big.bin").read_bytes() == data
    assert partials(pair.local) == {}


# -- what is left in partial/ ------------------------------------------------------------


class FixedClock(SystemClock):
    def __init__(self, now_ns: int) -> None:
        self.now = now_ns

    def now_ns(self) -> int:
        return self.now

    def monotonic(self) -> float:
        return self.now / 1e9


class _Resumed:
    """A resumable source over bytes in memory, that can fail after ``fail_at`` bytes."""

    mtime_ns: int | None = None
    executable: bool | None = None

    def __init__(self, data: bytes, version: str, fail_at: int | None = None) -> None:
        self._data = data
        self._pos = 0
        self._fail_at = fail_at
        self.version = version
        self.resumable: Resumable | None = self
        self.kept = 0

    def resume(self, prefix: Iterable[bytes]) -> None:
        self.kept = sum(len(block) for block in prefix)
        self._pos = self.kept

    def read(self, n: int) -> bytes:
        if self._fail_at is not None and self._pos >= self._fail_at:
            raise StorageUnavailable("the connection was lost")
        end = self._pos + n if self._fail_at is None else min(self._pos + n, self._fail_at)
        block = self._data[self._pos : end]
        self._pos += len(block)
        return block

    def finish(self) -> str:
        return hash_bytes(self._data)


def test_partial_files_are_dropped_when_stale_and_kept_while_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_resume, "RESUME_CHUNK", 16)
    day = 86_400 * 10**9
    now = 1_800_000_000 * 10**9
    storage = LocalStorage(tmp_path, clock=FixedClock(now))
    folder = tmp_path / OWN_DIR / "partial"
    data = bytes(range(100))
    before: set[Path] = set()
    # two interrupted downloads (60 bytes each: 3 checksummed chunks of 16 bytes)
    for path, age in (("fresh.bin", day), ("old.bin", 4 * day)):
        source = _Resumed(data, "v1", fail_at=60)
        with pytest.raises(StorageUnavailable):
            storage.stage(path, source, size=100, mtime_ns=0, executable=False)
        for file in set(folder.iterdir()) - before:  # last written `age` ago
            os.utime(file, ns=(now - age, now - age))
        before = set(folder.iterdir())
    (folder / "0123abcd.part").write_bytes(b"a killed run's staged small file")
    (folder / f"{'e' * 32}-{'f' * 16}.resume").write_bytes(b"no checksum file beside it")
    storage.start_session()
    assert len(list(folder.iterdir())) == 2

    fresh, old = _Resumed(data, "v1"), _Resumed(data, "v1")
    staged = storage.stage("fresh.bin", fresh, size=100, mtime_ns=0, executable=False)
    assert fresh.kept == 48
    storage.publish(staged, expected=None, trash=None)
    staged = storage.stage("old.bin", old, size=100, mtime_ns=0, executable=False)
    assert old.kept == 0
    storage.publish(staged, expected=None, trash=None)
    assert tree(tmp_path) == {"fresh.bin": data, "old.bin": data}
    assert list(folder.iterdir()) == []
