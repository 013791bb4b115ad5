"""An S3-compatible object store (AWS, SeaweedFS, MinIO, ...) through boto3.

Each file is the object ``<prefix>/<path>`` with its bytes as they are; storsync keeps the
file's mtime (ns), executable bit and BLAKE3 hash as user metadata, since a listing gives
none of them. Every write is conditional (SYNC.md promise 7): ``If-None-Match: *`` to
create, ``If-Match: <ETag>`` to overwrite or delete, ``x-amz-copy-source-if-match`` to copy
into the trash; a 412 (or a 404 on a conditional call, as SeaweedFS answers) means another
writer won, and becomes PreconditionFailed. Files up to ``MULTIPART_THRESHOLD`` are
buffered, checked against their source and sent in one PUT with ``Content-MD5``; larger ones
go as a multipart upload whose parts carry ``Content-MD5`` and which is completed only after
the source proved unchanged. Objects of that size are read resumably: a HEAD at open, and the
bytes by a GET with ``If-Match`` from the offset after what the destination kept of an
interrupted transfer of the same version (``Resumable``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storsync.engine.compare import Capabilities
from storsync.engine.paths import OWN_DIR, is_own, normalize, refusal
from storsync.errors import (
    ChangedError,
    PermanentStorageError,
    PreconditionFailed,
    StorageUnavailable,
    StorsyncError,
    UsageError,
)
from storsync.model import Entry
from storsync.storage.base import Resumable, SkipReport, Source, Staged, Storage, current_checkpoint
from storsync.storage.content import CHUNK, new_hasher

MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20
PARTS_IN_FLIGHT = 4
META_MTIME = "storsync-mtime-ns"
META_HASH = "storsync-blake3"
META_EXEC = "storsync-exec"
STALE_UPLOAD = timedelta(days=1)


@dataclass(frozen=True)
class S3Settings:
    """Where the bucket is; credentials come from the usual AWS variables or arguments."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    max_connections: int = 32
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _etag(raw: str) -> str:
    return raw.strip('"')


