"""S3 remotes on a real SeaweedFS: the promises of SYNC.md, end to end.

Every test talks to the real server of the ``s3_server`` fixture (no mocks), each under a
key prefix of its own. The command line runs as a child process with the AWS variables of
the server (``python -m storsync sync LOCAL s3://BUCKET/PREFIX --json``); the in-process
tests hand the runner an ``S3Storage`` through ``Pair.sync``. Objects "edited by someone
else" are written with boto3, as another tool or another working copy would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from storsync.errors import StorageUnavailable, StorsyncError
from storsync.model import ConflictPolicy, Entry, Mode, Side, StopSignal, SyncSettings
from storsync.paths import OWN_DIR
from storsync.runner.report import Report
from storsync.runner.session import SyncSession
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.base import Publication, Staged
from storsync.storage.faulty import FaultyStorage
from storsync.storage.local import LocalStorage
from storsync.storage.s3 import META_EXEC, META_HASH, META_MTIME, S3Settings, S3Storage
from tests.conftest import Pair, run_cli, trash, tree, write
from tests.s3_server import SeaweedS3
from tests.test_properties_e2e import Editor, Stat, as_renamed, held, renamed_against_edits
from tests.test_properties_e2e import scan as scan_dir
from tests.test_properties_e2e import trash as dir_trash
from tests.test_properties_engine import (
    CONTENTS,
    MTIMES,
    NAMES,
    PATHS,
    T0,
    Held,
    Version,
    check_nothing_lost,
    check_outcome,
    check_provenance,
    check_quiet,
    note,
    run,
)

TRASH = f"{OWN_DIR}/trash/"
MTIME = 1_600_000_000_123_456_789


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedS3) -> Any:
    """A boto3 client for the test's own reads and foreign writes."""
    return s3_server.boto3_client()


@pytest.fixture
def prefix() -> str:
    return f"sync/{uuid.uuid4().hex[:12]}"


def settings_for(server: SeaweedS3, prefix: str) -> S3Settings:
    return S3Settings(
        bucket=server.bucket,
        prefix=prefix,
        endpoint=server.endpoint,
        region=server.region,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        connect_timeout=5,
        read_timeout=30,
    )


def sync_s3(pair: Pair, server: SeaweedS3, prefix: str, **settings: object) -> Report:
    """One in-process session between ``pair.local`` and the prefix."""
    remote = S3Storage(settings_for(server, prefix))
    try:
        return pair.sync(remote_storage=remote, transfers=4, **settings)
    finally:
        remote.close()


def url(server: SeaweedS3, prefix: str) -> str:
    return f"s3://{server.bucket}/{prefix}"


def cli(
    server: SeaweedS3,
    local: Path,
    prefix: str,
    state: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real command in a child process, pointed at the server by the AWS variables."""
    return run_cli(
        "sync",
        str(local),
        url(server, prefix),
        "--state-dir",
        str(state),
        *args,
        env={**os.environ, **server.env(), **(env or {})},
        timeout=240,
    )


def summary(result: subprocess.CompletedProcess[str], *, code: int = 0) -> dict[str, Any]:
    """The ``--json`` summary of a run that exited with ``code`` and printed no traceback."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def objects(s3: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Every object under ``prefix/`` by relative key, as the listing gives it."""
    found: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", ()):
            found[obj["Key"][len(prefix) + 1 :]] = obj
    return found


def get(s3: Any, bucket: str, prefix: str, path: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=f"{prefix}/{path}")["Body"].read()
    return data


def remote_tree(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every user file under the prefix with its bytes (``.storsync/`` left out)."""
    return {
        path: get(s3, bucket, prefix, path)
        for path in objects(s3, bucket, prefix)
        if not path.startswith(f"{OWN_DIR}/")
    }


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def remote_md5s(s3: Any, bucket: str, prefix: str) -> dict[str, str]:
    """Every user object's ETag from one listing: the MD5 of its bytes (single-part objects,
    a SeaweedFS fact pinned in test_s3_server), so bytes compare without a GET each."""
    return {
        path: obj["ETag"].strip('"')
        for path, obj in objects(s3, bucket, prefix).items()
        if not path.startswith(f"{OWN_DIR}/")
    }


def remote_trash(s3: Any, bucket: str, prefix: str) -> dict[str, list[bytes]]:
    """Every version kept in the prefix's trash, by original path."""
    kept: dict[str, list[bytes]] = {}
    for key in objects(s3, bucket, prefix):
        if key.startswith(TRASH):
            _folder, path = key[len(TRASH) :].split("/", 1)
            kept.setdefault(path, []).append(get(s3, bucket, prefix, key))
    return kept


def put(s3: Any, bucket: str, prefix: str, path: str, data: bytes, **meta: str) -> dict[str, Any]:
    """Write an object as another tool would (no storsync metadata unless given)."""
    answer: dict[str, Any] = s3.put_object(
        Bucket=bucket, Key=f"{prefix}/{path}", Body=data, Metadata=meta
    )
    return answer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def files_with_times(root: Path) -> dict[str, tuple[bytes, bool, int]]:
    return {
        p: (data, bool((root / p).stat().st_mode & stat.S_IXUSR), (root / p).stat().st_mtime_ns)
        for p, data in tree(root).items()
    }


def conflict_copies(paths: Iterable[str], name: str) -> list[str]:
    """The remote-side conflict copies of ``name`` (``STEM.conflict-...-remote.EXT``)."""
    stem, _, ext = name.rpartition(".")
    return sorted(
        p for p in paths if p.startswith(f"{stem}.conflict-") and p.endswith(f"-remote.{ext}")
    )


# -- two-way sync through the command line ---------------------------------------------


def test_cli_two_way_sync_converges_and_a_second_run_moves_nothing(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str
) -> None:
    bucket = s3_server.bucket
    write(pair.local, "only-local.txt", "local")
    write(pair.local, "deep/er/nested.bin", os.urandom(5000))
    write(pair.local, "same.txt", "identical on both sides")
    write(pair.local, "differs.txt", "the local version")
    put(s3, bucket, prefix, "only-remote.txt", b"remote")
    put(s3, bucket, prefix, "r/d/x.bin", b"\x00\x01" * 1000)
    put(s3, bucket, prefix, "same.txt", b"identical on both sides")
    put(s3, bucket, prefix, "differs.txt", b"the remote version!")

    first = summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))
    assert first["state"] == "completed", first
    # one each way, plus the conflict: the local version pushed, the remote one's copy pulled
    assert (first["pushed"], first["pulled"]) == (3, 3), first
    assert first["conflicts"] == ["differs.txt"]
    assert (first["errors"], first["skipped"]) == ([], [])
    local = tree(pair.local)
    assert local == remote_tree(s3, bucket, prefix)
    assert local["differs.txt"] == b"the local version"
    [copy] = conflict_copies(local, "differs.txt")
    assert local[copy] == b"the remote version!"
    assert local["r/d/x.bin"] == b"\x00\x01" * 1000
    assert local["same.txt"] == b"identical on both sides"
    # storsync's own files live under the prefix's .storsync/, with a format version
    assert get(s3, bucket, prefix, f"{OWN_DIR}/format") == b"1"

    listing = {k: (o["ETag"], o["LastModified"]) for k, o in objects(s3, bucket, prefix).items()}
    local_stats = files_with_times(pair.local)
    second = summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))
    assert (second["state"], second["pushed"], second["pulled"]) == ("completed", 0, 0)
    assert (second["deleted_local"], second["deleted_remote"], second["conflicts"]) == (0, 0, [])
    assert (second["bytes_pushed"], second["bytes_pulled"]) == (0, 0)
    assert {
        k: (o["ETag"], o["LastModified"]) for k, o in objects(s3, bucket, prefix).items()
    } == listing, "a quiet run wrote to the bucket"
    assert files_with_times(pair.local) == local_stats, "a quiet run touched a local file"


