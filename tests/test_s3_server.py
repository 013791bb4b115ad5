"""The ``s3_server`` fixture works, and what this SeaweedFS does (docs/decisions.md,
"SeaweedFS behaviour").

These tests pin the server's behaviour the S3 adapter relies on: if a SeaweedFS upgrade
changes one of them, the failing test names the fact that no longer holds.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.s3_server import SeaweedS3, free_port_block

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedS3) -> Any:
    return s3_server.boto3_client()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}/"


def status(call: Callable[..., Any], /, **kw: Any) -> tuple[int, str | None]:
    """HTTP status and S3 error code of one call (``None`` when it succeeded)."""
    try:
        r = call(**kw)
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"].get("Code")
    return r["ResponseMetadata"]["HTTPStatusCode"], None


def quoted_md5(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


# ------------------------------------------------------------------ the fixture


def test_fixture_facts(s3_server: SeaweedS3) -> None:
    assert s3_server.running
    assert s3_server.endpoint.startswith("http://127.0.0.1:")
    assert s3_server.bucket == "storsync-test"
    assert s3_server.env()["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint
    cpu = s3_server.cpu_seconds()
    assert cpu is not None
    assert cpu > 0
    with pytest.raises(ValueError, match="bad bucket name"):
        s3_server.create_bucket("ab")
    with pytest.raises(ValueError, match="bad bucket name"):
        s3_server.create_bucket("Upper-Case")


def test_free_port_block_leaves_grpc_ports_free() -> None:
    ports = free_port_block(4)
    assert len(set(ports)) == 4
    assert all(20000 <= p < 50000 for p in ports)
    assert not {p + 10000 for p in ports} & set(ports)


def test_put_get_list_delete(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b = s3_server.bucket
    bodies = {f"{prefix}d{i % 3}/f{i}.bin": bytes([i]) * (i * 100) for i in range(7)}
    for key, body in bodies.items():
        s3.put_object(Bucket=b, Key=key, Body=body)
    for key, body in bodies.items():
        assert s3.get_object(Bucket=b, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=b, Prefix=prefix)["Contents"]
    assert {o["Key"]: o["Size"] for o in listed} == {k: len(v) for k, v in bodies.items()}
    assert sorted(s3_server.objects(prefix=prefix)) == sorted(bodies)
    # a delimiter listing shows the implied directories
    top = s3.list_objects_v2(Bucket=b, Prefix=prefix, Delimiter="/")
    assert {p["Prefix"] for p in top["CommonPrefixes"]} == {f"{prefix}d{i}/" for i in range(3)}
    for key in bodies:
        assert status(s3.delete_object, Bucket=b, Key=key) == (204, None)
    assert s3.list_objects_v2(Bucket=b, Prefix=prefix)["KeyCount"] == 0
    assert status(s3.head_object, Bucket=b, Key=next(iter(bodies)))[0] == 404


def test_a_backslash_in_a_key_is_stored_as_a_slash(
    s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    """Why the S3 adapter refuses to write a name with a backslash (docs/decisions.md)."""
    s3.put_object(Bucket=s3_server.bucket, Key=f"{prefix}back\\slash.txt", Body=b"x")
    listed = s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)["Contents"]
    assert [o["Key"] for o in listed] == [f"{prefix}back/slash.txt"]


def test_create_bucket_and_paginated_listing(s3_server: SeaweedS3, s3: Any) -> None:
    name = s3_server.create_bucket(f"storsync-{uuid.uuid4().hex[:8]}")
    assert s3_server.create_bucket(name) == name  # idempotent
    for i in range(25):
        s3.put_object(Bucket=name, Key=f"k{i:02}", Body=b"x")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=name, PaginationConfig={"PageSize": 10}
    )
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert keys == [f"k{i:02}" for i in range(25)]  # in key order, across pages


# ------------------------------------------------------------------ conditional writes


def test_put_if_none_match_star_is_honoured(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}a"
    assert status(s3.put_object, Bucket=b, Key=key, Body=b"one", IfNoneMatch="*") == (200, None)
    assert status(s3.put_object, Bucket=b, Key=key, Body=b"two", IfNoneMatch="*") == (
        412,
        "PreconditionFailed",
    )
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"one"


def test_put_if_match_is_honoured(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}a"
    etag = s3.put_object(Bucket=b, Key=key, Body=b"one")["ETag"]
    assert status(s3.put_object, Bucket=b, Key=key, Body=b"x", IfMatch='"0123abcd"') == (
        412,
        "PreconditionFailed",
    )
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"one"
    assert status(s3.put_object, Bucket=b, Key=key, Body=b"two", IfMatch=etag) == (200, None)
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"two"
    # the ETag may also be given unquoted; `If-Match: *` means "exists"
    assert (
        status(
            s3.put_object, Bucket=b, Key=key, Body=b"3", IfMatch=hashlib.md5(b"two").hexdigest()
        )[0]
        == 200
    )
    assert status(s3.put_object, Bucket=b, Key=key, Body=b"4", IfMatch="*")[0] == 200
    # on a missing key SeaweedFS answers 412 (AWS answers 404): treat both as "lost the race"
    missing = f"{prefix}missing"
    assert status(s3.put_object, Bucket=b, Key=missing, Body=b"x", IfMatch=etag) == (
        412,
        "PreconditionFailed",
    )
    assert status(s3.put_object, Bucket=b, Key=missing, Body=b"x", IfMatch="*")[0] == 412
    assert status(s3.head_object, Bucket=b, Key=missing)[0] == 404


def test_copy_object_conditions_are_honoured(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b = s3_server.bucket
    src, dst, new = f"{prefix}src", f"{prefix}dst", f"{prefix}new"
    s3.put_object(Bucket=b, Key=src, Body=b"source", Metadata={"mtime": "1", "b3": "ab"})
    dst_etag = s3.put_object(Bucket=b, Key=dst, Body=b"dest")["ETag"]
    source = {"Bucket": b, "Key": src}
    # on the destination
    assert status(s3.copy_object, Bucket=b, Key=dst, CopySource=source, IfNoneMatch="*") == (
        412,
        "PreconditionFailed",
    )
    assert status(s3.copy_object, Bucket=b, Key=dst, CopySource=source, IfMatch='"0123"') == (
        412,
        "PreconditionFailed",
    )
    assert s3.get_object(Bucket=b, Key=dst)["Body"].read() == b"dest"
    assert status(s3.copy_object, Bucket=b, Key=dst, CopySource=source, IfMatch=dst_etag)[0] == 200
    assert s3.get_object(Bucket=b, Key=dst)["Body"].read() == b"source"
    assert status(s3.copy_object, Bucket=b, Key=new, CopySource=source, IfNoneMatch="*")[0] == 200
    # on the source
    assert status(
        s3.copy_object, Bucket=b, Key=f"{prefix}x", CopySource=source, CopySourceIfMatch='"0123"'
    ) == (412, "PreconditionFailed")
    # a copy keeps the ETag (the MD5) and, by default, the metadata; REPLACE sets new metadata
    head = s3.head_object(Bucket=b, Key=new)
    assert head["ETag"] == quoted_md5(b"source")
    assert head["Metadata"] == {"mtime": "1", "b3": "ab"}
    s3.copy_object(
        Bucket=b,
        Key=f"{prefix}rep",
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"mtime": "2"},
    )
    assert s3.head_object(Bucket=b, Key=f"{prefix}rep")["Metadata"] == {"mtime": "2"}


def test_delete_if_match_is_honoured(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}a"
    etag = s3.put_object(Bucket=b, Key=key, Body=b"one")["ETag"]
    assert status(s3.delete_object, Bucket=b, Key=key, IfMatch='"0123"') == (
        412,
        "PreconditionFailed",
    )
    assert status(s3.head_object, Bucket=b, Key=key)[0] == 200
    assert status(s3.delete_object, Bucket=b, Key=key, IfMatch=etag) == (204, None)
    assert status(s3.head_object, Bucket=b, Key=key)[0] == 404
    # a missing key: 412 with If-Match, 204 without
    assert status(s3.delete_object, Bucket=b, Key=key, IfMatch=etag) == (412, "PreconditionFailed")
    assert status(s3.delete_object, Bucket=b, Key=key) == (204, None)


def test_an_emptied_folder_stays_and_refuses_a_create_of_its_name(
    s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    """SeaweedFS is a file system below: deleting a folder's last object leaves the folder,
    and ``If-None-Match: *`` on the folder's name answers 412 while it is there (a plain
    PUT works, and so the same name can hold an object and a folder). Deleting the key
    ``folder/`` removes an empty folder and keeps one that holds anything; a folder that
    holds only an empty folder is not empty. HEAD of the folder's name is 404."""
    b = s3_server.bucket
    s3.put_object(Bucket=b, Key=f"{prefix}a/deep/x", Body=b"x")
    s3.delete_object(Bucket=b, Key=f"{prefix}a/deep/x")
    listed = s3.list_objects_v2(Bucket=b, Prefix=prefix, Delimiter="/")
    assert "Contents" not in listed
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == [f"{prefix}a/"]
    assert status(s3.head_object, Bucket=b, Key=f"{prefix}a")[0] == 404
    create = {"Bucket": b, "Key": f"{prefix}a", "Body": b"file", "IfNoneMatch": "*"}
    assert status(s3.put_object, **create) == (412, "PreconditionFailed")
    assert status(s3.delete_object, Bucket=b, Key=f"{prefix}a/") == (204, None)
    assert status(s3.put_object, **create) == (412, "PreconditionFailed")  # a/deep/ is in it
    assert status(s3.delete_object, Bucket=b, Key=f"{prefix}a/deep/") == (204, None)
    assert status(s3.delete_object, Bucket=b, Key=f"{prefix}a/") == (204, None)
    assert status(s3.put_object, **create) == (200, None)
    # a folder that holds an object is kept, whatever its name is deleted with
    s3.put_object(Bucket=b, Key=f"{prefix}f/kept", Body=b"kept")
    assert status(s3.delete_object, Bucket=b, Key=f"{prefix}f/") == (204, None)
    assert status(s3.delete_object, Bucket=b, Key=f"{prefix}f") == (204, None)
    assert s3.get_object(Bucket=b, Key=f"{prefix}f/kept")["Body"].read() == b"kept"


