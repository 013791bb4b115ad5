"""What an object carries besides its bytes (storsync's user metadata and its headers, the
Content-MD5 of a PUT) and the source that reads one back, hashed and checked."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from storsync.errors import ChangedError
from storsync.model import Entry
from storsync.storage.base import Resumable
from storsync.storage.content import new_hasher
from storsync.storage.s3_client import S3Bucket

META_MTIME = "storsync-mtime-ns"
META_HASH = "storsync-blake3"
META_EXEC = "storsync-exec"


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def object_metadata(mtime_ns: int, executable: bool, digest: str | None) -> dict[str, str]:
    meta = {META_MTIME: str(mtime_ns), META_EXEC: "1" if executable else "0"}
    if digest:
        meta[META_HASH] = digest
    return meta


def metadata_headers(metadata: dict[str, str]) -> dict[str, str]:
    """User metadata as the headers of a request."""
    return {f"x-amz-meta-{name}": value for name, value in metadata.items()}


class ObjectSource:
    """The body of a GET, hashed while read; checked against size and stored hash.

    Without a ``body`` (a large object: ``resumable``), nothing is fetched until the first
    read, which asks ``reopen`` for the bytes after those handed to ``resume``.
    """

    def __init__(
        self,
        bucket: S3Bucket,
        path: str,
        expected: Entry,
        meta: dict[str, str],
        body: Any,
        reopen: Callable[[int], Any],
    ) -> None:
        self._bucket = bucket
        self._path = path
        self._body = body
        self._reopen = reopen
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
            self._body = self._reopen(self._read)
        # Errors while streaming are translated here, not only around ``open``: the
        # destination decides by them whether a partial copy is worth keeping.
        with self._bucket.calling(self._path):
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
