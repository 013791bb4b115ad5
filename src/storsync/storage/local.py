"""A directory on a local file system: the local side, and the `file://` remote.

Writes land in ``.storsync/partial/`` (same file system), carry their mtime and mode before
they become visible, and are renamed into place only after the batch they belong to was
flushed (``sync``). Nothing is ever written through a symbolic link: every directory on the
way to a target is checked with lstat before use.

A download from a resumable source (a large remote object) is written to a partial file
named after its path and version, with a checksum file beside it, so that a rerun after a
kill or an outage continues it instead of starting again (``_stage_resumable``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import itertools
import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storsync.clock import Clock, SystemClock
from storsync.engine.compare import Capabilities
from storsync.engine.paths import MAX_PATH_BYTES, OWN_DIR, normalize, refusal
from storsync.errors import (
    ChangedError,
    PermanentStorageError,
    PreconditionFailed,
    StorageError,
    StorsyncError,
)
from storsync.model import Entry
from storsync.storage.base import Resumable, SkipReport, Source, Staged, Storage, current_checkpoint
from storsync.storage.content import CHUNK, hash_bytes, new_hasher

_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)
_EXEC = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
# A resumable partial file is vouched for by one BLAKE3 line per RESUME_CHUNK written; a
# rerun trusts its bytes only as far as those lines match them.
RESUME_CHUNK = 8 << 20
# How long a resumable partial file waits for its transfer to be retried (from its last
# write); a path that is no longer transferred leaves its partial file behind that long.
RESUME_KEEP_NS = 3 * 86_400 * 10**9
_HEX = frozenset("0123456789abcdef")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _entry(st: os.stat_result) -> Entry:
    return Entry(st.st_size, st.st_mtime_ns, bool(st.st_mode & stat.S_IXUSR), st.st_ino)


def _matches(st: os.stat_result, expected: Entry) -> bool:
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == expected.size
        and st.st_mtime_ns == expected.mtime_ns
        and (expected.inode is None or st.st_ino == expected.inode)
    )


def _storage_error(path: str, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        return PermanentStorageError(f"{path}: {reason}")
    return StorageError(f"{path}: {reason}")


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
        if self._read != self._expected.size or not _matches(os.fstat(self._fd), self._expected):
            raise ChangedError(f"{self._path} changed while it was read")
        try:
            still = os.lstat(self._native)
        except FileNotFoundError:
            raise ChangedError(f"{self._path} was removed while it was read") from None
        if not _matches(still, self._expected):
            raise ChangedError(f"{self._path} was replaced while it was read")
        return self._hasher.hexdigest()


@dataclass(frozen=True)
class _ResumablePartial:
    """A staged download: the partial file and its checksum file."""

    data: str
    sums: str


class _Kept:
    """The leading chunks of a partial file that still match their checksum lines."""

    def __init__(self, fd: int, lines: list[str], size: int) -> None:
        self._fd = fd
        self._lines = lines
        self._size = size
        self.length = 0  # bytes vouched for so far
        self.chunks = 0

    def __iter__(self) -> Iterator[bytes]:
        for i, line in enumerate(self._lines):
            want = min(RESUME_CHUNK, self._size - i * RESUME_CHUNK)
            block = os.pread(self._fd, want, i * RESUME_CHUNK)
            if len(block) != want or hash_bytes(block) != line:
                return  # torn, never flushed, or changed: nothing from here on is trusted
            self.length += want
            self.chunks += 1
            yield block


def _resume_stem(path: str, version: str) -> str:
    """The partial file's name for one version of one path: found again by a rerun."""
    return f"{_digest(path)[:32]}-{_digest(version)[:16]}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sum_lines(sums: Path, header: str) -> list[str]:
    """The checksum lines of a partial file whose checksum file starts with ``header``."""
    try:
        first, *lines = sums.read_bytes().decode("ascii", "replace").split("\n")
    except FileNotFoundError:
        return []
    if first != header:
        return []  # another chunk size, or not what this transfer writes: start again
    valid = itertools.takewhile(lambda x: len(x) == 64 and _HEX.issuperset(x), lines)
    return list(valid)


