"""What a local file says and does, for the local storage and its resumable downloads
alike: whether a file is still as expected, what an OSError means, the last step of
staging a file, and a rename that never replaces what stands at its new name."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from dataclasses import dataclass

from storsync.errors import ChangedError, PermanentStorageError, StorageError
from storsync.model import Entry
from storsync.storage.base import Source

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def rename_new(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` unless a name stands there (FileExistsError): in one step,
    where a check before a rename would leave a moment in which a file put there is
    replaced and lost."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE):
            code = ctypes.get_errno()
            if code not in (errno.EINVAL, errno.ENOSYS):  # the file system cannot: a link can
                raise OSError(code, os.strerror(code), dst)
        else:
            return
    os.link(src, dst)  # refuses an existing name too
    os.unlink(src)


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
    os.utime(fd, ns=(mtime_ns, mtime_ns))
    sealed = os.fstat(fd)
    if stat.S_IMODE(sealed.st_mode) == mode:  # created with it, as a file mostly is
        return digest, sealed
    os.fchmod(fd, mode)  # a resumable partial (0600 while it waits), or a default ACL's say
    return digest, os.fstat(fd)
