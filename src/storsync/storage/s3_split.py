"""A large listing cut at its folders, or into ranges at names of the base; the parts
listed at once and given in key order.

One listing of a million keys is a thousand pages, each a round trip after the last (20 to
50 ms each to a store across a network: most of a no-op's time). S3 has no end key for a
listing, and a range cut at a key ("start after k") is only exact from a server that lists
in byte order: one that lists otherwise (SeaweedFS: ``a/x`` before ``a.txt``) would lose
keys at the cut without a sign. A prefix cuts exactly whatever the server's order: the
keys under ``a/`` are all those that start with it. And in byte order the keys under one
folder lie together (between ``a/`` and ``a0``), apart from those under any other folder
and from the objects beside it, which hold no ``/``. So the listing is cut at its
folders: the top folder is listed with a delimiter (its objects, its subfolders'
prefixes), and, while there are fewer subfolders than parts listed at once, each
subfolder too; each part left is then listed whole, ``workers`` of them at once, each into
a queue of a few pages that its reader empties in turn. Memory holds the folders cut (their objects
and prefixes) and those queues, not the listing.

Each part's listing is checked for order as the whole listing is (``ListingOutOfOrder``
from the caller's check of the parts joined): the parts' own order is the server's.

A listing whose base holds many names at its top is cut into ranges instead
(``range_walk``), at names taken from the base: a flat folder of a million objects too,
which has no folders to cut at. A range is listed from its start ("start after") to its
end (the first key past it ends it). Where a server lists folder by folder, a cut at a
key may lose keys without a sign (``a/x`` listed before ``a.txt``: a range ending at
``a.txt`` ends at ``a/x``, before ``a.txt``; a cut inside ``a/`` may end its range at a key
of ``a/`` before ``a.txt``), whichever order the server takes its "start after" in. So a
cut is one name, of the leading characters of a stored key that sort after ``/``, ending
with DEL (a character no synchronized name holds: a folder named as the cut could be
taken as before it or after): it then sorts against every key as that key's first name
does, in both orders (docs/decisions.md "A large listing cut at names of the base"). A
folder of the folders cut that the base holds many keys under is listed in ranges the
same way, its name the listing's prefix and each cut a name within it; it is not cut at
its own folders first.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter

from storsync.model import Entry
from storsync.storage.s3_folders import Folder

Listed = tuple[str, Entry]
DEPTH = 4  # pages a part may list ahead of its reader
HELD = 20_000  # objects and folders a cut may hold
_WAIT = 0.05  # how often a part blocked on its queue looks whether the reader left


@dataclass(frozen=True)
class _End:
    error: BaseException | None


Feed = queue.Queue[list[Listed] | _End]
Pages = Callable[[], Iterator[list[Listed]]]
# Ends every cut: a control character, which no synchronized name holds, and which sorts
# after ``/`` and every other ASCII character.
CUT_END = "\x7f"


Under = Callable[[str, str | None, str | None], Iterator[list[Listed]]]


def split_walk(
    folder: Callable[[str], Folder],
    under: Under,
    *,
    workers: int,
    stored: Sequence[str] = (),
) -> Iterator[Listed]:
    """Every object, in key order: ``folder`` lists a folder with a delimiter ("" the
    top), ``under(prefix, after, until)`` every key under a prefix (after one key, up to
    another: None for either end), page by page; ``workers`` parts at once. A folder
    that two or more of the ``stored`` keys (the base's every n-th, in order) lie under is
    listed in ranges at their names within it."""
    cuts = functools.partial(_cuts_within, stored=stored)
    steps = _cut(folder, workers, cuts)
    # Folders listed whole or in ranges, in the order the parts were cut.
    ranges = [(key, _ranges(cuts(key))) for key, entry in steps if entry is None]
    parts = [functools.partial(under, key, *ends) for key, cut in ranges for ends in cut]
    with _listed_at_once(parts, workers) as feeds:
        yield from _joined(steps, [len(cut) for _, cut in ranges], iter(feeds))


def _cuts_within(prefix: str, stored: Sequence[str]) -> list[str]:
    """Where a folder is cut into ranges: at names of the stored keys under it, when two or
    more (each within the folder, so a sibling of the folder, ``a.b/`` beside ``a/``, is
    no part of the argument in the module's docstring)."""
    first = bisect.bisect_left(stored, prefix)
    last = bisect.bisect_left(stored, prefix[:-1] + "0")  # "0" follows "/": past the folder
    cuts = [prefix + cut for cut in cuts_of(key[len(prefix) :] for key in stored[first:last])]
    return cuts if len(cuts) >= 2 else []


def _ranges(cuts: Sequence[str]) -> list[tuple[str | None, str | None]]:
    ends: list[str | None] = [None, *cuts, None]
    return [(ends[at], ends[at + 1]) for at in range(len(ends) - 1)]


def cuts_of(stored: Iterable[str]) -> list[str]:
    """The cuts made of ``stored`` keys: the leading characters of each key's first name
    that sort after ``/``, and ``CUT_END``; in order, each once."""
    return sorted({_head(key) + CUT_END for key in stored})


def _head(key: str) -> str:
    return key[: next((at for at, char in enumerate(key) if char <= "/"), len(key))]


def range_walk(under: Under, cuts: Sequence[str], *, workers: int) -> Iterator[Listed]:
    """Every object, in key order, from the ranges ``cuts`` makes: ``under("", after,
    until)`` lists the keys after one cut up to the next (None: from the first key, to
    the last), page by page; ``workers`` ranges at once."""
    parts = [functools.partial(under, "", *ends) for ends in _ranges(cuts)]
    with _listed_at_once(parts, workers) as feeds:
        for feed in feeds:
            yield from _drained(feed)


@contextlib.contextmanager
def _listed_at_once(parts: Sequence[Pages], workers: int) -> Iterator[list[Feed]]:
    """A queue of pages for each of ``parts``, filled by ``workers`` threads, each part
    begun as a thread is free, in order."""
    leaving = threading.Event()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="storsync-list")
    try:
        feeds: list[Feed] = []
        for pages in parts:
            feed: Feed = queue.Queue(DEPTH)
            feeds.append(feed)
            pool.submit(_fill, feed, pages, leaving)
        yield feeds
    finally:
        # A part waiting on its full queue sees it within _WAIT; one not begun never is.
        leaving.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _cut(
    folder: Callable[[str], Folder], parts: int, cuts: Callable[[str], list[str]]
) -> list[tuple[str, Entry | None]]:
    """The objects and folders the listing is cut into, in key order (a folder's entry
    None): folders cut again while fewer than ``parts``, one level at a time (more parts
    than listed at once only cost requests), and while the objects of the folders cut
    stay few (they are held); never a folder the base cuts into ranges (``cuts``: its
    listing with a delimiter would be as long as the ranges, and one after the other)."""
    steps = _sorted(folder(""))
    while True:
        folders = [key for key, entry in steps if entry is None]
        if len(folders) >= parts or all(cuts(key) for key in folders):
            return steps
        cut: list[tuple[str, Entry | None]] = []
        for key, entry in steps:
            whole = entry is not None or cuts(key)
            cut.extend([(key, entry)] if whole else _sorted(folder(key)))
            if len(cut) > HELD:
                return steps  # a level of large folders: listed as parts instead
        steps = cut


def _sorted(folder: Folder) -> list[tuple[str, Entry | None]]:
    objects, subfolders = folder
    steps: list[tuple[str, Entry | None]] = [*objects, *((p, None) for p in subfolders)]
    steps.sort(key=itemgetter(0))
    return steps


def _fill(
    feed: Feed,
    pages: Pages,
    leaving: threading.Event,
) -> None:
    try:
        for page in pages():
            while True:
                if leaving.is_set():
                    return
                with contextlib.suppress(queue.Full):
                    feed.put(page, timeout=_WAIT)
                    break
    except BaseException as exc:  # raised again in the reader's thread, where it reads
        _end(feed, _End(exc), leaving)
    else:
        _end(feed, _End(None), leaving)


def _end(feed: Feed, end: _End, leaving: threading.Event) -> None:
    while not leaving.is_set():
        with contextlib.suppress(queue.Full):
            feed.put(end, timeout=_WAIT)
            return


def _joined(
    steps: list[tuple[str, Entry | None]], ranges: list[int], feeds: Iterator[Feed]
) -> Iterator[Listed]:
    """The steps in order, each folder from as many feeds as it has ``ranges``."""
    counts = iter(ranges)
    for key, entry in steps:
        if entry is not None:
            yield key, entry
            continue
        for _ in range(next(counts)):
            yield from _drained(next(feeds))


def _drained(feed: Feed) -> Iterator[Listed]:
    while not isinstance(got := feed.get(), _End):
        yield from got
    if got.error is not None:
        raise got.error