def _append_resumable(path: str, source: Source, fd: int, log: int, written: int, size: int) -> int:
    """Copy the source after ``written`` bytes, and a checksum line after each chunk."""
    os.lseek(fd, written, os.SEEK_SET)
    chunk, filled = new_hasher(), 0
    while block := source.read(min(CHUNK, size - written + 1)):
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view) :]
        written += len(block)
        if written > size:
            raise ChangedError(f"{path} grew while it was read")
        while block:
            piece, block = block[: RESUME_CHUNK - filled], block[RESUME_CHUNK - filled :]
            chunk.update(piece)
            filled += len(piece)
            if filled == RESUME_CHUNK or (written == size and not block):
                os.write(log, f"{chunk.hexdigest()}\n".encode())
                chunk, filled = new_hasher(), 0
    return written


def _partial_file(token: object) -> str:
    return token.data if isinstance(token, _ResumablePartial) else str(token)


class LocalStorage(Storage):
    def __init__(self, root: Path, *, url: str | None = None, clock: Clock | None = None) -> None:
        self.root = root
        self.url = url or root.as_uri()
        self._clock = clock or SystemClock()
        self._own = root / OWN_DIR
        self._partial = self._own / "partial"
        self._trash = self._own / "trash"
        self._native: dict[str, str] = {}
        # Read once: reading the umask sets it, which must not race with worker threads.
        umask = _umask()
        self._mode = 0o666 & ~umask
        self._exec_mode = self._mode | (_EXEC & ~umask)
        self.caps = Capabilities(
            mtime_precision_ns=1,
            inodes=True,
            cheap_hash=True,
            conditional_writes=True,
            server_side_copy=True,
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

    def scan(self, skip: SkipReport) -> dict[str, Entry]:
        checkpoint = current_checkpoint()
        found: dict[str, Entry] = {}
        folded: dict[str, str] | None = None if self.caps.case_sensitive else {}
        self._native.clear()
        if not self.root.is_dir():
            return found
        stack = [("", str(self.root))]
        while stack:
            prefix, directory = stack.pop()
            try:
                it = os.scandir(directory)
            except OSError as exc:
                skip(prefix.rstrip("/") or ".", f"cannot read directory: {exc.strerror}")
                continue
            with it:
                for item in it:
                    checkpoint()
                    name = item.name
                    rel = prefix + name
                    if name == OWN_DIR:
                        continue
                    if not (name.isascii() and name.isprintable()):
                        reason = refusal(rel)
                        if reason:
                            skip(rel, reason)
                            continue
                    if item.is_symlink():
                        skip(rel, "symbolic link skipped")
                        continue
                    if item.is_dir(follow_symlinks=False):
                        stack.append((rel + "/", item.path))
                        continue
                    if not item.is_file(follow_symlinks=False):
                        skip(rel, "special file skipped (FIFO, socket or device)")
                        continue
                    if len(rel) > MAX_PATH_BYTES and refusal(rel):
                        skip(rel, f"path longer than {MAX_PATH_BYTES} bytes")
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
                    found[key] = _entry(st)
        return found

    def stat(self, path: str) -> Entry | None:
        try:
            st = os.lstat(self._abs(path))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _entry(st) if stat.S_ISREG(st.st_mode) else None

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
            raise _storage_error(path, exc) from exc
        try:
            if not _matches(os.fstat(fd), expected):
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
            return self._stage_resumable(
                path, source, source.resumable, size=size, mtime_ns=mtime_ns, mode=mode
            )
        tmp = os.path.join(self._partial, uuid.uuid4().hex + ".part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            self._partial.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
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
            digest = source.finish()
            if written != size:
                raise ChangedError(f"{path}: read {written} bytes where {size} were expected")
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        except BaseException as exc:
            os.close(fd)
            os.unlink(tmp)
            if isinstance(exc, OSError):
                raise _storage_error(path, exc) from exc
            raise
        os.close(fd)
        return Staged(path, digest, size, tmp)

    def _stage_resumable(
        self,
        path: str,
        source: Source,
        resumable: Resumable,
        *,
        size: int,
        mtime_ns: int,
        mode: int,
    ) -> Staged:
        """Write into a partial file that a later attempt at the same version continues.

        Its name comes from (path, version); ``<name>.sums`` holds a header (what the file
        is) and one BLAKE3 line per RESUME_CHUNK written, appended after the chunk's bytes
        and never flushed on their own: a power cut that loses data loses the match too. An
        attempt hands the source the leading chunks that match their lines, cuts the file
        after them and fetches only the rest. The file is kept when the attempt fails for a
        reason that may pass (an outage, a kill); a changed version, bytes that fail the
        source's checks or a refusal of this storage drop it. The final content is checked
        by ``source.finish`` over all bytes, the kept ones included.
        """
        self._partial.mkdir(parents=True, exist_ok=True)
        stem = _resume_stem(path, resumable.version)
        data, sums = self._partial / f"{stem}.resume", self._partial / f"{stem}.sums"
        self._drop_other_versions(path, stem)
        header = json.dumps(
            {"path": path, "version": resumable.version, "size": size, "chunk": RESUME_CHUNK}
        )
        fd = os.open(data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            lines = _sum_lines(sums, header)
            kept = _Kept(fd, lines, size)
            resumable.resume(kept)
            os.ftruncate(fd, kept.length)
            log = os.open(sums, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(log, "".join(f"{x}\n" for x in [header, *lines[: kept.chunks]]).encode())
                written = _append_resumable(path, source, fd, log, kept.length, size)
            finally:
                os.close(log)
            digest = source.finish()
            if written != size:
                raise ChangedError(f"{path}: read {written} bytes where {size} were expected")
            os.fchmod(fd, mode)
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        except BaseException as exc:
            os.close(fd)
            error = _storage_error(path, exc) if isinstance(exc, OSError) else exc
            # ChangedError and refusals are not retryable; outages and interrupts keep it.
            if isinstance(error, StorsyncError) and not error.retryable:
                self._drop_files(str(data), str(sums))
            if error is not exc:
                raise error from exc
            raise
        os.close(fd)
        return Staged(path, digest, size, _ResumablePartial(str(data), str(sums)))

    def publish(self, staged: Staged, *, expected: Entry | None, trash: str | None) -> Entry:
        path = staged.path
        tmp = _partial_file(staged.token)
        target = self._abs(path)
        try:
            self._ensure_dirs(path)
            self._check_target(path, target, expected)
            if expected is not None and trash is not None:
                self._keep_in_trash(target, path, trash, move=False)
            os.rename(tmp, target)
            if isinstance(staged.token, _ResumablePartial):
                self._drop_files(staged.token.sums)
            st = os.lstat(target)
        except BaseException as exc:
            self.discard(staged)
            if isinstance(exc, OSError):
                raise _storage_error(path, exc) from exc
            raise
        entry = _entry(st)
        return Entry(entry.size, entry.mtime_ns, entry.executable, entry.inode, None, staged.hash)

    def _check_target(self, path: str, target: str, expected: Entry | None) -> None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            if expected is not None:
                raise PreconditionFailed(f"{path} was removed since the scan") from None
            return
        if expected is None:
            if stat.S_ISDIR(st.st_mode):
                try:
                    os.rmdir(target)  # an emptied directory gives way to a file
                except OSError:
                    raise PreconditionFailed(f"{path} is a non-empty directory") from None
                return
            raise PreconditionFailed(f"{path} appeared since the scan")
        if not _matches(st, expected):
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
        if isinstance(token, _ResumablePartial):
            self._drop_files(token.data, token.sums)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(token))

    def _drop_files(self, *files: str) -> None:
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def _drop_other_versions(self, path: str, stem: str) -> None:
        """Partial files of other versions of ``path``: useless once another one is wanted."""
        mine = f"{_digest(path)[:32]}-"
        for name in os.listdir(self._partial):
            if name.startswith(mine) and not name.startswith(stem):
                self._drop_files(os.path.join(self._partial, name))

    def remove(self, path: str, expected: Entry, *, trash: str | None) -> None:
        target = self._abs(path)
        try:
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            raise PreconditionFailed(f"{path} was removed since the scan") from None
        if not _matches(st, expected):
            raise PreconditionFailed(f"{path} changed since the scan")
        try:
            if trash is None:
                os.unlink(target)
            else:
                self._keep_in_trash(target, path, trash, move=True)
        except OSError as exc:
            raise _storage_error(path, exc) from exc
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
        if not _matches(st, expected):
            raise PreconditionFailed(f"{path} changed since the scan")
        self._ensure_dirs(new_path)
        try:
            os.link(source, target)  # fails if the new name exists: never clobbers
            os.unlink(source)
        except FileExistsError:
            raise PreconditionFailed(f"{new_path} appeared since the scan") from None
        except OSError as exc:
            raise _storage_error(new_path, exc) from exc
        self._native.pop(path, None)
        return _entry(os.lstat(target))

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
            stem, _, kind = name.rpartition(".")
            if kind in ("resume", "sums"):
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(self._partial / f"{stem}.sums").st_mtime_ns >= cutoff:
                        continue
            full = os.path.join(self._partial, name)
            try:
                self._drop_files(full)
            except IsADirectoryError:
                shutil.rmtree(full, ignore_errors=True)  # not storsync's; dropped as before
