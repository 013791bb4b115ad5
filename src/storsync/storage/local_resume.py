"""Resumable downloads into a local directory: the ``.resume`` and ``.sums`` partial files.

A download from a resumable source (a large remote object) is written to a partial file
named after its path and version, with a checksum file beside it, so that a rerun after a
kill or an outage continues it instead of starting again (``stage_resumable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from storsync.errors import ChangedError, StorsyncError
from storsync.storage.base import Resumable, Source, Staged
from storsync.storage.content import CHUNK, hash_bytes, new_hasher
from storsync.storage.local_files import Partial, seal, storage_error

# A resumable partial file is vouched for by one BLAKE3 line per RESUME_CHUNK written; a
# rerun trusts its bytes only as far as those lines match them.
RESUME_CHUNK = 8 << 20
# How long a resumable partial file waits for its transfer to be retried (from its last
# write); a path that is no longer transferred leaves its partial file behind that long.
RESUME_KEEP_NS = 3 * 86_400 * 10**9
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ResumablePartial(Partial):
    """A staged download: the partial file, its stat once sealed, and its checksum file."""

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


def drop_files(*files: str) -> None:
    for name in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def stage_resumable(
    folder: Path,
    path: str,
    source: Source,
    resumable: Resumable,
    *,
    size: int,
    mtime_ns: int,
    mode: int,
) -> Staged:
    """Write into a partial file in ``folder`` that a later attempt at the same version
    continues.

    Its name comes from (path, version); ``<name>.sums`` holds a header (what the file
    is) and one BLAKE3 line per RESUME_CHUNK written, appended after the chunk's bytes
    and never flushed on their own: a power cut that loses data loses the match too. An
    attempt hands the source the leading chunks that match their lines, cuts the file
    after them and fetches only the rest. The file is kept when the attempt fails for a
    reason that may pass (an outage, a kill); a changed version, bytes that fail the
    source's checks or a refusal of this storage drop it. The final content is checked
    by ``source.finish`` over all bytes, the kept ones included.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = _resume_stem(path, resumable.version)
    data, sums = folder / f"{stem}.resume", folder / f"{stem}.sums"
    _drop_other_versions(folder, path, stem)
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
        digest, sealed = seal(fd, source, path, written, size, mode=mode, mtime_ns=mtime_ns)
    except BaseException as exc:
        os.close(fd)
        error = storage_error(path, exc) if isinstance(exc, OSError) else exc
        # ChangedError and refusals are not retryable; outages and interrupts keep it.
        if isinstance(error, StorsyncError) and not error.retryable:
            drop_files(str(data), str(sums))
        if error is not exc:
            raise error from exc
        raise
    os.close(fd)
    return Staged(path, digest, size, ResumablePartial(str(data), sealed, str(sums)))


def _drop_other_versions(folder: Path, path: str, stem: str) -> None:
    """Partial files of other versions of ``path``: useless once another one is wanted."""
    mine = f"{_digest(path)[:32]}-"
    for name in os.listdir(folder):
        if name.startswith(mine) and not name.startswith(stem):
            drop_files(os.path.join(folder, name))


def still_resumable(folder: Path, name: str, cutoff_ns: int) -> bool:
    """Whether ``name`` in ``folder`` is part of a resumable download whose checksum file
    (touched at every chunk) was written since ``cutoff_ns``."""
    stem, _, kind = name.rpartition(".")
    if kind not in ("resume", "sums"):
        return False
    try:
        return os.stat(folder / f"{stem}.sums").st_mtime_ns >= cutoff_ns
    except FileNotFoundError:
        return False