def test_conditional_writes_have_one_winner(s3_server: SeaweedS3, prefix: str) -> None:
    """Concurrent conditional writers to one key: exactly one succeeds (8 writers)."""
    b, writers = s3_server.bucket, 8
    clients = [s3_server.boto3_client() for _ in range(writers)]

    def race(op: Callable[[Any, int], tuple[int, str | None]]) -> list[int]:
        results = [0] * writers
        barrier = threading.Barrier(writers)

        def run(i: int) -> None:
            barrier.wait()
            results[i] = op(clients[i], i)[0]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    for trial in range(5):
        key = f"{prefix}create{trial}"
        got = race(
            lambda c, i, k=key: status(
                c.put_object, Bucket=b, Key=k, Body=b"%d" % i, IfNoneMatch="*"
            )
        )
        assert sorted(got) == [200] + [412] * (writers - 1)
    key = f"{prefix}update"
    clients[0].put_object(Bucket=b, Key=key, Body=b"base")
    for trial in range(5):
        etag = clients[0].head_object(Bucket=b, Key=key)["ETag"]
        # every body is new: a writer rewriting the current bytes keeps the ETag (it is the MD5)
        got = race(
            lambda c, i, t=trial, e=etag: status(
                c.put_object, Bucket=b, Key=key, Body=b"%d-%d" % (t, i), IfMatch=e
            )
        )
        assert sorted(got) == [200] + [412] * (writers - 1)


