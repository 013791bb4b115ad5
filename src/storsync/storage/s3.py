"""An S3-compatible object store (AWS, SeaweedFS, MinIO, ...) through botocore.

Each file is the object ``<prefix>/<path>`` with its bytes as they are; storsync keeps the
file's mtime (ns), executable bit and BLAKE3 hash as user metadata, since a listing gives
none of them. Every write is conditional (SYNC.md promise 7): ``If-None-Match: *`` to
create, ``If-Match: <ETag>`` to overwrite or delete, ``x-amz-copy-source-if-match`` to copy
into the trash; a 412 (or a 404 on a conditional call, as SeaweedFS answers) means another
writer won, and becomes PreconditionFailed. Files up to ``MULTIPART_THRESHOLD`` are
buffered, checked against their source and sent in one PUT with ``Content-MD5``; larger ones
go as a multipart upload whose parts carry ``Content-MD5`` and which is completed only after
the source proved unchanged (``s3_multipart``). Objects of that size are read resumably: a
HEAD at open, and the bytes by a GET with ``If-Match`` from the offset after what the
destination kept of an interrupted transfer of the same version (``Resumable``).
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from storsync.clock import Clock, SystemClock, utc_datetime
from storsync.errors import (
    ChangedError,
    PermanentStorageError,
    PreconditionFailed,
    StorsyncError,
)
from storsync.model import Capabilities, Entry, StopSignal
from storsync.paths import OWN_DIR
from storsync.storage.base import (
    Publication,
    SkipReport,
    Source,
    Staged,
    Storage,
    StoredKeys,
)
from storsync.storage.content import CHUNK
from storsync.storage.s3_client import S3Bucket, S3Settings, make_client, unquote_etag
from storsync.storage.s3_entries import nanoseconds
from storsync.storage.s3_multipart import Multipart, abort, abort_stale_uploads, stage_multipart
from storsync.storage.s3_objects import (
    META_EXEC,
    META_HASH,
    META_MTIME,
    ObjectSource,
    md5_b64,
    metadata_headers,
    object_metadata,
)
from storsync.storage.s3_seaweed import drop_empty_folders
from storsync.storage.s3_signed import WHOLE_GET, Get, Put, SignedRequests
from storsync.storage.s3_walk import S3Walk

__all__ = ["META_EXEC", "META_HASH", "META_MTIME", "MULTIPART_THRESHOLD", "S3Settings", "S3Storage"]

MULTIPART_THRESHOLD = 64 << 20
SINGLE_COPY_LIMIT = 5 << 30


@dataclass(frozen=True)
class _Buffered:
    data: bytes
    mtime_ns: int
    executable: bool


class S3Storage(Storage):
    def __init__(
        self, settings: S3Settings, *, client: Any = None, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()
        self.prefix = settings.prefix.strip("/")
        self.url = f"s3://{settings.bucket}/{self.prefix}".rstrip("/")
        self.caps = Capabilities(
            etags=True,
            executable_bit=True,
            listing_metadata=False,
            network=True,
            # One CopyObject copies at most 5 GiB (a larger copy would be a multipart
            # copy, which storsync does not make yet).
            move_limit=SINGLE_COPY_LIMIT,
        )
        self._bucket = S3Bucket.of(settings, self.url)
        self._client = client or make_client(settings)
        self._listings = S3Walk(
            self._client,
            self._bucket,
            settings.bucket,
            self.prefix,
            self.url,
            settings.max_connections,
        )

    # -- names ------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _new_key(self, path: str) -> str:
        """The key ``path`` is written to, refused for a name a server stores under another
        key: SeaweedFS takes a backslash for a folder separator (``a\\b`` lands as ``a/b``),
        and the next listing would lack the file the base knows and show one it does not."""
        if "\\" in path:
            raise PermanentStorageError(
                f"{path}: not written to S3: servers such as SeaweedFS take a backslash in a "
                "name for a folder separator"
            )
        return self._key(path)

    def _own_key(self, name: str) -> str:
        return self._key(f"{OWN_DIR}/{name}")

    @functools.cached_property
    def _signed(self) -> SignedRequests:
        """The requests of one object (PUT, GET, HEAD, DELETE, copy) outside botocore's
        pipeline; made when first used (a client given for a test may have no pool)."""
        return SignedRequests(self._client, self._bucket)

    # -- scan -------------------------------------------------------------------------

    def scan(self, skip: SkipReport, stop: StopSignal) -> dict[str, Entry]:
        return self._listings.scan(skip, stop)

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        return self._listings.walk(skip, stop, expected, stored)

    def scan_digested(self, skip: SkipReport, stop: StopSignal) -> tuple[dict[str, Entry], str]:
        return self._listings.scan_digested(skip, stop)

    def walk_digested(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> tuple[Iterator[tuple[str, Entry]], Callable[[], str]]:
        return self._listings.walk_digested(skip, stop, expected, stored)

    def listing_digest(
        self,
        stop: StopSignal,
        kind: str = "",
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> str:
        return self._listings.listing_digest(stop, kind, expected, stored)

    def scan_under(
        self, tops: Sequence[str], skip: SkipReport, stop: StopSignal
    ) -> dict[str, Entry]:
        return self._listings.scan_under(tops, skip, stop)

    def sorted_walk(self, skip: SkipReport, stop: StopSignal) -> Iterator[tuple[str, Entry]]:
        return self._listings.sorted_walk(skip, stop)

    def stat(self, path: str) -> Entry | None:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.settings.bucket, Key=self._key(path))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._bucket.error(exc, path) from exc
        except Exception as exc:
            raise self._bucket.error(exc, path) from exc
        return self._entry(head)

    def _entry(self, head: dict[str, Any]) -> Entry:
        meta = head.get("Metadata", {})
        mtime = meta.get(META_MTIME, "")
        return Entry(
            head["ContentLength"],
            int(mtime) if mtime.isdigit() else nanoseconds(head["LastModified"]),
            meta.get(META_EXEC) == "1",
            None,
            unquote_etag(head["ETag"]),
            meta.get(META_HASH),
        )

    # -- reading ----------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, path: str, expected: Entry) -> Iterator[Source]:
        key = self._key(path)
        reopen = functools.partial(self._body_from, path, expected)
        with self._bucket.calling(path):
            if expected.size > MULTIPART_THRESHOLD and expected.etag:
                # Resumable: the metadata now, the bytes (from some offset) on first read.
                head = self._client.head_object(
                    Bucket=self.settings.bucket, Key=key, IfMatch=expected.etag
                )
                meta, body = head.get("Metadata", {}), None
            else:
                meta, body = self._signed.get(
                    path, key, {"If-Match": expected.etag or "*"}, expected.size
                )
            source = ObjectSource(self._bucket, path, expected, meta, body, reopen)
        try:
            with self._bucket.calling(path):
                yield source
        finally:
            source.close()

    def reads_at_once(self, size: int) -> bool:
        return size <= WHOLE_GET

    def read_all(
        self, reads: Sequence[tuple[str, Entry]], width: int
    ) -> list[Source | StorsyncError]:
        gets = [
            Get(path, self._key(path), expected.size, {"If-Match": expected.etag or "*"})
            for path, expected in reads
        ]
        answers = self._signed.get_all(gets, width)
        return [
            answer
            if isinstance(answer, StorsyncError)
            else ObjectSource(
                self._bucket,
                path,
                expected,
                answer[0],
                io.BytesIO(answer[1]),
                functools.partial(self._body_from, path, expected),
            )
            for (path, expected), answer in zip(reads, answers, strict=True)
        ]

    def _body_from(self, path: str, expected: Entry, offset: int) -> Any:
        """The bytes of ``path`` from ``offset`` on, only while it is the version expected.

        ``If-Match`` makes a version replaced since the scan fail with 412 instead of
        continuing kept bytes of the old one with bytes of the new one.
        """
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        with self._bucket.calling(path):
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

    def hash(self, path: str, expected: Entry, stop: StopSignal) -> str:
        """The stored BLAKE3 (one HEAD), or the bytes hashed when another tool wrote them."""
        meta = self._signed.head(path, self._key(path), {"If-Match": expected.etag or "*"})
        stored = meta.get(META_HASH)
        return str(stored) if stored else super().hash(path, expected, stop)

    # -- writing ----------------------------------------------------------------------

    def stage(
        self, path: str, source: Source, *, size: int, mtime_ns: int, executable: bool
    ) -> Staged:
        key = self._new_key(path)
        if size <= MULTIPART_THRESHOLD:
            data = b"".join(iter(lambda: source.read(CHUNK), b""))
            digest = source.finish()
            if len(data) != size:
                raise ChangedError(f"{path}: read {len(data)} bytes where {size} were expected")
            return Staged(path, digest, size, _Buffered(data, mtime_ns, executable))
        return stage_multipart(
            self._client,
            self._bucket,
            key,
            path,
            source,
            size=size,
            mtime_ns=mtime_ns,
            exe=executable,
            metadata=object_metadata(mtime_ns, executable, None),
        )

    def staged_in_memory(self, size: int) -> int:
        return size if size <= MULTIPART_THRESHOLD else 0  # a multipart upload is sent

    def stages_locally(self, size: int) -> bool:
        return size <= MULTIPART_THRESHOLD  # a larger file's parts are sent as it is read

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        path, token = staged.path, staged.token
        bucket, key = self.settings.bucket, self._key(path)
        if expected is not None and trash is not None:
            self._copy_to_trash(path, expected, trash)

        def write() -> str:
            if isinstance(token, _Buffered):
                put = self._put(staged, expected)
                return self._signed.put(put.path, put.key, put.data, put.headers)
            assert isinstance(token, Multipart)
            condition = (
                {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.etag or ""}
            )
            with self._bucket.calling(path):
                answer = self._client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=token.upload_id,
                    MultipartUpload={"Parts": token.parts},
                    **condition,
                )
            return unquote_etag(answer["ETag"])

        etag = write() if expected is not None else self._created(path, write)
        assert isinstance(token, _Buffered | Multipart)
        return Entry(staged.size, token.mtime_ns, token.executable, None, etag, staged.hash)

    def publish_all(self, items: Sequence[Publication], width: int) -> list[Entry | StorsyncError]:
        """The PUTs of small files (with no replaced version to copy to a trash first)
        sent at once from this thread, through libcurl: a thread each cost two switches
        of threads a file. The others as ``Storage.publish_all`` publishes them."""
        direct = [
            at
            for at, item in enumerate(items)
            if isinstance(item.staged.token, _Buffered)
            and (item.trash is None or item.expected is None)
        ]
        alone = sorted(set(range(len(items))) - set(direct))
        others = super().publish_all([items[at] for at in alone], width)
        outcomes = dict(zip(alone, others, strict=True))
        puts = [self._put(items[at].staged, items[at].expected) for at in direct]
        sent = self._signed.put_all(puts, width)
        for at, put, etag in zip(direct, puts, sent, strict=True):
            outcomes[at] = self._put_outcome(items[at], put, etag)
        return [outcomes[at] for at in range(len(items))]

    def _put(self, staged: Staged, expected: Entry | None) -> Put:
        """The conditional PUT of a small staged file."""
        token = staged.token
        assert isinstance(token, _Buffered)
        headers = metadata_headers(object_metadata(token.mtime_ns, token.executable, staged.hash))
        headers["Content-MD5"] = md5_b64(token.data)
        if expected is None:
            headers["If-None-Match"] = "*"
        else:
            headers["If-Match"] = expected.etag or ""
        return Put(staged.path, self._key(staged.path), token.data, headers)

    def _put_outcome(
        self, item: Publication, put: Put, sent: str | StorsyncError
    ) -> Entry | StorsyncError:
        """What ``put`` of ``item`` came to, once a creation refused for empty folders in
        the way was made again (``_created``)."""
        staged = item.staged
        assert isinstance(staged.token, _Buffered)
        if isinstance(sent, PreconditionFailed) and item.expected is None:
            try:
                sent = self._created_again(
                    staged.path,
                    sent,
                    lambda: self._signed.put(put.path, put.key, put.data, put.headers),
                )
            except StorsyncError as exc:
                sent = exc
        if isinstance(sent, StorsyncError):
            return sent
        token = staged.token
        return Entry(staged.size, token.mtime_ns, token.executable, None, sent, staged.hash)

    def _created(self, path: str, create: Callable[[], str]) -> str:
        """``create`` (a write under ``If-None-Match: *``), made again once when only
        empty folders of that name were in the way (SeaweedFS: s3_seaweed)."""
        try:
            return create()
        except PreconditionFailed as refused:
            return self._created_again(path, refused, create)

    def _created_again(
        self, path: str, refused: PreconditionFailed, create: Callable[[], str]
    ) -> str:
        if self.stat(path) is not None or not drop_empty_folders(
            self._client, self._bucket, self._key(path), path
        ):
            raise refused
        return create()

    def discard(self, staged: Staged) -> None:
        if isinstance(staged.token, Multipart):
            abort(self._client, self._bucket, self._key(staged.path), staged.token.upload_id)

    def _copy_to_trash(self, path: str, expected: Entry, trash: str) -> None:
        self._signed.copy(
            path,
            self._own_key(f"trash/{trash}/{path}"),
            self._key(path),
            {"x-amz-copy-source-if-match": expected.etag or ""},
        )

    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        if trash is not None:
            self._copy_to_trash(path, expected, trash)
        self._signed.delete(path, self._key(path), {"If-Match": expected.etag or ""})

    def copy(self, path: str, new_path: str, expected: Entry) -> Entry:
        etag = self._created(
            new_path,
            lambda: self._signed.copy(
                new_path,
                self._new_key(new_path),
                self._key(path),
                {"x-amz-copy-source-if-match": expected.etag or "", "If-None-Match": "*"},
            ),
        )
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
            raise self._bucket.error(exc, name) from exc
        except Exception as exc:
            raise self._bucket.error(exc, name) from exc
        return data

    def write_own(self, name: str, data: bytes) -> None:
        with self._bucket.calling(name):
            self._client.put_object(
                Bucket=self.settings.bucket,
                Key=self._own_key(name),
                Body=data,
                ContentMD5=md5_b64(data),
            )

    def prune_trash(self, older_than_ns: int) -> None:
        listing = {"Bucket": self.settings.bucket, "Prefix": self._own_key("trash/")}
        with self._bucket.calling("trash"):
            stale = [
                {"Key": obj["Key"]}
                for page in self._client.get_paginator("list_objects_v2").paginate(**listing)
                for obj in page.get("Contents", ())
                if nanoseconds(obj["LastModified"]) < older_than_ns
            ]
            for i in range(0, len(stale), 1000):
                self._client.delete_objects(
                    Bucket=self.settings.bucket, Delete={"Objects": stale[i : i + 1000]}
                )

    def start_session(self) -> None:
        """Abort multipart uploads under the prefix that a killed run left a day ago."""
        now = utc_datetime(self._clock.now_ns())
        abort_stale_uploads(self._client, self._bucket, self._key(""), now)

    def close(self) -> None:
        if "_signed" in self.__dict__:  # made when first used
            self._signed.close()
        self._client.close()
