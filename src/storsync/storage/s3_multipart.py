"""Large files to S3 as multipart uploads, staged here and completed by ``S3Storage.publish``.

Parts of ``PART_SIZE`` carry ``Content-MD5``, ``PARTS_IN_FLIGHT`` at a time; an upload a
killed or failed run left for the same key is resumed, sending again only the parts whose
MD5 and size do not match those on the server; one older than ``STALE_UPLOAD`` is aborted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from storsync.errors import ChangedError
from storsync.storage.base import Source, Staged
from storsync.storage.content import CHUNK
from storsync.storage.s3_client import S3Bucket, unquote_etag

PART_SIZE = 16 << 20
PARTS_IN_FLIGHT = 4
STALE_UPLOAD = timedelta(days=1)


@dataclass(frozen=True)
class Multipart:
    upload_id: str
    parts: list[dict[str, Any]]
    mtime_ns: int
    executable: bool


def stage_multipart(
    client: Any,
    bucket: S3Bucket,
    key: str,
    path: str,
    source: Source,
    *,
    size: int,
    mtime_ns: int,
    exe: bool,
    metadata: dict[str, str],
) -> Staged:
    """Upload the parts of a large file; complete nothing yet (``publish`` does).

    An upload a killed or failed run left for this key is resumed: every part is read
    and hashed again (the BLAKE3 needs all bytes anyway), and a part whose MD5 and size
    match the part already on the server is not sent again. The hash is known only
    after the upload was created with its ``metadata``, so a large object carries the mtime
    and bit; its hash stays in the base, and ``hash()`` reads the bytes.
    """
    resumed = _unfinished_upload(client, bucket, key, path)
    if resumed is None:
        with bucket.calling(path):
            upload = client.create_multipart_upload(Bucket=bucket.name, Key=key, Metadata=metadata)
        upload_id, on_server = upload["UploadId"], dict[int, tuple[str, int]]()
    else:
        upload_id, on_server = resumed

    def send(number: int, chunk: bytes, md5: bytes) -> dict[str, Any]:
        with bucket.calling(path):
            answer = client.upload_part(
                Bucket=bucket.name,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=chunk,
                ContentMD5=base64.b64encode(md5).decode(),
            )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    parts: list[Future[dict[str, Any]] | dict[str, Any]] = []
    inflight: set[Future[dict[str, Any]]] = set()
    sent = 0
    with ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:
        try:
            while sent < size:
                chunk = b"".join(_read_exactly(source, min(PART_SIZE, size - sent)))
                if not chunk:
                    break
                number = len(parts) + 1
                md5 = hashlib.md5(chunk, usedforsecurity=False).digest()
                if on_server.get(number) == (md5.hex(), len(chunk)):
                    parts.append({"PartNumber": number, "ETag": f'"{md5.hex()}"'})
                else:
                    if len(inflight) >= PARTS_IN_FLIGHT:
                        inflight = wait(inflight, return_when=FIRST_COMPLETED).not_done
                    future = pool.submit(send, number, chunk, md5)
                    inflight.add(future)
                    parts.append(future)
                sent += len(chunk)
            digest = source.finish()
            if sent != size:
                raise ChangedError(f"{path}: read {sent} bytes where {size} were expected")
            done = [p.result() if isinstance(p, Future) else p for p in parts]
        except ChangedError:
            abort(client, bucket, key, upload_id)  # useless now: the source is another version
            raise
    return Staged(path, digest, size, Multipart(upload_id, done, mtime_ns, exe))


def _unfinished_upload(
    client: Any, bucket: S3Bucket, key: str, path: str
) -> tuple[str, dict[int, tuple[str, int]]] | None:
    """The newest unfinished upload of ``key`` and its parts: number -> (MD5, size)."""
    with bucket.calling(path):
        listed = client.list_multipart_uploads(Bucket=bucket.name, Prefix=key)
        uploads = [u for u in listed.get("Uploads", ()) if u["Key"] == key]
        if not uploads:
            return None
        newest = max(uploads, key=lambda u: u["Initiated"])
        pages = client.get_paginator("list_parts").paginate(
            Bucket=bucket.name, Key=key, UploadId=newest["UploadId"]
        )
        parts = {
            part["PartNumber"]: (unquote_etag(part["ETag"]), part["Size"])
            for page in pages
            for part in page.get("Parts", ())
        }
    return newest["UploadId"], parts


def abort(client: Any, bucket: S3Bucket, key: str, upload_id: str) -> None:
    with contextlib.suppress(Exception):
        client.abort_multipart_upload(Bucket=bucket.name, Key=key, UploadId=upload_id)


def abort_stale_uploads(client: Any, bucket: S3Bucket, prefix: str, now: datetime) -> None:
    """Abort the uploads under ``prefix`` that a killed run left a day before ``now``."""
    cutoff = now - STALE_UPLOAD
    listing = {"Bucket": bucket.name, "Prefix": prefix}
    with bucket.calling(bucket.url):
        pages = client.get_paginator("list_multipart_uploads").paginate(**listing)
        for page in pages:
            for upload in page.get("Uploads", ()):
                if upload["Initiated"] < cutoff:
                    abort(client, bucket, upload["Key"], upload["UploadId"])


def _read_exactly(source: Source, n: int) -> Iterator[bytes]:
    while n > 0:
        block = source.read(min(CHUNK, n))
        if not block:
            return
        n -= len(block)
        yield block