def test_cli_edits_on_both_sides_conflict_and_keep_both(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str
) -> None:
    bucket = s3_server.bucket
    write(pair.local, "doc.txt", "original")
    write(pair.local, "gone-here.txt", "to be deleted locally, edited remotely")
    write(pair.local, "gone-there.txt", "to be edited locally, deleted remotely")
    assert summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))["pushed"] == 3

    write(pair.local, "doc.txt", "edited locally")
    put(s3, bucket, prefix, "doc.txt", b"edited remotely, longer")
    (pair.local / "gone-here.txt").unlink()
    put(s3, bucket, prefix, "gone-here.txt", b"remote edit beats local deletion")
    write(pair.local, "gone-there.txt", "local edit beats remote deletion")
    s3.delete_object(Bucket=bucket, Key=f"{prefix}/gone-there.txt")

    out = summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))
    assert out["state"] == "completed", out
    assert out["conflicts"] == ["doc.txt"]
    local = tree(pair.local)
    assert local == remote_tree(s3, bucket, prefix)
    assert local["doc.txt"] == b"edited locally"
    [copy] = conflict_copies(local, "doc.txt")
    assert local[copy] == b"edited remotely, longer"
    assert local["gone-here.txt"] == b"remote edit beats local deletion"
    assert local["gone-there.txt"] == b"local edit beats remote deletion"
    again = summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))
    assert (again["pushed"], again["pulled"], again["conflicts"]) == (0, 0, [])


def test_cli_deletions_and_replaced_versions_go_to_the_s3_trash(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str
) -> None:
    bucket = s3_server.bucket
    write(pair.local, "dir/deleted-locally.txt", "keep me in the remote trash")
    write(pair.local, "deleted-remotely.txt", "keep me in the local trash")
    write(pair.local, "edited.txt", "first version")
    write(pair.local, "stays.txt", "stays")
    script = write(pair.local, "bin/tool.sh", "#!/bin/sh\n")
    script.chmod(0o755)
    os.utime(script, ns=(MTIME, MTIME))
    assert summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))["pushed"] == 5

    (pair.local / "dir" / "deleted-locally.txt").unlink()
    s3.delete_object(Bucket=bucket, Key=f"{prefix}/deleted-remotely.txt")
    write(pair.local, "edited.txt", "second version")
    script.unlink()
    out = summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))
    assert (out["deleted_remote"], out["deleted_local"], out["pushed"]) == (2, 1, 1), out

    assert (
        remote_tree(s3, bucket, prefix)
        == tree(pair.local)
        == {
            "edited.txt": b"second version",
            "stays.txt": b"stays",
        }
    )
    assert remote_trash(s3, bucket, prefix) == {
        "dir/deleted-locally.txt": [b"keep me in the remote trash"],
        "edited.txt": [b"first version"],
        "bin/tool.sh": [b"#!/bin/sh\n"],
    }
    assert trash(pair.local) == {"deleted-remotely.txt": [b"keep me in the local trash"]}
    # the trash is a server-side copy: the object keeps the metadata it was uploaded with
    [key] = [k for k in objects(s3, bucket, prefix) if k.endswith("bin/tool.sh")]
    meta = s3.head_object(Bucket=bucket, Key=f"{prefix}/{key}")["Metadata"]
    assert (meta[META_MTIME], meta[META_EXEC]) == (str(MTIME), "1")

    # --no-trash deletes outright
    (pair.local / "stays.txt").unlink()
    out = summary(cli(s3_server, pair.local, prefix, pair.state, "--json", "--no-trash"))
    assert out["deleted_remote"] == 1
    assert "stays.txt" not in remote_trash(s3, bucket, prefix)
    assert "stays.txt" not in remote_tree(s3, bucket, prefix)


def test_cli_pulls_a_whole_prefix_into_a_fresh_local_copy(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, tmp_path: Path
) -> None:
    prefix = f"{prefix}/with space/é"  # a prefix as a user may name a folder
    rng = random.Random(7)
    for i in range(40):
        path = write(pair.local, f"d{i % 4}/f{i}.bin", rng.randbytes(rng.randint(0, 3000)))
        os.utime(path, ns=(MTIME + i, MTIME + i * 1_000_001))
        if i % 5 == 0:
            path.chmod(0o755)
    assert summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))["pushed"] == 40

    fresh, state = tmp_path / "fresh", tmp_path / "fresh-state"
    fresh.mkdir()
    out = summary(cli(s3_server, fresh, prefix, state, "--json"))
    assert (out["state"], out["pulled"], out["pushed"]) == ("completed", 40, 0)
    assert files_with_times(fresh) == files_with_times(pair.local)
    assert not list((fresh / OWN_DIR).glob("partial/*"))
    quiet = summary(cli(s3_server, fresh, prefix, state, "--json"))
    assert (quiet["pulled"], quiet["pushed"]) == (0, 0)


