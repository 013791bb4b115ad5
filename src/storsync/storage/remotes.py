"""From a REMOTE argument (a path, ``file://``, later ``s3://``) to a storage."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from storsync.errors import UsageError
from storsync.storage.base import Storage
from storsync.storage.local import LocalStorage


def canonical_url(remote: str) -> str:
    """The remote as a URL without credentials, used to key the pair's state."""
    parts = urlsplit(remote)
    if parts.scheme in ("", "file"):
        return _directory(remote).as_uri()
    raise UsageError(f"unsupported remote {remote!r}: give a directory path or a file:// URL")


def _directory(remote: str) -> Path:
    parts = urlsplit(remote)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file:// URL {remote!r} names a host; only local paths work")
        path = Path(unquote(parts.path))
    else:
        path = Path(remote)
    return path.expanduser().absolute()


def open_remote(remote: str) -> Storage:
    canonical_url(remote)
    root = _directory(remote)
    if root.exists() and not root.is_dir():
        raise UsageError(f"remote {remote!r} is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    return LocalStorage(root)
