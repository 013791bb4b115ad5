"""The ordered walk of a local directory (SYNC.md "Scale"), in this process or in a child
process of its own.

Each directory's entries are sorted by key, a subdirectory as its key and ``/``: the walk
then comes in the byte order of the UTF-8 of the keys (the order of engine.merge), with
one directory on the way held at a time.

A session's two walks and its merge all want the interpreter's lock: in one process they
run one after the other (threads only trade the lock at every ``lstat``). A large tree is
therefore walked by a child process (``python -m storsync.storage.local_walk ROOT``),
which sends its entries through a pipe as ``marshal``ed batches: reading one costs the
session a tenth of walking it, and both sides' walks then run beside the merge, on other
cores. The child imports little (this module, the model, the path rules): it starts in
about 40 ms, which a tree of ``CHILD_FROM`` entries repays.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import operator
import os
import stat
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from itertools import repeat
from typing import Any

from storsync.model import Entry, StopSignal
from storsync.paths import MAX_PATH_BYTES, OWN_DIR, normalize, refusal

Skip = Callable[[str, str], None]
Native = Callable[[str, str], object]  # told (key, native path) of a name not in NFC

CHILD_FROM = 20_000  # entries a session expects from which the walk runs in a child
BATCH = 1000  # entries a child sends at a time
_FRAME = struct.Struct("<I")  # a message's length, before its marshalled body
_PIPE_BYTES = 1 << 20  # how far a child may run ahead of the session


def ordered(root: str, skip: Skip, stop: StopSignal, native: Native) -> Iterator[tuple[str, Entry]]:
    """Every file under ``root`` in key order, as (key, entry)."""
    new = tuple.__new__  # an Entry made from its fields without its __new__'s frame
    for key, fields in ordered_fields(root, skip, stop, native):
        yield key, new(Entry, fields)


def ordered_fields(
    root: str, skip: Skip, stop: StopSignal, native: Native
) -> Iterator[tuple[str, Fields]]:
    """``ordered``, each file as the fields of its entry (what a child sends as it is)."""
    levels = [iter(_sorted_directory("", root, skip, stop))]
    while levels:
        for key, rel, fields, directory in levels[-1]:
            if fields is None:
                levels.append(iter(_sorted_directory(rel + "/", directory, skip, stop)))
                break
            if key != rel:
                native(key, rel)
            yield key, fields
        else:
            levels.pop()


Fields = tuple[int, int, bool, int, None, None]  # an Entry's fields, as a walk finds them


def fields_of(st: os.stat_result) -> Fields:
    return (st.st_size, st.st_mtime_ns, (st.st_mode & _EXEC) != 0, st.st_ino, None, None)


def entry_of(st: os.stat_result) -> Entry:
    return tuple.__new__(Entry, fields_of(st))


Row = tuple[str, str, Fields | None, str]  # key, native path, fields (None: a directory), path


def _sorted_directory(prefix: str, directory: str, skip: Skip, stop: StopSignal) -> list[Row]:
    """One directory's files and subdirectories as (key, native path, the file's fields or
    None for a directory, its path on disk), in the walk's order; of two names equal after
    normalization, the one the directory lists first."""
    # Listed through a descriptor of the directory: each file's lstat is then relative to
    # it, the kernel not walking the whole path again (0.25 s against 0.29 s for 100,000
    # files); and a directory swapped for a link since its parent was listed is refused
    # (the root may be a link: it is the user's choice).
    try:
        fd = os.open(directory, _LIST_FLAGS | (os.O_NOFOLLOW if prefix else 0))
    except OSError as exc:
        skip(prefix.rstrip("/") or ".", f"cannot read directory: {exc.strerror}")
        return []
    try:
        return _listed(prefix, directory, fd, skip, stop)
    finally:
        os.close(fd)


def _listed(prefix: str, directory: str, fd: int, skip: Skip, stop: StopSignal) -> list[Row]:
    try:
        it = os.scandir(fd)
    except OSError as exc:
        skip(prefix.rstrip("/") or ".", f"cannot read directory: {exc.strerror}")
        return []
    # Each row led by its place in the walk: the key, and "/" for a directory.
    rows: list[tuple[str, str, str, Fields | None, str]] = []
    renamed = False  # whether a name changed under normalization (two may then clash)
    plain_prefix = prefix.isascii()  # else a key is normalized from the whole path
    with it:
        for item in it:
            stop.check()
            name = item.name
            rel = prefix + name
            # Written out for speed, once per file of the tree: a plain file whose path
            # needs no check (what ``admitted`` and ``normalize`` would say of it).
            if (
                plain_prefix
                and name.isascii()
                and name.isprintable()
                and name != OWN_DIR
                and len(rel) <= MAX_PATH_BYTES
                and item.is_file(follow_symlinks=False)
            ):
                try:
                    st = item.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                # fields_of(st), without a call
                fields = (
                    st.st_size,
                    st.st_mtime_ns,
                    (st.st_mode & _EXEC) != 0,
                    st.st_ino,
                    None,
                    None,
                )
                rows.append((rel, rel, rel, fields, ""))
                continue
            is_dir = admitted(rel, item, skip)
            if is_dir is None:
                continue
            key = normalize(rel)
            renamed = renamed or key != rel
            if is_dir:
                rows.append((key + "/", key, rel, None, f"{directory}/{item.name}"))
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            rows.append((key, key, rel, fields_of(st), ""))
    rows.sort(key=_first)
    if not renamed:  # names a directory lists are distinct: none clash
        return [row[1:] for row in rows]
    kept: list[Row] = []
    last = None
    for order, key, rel, found, path in rows:
        if order == last:
            skip(rel, "another name is the same after Unicode normalization")
        else:
            kept.append((key, rel, found, path))
            last = order
    return kept


_EXEC = stat.S_IXUSR
_LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_first = operator.itemgetter(0)  # a row's place in the walk: its key, and "/" for a directory


def admitted(rel: str, item: os.DirEntry[str], skip: Skip) -> bool | None:
    """Whether a walk enters ``item`` (a directory) or takes it (a file); None: it is
    left out, reported unless it is storsync's own."""
    name = item.name
    if name == OWN_DIR:
        return None
    if not (name.isascii() and name.isprintable()):
        reason = refusal(rel)
        if reason:
            skip(rel, reason)
            return None
    # A link is neither a file nor a directory here (follow_symlinks=False).
    if item.is_file(follow_symlinks=False):
        if len(rel) > MAX_PATH_BYTES and refusal(rel):
            skip(rel, f"path longer than {MAX_PATH_BYTES} bytes")
            return None
        return False
    if item.is_dir(follow_symlinks=False):
        return True
    if item.is_symlink():
        skip(rel, "symbolic link skipped")
    else:
        skip(rel, "special file skipped (FIFO, socket or device)")
    return None


