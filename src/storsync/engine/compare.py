"""How an entry compares with the base, under the capabilities its side declares."""

from __future__ import annotations

from enum import Enum

from storsync.model import BaseEntry, Capabilities, Entry, Side


class Change(Enum):
    ABSENT = "absent"  # neither now nor in the base
    SAME = "same"
    CHANGED = "changed"
    NEW = "new"
    DELETED = "deleted"


def stamp_matches(now: Entry, base: BaseEntry, side: Side, caps: Capabilities) -> bool:
    """Whether the side still holds the version the base recorded, judged by metadata only."""
    if now.size != base.size:
        return False
    if caps.executable_bit and now.executable != base.executable:
        return False
    if side is Side.LOCAL:
        mtime, inode, etag = base.local_mtime_ns, base.local_inode, base.local_etag
    else:
        mtime, inode, etag = base.remote_mtime_ns, base.remote_inode, base.remote_etag
    if caps.etags:
        return now.etag == etag
    if abs(now.mtime_ns - mtime) >= caps.mtime_precision_ns:
        return False
    return not caps.inodes or now.inode == inode


def content_matches(now: Entry, base: BaseEntry) -> bool:
    """Whether the bytes (and executable bit) are the base's, when the hash is known."""
    return (
        now.hash is not None
        and now.hash == base.hash
        and now.size == base.size
        and now.executable == base.executable
    )


def classify(
    now: Entry | None, base: BaseEntry | None, side: Side, caps: Capabilities, *, checksum: bool
) -> Change:
    if now is None:
        return Change.ABSENT if base is None else Change.DELETED
    if base is None:
        return Change.NEW
    if checksum and now.hash is not None:
        return Change.SAME if content_matches(now, base) else Change.CHANGED
    if stamp_matches(now, base, side, caps) or content_matches(now, base):
        return Change.SAME
    return Change.CHANGED


def same_bytes(a: Entry, b: Entry) -> bool:
    """Whether two versions hold the same bytes, never guessed from size and mtime."""
    return a.size == b.size and a.hash is not None and a.hash == b.hash


def needs_hash(
    now: Entry, other: Entry | None, base: BaseEntry | None, side: Side, caps: Capabilities
) -> bool:
    """Whether the decision about this entry depends on its content hash.

    Metadata decides most paths; a hash is needed only when the stamp moved but the size
    did not (a touch or a same-size edit), or when both sides hold a new or changed version
    of the same size (same bytes, or a conflict).
    """
    if now.hash is not None:
        return False
    if base is not None and stamp_matches(now, base, side, caps):
        return False
    if base is not None and now.size == base.size:
        return True
    if other is None or other.size != now.size:
        return False
    return base is None or not stamp_matches(other, base, side.other, caps)


def untouched(local: Entry | None, remote: Entry | None, base: BaseEntry | None) -> bool:
    """Whether both sides still hold exactly the stamps the base recorded for a path.

    The common case of a no-op session: such a path is SAME on both sides under any
    capabilities and has no stale stamp, so no mode decides anything for it (unless
    contents are compared by hash). A shortcut only: False says nothing.
    """
    return (
        local is not None
        and remote is not None
        and base is not None
        and local.mtime_ns == base.local_mtime_ns
        and remote.mtime_ns == base.remote_mtime_ns
        and local.size == base.size
        and remote.size == base.size
        and local.inode == base.local_inode
        and remote.inode == base.remote_inode
        and local.executable == base.executable
        and remote.executable == base.executable
        and local.etag == base.local_etag
        and remote.etag == base.remote_etag
    )