def test_a_whole_bucket_without_prefix(s3_server: SeaweedS3, s3: Any, pair: Pair) -> None:
    bucket = s3_server.create_bucket(f"storsync-root-{uuid.uuid4().hex[:8]}")
    remote = S3Storage(replace(settings_for(s3_server, ""), bucket=bucket))
    write(pair.local, "top.txt", "at the root of the bucket")
    write(pair.local, "d/gone.txt", "deleted later")
    write(pair.local, "d/keep.txt", "kept")
    try:
        assert pair.sync(remote_storage=remote).pushed == 3
        (pair.local / "d" / "gone.txt").unlink()
        assert pair.sync(remote_storage=remote).deleted_remote == 1
    finally:
        remote.close()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert [k for k in keys if not k.startswith(".storsync/")] == ["d/keep.txt", "top.txt"]
    [trashed] = [k for k in keys if k.startswith(".storsync/trash/")]
    assert trashed.endswith("/d/gone.txt")
    assert ".storsync/format" in keys


# -- metadata and large files, in-process ----------------------------------------------


def test_executable_bit_and_ns_mtime_round_trip_through_s3(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, tmp_path: Path
) -> None:
    script = write(pair.local, "bin/run.sh", "#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    doc = write(pair.local, "doc.txt", "text")
    doc.chmod(0o644)
    os.utime(script, ns=(1, MTIME + 1))
    os.utime(doc, ns=(1, MTIME + 999_999_999))
    report = sync_s3(pair, s3_server, prefix)
    assert (report.state, report.pushed) == ("completed", 2), report

    head = s3.head_object(Bucket=s3_server.bucket, Key=f"{prefix}/bin/run.sh")
    assert head["Metadata"][META_MTIME] == str(MTIME + 1)
    assert head["Metadata"][META_EXEC] == "1"
    assert len(head["Metadata"][META_HASH]) == 64
    head = s3.head_object(Bucket=s3_server.bucket, Key=f"{prefix}/doc.txt")
    assert (head["Metadata"][META_MTIME], head["Metadata"][META_EXEC]) == (
        str(MTIME + 999_999_999),
        "0",
    )

    back = Pair(tmp_path / "back", pair.remote, tmp_path / "back-state")
    back.local.mkdir()
    back.state.mkdir()
    report = sync_s3(back, s3_server, prefix)
    assert (report.state, report.pulled) == ("completed", 2), report
    want = {
        "bin/run.sh": (b"#!/bin/sh\necho hi\n", True, MTIME + 1),
        "doc.txt": (b"text", False, MTIME + 999_999_999),
    }
    assert files_with_times(pair.local) == files_with_times(back.local) == want

    # a mode change alone is pushed: the object is rewritten with the new bit
    (back.local / "doc.txt").chmod(0o755)
    report = sync_s3(back, s3_server, prefix)
    assert (report.state, report.pushed) == ("completed", 1), report
    head = s3.head_object(Bucket=s3_server.bucket, Key=f"{prefix}/doc.txt")
    assert head["Metadata"][META_EXEC] == "1"


def test_a_first_session_compares_the_bit_the_objects_carry(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str
) -> None:
    """A listing has no metadata: the bit of a new object is in its metadata (a HEAD)."""
    bucket = s3_server.bucket
    for name, exe in (("same-bit.sh", True), ("same-plain.txt", False), ("bit-differs.sh", True)):
        write(pair.local, name, f"{name} bytes").chmod(0o755 if exe else 0o644)
    exe_meta = {META_MTIME: str(MTIME), META_EXEC: "1"}
    put(s3, bucket, prefix, "same-bit.sh", b"same-bit.sh bytes", **exe_meta)
    put(s3, bucket, prefix, "same-plain.txt", b"same-plain.txt bytes", **{META_EXEC: "0"})
    put(s3, bucket, prefix, "bit-differs.sh", b"bit-differs.sh bytes", **{META_EXEC: "0"})
    report = sync_s3(pair, s3_server, prefix)
    assert (report.state, report.errors) == ("completed", []), report
    # identical bytes and bits: recorded, nothing moved; a bit that differs: both kept
    assert report.conflicts == ["bit-differs.sh"], report
    local = tree(pair.local)
    assert local == remote_tree(s3, bucket, prefix)
    assert (pair.local / "same-bit.sh").stat().st_mode & stat.S_IXUSR
    [copy] = [p for p in local if p.startswith("bit-differs.conflict-")]
    assert not (pair.local / copy).stat().st_mode & stat.S_IXUSR
    quiet = sync_s3(pair, s3_server, prefix)
    assert (quiet.state, quiet.pushed, quiet.pulled, quiet.conflicts) == ("completed", 0, 0, [])


@pytest.mark.xfail(
    strict=True,
    reason="an object rewritten with the same bytes keeps its ETag (the MD5), and a listing "
    "carries no metadata: another working copy never sees a mode change alone",
)
def test_a_mode_change_alone_reaches_another_working_copy(
    s3_server: SeaweedS3, pair: Pair, prefix: str, tmp_path: Path
) -> None:
    write(pair.local, "doc.txt", "text").chmod(0o644)
    assert sync_s3(pair, s3_server, prefix).pushed == 1
    other = Pair(tmp_path / "other", pair.remote, tmp_path / "other-state")
    other.local.mkdir()
    other.state.mkdir()
    assert sync_s3(other, s3_server, prefix).pulled == 1
    (other.local / "doc.txt").chmod(0o755)
    assert sync_s3(other, s3_server, prefix).pushed == 1
    report = sync_s3(pair, s3_server, prefix)
    assert (report.state, report.pulled) == ("completed", 1), report
    assert (pair.local / "doc.txt").stat().st_mode & stat.S_IXUSR


def test_a_file_over_64_mib_goes_multipart_and_round_trips(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, tmp_path: Path
) -> None:
    size = (64 << 20) + 12345  # over the threshold: 5 parts of 16 MiB
    data = random.Random(64).randbytes(size)
    big = write(pair.local, "large/big.bin", data)
    big.chmod(0o755)
    os.utime(big, ns=(MTIME, MTIME))
    write(pair.local, "small.txt", "small")
    report = sync_s3(pair, s3_server, prefix)
    assert (report.state, report.pushed, report.bytes_pushed) == ("completed", 2, size + 5)

    head = s3.head_object(Bucket=s3_server.bucket, Key=f"{prefix}/large/big.bin")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-5"), head["ETag"]  # a multipart object
    assert (head["Metadata"][META_MTIME], head["Metadata"][META_EXEC]) == (str(MTIME), "1")
    uploads = s3.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=f"{prefix}/")
    assert not uploads.get("Uploads"), "an upload was left unfinished"

    back = Pair(tmp_path / "back", pair.remote, tmp_path / "back-state")
    back.local.mkdir()
    back.state.mkdir()
    report = sync_s3(back, s3_server, prefix)
    assert (report.state, report.pulled, report.bytes_pulled) == ("completed", 2, size + 5)
    pulled = back.local / "large" / "big.bin"
    assert pulled.read_bytes() == data
    assert pulled.stat().st_mtime_ns == MTIME
    assert pulled.stat().st_mode & stat.S_IXUSR
    for side in (pair, back):
        quiet = sync_s3(side, s3_server, prefix)
        assert (quiet.state, quiet.pushed, quiet.pulled) == ("completed", 0, 0)