# ------------------------------------------------------------------ listing, metadata, integrity


def test_list_etag_is_md5_for_single_part(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b = s3_server.bucket
    bodies = {f"{prefix}empty": b"", f"{prefix}small": b"abc", f"{prefix}mid": bytes(300_000)}
    for key, body in bodies.items():
        put = s3.put_object(Bucket=b, Key=key, Body=body)
        assert put["ETag"] == quoted_md5(body)
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=b, Prefix=prefix)["Contents"]}
    for key, body in bodies.items():
        assert listed[key]["ETag"] == quoted_md5(body)
        assert listed[key]["Size"] == len(body)
        # LastModified has whole seconds only
        assert listed[key]["LastModified"].microsecond == 0


def test_user_metadata_round_trips(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}m"
    meta = {"Mtime-NS": "1700000000123456789", "blake3": "ab" * 32, "sp": "a b/c=d%20"}
    s3.put_object(Bucket=b, Key=key, Body=b"m", Metadata=meta)
    expected = {k.lower(): v for k, v in meta.items()}  # names come back lower-case
    assert s3.head_object(Bucket=b, Key=key)["Metadata"] == expected
    assert s3.get_object(Bucket=b, Key=key)["Metadata"] == expected
    # overwriting without metadata drops it
    s3.put_object(Bucket=b, Key=key, Body=b"m2")
    assert s3.head_object(Bucket=b, Key=key)["Metadata"] == {}


