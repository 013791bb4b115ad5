"""A listing in the byte order of its keys from a server that lists in another order
(SeaweedFS lists folder by folder: ``a/x`` before ``a.txt``), holding the folders on the
way, not the bucket.

Each folder is listed with a delimiter: its own objects, and the prefixes of its
subfolders. Its objects and subfolders (a subfolder as its prefix, which ends with ``/``)
are sorted together by key, and a subfolder is entered where it sorts: every key under
``a/`` lies between ``a/`` and the next entry of the folder, since an object's name holds
no ``/`` (so ``a.txt`` before ``a/x``, ``a0`` after). Each key is reached once: every key
lies under exactly one chain of prefixes cut at its slashes, empty names between two
slashes included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import itemgetter

from storsync.model import Entry

# A folder as listed: its objects (relative key, entry) and its subfolders' prefixes.
Folder = tuple[list[tuple[str, Entry]], list[str]]


def folder_walk(listed: Callable[[str], Folder]) -> Iterator[tuple[str, Entry]]:
    """Every object ``listed`` gives, from the root folder (""), in key order."""
    folders = [_sorted(listed(""))]  # the folders on the way, each where it has got to
    while folders:
        step = next(folders[-1], None)
        if step is None:
            folders.pop()
            continue
        key, entry = step
        if entry is None:
            folders.append(_sorted(listed(key)))
        else:
            yield key, entry


def _sorted(folder: Folder) -> Iterator[tuple[str, Entry | None]]:
    objects, subfolders = folder
    steps: list[tuple[str, Entry | None]] = [*objects, *((p, None) for p in subfolders)]
    steps.sort(key=itemgetter(0))
    return iter(steps)
