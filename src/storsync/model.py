"""The shared vocabulary: sides, entries as scanned, the base, modes and policies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"

    @property
    def other(self) -> Side:
        return Side.REMOTE if self is Side.LOCAL else Side.LOCAL


class Mode(StrEnum):
    TWO_WAY = "two-way"
    PUSH_ONLY = "push-only"
    PULL_ONLY = "pull-only"


class ConflictPolicy(StrEnum):
    KEEP_BOTH = "keep-both"
    NEWER = "newer"
    LOCAL = "local"
    REMOTE = "remote"


@dataclass(frozen=True, slots=True)
class Entry:
    """One file as a side holds it now. Fields a side cannot give are None."""

    size: int
    mtime_ns: int
    executable: bool = False
    inode: int | None = None
    etag: str | None = None
    hash: str | None = None


@dataclass(frozen=True, slots=True)
class BaseEntry:
    """What both sides held after the last verified transfer of a path.

    The bytes were the same on both sides (one size, one hash); the stamps are per side,
    since each side reports its own mtime precision, inode or ETag.
    """

    size: int
    hash: str | None
    executable: bool
    local_mtime_ns: int
    local_inode: int | None
    local_etag: str | None
    remote_mtime_ns: int
    remote_inode: int | None
    remote_etag: str | None

    @classmethod
    def of(cls, local: Entry, remote: Entry, content_hash: str | None) -> BaseEntry:
        return cls(
            size=local.size,
            hash=content_hash,
            executable=local.executable,
            local_mtime_ns=local.mtime_ns,
            local_inode=local.inode,
            local_etag=local.etag,
            remote_mtime_ns=remote.mtime_ns,
            remote_inode=remote.inode,
            remote_etag=remote.etag,
        )

    def stamp(self, side: Side) -> Entry:
        """The entry this side held when the base was recorded."""
        if side is Side.LOCAL:
            return Entry(
                self.size, self.local_mtime_ns, self.executable, self.local_inode, self.local_etag
            )
        return Entry(
            self.size, self.remote_mtime_ns, self.executable, self.remote_inode, self.remote_etag
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path a scan or a transfer left alone, and why (a log item)."""

    side: Side
    path: str
    reason: str