def test_integrity_headers_are_checked(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b = s3_server.bucket
    wrong_md5 = base64.b64encode(hashlib.md5(b"abd").digest()).decode()
    assert status(s3.put_object, Bucket=b, Key=f"{prefix}a", Body=b"abc", ContentMD5=wrong_md5) == (
        400,
        "BadDigest",
    )
    assert status(s3.head_object, Bucket=b, Key=f"{prefix}a")[0] == 404
    wrong_sha = base64.b64encode(hashlib.sha256(b"abd").digest()).decode()
    assert status(
        s3.put_object, Bucket=b, Key=f"{prefix}b", Body=b"abc", ChecksumSHA256=wrong_sha
    ) == (400, "BadDigest")
    assert status(s3.head_object, Bucket=b, Key=f"{prefix}b")[0] == 404
    sha = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    s3.put_object(Bucket=b, Key=f"{prefix}c", Body=b"abc", ChecksumSHA256=sha)
    head = s3.head_object(Bucket=b, Key=f"{prefix}c", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha


def test_ranged_get(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}r"
    s3.put_object(Bucket=b, Key=key, Body=bytes(range(256)))
    got = s3.get_object(Bucket=b, Key=key, Range="bytes=10-19")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == "bytes 10-19/256"
    assert got["Body"].read() == bytes(range(10, 20))


def test_ranged_get_if_match(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    """What a resumed download relies on: ``If-Match`` holds on a ranged GET (single-part
    and multipart ETags), HEAD honours it too, and a range starting at the size is 416."""
    b, key = s3_server.bucket, f"{prefix}r"
    body = bytes(range(256)) * 100
    etag = s3.put_object(Bucket=b, Key=key, Body=body)["ETag"]
    for sent in (etag, etag.strip('"')):
        got = s3.get_object(Bucket=b, Key=key, Range="bytes=1000-", IfMatch=sent)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes 1000-{len(body) - 1}/{len(body)}"
        assert got["Body"].read() == body[1000:]
    stale = quoted_md5(b"another version")
    assert status(s3.get_object, Bucket=b, Key=key, Range="bytes=1000-", IfMatch=stale) == (
        412,
        "PreconditionFailed",
    )
    assert status(s3.head_object, Bucket=b, Key=key, IfMatch=stale)[0] == 412
    assert status(s3.get_object, Bucket=b, Key=key, Range=f"bytes={len(body)}-") == (
        416,
        "InvalidRange",
    )
    big = f"{prefix}big"
    parts = [b"1" * 5 * MiB, b"2" * 1000]
    upload, done = _upload_parts(s3, b, big, parts)
    s3.complete_multipart_upload(
        Bucket=b, Key=big, UploadId=upload, MultipartUpload={"Parts": done}
    )
    multipart = s3.head_object(Bucket=b, Key=big)["ETag"]
    assert multipart.endswith('-2"')
    got = s3.get_object(Bucket=b, Key=big, Range=f"bytes={5 * MiB - 10}-", IfMatch=multipart)
    assert got["Body"].read() == b"1" * 10 + parts[1]


# ------------------------------------------------------------------ multipart


def _upload_parts(
    s3: Any, b: str, key: str, parts: list[bytes], **kw: Any
) -> tuple[str, list[dict[str, Any]]]:
    upload = s3.create_multipart_upload(Bucket=b, Key=key, **kw)["UploadId"]
    done = []
    for n, body in enumerate(parts, 1):
        etag = s3.upload_part(Bucket=b, Key=key, UploadId=upload, PartNumber=n, Body=body)["ETag"]
        assert etag == quoted_md5(body)
        done.append({"PartNumber": n, "ETag": etag})
    return upload, done


def test_multipart_upload_list_parts_complete(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}big"
    parts = [b"1" * 5 * MiB, b"2" * 5 * MiB, b"3" * 1000]
    upload, done = _upload_parts(s3, b, key, parts, Metadata={"mtime": "5"})
    # not visible before completion; the upload and its parts can be listed (resumption)
    assert status(s3.head_object, Bucket=b, Key=key)[0] == 404
    uploads = s3.list_multipart_uploads(Bucket=b, Prefix=prefix)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [(key, upload)]
    listed = s3.list_parts(Bucket=b, Key=key, UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (d["PartNumber"], d["ETag"], len(body)) for d, body in zip(done, parts, strict=True)
    ]
    s3.complete_multipart_upload(
        Bucket=b, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )
    head = s3.head_object(Bucket=b, Key=key)
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'  # the AWS multipart form
    assert head["Metadata"] == {"mtime": "5"}
    assert head["ContentLength"] == sum(map(len, parts))
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"".join(parts)
    listed_etag = s3.list_objects_v2(Bucket=b, Prefix=key)["Contents"][0]["ETag"]
    assert listed_etag == head["ETag"]
    assert not s3.list_multipart_uploads(Bucket=b, Prefix=prefix).get("Uploads")


def test_multipart_parts_below_5_mib_are_refused(
    s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    b, key = s3_server.bucket, f"{prefix}small-parts"
    upload, done = _upload_parts(s3, b, key, [b"1" * 1024, b"2" * 1024])
    assert status(
        s3.complete_multipart_upload,
        Bucket=b,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": done},
    ) == (400, "EntityTooSmall")
    s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=upload)


def test_multipart_complete_conditions(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}cond"
    old_etag = s3.put_object(Bucket=b, Key=key, Body=b"old")["ETag"]
    upload, done = _upload_parts(s3, b, key, [b"new"])

    def complete(**kw: Any) -> tuple[int, str | None]:
        return status(
            s3.complete_multipart_upload,
            Bucket=b,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": done},
            **kw,
        )

    assert complete(IfNoneMatch="*") == (412, "PreconditionFailed")
    assert complete(IfMatch='"0123"') == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"old"
    assert complete(IfMatch=old_etag) == (200, None)
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"new"
    fresh, parts = _upload_parts(s3, b, f"{prefix}fresh", [b"x"])
    assert status(
        s3.complete_multipart_upload,
        Bucket=b,
        Key=f"{prefix}fresh",
        UploadId=fresh,
        MultipartUpload={"Parts": parts},
        IfNoneMatch="*",
    ) == (200, None)


def test_multipart_abort(s3_server: SeaweedS3, s3: Any, prefix: str) -> None:
    b, key = s3_server.bucket, f"{prefix}aborted"
    upload, _ = _upload_parts(s3, b, key, [b"1" * 1024])
    assert status(s3.abort_multipart_upload, Bucket=b, Key=key, UploadId=upload) == (204, None)
    assert status(s3.list_parts, Bucket=b, Key=key, UploadId=upload) == (404, "NoSuchUpload")
    assert not s3.list_multipart_uploads(Bucket=b, Prefix=prefix).get("Uploads")
    assert status(s3.head_object, Bucket=b, Key=key)[0] == 404


# ------------------------------------------------------------------ stop / restart


def test_restart_and_crash_keep_objects_and_uploads(
    s3_server: SeaweedS3, s3: Any, prefix: str
) -> None:
    b = s3_server.bucket
    ports, pid = s3_server.ports, s3_server.pid
    s3.put_object(Bucket=b, Key=f"{prefix}before", Body=b"kept", Metadata={"mtime": "7"})
    upload, done = _upload_parts(s3, b, f"{prefix}upload", [b"p" * 5 * MiB])
    try:
        s3_server.restart()  # SIGTERM, 5 s, SIGKILL; same ports and data directory
        assert s3_server.ports == ports
        assert s3_server.pid != pid
        assert s3.get_object(Bucket=b, Key=f"{prefix}before")["Body"].read() == b"kept"
        s3.put_object(Bucket=b, Key=f"{prefix}after-restart", Body=b"new")

        s3_server.kill()  # a crash: SIGKILL, no grace
        assert not s3_server.running
        with pytest.raises(EndpointConnectionError):
            s3.head_object(Bucket=b, Key=f"{prefix}before")
        assert not [sock for port in ports for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock")]
        s3_server.start()
        got = s3.get_object(Bucket=b, Key=f"{prefix}before")
        assert got["Body"].read() == b"kept"
        assert got["Metadata"] == {"mtime": "7"}
        assert s3.get_object(Bucket=b, Key=f"{prefix}after-restart")["Body"].read() == b"new"
        # an unfinished multipart upload survives both, and can be resumed and completed
        parts = s3.list_parts(Bucket=b, Key=f"{prefix}upload", UploadId=upload)["Parts"]
        assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB)]
        etag = s3.upload_part(
            Bucket=b, Key=f"{prefix}upload", UploadId=upload, PartNumber=2, Body=b"q"
        )["ETag"]
        s3.complete_multipart_upload(
            Bucket=b,
            Key=f"{prefix}upload",
            UploadId=upload,
            MultipartUpload={"Parts": [*done, {"PartNumber": 2, "ETag": etag}]},
        )
        body = s3.get_object(Bucket=b, Key=f"{prefix}upload")["Body"].read()
        assert body == b"p" * 5 * MiB + b"q"
    finally:
        s3_server.ensure_running()
