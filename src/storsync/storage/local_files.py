"""What a local file says and does, for the local storage and its resumable downloads
alike: an entry from a stat, whether a file is still as expected, what an OSError means,
and the last step of staging a file."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from storsync.errors import ChangedError, PermanentStorageError, StorageError
from storsync.model import Entry
from storsync.storage.base import Source


def matches(st: os.stat_result, expected: Entry) -> bool:
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == expected.size
        and st.st_mtime_ns == expected.mtime_ns
        and (expected.inode is None or st.st_ino == expected.inode)
    )


def storage_error(path: str, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        return PermanentStorageError(f"{path}: {reason}")
    return StorageError(f"{path}: {reason}")


@dataclass(frozen=True)
class Partial:
    """A staged file: where it waits, and its stat once sealed (what the base records of
    it: the stat of whatever stands at its name after the rename could be another's)."""

    data: str
    written: os.stat_result


def seal(
    fd: int, source: Source, path: str, written: int, size: int, *, mode: int, mtime_ns: int
) -> tuple[str, os.stat_result]:
    """The staged file's content hash, once the source proved unchanged and every byte
    came; then its mode and mtime, set before it becomes visible; and its stat."""
    digest = source.finish()
    if written != size:
        raise ChangedError(f"{path}: read {written} bytes where {size} were expected")
    os.fchmod(fd, mode)
    os.utime(fd, ns=(mtime_ns, mtime_ns))
    return digest, os.fstat(fd)