def _timestamp(value: str) -> datetime:
    """A timestamp of an S3 answer: ISO 8601 in XML bodies, parsed without dateutil."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp

        parsed: datetime = parse_timestamp(value)  # the HTTP dates of headers, and the rest
        return parsed
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _ns(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def _metadata(mtime_ns: int, executable: bool, digest: str | None) -> dict[str, str]:
    meta = {META_MTIME: str(mtime_ns), META_EXEC: "1" if executable else "0"}
    if digest:
        meta[META_HASH] = digest
    return meta


class _ObjectSource:
    """The body of a GET, hashed while read; checked against size and stored hash.

    Without a ``body`` (a large object: ``resumable``), nothing is fetched until the first
    read, which asks for the bytes after those handed to ``resume``.
    """

    def __init__(
        self, storage: S3Storage, path: str, expected: Entry, meta: dict[str, str], body: Any
    ) -> None:
        self._storage = storage
        self._path = path
        self._body = body
        self._expected = expected
        self._stored_hash = meta.get(META_HASH)
        self._hasher = new_hasher()
        self._read = 0
        mtime = meta.get(META_MTIME, "")
        self.mtime_ns: int | None = int(mtime) if mtime.isdigit() else None
        self.executable: bool | None = meta[META_EXEC] == "1" if META_EXEC in meta else None
        self.resumable: Resumable | None = self if body is None else None
        self.version = expected.etag or ""

    def resume(self, prefix: Iterable[bytes]) -> None:
        for block in prefix:
            self._hasher.update(block)
            self._read += len(block)

    def read(self, n: int) -> bytes:
        if self._body is None:
            if self._read >= self._expected.size:
                return b""  # the destination held every byte already
            self._body = self._storage._body_from(self._path, self._expected, self._read)
        # Errors while streaming are translated here, not only around ``open``: the
        # destination decides by them whether a partial copy is worth keeping.
        with self._storage._calling(self._path):
            block: bytes = self._body.read(n)
        self._hasher.update(block)
        self._read += len(block)
        return block

    def finish(self) -> str:
        if self._read != self._expected.size:
            raise ChangedError(
                f"{self._path}: the remote sent {self._read} bytes where "
                f"{self._expected.size} were expected"
            )
        digest = self._hasher.hexdigest()
        if self._stored_hash is not None and self._stored_hash != digest:
            raise ChangedError(f"{self._path}: the remote bytes do not match their stored hash")
        return digest

    def close(self) -> None:
        if self._body is not None:
            self._body.close()


@dataclass(frozen=True)
class _Buffered:
    data: bytes
    mtime_ns: int
    executable: bool


@dataclass(frozen=True)
class _Multipart:
    upload_id: str
    parts: list[dict[str, Any]]
    mtime_ns: int
    executable: bool


class S3Storage(Storage):
    def __init__(self, settings: S3Settings, *, client: Any = None) -> None:
        self.settings = settings
        self.prefix = settings.prefix.strip("/")
        self.url = f"s3://{settings.bucket}/{self.prefix}".rstrip("/")
        self.endpoint = settings.endpoint or "the default AWS endpoint"
        self.caps = Capabilities(
            etags=True,
            conditional_writes=True,
            server_side_copy=True,
            executable_bit=True,
            listing_metadata=False,
            max_name_bytes=255,
            network=True,
        )
        self._client = client or self._make_client()

    def _make_client(self) -> Any:
        import boto3
        import botocore.session
        from botocore.config import Config

        botocore_session = botocore.session.get_session()
        # A listing has one timestamp per key, which botocore parses with dateutil: 60% of
        # the client CPU of listing 10,000 keys here (1.3 s), more than the XML itself.
        parsers = botocore_session.get_component("response_parser_factory")
        parsers.set_parser_defaults(timestamp_parser=_timestamp)

        s = self.settings
        config = Config(
            # Every object body sent (a PUT, a part) carries Content-MD5, a signed header the
            # server checks the bytes against; signing the payload too, which botocore does
            # on http endpoints only (on https it already does not), is one more SHA-256
            # pass over every byte (0.7 s of CPU per GiB here) for the same guarantee.
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=s.max_connections,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            return boto3.session.Session(botocore_session=botocore_session).client(
                "s3",
                endpoint_url=s.endpoint,
                region_name=s.region or "us-east-1",
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key,
                config=config,
            )
        except ValueError as exc:
            raise UsageError(f"invalid S3 endpoint {s.endpoint!r}: {exc}") from None

    # -- names and errors -------------------------------------------------------------

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _own_key(self, name: str) -> str:
        return self._key(f"{OWN_DIR}/{name}")

    def _error(self, exc: Exception, path: str) -> StorsyncError:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return PreconditionFailed(f"{path} changed on the remote since the scan")
            if status == 404 and code == "NoSuchBucket":
                return PermanentStorageError(f"bucket {self.settings.bucket!r} does not exist")
            if status == 404:
                return PreconditionFailed(f"{path} is no longer on the remote")
            if status in (401, 403):
                return PermanentStorageError(
                    f"{self.endpoint} refused access to {self.url} ({code or status}); "
                    "check the credentials"
                )
            if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                return StorageUnavailable(f"S3 endpoint {self.endpoint} failed: {code or status}")
            return PermanentStorageError(f"{path}: the S3 endpoint answered {code or status}")
        if isinstance(exc, BotoCoreError):
            return StorageUnavailable(
                f"cannot reach S3 endpoint {self.endpoint}: {type(exc).__name__}"
            )
        raise exc

    @contextlib.contextmanager
    def _calling(self, path: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, path) from exc

    # -- scan -------------------------------------------------------------------------

    def scan(self, skip: SkipReport) -> dict[str, Entry]:
        checkpoint = current_checkpoint()
        found: dict[str, Entry] = {}
        start = len(self.prefix) + 1 if self.prefix else 0
        listing = {"Bucket": self.settings.bucket, "Prefix": self._key("")}
        with self._calling(self.url):
            for page in self._client.get_paginator("list_objects_v2").paginate(**listing):
                checkpoint()  # per page, not per key: the round trip is what takes time
                for obj in page.get("Contents", ()):
                    rel = obj["Key"][start:]
                    if is_own(rel):
                        continue
                    if rel.endswith("/"):
                        if obj["Size"]:
                            skip(rel, "an object whose name ends with '/' is not a file")
                        continue  # a folder marker made by another tool
                    reason = refusal(rel)
                    if reason is None and normalize(rel) != rel:
                        reason = "name is not in Unicode NFC"
                    if reason:
                        skip(rel, reason)
                        continue
                    mtime = _ns(obj["LastModified"])
                    found[rel] = Entry(obj["Size"], mtime, False, None, _etag(obj["ETag"]))
        return found

    def stat(self, path: str) -> Entry | None:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.settings.bucket, Key=self._key(path))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._error(exc, path) from exc
        except Exception as exc:
            raise self._error(exc, path) from exc
        return self._entry(head)

    def _entry(self, head: dict[str, Any]) -> Entry:
        meta = head.get("Metadata", {})
        mtime = meta.get(META_MTIME, "")
        return Entry(
            head["ContentLength"],
            int(mtime) if mtime.isdigit() else _ns(head["LastModified"]),
            meta.get(META_EXEC) == "1",
            None,
            _etag(head["ETag"]),
            meta.get(META_HASH),
        )

    # -- reading ----------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, path: str, expected: Entry) -> Iterator[Source]:
        bucket, key = self.settings.bucket, self._key(path)
        with self._calling(path):
            if expected.size > MULTIPART_THRESHOLD and expected.etag:
                # Resumable: the metadata now, the bytes (from some offset) on first read.
                head = self._client.head_object(Bucket=bucket, Key=key, IfMatch=expected.etag)
                source = _ObjectSource(self, path, expected, head.get("Metadata", {}), None)
            else:
                got = self._client.get_object(Bucket=bucket, Key=key, IfMatch=expected.etag or "*")
                source = _ObjectSource(self, path, expected, got.get("Metadata", {}), got["Body"])
        try:
            with self._calling(path):
                yield source
        finally:
            source.close()

    def _body_from(self, path: str, expected: Entry, offset: int) -> Any:
        """The bytes of ``path`` from ``offset`` on, only while it is the version expected.

        ``If-Match`` makes a version replaced since the scan fail with 412 instead of
        continuing kept bytes of the old one with bytes of the new one.
        """
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        with self._calling(path):
            got = self._client.get_object(
                Bucket=self.settings.bucket,
                Key=self._key(path),
                IfMatch=expected.etag or "*",
                **ranged,
            )
            body = got["Body"]
            if offset and not str(got.get("ContentRange", "")).startswith(f"bytes {offset}-"):
                # An endpoint that ignores Range sends the whole object: skip what is held.
                while offset > 0 and (skipped := len(body.read(min(CHUNK, offset)))):
                    offset -= skipped
        return body

    def hash(self, path: str, expected: Entry) -> str:
        """The stored BLAKE3 (one HEAD), or the bytes hashed when another tool wrote them."""
        with self._calling(path):
            head = self._client.head_object(
                Bucket=self.settings.bucket, Key=self._key(path), IfMatch=expected.etag or "*"
            )
        stored = head.get("Metadata", {}).get(META_HASH)
        return str(stored) if stored else super().hash(path, expected)

    # -- writing ----------------------------------------------------------------------

    def stage(
        self, path: str, source: Source, *, size: int, mtime_ns: int, executable: bool
    ) -> Staged:
        if size <= MULTIPART_THRESHOLD:
            data = b"".join(iter(lambda: source.read(CHUNK), b""))
            digest = source.finish()
            if len(data) != size:
                raise ChangedError(f"{path}: read {len(data)} bytes where {size} were expected")
            return Staged(path, digest, size, _Buffered(data, mtime_ns, executable))
        return self._stage_multipart(path, source, size=size, mtime_ns=mtime_ns, exe=executable)

    def _stage_multipart(
        self, path: str, source: Source, *, size: int, mtime_ns: int, exe: bool
    ) -> Staged:
        """Upload the parts of a large file; complete nothing yet (``publish`` does).

        An upload a killed or failed run left for this key is resumed: every part is read
        and hashed again (the BLAKE3 needs all bytes anyway), and a part whose MD5 and size
        match the part already on the server is not sent again. The hash is known only
        after the upload was created with its metadata, so a large object carries the mtime
        and bit; its hash stays in the base, and ``hash()`` reads the bytes.
        """
        bucket, key = self.settings.bucket, self._key(path)
        resumed = self._unfinished_upload(path, key)
        if resumed is None:
            with self._calling(path):
                upload = self._client.create_multipart_upload(
                    Bucket=bucket, Key=key, Metadata=_metadata(mtime_ns, exe, None)
                )
            upload_id, on_server = upload["UploadId"], dict[int, tuple[str, int]]()
        else:
            upload_id, on_server = resumed

        def send(number: int, chunk: bytes, md5: bytes) -> dict[str, Any]:
            with self._calling(path):
                answer = self._client.upload_part(
                    Bucket=bucket,
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
                self._abort(key, upload_id)  # useless now: the source is another version
                raise
        return Staged(path, digest, size, _Multipart(upload_id, done, mtime_ns, exe))

    def _unfinished_upload(
        self, path: str, key: str
    ) -> tuple[str, dict[int, tuple[str, int]]] | None:
        """The newest unfinished upload of ``key`` and its parts: number -> (MD5, size)."""
        with self._calling(path):
            listed = self._client.list_multipart_uploads(Bucket=self.settings.bucket, Prefix=key)
            uploads = [u for u in listed.get("Uploads", ()) if u["Key"] == key]
            if not uploads:
                return None
            newest = max(uploads, key=lambda u: u["Initiated"])
            pages = self._client.get_paginator("list_parts").paginate(
                Bucket=self.settings.bucket, Key=key, UploadId=newest["UploadId"]
            )
            parts = {
                part["PartNumber"]: (_etag(part["ETag"]), part["Size"])
                for page in pages
                for part in page.get("Parts", ())
            }
        return newest["UploadId"], parts

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(Exception):
            self._client.abort_multipart_upload(
                Bucket=self.settings.bucket, Key=key, UploadId=upload_id
            )

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        path, token = staged.path, staged.token
        bucket, key = self.settings.bucket, self._key(path)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.etag or ""}
        if expected is not None and trash is not None:
            self._copy_to_trash(path, expected, trash)

        def write() -> Any:
            with self._calling(path):
                if isinstance(token, _Buffered):
                    return self._client.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=token.data,
                        ContentMD5=_md5_b64(token.data),
                        Metadata=_metadata(token.mtime_ns, token.executable, staged.hash),
                        **condition,
                    )
                assert isinstance(token, _Multipart)
                return self._client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=token.upload_id,
                    MultipartUpload={"Parts": token.parts},
                    **condition,
                )

        try:
            answer = write()
        except PreconditionFailed:
            if expected is not None or not self._drop_empty_folders(path):
                raise
            answer = write()  # only empty folders of that name were in the way
        assert isinstance(token, _Buffered | _Multipart)
        etag = _etag(answer["ETag"])
        return Entry(staged.size, token.mtime_ns, token.executable, None, etag, staged.hash)

    def _drop_empty_folders(self, path: str) -> bool:
        """Delete the empty folders named ``path`` and below it; False if an object is there.

        SeaweedFS keeps a folder after its last object is deleted, and refuses a create
        (``If-None-Match: *``) of the folder's name with 412 while it is there, which would
        fail that file in every session. Only when no object is at ``path`` nor under
        ``path/`` (a folder marker included) are the folders deleted by name, deepest
        first; SeaweedFS keeps a folder that got an object meanwhile, so a concurrent
        writer still wins the create that follows.
        """
        if self.stat(path) is not None:
            return False
        bucket, key = self.settings.bucket, self._key(path)
        with self._calling(path):
            below = self._client.list_objects_v2(Bucket=bucket, Prefix=f"{key}/", MaxKeys=1)
            if below.get("Contents"):
                return False
            folders, todo = [], [f"{key}/"]
            while todo:
                folder = todo.pop()
                folders.append(folder)
                listing = {"Bucket": bucket, "Prefix": folder, "Delimiter": "/"}
                for page in self._client.get_paginator("list_objects_v2").paginate(**listing):
                    todo.extend(sub["Prefix"] for sub in page.get("CommonPrefixes", ()))
            for folder in reversed(folders):  # children before their parent
                self._client.delete_object(Bucket=bucket, Key=folder)
        return True

    def discard(self, staged: Staged) -> None:
        if isinstance(staged.token, _Multipart):
            self._abort(self._key(staged.path), staged.token.upload_id)

    def _copy_to_trash(self, path: str, expected: Entry, trash: str) -> None:
        with self._calling(path):
            self._client.copy_object(
                Bucket=self.settings.bucket,
                Key=self._own_key(f"trash/{trash}/{path}"),
                CopySource={"Bucket": self.settings.bucket, "Key": self._key(path)},
                CopySourceIfMatch=expected.etag or "",
            )

    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        if trash is not None:
            self._copy_to_trash(path, expected, trash)
        with self._calling(path):
            self._client.delete_object(
                Bucket=self.settings.bucket, Key=self._key(path), IfMatch=expected.etag or ""
            )

    def copy(self, path: str, new_path: str, expected: Entry) -> Entry:
        with self._calling(new_path):
            answer = self._client.copy_object(
                Bucket=self.settings.bucket,
                Key=self._key(new_path),
                CopySource={"Bucket": self.settings.bucket, "Key": self._key(path)},
                CopySourceIfMatch=expected.etag or "",
                IfNoneMatch="*",
            )
        etag = _etag(answer["CopyObjectResult"]["ETag"])
        return Entry(expected.size, expected.mtime_ns, expected.executable, None, etag)

    # -- own files --------------------------------------------------------------------

    def read_own(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            got = self._client.get_object(Bucket=self.settings.bucket, Key=self._own_key(name))
            data: bytes = got["Body"].read()
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._error(exc, name) from exc
        except Exception as exc:
            raise self._error(exc, name) from exc
        return data

    def write_own(self, name: str, data: bytes) -> None:
        with self._calling(name):
            self._client.put_object(
                Bucket=self.settings.bucket,
                Key=self._own_key(name),
                Body=data,
                ContentMD5=_md5_b64(data),
            )

    def prune_trash(self, older_than_ns: int) -> None:
        listing = {"Bucket": self.settings.bucket, "Prefix": self._own_key("trash/")}
        with self._calling("trash"):
            stale = [
                {"Key": obj["Key"]}
                for page in self._client.get_paginator("list_objects_v2").paginate(**listing)
                for obj in page.get("Contents", ())
                if _ns(obj["LastModified"]) < older_than_ns
            ]
            for i in range(0, len(stale), 1000):
                self._client.delete_objects(
                    Bucket=self.settings.bucket, Delete={"Objects": stale[i : i + 1000]}
                )

    def start_session(self) -> None:
        """Abort multipart uploads under the prefix that a killed run left a day ago."""
        cutoff = datetime.now(UTC) - STALE_UPLOAD
        listing = {"Bucket": self.settings.bucket, "Prefix": self._key("")}
        with self._calling(self.url):
            pages = self._client.get_paginator("list_multipart_uploads").paginate(**listing)
            for page in pages:
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"] < cutoff:
                        self._abort(upload["Key"], upload["UploadId"])

    def close(self) -> None:
        self._client.close()


def _read_exactly(source: Source, n: int) -> Iterator[bytes]:
    while n > 0:
        block = source.read(min(CHUNK, n))
        if not block:
            return
        n -= len(block)
        yield block