# -- in a child process ---------------------------------------------------------------


class WalkFailed(Exception):
    """The child process could not walk the tree; its message says why."""


def in_child(
    root: str, skip: Skip, stop: StopSignal, native: Native
) -> Iterator[tuple[str, Entry]]:
    """``ordered``, walked by a child process started now, before the first entry is
    asked for (a session starts both sides' walks at once); ending the iteration early,
    or dropping it, ends the process."""
    walk = _from_child(root, skip, stop, native)
    next(walk)  # runs up to its first yield: the process started, its cleanup armed
    return walk


def _from_child(
    root: str, skip: Skip, stop: StopSignal, native: Native
) -> Iterator[tuple[str, Entry]]:
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, root],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    try:
        yield "", Entry(0, 0)  # the start, taken by in_child: not an entry
        yield from _received(child.stdout.read, skip, stop, native)
    except WalkFailed as failed:
        child.wait()
        said = child.stderr.read().decode(errors="replace").strip().splitlines()
        if said:  # the last line of the child's own report (its exception)
            raise WalkFailed(f"{failed}: {said[-1]}") from None
        raise
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()


def _received(
    read: Callable[[int], bytes], skip: Skip, stop: StopSignal, native: Native
) -> Iterator[tuple[str, Entry]]:
    while True:
        stop.check()
        head = read(_FRAME.size)
        if len(head) < _FRAME.size:
            raise WalkFailed("the walking process ended before its walk did")
        kind, body = marshal.loads(read(_FRAME.unpack(head)[0]))
        if kind == "e":
            # Each Entry made from its fields by tuple's own constructor, in C: half the
            # time of a Python loop calling Entry (14 ms against 28 per 100,000).
            keys, fields = body
            yield from zip(keys, map(tuple.__new__, repeat(Entry), fields), strict=True)
        elif kind == "n":
            native(*body)
        elif kind == "s":
            skip(*body)
        elif kind == "x":
            raise WalkFailed(body)
        else:
            return


def _send(out: Callable[[bytes], object], kind: str, body: Any) -> None:
    data = marshal.dumps((kind, body))
    out(_FRAME.pack(len(data)) + data)


def _walk_to(root: str, out: Callable[[bytes], object]) -> None:
    """Walk ``root`` and send what the walk finds: batches of entries, the skips and the
    native names between them, then the end."""
    # A batch as two lists, the keys and the fields of their entries (all six of them:
    # the receiver makes each entry from them as they are).
    keys: list[str] = []
    fields: list[tuple[int, int, bool, int | None, None, None]] = []

    def skipped(path: str, reason: str) -> None:
        _send(out, "s", (path, reason))

    def native(key: str, rel: str) -> None:
        _send(out, "n", (key, rel))

    try:
        for key, found in ordered_fields(root, skipped, StopSignal(), native):
            keys.append(key)
            fields.append(found)
            if len(keys) >= BATCH:
                _send(out, "e", (keys, fields))
                keys, fields = [], []
        _send(out, "e", (keys, fields))
    except OSError as exc:
        _send(out, "x", f"{exc.filename or root}: {exc.strerror or exc}")
        return
    _send(out, "d", None)


def _main() -> None:
    out = sys.stdout.buffer
    with contextlib.suppress(OSError):  # else a smaller pipe: the child runs less ahead
        fcntl.fcntl(out.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    _walk_to(sys.argv[1], out.write)
    out.flush()


if __name__ == "__main__":
    _main()
