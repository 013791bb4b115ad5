"""File-system notifications on a local root (Linux inotify through asyncinotify): hints
that something changed, never the truth (SYNC.md promise 9: every session still scans).

One inotify watch per directory, added as directories appear; storsync's own ``.storsync``
folders and symbolic links are never watched. A notification queue overflow, a watch that
cannot be added (the kernel's ``max_user_watches``) or any watcher error is reported as
such, so that the caller rescans everything instead of trusting the hints.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from asyncinotify import Event, Inotify, Mask

from storsync.paths import OWN_DIR, normalize

# What a file or a directory can undergo that a sync must see.
_MASK = (
    Mask.CLOSE_WRITE
    | Mask.CREATE
    | Mask.DELETE
    | Mask.MOVED_FROM
    | Mask.MOVED_TO
    | Mask.ATTRIB
    | Mask.DELETE_SELF
    | Mask.MOVE_SELF
    | Mask.ONLYDIR
    | Mask.DONT_FOLLOW
    | Mask.EXCL_UNLINK
)


# File systems whose changes made by other machines inotify never hears of.
_REMOTE_FILE_SYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "9p", "afs", "lustre", "gpfs"}
)


def network_file_system(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the network file system ``path`` lies on (a FUSE one counts: sshfs,
    rclone mount), or None where its notifications see every change. ``mountinfo``: the
    text of /proc/self/mountinfo (read when None)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = "", None
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if len(fields) < 5 or not tail:
            continue
        # Mount points escape spaces and the like as octal: ``\040``.
        point = fields[4].encode().decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, tail.split()[0]
    if kind is not None and (kind in _REMOTE_FILE_SYSTEMS or kind.startswith("fuse.")):
        return kind
    return None


@dataclass
class Hints:
    """What the notifications of a while said: the paths they named (relative, NFC), and
    whether they can be trusted to be complete (not after an overflow or an error)."""

    paths: set[str] = field(default_factory=set)
    complete: bool = True
    why: str | None = None  # why not complete, for the log
    limited: str | None = None  # some directories could not be watched, and why

    def __bool__(self) -> bool:
        return bool(self.paths) or not self.complete


class LocalWatcher:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._inotify = Inotify(sync_timeout=0.0)
        self._dirs: dict[int, str] = {}  # watch descriptor -> relative directory ("" root)
        self._limited: str | None = None  # why some directory is not watched

    def start(self) -> Hints:
        """Watch the root and every directory below it (``limited`` says why not all)."""
        self._add_tree("")
        return Hints(limited=self._limited)

    def close(self) -> None:
        self._inotify.close()

    def poll(self, timeout_s: float) -> Hints:
        """The notifications that came within ``timeout_s`` (all that are queued, once the
        first one came). Directories left unwatched by the kernel's limit are told once, by
        ``start`` (or the poll whose new directory hit it): the caller's periodic rescans
        cover them."""
        limited = self._limited
        hints = Hints()
        self._inotify.sync_timeout = timeout_s
        try:
            event = self._inotify.sync_get()
            self._inotify.sync_timeout = 0.0
            while event is not None:
                self._take(event, hints)
                event = self._inotify.sync_get()
        except (OSError, ValueError) as exc:  # ValueError: its descriptor was closed
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            hints.complete, hints.why = False, f"the watcher failed: {reason}"
        if self._limited is not None and limited is None:
            hints.limited = self._limited
        return hints

    def _take(self, event: Event, hints: Hints) -> None:
        mask = event.mask
        if Mask.Q_OVERFLOW in mask:
            hints.complete, hints.why = False, "the notification queue overflowed"
            return
        wd = None if event.watch is None else event.watch.wd
        folder = None if wd is None else self._dirs.get(wd)
        if wd is None or folder is None:
            return
        if Mask.IGNORED in mask or Mask.DELETE_SELF in mask or Mask.MOVE_SELF in mask:
            if Mask.IGNORED in mask:
                self._dirs.pop(wd, None)
            if folder == "":
                hints.complete, hints.why = False, "the watched root itself went away"
            return
        name = event.name
        if name is None:
            return
        rel = f"{folder}/{name}" if folder else str(name)
        if rel.split("/", 1)[0] == OWN_DIR or f"/{OWN_DIR}/" in f"/{rel}/":
            return
        hints.paths.add(normalize(rel))
        if Mask.ISDIR in mask and (Mask.CREATE in mask or Mask.MOVED_TO in mask):
            # A directory that appeared: watch it, and name what is already in it (files
            # may have come before its watch did).
            hints.paths.update(self._add_tree(rel))

    def _add_tree(self, top: str) -> set[str]:
        """Watch ``top`` and the directories below it; the files found in them."""
        found: set[str] = set()
        pending = [top]
        while pending:
            rel = pending.pop()
            full = self.root / rel if rel else self.root
            if not self._add(full, rel):
                continue
            try:
                with os.scandir(full) as entries:
                    for entry in entries:
                        child = f"{rel}/{entry.name}" if rel else entry.name
                        if entry.name == OWN_DIR or entry.is_symlink():
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(child)
                        else:
                            found.add(normalize(child))
            except OSError:
                continue  # gone, or unreadable: the scan reports it
        return found

    def _add(self, full: Path, rel: str) -> bool:
        try:
            watch = self._inotify.add_watch(full, _MASK)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._limited = (
                    "the kernel's limit of inotify watches is reached (fs.inotify."
                    "max_user_watches): some directories are not watched, and changes "
                    "there are found by the periodic rescans"
                )
            return False
        self._dirs[watch.wd] = rel
        return True