def test_a_folder_replaced_by_a_file_of_its_name_is_pushed(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS keeps a folder after its last object is deleted, and refuses a create
    (``If-None-Match: *``) of a key of that name with 412 as long as it is there."""
    import storsync.storage.s3 as s3_module
    from storsync.storage import s3_multipart

    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(s3_multipart, "PART_SIZE", 5 << 20)
    large = random.Random(5).randbytes(7 << 20)
    write(pair.local, "a/deep/x.txt", "in a folder")
    write(pair.local, "b/y.txt", "in another folder")
    write(pair.local, "c/z.txt", "in a folder that becomes a large file")
    for i in range(3):
        write(pair.local, f"stays-{i}.txt", "so that the delete guard lets deletions through")
    assert sync_s3(pair, s3_server, prefix).pushed == 6
    (pair.local / "c" / "z.txt").unlink()
    (pair.local / "c").rmdir()
    write(pair.local, "c", large)  # completed as a multipart upload
    (pair.local / "a" / "deep" / "x.txt").unlink()
    (pair.local / "a" / "deep").rmdir()
    (pair.local / "a").rmdir()
    write(pair.local, "a", "now a file")
    s3.delete_object(Bucket=s3_server.bucket, Key=f"{prefix}/b/y.txt")  # by someone else
    (pair.local / "b" / "y.txt").unlink()
    (pair.local / "b").rmdir()
    write(pair.local, "b", "a file where their folder was")
    report = sync_s3(pair, s3_server, prefix)
    assert (report.state, report.errors) == ("completed", []), report
    assert (report.pushed, report.deleted_remote) == (3, 2), report
    files = tree(pair.local)
    assert remote_tree(s3, s3_server.bucket, prefix) == files
    assert (files["a"], files["b"], files["c"]) == (
        b"now a file",
        b"a file where their folder was",
        large,
    )
    assert remote_trash(s3, s3_server.bucket, prefix) == {
        "a/deep/x.txt": [b"in a folder"],
        "c/z.txt": [b"in a folder that becomes a large file"],
    }
    quiet = sync_s3(pair, s3_server, prefix)
    assert (quiet.state, quiet.pushed, quiet.pulled) == ("completed", 0, 0), quiet


# -- the server killed in the middle of a run ------------------------------------------


def test_server_killed_mid_run_fails_clearly_and_the_rerun_resumes(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str
) -> None:
    bucket = s3_server.bucket
    rng = random.Random(11)
    files = {
        f"d{i % 30:02d}/f{i:04d}.txt": rng.randbytes(rng.randint(10, 400)) for i in range(2000)
    }
    for path, data in files.items():
        write(pair.local, path, data)
    command = [sys.executable, "-m", "storsync", "sync", str(pair.local), url(s3_server, prefix)]
    try:
        proc = subprocess.Popen(
            [*command, "--state-dir", str(pair.state), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **s3_server.env()},
        )
        try:
            deadline = time.monotonic() + 120
            # kill once some files are up (a publish batch is under way)
            while proc.poll() is None and time.monotonic() < deadline:
                if sum(1 for _ in s3_server.objects(prefix=f"{prefix}/d")) >= 50:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the run ended before the server could be killed"
            s3_server.kill()
            began = time.monotonic()
            out, err = proc.communicate(timeout=180)
            waited = time.monotonic() - began
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        assert "Traceback" not in out + err, err
        assert proc.returncode == 1, (out, err)
        failed = json.loads(out)
        assert failed["state"] == "failed", failed
        assert s3_server.endpoint in failed["message"], failed["message"]
        assert failed["pushed"] < len(files)
        assert waited < 60, f"the run took {waited:.0f} s to give up on a dead endpoint"

        # while the server is down, a run fails at once with the same clear message
        down = cli(s3_server, pair.local, prefix, pair.state)
        assert down.returncode == 1, down
        assert "Traceback" not in down.stderr + down.stdout
        assert f"storsync: cannot reach S3 endpoint {s3_server.endpoint}" in down.stderr

        s3_server.restart()
        digests = {p: md5(data) for p, data in files.items()}
        done = {p for p, etag in remote_md5s(s3, bucket, prefix).items() if digests[p] == etag}
        assert len(done) >= failed["pushed"]  # all it reported, and maybe a few more
        rerun = summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))
        assert rerun["state"] == "completed", rerun
        assert rerun["pushed"] == len(files) - len(done), "a completed upload was sent again"
        assert (rerun["pulled"], rerun["conflicts"], rerun["errors"]) == (0, [], [])
        assert remote_md5s(s3, bucket, prefix) == digests
        assert tree(pair.local) == files
        quiet = summary(cli(s3_server, pair.local, prefix, pair.state, "--json"))
        assert (quiet["pushed"], quiet["pulled"]) == (0, 0)
    finally:
        s3_server.ensure_running()


# -- several working copies on one prefix, and races -----------------------------------


def working_copy(tmp_path: Path, name: str) -> Pair:
    """A local directory with a state directory of its own (another machine, say)."""
    copy = Pair(tmp_path / name, tmp_path / f"{name}-unused", tmp_path / f"{name}-state")
    copy.local.mkdir()
    copy.state.mkdir()
    return copy


def everything_kept(*roots: Path, remote: tuple[Any, str, str]) -> list[bytes]:
    """Every version anywhere: the files and trash of each root, the bucket's and its trash."""
    kept: list[bytes] = []
    for root in roots:
        kept += tree(root).values()
        kept += [v for vs in trash(root).values() for v in vs]
    kept += remote_tree(*remote).values()
    kept += [v for vs in remote_trash(*remote).values() for v in vs]
    return kept


def test_two_working_copies_editing_the_same_files_lose_no_version(
    s3_server: SeaweedS3, s3: Any, tmp_path: Path, prefix: str
) -> None:
    a, b = working_copy(tmp_path, "a"), working_copy(tmp_path, "b")
    written: list[bytes] = []

    def edit(copy: Pair, path: str, data: str) -> None:
        write(copy.local, path, data)
        written.append(data.encode())

    def settle() -> None:
        """Each copy syncs in turn until a whole round moves nothing."""
        for _ in range(4):
            moved = 0
            for copy in (a, b):
                report = sync_s3(copy, s3_server, prefix)
                assert (report.state, report.errors) == ("completed", []), report
                moved += report.pushed + report.pulled + report.deleted_local
                moved += report.deleted_remote
            if not moved:
                return
        pytest.fail("the working copies did not settle")

    for path in ("shared.txt", "other.txt", "edit-vs-delete.txt", "delete-vs-edit.txt"):
        edit(a, path, f"{path} v0")
    settle()
    assert tree(a.local) == tree(b.local)

    for round_ in range(1, 3):
        edit(a, "shared.txt", f"shared by a, round {round_}")
        edit(b, "shared.txt", f"shared by b, round {round_} (longer)")
        edit(a, f"new-{round_}.txt", f"new by a {round_}")
        edit(b, f"new-{round_}.txt", f"new by b {round_}")
        edit(b, "other.txt", f"other by b {round_}")
        if round_ == 1:
            edit(a, "edit-vs-delete.txt", "edited by a while b deletes it")
            (b.local / "edit-vs-delete.txt").unlink()
            (a.local / "delete-vs-edit.txt").unlink()
            edit(b, "delete-vs-edit.txt", "edited by b while a deletes it")
        settle()
        final = tree(a.local)
        assert final == tree(b.local) == remote_tree(s3, s3_server.bucket, prefix)
        assert final["edit-vs-delete.txt"] == b"edited by a while b deletes it"
        assert final["delete-vs-edit.txt"] == b"edited by b while a deletes it"
        kept = everything_kept(a.local, b.local, remote=(s3, s3_server.bucket, prefix))
        lost = [v for v in written if v not in kept]
        assert not lost, f"versions lost: {lost}"
        # and the edits made in this round are still files, on every side
        for data in (f"shared by a, round {round_}", f"shared by b, round {round_} (longer)"):
            assert data.encode() in final.values()


class RacingS3(S3Storage):
    """S3 with another writer that changes a chosen object right before storsync writes it.

    ``races`` maps a path to the bytes the other writer puts there just before the
    ``publish`` or ``remove`` of that path (once), or before the ``publish_all`` of a batch
    with it; ``None`` makes it delete the object.
    """

    def __init__(self, settings: S3Settings, races: dict[str, bytes | None]) -> None:
        super().__init__(settings)
        self.races = races
        self.raced: list[str] = []

    def _race(self, path: str) -> None:
        if path in self.races:
            data = self.races.pop(path)
            key = f"{self.prefix}/{path}"
            if data is None:
                self._client.delete_object(Bucket=self.settings.bucket, Key=key)
            else:
                self._client.put_object(Bucket=self.settings.bucket, Key=key, Body=data)
            self.raced.append(path)

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        self._race(staged.path)
        return super().publish(staged, expected=expected, trash=trash)

    def publish_all(self, items: Sequence[Publication], width: int) -> list[Entry | StorsyncError]:
        for item in items:
            self._race(item.staged.path)
        return super().publish_all(items, width)

    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        self._race(path)
        super().remove(path, expected, trash=trash)


def test_a_remote_object_changed_between_scan_and_write_is_never_overwritten(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storsync.storage.s3 as s3_module
    from storsync.storage import s3_multipart

    # large files go multipart from 6 MiB on (two parts: 5 MiB, the smallest S3 allows)
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 6 << 20)
    monkeypatch.setattr(s3_multipart, "PART_SIZE", 5 << 20)
    bucket = s3_server.bucket
    rng = random.Random(3)
    big_v0, big_mine = rng.randbytes(7 << 20), rng.randbytes(7 << 20)
    for path in ("edited.txt", "deleted.txt", "trashless.txt", "vanished.txt"):
        write(pair.local, path, f"{path} as synced")
    write(pair.local, "big.bin", big_v0)
    assert sync_s3(pair, s3_server, prefix).pushed == 5
    head = s3.head_object(Bucket=bucket, Key=f"{prefix}/big.bin")
    assert head["ETag"].strip('"').endswith("-2")  # multipart: its completion is raced too

    write(pair.local, "edited.txt", "mine")
    write(pair.local, "created.txt", "mine, new")
    write(pair.local, "big.bin", big_mine)
    write(pair.local, "vanished.txt", "mine, while theirs was deleted")
    (pair.local / "deleted.txt").unlink()
    races: dict[str, bytes | None] = {
        "edited.txt": b"theirs",
        "created.txt": b"theirs, new",
        "big.bin": b"theirs, small now",
        "deleted.txt": b"theirs, edited while I deleted it",
        "vanished.txt": None,
    }
    theirs = {p: d for p, d in races.items() if d is not None}
    racing = RacingS3(settings_for(s3_server, prefix), dict(races))
    try:
        report = pair.sync(remote_storage=racing, transfers=4)
    finally:
        racing.close()
    assert sorted(racing.raced) == sorted(races)
    assert report.state == "partial", report
    assert sorted(e["path"] for e in report.errors) == sorted(races), report.errors
    assert report.pushed == 0 and report.deleted_remote == 0, report
    remote = remote_tree(s3, bucket, prefix)
    for path, data in theirs.items():
        assert remote[path] == data, f"{path}: the other writer's version was overwritten"
    assert "vanished.txt" not in remote
    assert s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/").get("Uploads") is None
    local = tree(pair.local)
    assert (local["edited.txt"], local["created.txt"]) == (b"mine", b"mine, new")
    assert local["big.bin"] == big_mine

    # the next run sees both edits: conflicts keep both; an edit beats a deletion
    report = sync_s3(pair, s3_server, prefix)
    assert (report.state, report.errors) == ("completed", []), report
    assert sorted(report.conflicts) == ["big.bin", "created.txt", "edited.txt"]
    local = tree(pair.local)
    assert local == remote_tree(s3, bucket, prefix)
    assert local["edited.txt"] == b"mine"
    assert local["created.txt"] == b"mine, new"
    assert local["big.bin"] == big_mine
    assert local["deleted.txt"] == b"theirs, edited while I deleted it"
    assert local["vanished.txt"] == b"mine, while theirs was deleted"
    for path in ("edited.txt", "created.txt", "big.bin"):
        [copy] = conflict_copies(local, path)
        assert local[copy] == theirs[path]


# -- hostile keys ----------------------------------------------------------------------

# Keys another tool may leave under the prefix, with the reason storsync must refuse them
# (None: a name SeaweedFS maps to a safe one, or a folder marker, which is no file).
HOSTILE: dict[str, str | None] = {
    "../x": "'..'",
    "a/../../b": "'..'",
    "./dot": "'.'",
    "/abs": None,  # SeaweedFS stores it as "abs"
    "sub//double": None,  # and this as "sub/double"
    "ctl\x01name": "control character",
    "tab\tname": "control character",
    "nl\nname": "control character",
    "del\x7fname": "control character",
    "x" * 256: "longer than 255",
    "deep/" + "y" * 256: "longer than 255",
    "cafe\u0301.txt": "NFC",  # NFD: its NFC twin may exist on the local side
    "dir/": None,  # a folder marker
    "dir/in.txt": None,
    "a": None,  # a file and a folder of one name: a conflict, both kept
    "a/b": None,
    "nested/.storsync/evil": None,  # storsync's own folder at any depth: never synced
}


def test_a_folder_by_folder_walk_refuses_hostile_keys_as_a_whole_listing_does(
    s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    """The walk a session falls back to on a server that lists folder by folder
    (storage.s3_folders) gives and refuses exactly what a whole listing does: every hostile
    key the server took is skipped for the same reason, none reaches the session."""
    from botocore.exceptions import ClientError

    for key in [*HOSTILE, "a.txt", "a-b/c", "ok/fine.txt"]:
        with contextlib.suppress(ClientError):  # a key the server would not store
            put(s3, s3_server.bucket, prefix, key, key.encode())
    remote = S3Storage(settings_for(s3_server, prefix))
    try:
        scan_skips: list[tuple[str, str]] = []
        scanned = remote.scan(lambda p, r: scan_skips.append((p, r)), StopSignal())
        walk_skips: list[tuple[str, str]] = []
        walked = list(remote.sorted_walk(lambda p, r: walk_skips.append((p, r)), StopSignal()))
    finally:
        remote.close()
    assert [key for key, _ in walked] == sorted(scanned)
    assert dict(walked) == scanned
    assert sorted(walk_skips) == sorted(scan_skips)
    assert {"tab\tname", "cafe\u0301.txt"} <= {path for path, _ in walk_skips}
    assert not any(".." in key.split("/") or key.startswith("/") for key in scanned)


def test_hostile_remote_keys_are_refused_and_nothing_lands_outside_the_root(
    s3_server: SeaweedS3, s3: Any, tmp_path: Path, prefix: str
) -> None:
    from botocore.exceptions import ClientError

    bucket = s3_server.bucket
    sandbox = tmp_path / "sandbox"  # the local root, two levels below anything it may see
    local, state = sandbox / "in" / "root", tmp_path / "state"
    local.mkdir(parents=True)
    write(local, "mine.txt", "a local file")
    write(local, "café.txt", "the NFC twin, local")
    accepted, refused = [], []
    for key in HOSTILE:
        try:
            put(s3, bucket, prefix, key, f"hostile {key!r}".encode())
            accepted.append(key)
        except ClientError:
            refused.append(key)  # the server would not store it: nobody can plant it
    listed = set(objects(s3, bucket, prefix))
    put(s3, bucket, prefix, "ok/fine.txt", b"a plain file")

    out = summary(cli(s3_server, local, prefix, state, "--json"))
    assert out["state"] == "completed", out
    skipped = {item["path"]: item["reason"] for item in out["skipped"]}
    assert all(item["side"] == "remote" for item in out["skipped"])
    for key, reason in HOSTILE.items():
        if reason is not None and key in listed:
            assert reason in skipped[key], (key, skipped.get(key))
    assert set(skipped) <= listed, skipped
    assert "x" * 256 in refused or "x" * 256 in skipped  # a key the server may not even take

    assert out["conflicts"] == ["a"]
    files = tree(local)
    assert files["ok/fine.txt"] == b"a plain file"
    assert files["dir/in.txt"] == b"hostile 'dir/in.txt'"
    assert files["a/b"] == b"hostile 'a/b'"
    [copy] = [p for p in files if p.startswith("a.conflict-")]
    assert files[copy] == b"hostile 'a'"
    assert files["café.txt"] == b"the NFC twin, local"  # not replaced by its NFD twin
    if "/abs" in accepted and "abs" in listed:
        assert files["abs"] == b"hostile '/abs'"
    assert not (local / "nested" / ".storsync").exists()
    # nothing outside the root: every file lies under it, and the sandbox holds only it
    for dirpath, _dirs, names in os.walk(sandbox):
        for name in names:
            full = Path(dirpath, name).resolve()
            assert full.is_relative_to(local.resolve()), full
    assert [p.name for p in sandbox.rglob("*") if not p.is_relative_to(local)] == ["in"]
    assert not Path("/abs").exists()
    # the rest synced: the local files went up; the refused keys were left alone
    remote = remote_tree(s3, bucket, prefix)
    assert remote["mine.txt"] == b"a local file"
    for key in skipped:
        assert key in remote, f"the refused key {key!r} was removed from the bucket"
    again = summary(cli(s3_server, local, prefix, state, "--json"))
    assert (again["state"], again["pushed"], again["pulled"]) == ("completed", 0, 0)
    assert {item["path"] for item in again["skipped"]} == set(skipped)


# -- credentials -----------------------------------------------------------------------

ACCESS_KEY = "AKIASTORSYNCLEAKTEST7"
SECRET = "sEcReT/storsync+never-print-me-5f3c9a"


def test_credentials_never_appear_in_any_output(
    s3_server: SeaweedS3, s3: Any, pair: Pair, prefix: str, tmp_path: Path
) -> None:
    creds = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    dead = f"http://127.0.0.1:{free_port()}"
    write(pair.local, "a.txt", "a")
    put(s3, s3_server.bucket, prefix, "b.txt", b"b")
    target = url(s3_server, prefix)
    runs = {
        "json": (cli(s3_server, pair.local, prefix, pair.state, "--json", env=creds), 0),
        "human": (cli(s3_server, pair.local, prefix, pair.state, env=creds), 0),
        "dry-run": (cli(s3_server, pair.local, prefix, pair.state, "--dry-run", env=creds), 0),
        "down, json": (
            cli(
                s3_server,
                pair.local,
                prefix,
                pair.state,
                "--json",
                "--s3-endpoint",
                dead,
                env=creds,
            ),
            1,
        ),
        "down, human": (
            cli(s3_server, pair.local, prefix, pair.state, "--s3-endpoint", dead, env=creds),
            1,
        ),
        "no bucket": (
            run_cli(
                "sync",
                str(pair.local),
                f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/p",
                "--state-dir",
                str(tmp_path / "s2"),
                "--json",
                env={**os.environ, **s3_server.env(), **creds},
            ),
            1,
        ),
        "in the URL": (
            run_cli(
                "sync",
                str(pair.local),
                f"s3://{ACCESS_KEY}:{SECRET}@{s3_server.bucket}/p",
                "--state-dir",
                str(tmp_path / "s3"),
                env={**os.environ, **s3_server.env()},
            ),
            2,
        ),
        "in the URL, no '/'": (
            run_cli(
                "sync",
                str(pair.local),
                f"s3://{ACCESS_KEY}:{SECRET.replace('/', '')}@{s3_server.bucket}/p",
                "--state-dir",
                str(tmp_path / "s3"),
                env={**os.environ, **s3_server.env()},
            ),
            2,
        ),
        "in the endpoint": (
            run_cli(
                "sync",
                str(pair.local),
                target,
                "--state-dir",
                str(tmp_path / "s4"),
                "--s3-endpoint",
                f"http://{ACCESS_KEY}:{SECRET}@127.0.0.1:{free_port()}",
                env={**os.environ, **s3_server.env()},
            ),
            2,
        ),
    }
    for name, (result, code) in runs.items():
        text = result.stdout + result.stderr
        assert result.returncode == code, (name, result.stdout, result.stderr)
        assert "Traceback" not in text, (name, text)
        for part in (ACCESS_KEY, SECRET, *SECRET.split("/"), SECRET.replace("/", "%2F")):
            assert part not in text, f"{name}: the credentials were printed"
    assert json.loads(runs["json"][0].stdout)["state"] == "completed"
    for name in ("down, json", "down, human"):
        assert f"cannot reach S3 endpoint {dead}" in runs[name][0].stdout + runs[name][0].stderr
    assert "does not exist" in json.loads(runs["no bucket"][0].stdout)["message"]
    assert "not the URL" in runs["in the URL"][0].stderr
    assert "not the endpoint URL" in runs["in the endpoint"][0].stderr
    # nor in anything storsync keeps: the state, the local and the remote .storsync/
    for root in (pair.state, pair.local / OWN_DIR):
        for full in root.rglob("*"):
            if full.is_file():
                assert SECRET.encode() not in full.read_bytes(), full
                assert ACCESS_KEY.encode() not in full.read_bytes(), full
    for key in objects(s3, s3_server.bucket, prefix):
        assert SECRET.encode() not in get(s3, s3_server.bucket, prefix, key)

    # in-process: the settings' repr and the storage's errors leave them out too
    settings = S3Settings(
        bucket=s3_server.bucket,
        prefix=prefix,
        endpoint=dead,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET,
        connect_timeout=1,
    )
    assert SECRET not in repr(settings) and ACCESS_KEY not in repr(settings)
    storage = S3Storage(settings)
    try:
        with pytest.raises(StorageUnavailable) as failure:
            storage.scan(lambda _p, _r: None, StopSignal())
    finally:
        storage.close()
    assert dead in failure.value.message
    assert SECRET not in str(failure.value) and ACCESS_KEY not in str(failure.value)


# -- the engine's properties, against S3 -----------------------------------------------


class RemoteEditor:
    """Someone at work on the prefix with boto3: another storsync client, say (objects
    carry their mtime and bit as metadata). An object store may hold ``a`` and ``a/b``.

    A rewrite with the same bytes keeps the old bit: with the ETag unchanged, storsync
    cannot see a change of metadata alone (see the xfail test above). That holds too for
    an object deleted and made again in one round with the bytes the last session saw."""

    def __init__(self, s3: Any, bucket: str, prefix: str, data: st.DataObject) -> None:
        self.s3, self.bucket, self.prefix, self.data = s3, bucket, prefix, data
        self.synced: dict[str, Held] = {}  # as the last session left the prefix

    def begin_round(self) -> dict[str, Held]:
        """The prefix as the last session left it, the start of this round's edits."""
        self.synced = self.held()
        return self.synced

    def held(self) -> dict[str, Held]:
        """Every user object: bytes, bit and mtime (from its metadata)."""
        found: dict[str, Held] = {}
        for path in objects(self.s3, self.bucket, self.prefix):
            if not path.startswith(f"{OWN_DIR}/"):
                found[path] = self.version(path)
        return found

    def version(self, path: str) -> Held:
        got = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{path}")
        meta = got["Metadata"]
        return got["Body"].read(), meta.get(META_EXEC) == "1", int(meta[META_MTIME])

    def trash(self, folder: str) -> dict[str, Version]:
        """One session's trash folder by original path; all the trash by key with ''."""
        below = f"{TRASH}{folder}/" if folder else TRASH
        return {
            key[len(below) :]: self.version(key)[:2]
            for key in objects(self.s3, self.bucket, self.prefix)
            if key.startswith(below)
        }

    def put(self, path: str, content: bytes, exe: bool, existing: dict[str, Held]) -> None:
        for known in (existing, self.synced):
            if path in known and known[path][0] == content:
                exe = known[path][1]
                break
        meta = {META_MTIME: str(self.data.draw(st.sampled_from(MTIMES))), META_EXEC: str(+exe)}
        put(self.s3, self.bucket, self.prefix, path, content, **meta)

    def edit(self, existing: dict[str, Held]) -> None:
        draw = self.data.draw
        op = draw(st.sampled_from(("create", "modify", "delete", "to_dir")))
        if op == "create" or not existing:
            path = draw(st.sampled_from(PATHS))
            self.put(path, draw(st.sampled_from(CONTENTS)), draw(st.booleans()), existing)
            return
        path = draw(st.sampled_from(sorted(existing)))
        if op == "modify":
            self.put(path, draw(st.sampled_from(CONTENTS)), existing[path][1], existing)
        elif op == "delete":
            self.s3.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{path}")
        else:  # a "folder" of the file's name appears, the file may stay
            if draw(st.booleans()):
                self.s3.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{path}")
            child = f"{path}/{draw(st.sampled_from(NAMES))}"
            self.put(child, draw(st.sampled_from(CONTENTS)), False, existing)


@pytest.fixture(scope="module")
def property_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteBaseStore]:
    db = SqliteBaseStore(tmp_path_factory.mktemp("s3-properties") / "state.db")
    yield db
    db.close()


def s3_session(
    server: SeaweedS3,
    prefix: str,
    local: Path,
    store: SqliteBaseStore,
    repo: str,
    clock_ns: int,
    settings_: SyncSettings,
) -> tuple[SyncSession, tuple[FaultyStorage, FaultyStorage]]:
    """One session on fresh storages, watched (no faults: the calls are counted)."""
    sides = (
        FaultyStorage(LocalStorage(local)),
        FaultyStorage(S3Storage(settings_for(server, prefix))),
    )
    try:
        return run(*sides, store, repo, clock_ns, settings_), sides
    finally:
        sides[1].close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # no slow "explain"
)
@given(data=st.data())
def test_random_histories_on_a_directory_and_an_s3_prefix(
    data: st.DataObject,
    s3_server: SeaweedS3,
    s3: Any,
    property_store: SqliteBaseStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Random edits on both sides, then a session: the table's outcome on both sides,
    nothing lost (a side, a conflict copy, or that side's trash), every file a version
    that existed with its bytes, bit and ns mtime, and a second session that moves nothing."""
    prefix = f"prop/{uuid.uuid4().hex[:12]}"
    local = tmp_path_factory.mktemp("local")
    repo = property_store.repository_id(local.as_uri(), url(s3_server, prefix), now_ns=0)
    policy = data.draw(
        st.sampled_from([ConflictPolicy.KEEP_BOTH, ConflictPolicy.LOCAL, ConflictPolicy.REMOTE])
    )
    checksum = data.draw(st.booleans())
    local_editor, remote_editor = (
        Editor(local, data),
        RemoteEditor(s3, s3_server.bucket, prefix, data),
    )
    base: dict[str, Version] = {}
    last: dict[str, Stat] = {}  # the local files after the last session
    trash_before: dict[str, Version] = {}
    for round_ in range(data.draw(st.integers(1, 3))):
        for _ in range(data.draw(st.integers(0, 4 if round_ == 0 else 3))):
            local_editor.edit()
        remote_now = remote_editor.begin_round()
        for _ in range(data.draw(st.integers(0, 4 if round_ == 0 else 3))):
            remote_editor.edit(remote_now)
            remote_now = remote_editor.held()
        options = SyncSettings(policy=policy, checksum=checksum, transfers=2)
        clock = T0 + (round_ + 1) * 10**9
        files = scan_dir(local)
        start = {Side.LOCAL: held(files), Side.REMOTE: remote_now}
        renamed = {Side.LOCAL: renamed_against_edits(base, last, files, remote_now)}
        base, start = as_renamed(base, start, renamed)
        session, _ = s3_session(s3_server, prefix, local, property_store, repo, clock, options)
        if session.report.state == "failed":
            assert "delete" in (session.report.message or ""), session.report.message
            assert held(scan_dir(local)) == start[Side.LOCAL], "a stopped session changed a file"
            assert remote_editor.held() == start[Side.REMOTE], "a stopped session wrote"
            event("the delete guard stopped a session")
            forced = replace(options, force=True)
            session, _ = s3_session(s3_server, prefix, local, property_store, repo, clock, forced)
        report = session.report
        assert (report.state, report.errors, report.skipped) == ("completed", [], []), report
        note(report, Mode.TWO_WAY, start)
        end = {Side.LOCAL: held(scan_dir(local)), Side.REMOTE: remote_editor.held()}
        stamp = session.stamp
        base = check_outcome(base, start, end, stamp=stamp, mode=Mode.TWO_WAY, policy=policy)
        folder = session.trash or "-"
        trashed = {Side.LOCAL: dir_trash(local, folder), Side.REMOTE: remote_editor.trash(folder)}
        check_nothing_lost(stamp, start, end, trashed)
        check_provenance(stamp, start, end)
        last = scan_dir(local)

        kept = remote_editor.trash("")
        assert trash_before.items() <= kept.items(), "an earlier session's trash was dropped"
        trash_before = kept

        again, watched = s3_session(
            s3_server, prefix, local, property_store, repo, clock + 10**9 // 2, options
        )
        check_quiet(again.report, watched, checksum=checksum)
        assert {Side.LOCAL: held(scan_dir(local)), Side.REMOTE: remote_editor.held()} == end
