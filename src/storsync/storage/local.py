"""A directory on a local file system: the local side, and the `file://` remote.

Writes land in ``.storsync/partial/`` (same file system), carry their mtime and mode before
they become visible, and are renamed into place only after the batch they belong to was
flushed (``sync``). Nothing is ever written through a symbolic link: every directory on the
way to a target is checked with lstat before use.

A download from a resumable source (a large remote object) is written to a partial file
named after its path and version, with a checksum file beside it, so that a rerun after a
kill or an outage continues it instead of starting again (``local_resume``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import shutil
import stat
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from storsync.clock import Clock, SystemClock
from storsync.errors import ChangedError, PreconditionFailed, StorageError
from storsync.model import Capabilities, Entry, StopSignal
from storsync.paths import MAX_PATH_BYTES, OWN_DIR, normalize, refusal
from storsync.storage import local_walk
from storsync.storage.base import Resumable, SkipReport, Source, Staged, Storage, StoredKeys
from storsync.storage.content import CHUNK, new_hasher
from storsync.storage.local_files import Partial, matches, rename_new, seal, storage_error
from storsync.storage.local_resume import (
    RESUME_KEEP_NS,
    ResumablePartial,
    drop_files,
    stage_resumable,
    still_resumable,
)
from storsync.storage.local_walk import entry_of

_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_EXEC = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _FileSource:
    mtime_ns: int | None = None
    executable: bool | None = None
    resumable: Resumable | None = None

    def __init__(self, fd: int, path: str, native: str, expected: Entry) -> None:
        self._fd = fd
        self._path = path
        self._native = native
        self._expected = expected
        self._hasher = new_hasher()
        self._read = 0

    def read(self, n: int) -> bytes:
        block = os.read(self._fd, n)
        self._hasher.update(block)
        self._read += len(block)
        return block

    def finish(self) -> str:
        if self._read != self._expected.size or not matches(os.fstat(self._fd), self._expected):
            raise ChangedError(f"{self._path} changed while it was read")
        try:
            still = os.lstat(self._native)
        except FileNotFoundError:
            raise ChangedError(f"{self._path} was removed while it was read") from None
        if not matches(still, self._expected):
            raise ChangedError(f"{self._path} was replaced while it was read")
        return self._hasher.hexdigest()


class LocalStorage(Storage):
    def __init__(self, root: Path, *, url: str | None = None, clock: Clock | None = None) -> None:
        self.root = root
        self.url = url or root.as_uri()
        self._clock = clock or SystemClock()
        self._own = root / OWN_DIR
        self._partial = self._own / "partial"
        # A staged file's name: this storage's random prefix and a counter, unique without
        # a random draw (a system call) for each file.
        self._part_prefix = os.path.join(self._partial, os.urandom(8).hex())
        self._part_numbers = itertools.count()
        self._trash = self._own / "trash"
        self._native: dict[str, str] = {}
        # Read once: reading the umask sets it, which must not race with worker threads.
        umask = _umask()
        self._mode = 0o666 & ~umask
        self._exec_mode = self._mode | (_EXEC & ~umask)
        self.caps = Capabilities(
            mtime_precision_ns=1,
            inodes=True,
            case_sensitive=self._probe_case_sensitive(),
            executable_bit=True,
        )

    # -- names ------------------------------------------------------------------------

    def _probe_case_sensitive(self) -> bool:
        """Whether this file system tells ``A`` from ``a`` (measured, not assumed)."""
        if not self.root.is_dir():
            return True
        name = self.root.name
        if name.swapcase() != name:
            # The root's own name answers without writing anything.
            other = self.root.with_name(name.swapcase())
            return not (other.exists() and os.path.samestat(other.stat(), self.root.stat()))
        self._own.mkdir(exist_ok=True)
        probe = self._own / "CaseProbe"
        probe.touch()
        try:
            return not (self._own / "caseprobe").exists()
        finally:
            probe.unlink()

    def _abs(self, path: str) -> str:
        return os.path.join(self.root, self._native.get(path, path))

    def _ensure_dirs(self, path: str) -> None:
        """Create the parents of ``path``, refusing to pass through a link or a file.

        Checked again for every write, never from a cache: a folder checked a moment ago
        may have been replaced by a link to somewhere outside the root since.
        """
        parts = path.split("/")[:-1]
        for i in range(len(parts)):
            rel = "/".join(parts[: i + 1])
            full = os.path.join(self.root, rel)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                try:
                    os.mkdir(full)
                except FileExistsError:
                    st = os.lstat(full)
                else:
                    continue
            if not stat.S_ISDIR(st.st_mode):
                kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "file"
                raise PreconditionFailed(f"{path}: a {kind} stands where {rel}/ should be")

    def _prune_empty_parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        while parts:
            rel = "/".join(parts)
            try:
                os.rmdir(os.path.join(self.root, rel))
            except OSError:
                return
            parts.pop()

    # -- scan -------------------------------------------------------------------------

    def scan(self, skip: SkipReport, stop: StopSignal) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        self._native.clear()
        if self.root.is_dir():
            self._walk([("", str(self.root))], found, skip, stop)
        return found

    def scan_under(
        self, tops: Sequence[str], skip: SkipReport, stop: StopSignal
    ) -> dict[str, Entry]:
        # Where a name on disk may differ from its key (another Unicode form, another
        # case), only a walk of its whole directory finds it: then everything is walked.
        if not self.caps.case_sensitive or not all(t.isascii() and t.isprintable() for t in tops):
            return super().scan_under(tops, skip, stop)
        found: dict[str, Entry] = {}
        self._native.clear()
        if not self.root.is_dir():
            return found
        stack: list[tuple[str, str]] = []
        for top in tops:
            self._look_at(top, found, stack, skip)
        self._walk(stack, found, skip, stop)
        return found

    def _look_at(
        self, top: str, found: dict[str, Entry], stack: list[tuple[str, str]], skip: SkipReport
    ) -> None:
        """The file at ``top``, or its directory onto ``stack``: reached as the walk would
        reach it, through directories only (a link on the way is skipped as the walk
        skips it, so nothing under it reads as deleted)."""
        parts = top.split("/")
        if OWN_DIR in parts:
            return
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            full = os.path.join(self.root, rel)
            try:
                st = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):
                return
            except OSError as exc:
                skip(rel, f"cannot read: {exc.strerror}")
                return
            if stat.S_ISLNK(st.st_mode):
                skip(rel, "symbolic link skipped")
                return
            if stat.S_ISDIR(st.st_mode):
                continue
            if depth == len(parts) and stat.S_ISREG(st.st_mode):
                if len(rel) > MAX_PATH_BYTES and refusal(rel):
                    skip(rel, f"path longer than {MAX_PATH_BYTES} bytes")
                else:
                    found[rel] = entry_of(st)
            elif depth == len(parts):
                skip(rel, "special file skipped (FIFO, socket or device)")
            return  # a file where a directory of ``top`` was: nothing lies under it
        stack.append((top + "/", os.path.join(self.root, top)))

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        """In key order, one directory on the way held at a time (``local_walk``), in a
        child process from ``CHILD_FROM`` expected entries, started at once. A
        case-insensitive side sorts a whole scan: telling ``A`` from ``a`` apart takes
        every name."""
        if not self.caps.case_sensitive:
            return self.sorted_walk(skip, stop)
        self._native.clear()
        if not self.root.is_dir():
            return iter(())
        walk = local_walk.in_child if expected >= local_walk.CHILD_FROM else local_walk.ordered
        return self._failed_as_storage(walk(str(self.root), skip, stop, self._native.__setitem__))

    def _failed_as_storage(self, walk: Iterator[tuple[str, Entry]]) -> Iterator[tuple[str, Entry]]:
        try:
            yield from walk
        except local_walk.WalkFailed as exc:
            raise StorageError(f"{self.url}: {exc}") from None

    def _walk(
        self,
        stack: list[tuple[str, str]],
        found: dict[str, Entry],
        skip: SkipReport,
        stop: StopSignal,
    ) -> None:
        """Every file in the directories on ``stack`` (key prefix, path) and below."""
        folded: dict[str, str] | None = None if self.caps.case_sensitive else {}
        while stack:
            prefix, directory = stack.pop()
            try:
                it = os.scandir(directory)
            except OSError as exc:
                skip(prefix.rstrip("/") or ".", f"cannot read directory: {exc.strerror}")
                continue
            with it:
                for item in it:
                    stop.check()
                    rel = prefix + item.name
                    is_dir = local_walk.admitted(rel, item, skip)
                    if is_dir is None:
                        continue
                    if is_dir:
                        stack.append((rel + "/", item.path))
                        continue
                    key = normalize(rel)
                    if key in found or key in self._native:
                        # Whichever of the two spellings the directory lists first.
                        skip(rel, "another name is the same after Unicode normalization")
                        continue
                    if key != rel:
                        self._native[key] = rel
                    if folded is not None:
                        low = key.casefold()
                        if low in folded:
                            skip(rel, f"differs only by case from {folded[low]}")
                            continue
                        folded[low] = key
                    try:
                        st = item.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found[key] = entry_of(st)

    def stat(self, path: str) -> Entry | None:
        try:
            st = os.lstat(self._abs(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return entry_of(st) if stat.S_ISREG(st.st_mode) else None

    # -- reading ----------------------------------------------------------------------

    @contextlib.contextmanager
    def open(self, path: str, expected: Entry) -> Iterator[Source]:
        native = self._abs(path)
        try:
            # O_NONBLOCK: a FIFO swapped in since the scan must not hang the open.
            fd = os.open(native, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ChangedError(f"{path} was removed since the scan") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ChangedError(f"{path} became a symbolic link since the scan") from None
            raise storage_error(path, exc) from exc
        try:
            if not matches(os.fstat(fd), expected):
                raise ChangedError(f"{path} changed since the scan")
            os.set_blocking(fd, True)
            yield _FileSource(fd, path, native, expected)
        finally:
            os.close(fd)

    # -- writing ----------------------------------------------------------------------

    def stage(
        self, path: str, source: Source, *, size: int, mtime_ns: int, executable: bool
    ) -> Staged:
        mode = self._exec_mode if executable else self._mode
        if source.resumable is not None:
            return stage_resumable(
                self._partial,
                path,
                source,
                source.resumable,
                size=size,
                mtime_ns=mtime_ns,
                mode=mode,
            )
        tmp = f"{self._part_prefix}-{next(self._part_numbers)}.part"
        try:
            fd = os.open(tmp, _NEW_FILE, mode)  # its final mode at once: no chmod after
        except FileNotFoundError:
            self._partial.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _NEW_FILE, mode)
        try:
            written = 0
            # Ask for what is left plus one byte (to see the end), not a whole CHUNK: a
            # 1 MiB buffer for a 4 KiB file costs more than the copy.
            while block := source.read(min(CHUNK, size - written + 1)):
                view = memoryview(block)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    written += n
                if written > size:
                    raise ChangedError(f"{path} grew while it was read")
            digest, sealed = seal(fd, source, path, written, size, mode=mode, mtime_ns=mtime_ns)
        except BaseException as exc:
            os.close(fd)
            os.unlink(tmp)
            if isinstance(exc, OSError):
                raise storage_error(path, exc) from exc
            raise
        os.close(fd)
        return Staged(path, digest, size, Partial(tmp, sealed))

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        path = staged.path
        token = staged.token
        assert isinstance(token, Partial)
        target = self._abs(path)
        try:
            self._ensure_dirs(path)
            if expected is None:
                self._place_new(path, token.data, target)
            else:
                self._check_target(path, target, expected)
                if trash is not None:
                    self._keep_in_trash(target, path, trash, move=False)
                os.rename(token.data, target)
            if isinstance(token, ResumablePartial):
                drop_files(token.sums)
        except FileExistsError:
            self.discard(staged)
            raise PreconditionFailed(f"{path} appeared since the scan") from None
        except BaseException as exc:
            self.discard(staged)
            if isinstance(exc, OSError):
                raise storage_error(path, exc) from exc
            raise
        # What was written, not what stands at the name now: a file put there since the
        # rename is then the next scan's change, not taken for the version synchronized.
        entry = entry_of(token.written)
        return Entry(entry.size, entry.mtime_ns, entry.executable, entry.inode, None, staged.hash)

    @staticmethod
    def _place_new(path: str, data: str, target: str) -> None:
        """Rename a staged new file into place. The rename itself refuses any name standing
        there (no look before it: one call a file fewer, and no moment between the look and
        the rename); only then is it looked at, for an emptied directory gives way to a file."""
        try:
            rename_new(data, target)
            return
        except FileExistsError as refused:
            try:
                standing = os.lstat(target).st_mode
            except FileNotFoundError:  # gone again already: still a name that came since
                raise refused from None
            if not stat.S_ISDIR(standing):
                raise
        try:
            os.rmdir(target)
        except OSError:
            raise PreconditionFailed(f"{path} is a non-empty directory") from None
        rename_new(data, target)

    def _check_target(self, path: str, target: str, expected: Entry) -> None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise PreconditionFailed(f"{path} was removed since the scan") from None
        if not matches(st, expected):
            raise PreconditionFailed(f"{path} changed since the scan")

    def _keep_in_trash(self, target: str, path: str, trash: str, *, move: bool) -> None:
        kept = self._trash / trash / path
        kept.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.rename(target, kept)
            return
        try:
            os.link(target, kept)
        except OSError:
            shutil.copy2(target, kept)

    def discard(self, staged: Staged) -> None:
        token = staged.token
        if isinstance(token, ResumablePartial):
            drop_files(token.data, token.sums)
        elif isinstance(token, Partial):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(token.data)

    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        target = self._abs(path)
        try:
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            raise PreconditionFailed(f"{path} was removed since the scan") from None
        if not matches(st, expected):
            raise PreconditionFailed(f"{path} changed since the scan")
        try:
            if trash is None:
                os.unlink(target)
            else:
                self._keep_in_trash(target, path, trash, move=True)
        except OSError as exc:
            raise storage_error(path, exc) from exc
        self._prune_empty_parents(self._native.get(path, path))

    def copy(self, path: str, new_path: str, expected: Entry) -> Entry:
        with self.open(path, expected) as source:
            staged = self.stage(
                new_path,
                source,
                size=expected.size,
                mtime_ns=expected.mtime_ns,
                executable=expected.executable,
            )
        self.sync()
        return self.publish(staged, expected=None, trash=None)

    def move(self, path: str, new_path: str, expected: Entry) -> Entry:
        source, target = self._abs(path), self._abs(new_path)
        try:
            st = os.lstat(source)
        except (FileNotFoundError, NotADirectoryError):
            raise PreconditionFailed(f"{path} was removed since the scan") from None
        if not matches(st, expected):
            raise PreconditionFailed(f"{path} changed since the scan")
        self._ensure_dirs(new_path)
        try:
            rename_new(source, target)
        except FileExistsError:
            raise PreconditionFailed(f"{new_path} appeared since the scan") from None
        except OSError as exc:
            raise storage_error(new_path, exc) from exc
        self._prune_empty_parents(self._native.pop(path, path))  # a directory moved away
        # The version checked and moved (a rename keeps its stat), not a second look at
        # the new name: a file put there since is the next scan's change.
        return entry_of(st)

    # -- own files --------------------------------------------------------------------

    def read_own(self, name: str) -> bytes | None:
        try:
            return (self._own / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write_own(self, name: str, data: bytes) -> None:
        target = self._own / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def prune_trash(self, older_than_ns: int) -> None:
        if not self._trash.is_dir():
            return
        for folder in self._trash.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if folder.stat().st_mtime_ns < older_than_ns:
                    shutil.rmtree(folder, ignore_errors=True)

    def sync(self) -> None:
        if not self.root.is_dir():
            return
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def start_session(self) -> None:
        """Drop what killed runs left in ``partial/``, but for resumable downloads whose
        checksum file (touched at every chunk) is younger than RESUME_KEEP_NS."""
        try:
            if not stat.S_ISDIR(os.lstat(self._partial).st_mode):
                return  # never delete through a link to somewhere else
            names = os.listdir(self._partial)
        except FileNotFoundError:
            return
        cutoff = self._clock.now_ns() - RESUME_KEEP_NS
        for name in names:
            if still_resumable(self._partial, name, cutoff):
                continue
            full = os.path.join(self._partial, name)
            try:
                drop_files(full)
            except IsADirectoryError:
                shutil.rmtree(full, ignore_errors=True)  # not storsync's; dropped as before
