"""From a REMOTE argument (a path, ``file://``, ``s3://bucket/prefix``) to a storage."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storsync.engine.paths import refusal
from storsync.errors import UsageError
from storsync.storage.base import Storage
from storsync.storage.local import LocalStorage

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Options:
    """S3 settings read at the edge (options, else the usual AWS variables)."""

    endpoint: str | None = None
    region: str | None = None
    # None: the usual AWS variables and files; the service passes a repository's own.
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)


def canonical_url(remote: str, s3: S3Options | None = None) -> str:
    """The remote as a URL without credentials, used to key the pair's state."""
    parts = urlsplit(remote)
    if parts.scheme in ("", "file"):
        return _directory(remote).as_uri()
    if parts.scheme == "s3":
        bucket, prefix = _bucket_and_prefix(remote)
        url = f"s3://{bucket}/{prefix}".rstrip("/")
        endpoint = _endpoint(s3)
        return f"{url}?endpoint={endpoint}" if endpoint else url
    raise UsageError(
        f"unsupported remote {remote!r}: give a directory path, a file:// or an s3:// URL"
    )


def _directory(remote: str) -> Path:
    parts = urlsplit(remote)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file:// URL {remote!r} names a host; only local paths work")
        path = Path(unquote(parts.path))
    else:
        path = Path(remote)
    return path.expanduser().absolute()


def _bucket_and_prefix(remote: str) -> tuple[str, str]:
    parts = urlsplit(remote)
    # A ':' has no place in a bucket name: it is a KEY:SECRET whose secret holds a '/'.
    if parts.username or parts.password or ":" in parts.netloc:
        raise UsageError(
            "put S3 credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, not the URL"
        )
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not _BUCKET.match(bucket):
        raise UsageError(
            f"invalid bucket name {bucket!r}: 3 to 63 lower-case letters, digits, '.' or '-'"
        )
    if prefix and (reason := refusal(prefix)):
        raise UsageError(f"invalid S3 prefix {prefix!r}: {reason}")
    return bucket, prefix


def _endpoint(s3: S3Options | None) -> str | None:
    """The endpoint, refused when it carries credentials (messages and state name it)."""
    endpoint = (s3 or S3Options()).endpoint
    # '@' anywhere: a secret may hold a '/', which ends what urlsplit takes as the host part
    if endpoint and "@" in endpoint:
        raise UsageError(
            "put S3 credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, not the endpoint URL"
        )
    return endpoint


def open_remote(remote: str, s3: S3Options | None = None) -> Storage:
    if urlsplit(remote).scheme == "s3":
        from storsync.storage.s3 import S3Settings, S3Storage

        bucket, prefix = _bucket_and_prefix(remote)
        options = s3 or S3Options()
        return S3Storage(
            S3Settings(
                bucket=bucket,
                prefix=prefix,
                endpoint=_endpoint(options),
                region=options.region,
                access_key_id=options.access_key_id,
                secret_access_key=options.secret_access_key,
            )
        )
    canonical_url(remote)
    root = _directory(remote)
    if root.exists() and not root.is_dir():
        raise UsageError(f"remote {remote!r} is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    return LocalStorage(root)
