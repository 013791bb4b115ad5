"""The listings of an S3 prefix: whole, in key order (a large one cut into parts listed at
once: ``s3_split``), folder by folder, under a few paths; and their digests.

A digest of a listing cut into parts is made of each part's own (its pages hashed in the
thread that lists it) and of the pages the cutting read, so that a probe that lists the
same parts (the same cuts: the base they come from is the one the digest was saved
against) finds the same digest without parsing the keys (``s3_listing``). A digest says
how it was made (``RANGED``), so that a probe lists as the check that saved it did: a
listing found out of order is read whole, one page after the other, and so is its probe.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from storsync.errors import ListingOutOfOrder
from storsync.model import Entry, StopSignal
from storsync.paths import is_own
from storsync.storage import s3_listing
from storsync.storage.base import SkipReport, StoredKeys
from storsync.storage.s3_client import S3Bucket
from storsync.storage.s3_entries import listed_entry, no_skips
from storsync.storage.s3_folders import Folder, folder_walk
from storsync.storage.s3_split import DEPTH, Listed, Under, cuts_of, range_walk, split_walk

# A listing of this many keys (the base's count) and more is cut at its folders and the
# parts listed at once: eight round trips in flight instead of one, each part a thread's.
# A level is cut further only while it has fewer folders than that: each part costs a
# request at least (the 1,000 folders of 100 keys under `many`'s 10 cost 1,000 listings
# where its 10 parts cost 100).
SPLIT_FROM = 20_000
SPLIT_WORKERS = 8
# A listing cut at names of the base: a range of the keys a part may list ahead of its
# reader (DEPTH pages), the last half of its last page past the range's end, so that a
# thread lists it whole and goes on (docs/decisions.md "A large listing cut at names of
# the base").
RANGE_KEYS = DEPTH * 1000 - 500
RANGES = 10_000
# Keys a folder at the top holds on average below which the top is listed in ranges: half
# a page (a folder a part lists a page, mostly empty, a folder).
SMALL_FOLDER = 500
# The kind of digest of a listing cut into parts (a listing read whole has none).
RANGED = "ranged"

Pages = Iterator[list[Listed]]


class _PartDigests:
    """The digests of a listing's parts, each part's pages hashed in the thread that lists
    it, combined by the parts' names: in whatever order the parts ended, the same."""

    def __init__(self, *, keys: bool) -> None:
        self._keys = keys
        self._lock = threading.Lock()
        self._parts: list[tuple[str, s3_listing.Digest]] = []

    def pages(self, under: Callable[..., Pages], *part: str | None) -> Pages:
        digest = s3_listing.Digest(self._keys)
        with self._lock:
            self._parts.append(("\0".join(p or "" for p in part), digest))
        with s3_listing.digested_into(digest):
            yield from under(*part)

    def combined(self, outer: s3_listing.Digest) -> str:
        whole = hashlib.blake2b(outer.hexdigest().encode(), digest_size=20)
        with self._lock:
            for name, digest in sorted(self._parts, key=lambda part: part[0]):
                whole.update(f"\n{name}\0{digest.hexdigest()}".encode())
        return f"{RANGED}:{whole.hexdigest()}"


class S3Walk:
    """The listings of the objects under ``prefix`` in a bucket (``prefix`` "": all)."""

    def __init__(
        self, client: Any, bucket: S3Bucket, name: str, prefix: str, url: str, connections: int
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._name = name
        self._prefix = prefix
        self._url = url
        self._connections = connections

    def _key(self, path: str) -> str:
        return f"{self._prefix}/{path}" if self._prefix else path

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[Listed]:
        """The listing as it comes: S3 lists keys in the byte order of their UTF-8, and
        a key not in NFC is refused, so a key is its own sort key. A server that lists
        folder by folder (SeaweedFS: ``a/x`` before ``a.txt``) is found out at the first
        key out of order, before it is given. From ``SPLIT_FROM`` keys expected, the
        listing is cut into ranges at keys of the base (``stored``), or without one at
        its folders, and the parts listed at once (``s3_split``)."""
        return self._in_order(self._listing(skip, stop, expected, stored, None))

    def _listing(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int,
        stored: StoredKeys | None,
        parts: _PartDigests | None,
    ) -> Iterator[Listed]:
        workers = min(SPLIT_WORKERS, self._connections)
        large = expected >= SPLIT_FROM
        keys = stored(max(RANGE_KEYS, expected // RANGES)) if large and stored else []
        # Ranges where most of the base lies at the top, with no folder to cut at (a flat
        # folder), or where the top's folders are small; else the folders cut, which cuts
        # a tree into parts of a folder each (100 folders of 1,000 keys: 2.4 s in 100
        # parts of a page, 2.6 s in ranges; 3.5 s against 2.5 s with 20 ms a request).
        flat = sum("/" not in key for key in keys) * 2 > len(keys)
        cuts = cuts_of(keys)
        under = functools.partial(self._under, skip=skip, stop=stop)
        if parts is not None:
            under = functools.partial(parts.pages, under)
        folder = functools.partial(self._folder, skip=skip, stop=stop)
        if len(cuts) >= workers - 1:
            if flat:
                return range_walk(under, cuts, workers=workers)
            return self._small_folders_in_ranges(folder, under, cuts, keys, expected, workers)
        if large:
            return split_walk(folder, under, workers=workers, stored=keys)
        return self.objects("", skip, stop)

    @staticmethod
    def _small_folders_in_ranges(
        folder: Callable[[str], Folder],
        under: Under,
        cuts: list[str],
        keys: Sequence[str],
        expected: int,
        workers: int,
    ) -> Iterator[Listed]:
        """Folders at the top smaller than ``SMALL_FOLDER`` keys on average in ranges (a
        part a folder costs a request a folder: 1,000 folders of 100 keys took 5.0 s
        where ranges take 3.0 s), else the folders cut; the top listed once for both."""
        top = folder("")
        if len(top[1]) * SMALL_FOLDER > expected:
            yield from range_walk(under, cuts, workers=workers)
            return
        listed = functools.partial(_first_of, top, folder)
        yield from split_walk(listed, under, workers=workers, stored=keys)

    def _in_order(self, listing: Iterator[Listed]) -> Iterator[Listed]:
        last = ""
        for key, entry in listing:
            if key <= last:
                raise ListingOutOfOrder(
                    f"{self._url} listed {key!r} after {last!r}, not in byte order"
                )
            last = key
            yield key, entry

    def scan(self, skip: SkipReport, stop: StopSignal) -> dict[str, Entry]:
        return dict(self.objects("", skip, stop))

    def scan_digested(self, skip: SkipReport, stop: StopSignal) -> tuple[dict[str, Entry], str]:
        with s3_listing.digesting(keys=True) as digest:
            found = self.scan(skip, stop)
        return found, digest.hexdigest()

    def walk_digested(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> tuple[Iterator[Listed], Callable[[], str]]:
        """The pages digested as the walk reads them: those of a part in the thread that
        lists it, the others in the walk's."""
        digest = s3_listing.Digest(keys=True)
        parts = _PartDigests(keys=True) if expected >= SPLIT_FROM else None

        def listed() -> Iterator[Listed]:
            with s3_listing.digested_into(digest):
                yield from self._in_order(self._listing(skip, stop, expected, stored, parts))

        if parts is None:
            return listed(), digest.hexdigest
        return listed(), functools.partial(parts.combined, digest)

    def listing_digest(
        self,
        stop: StopSignal,
        kind: str = "",
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> str:
        """The pages hashed as they come, none of their keys parsed but a page's last
        (which ends a range): a tenth of the client CPU of a scan. ``kind``: that of the
        digest to compare with, listed as it was."""
        if kind != RANGED:
            with s3_listing.digesting(keys=False) as digest:
                for _ in self.objects("", no_skips, stop):
                    pass
            return digest.hexdigest()
        outer = s3_listing.Digest(keys=True)  # the folders a cut lists: their keys decide
        parts = _PartDigests(keys=False)
        with s3_listing.digested_into(outer):
            for _ in self._listing(no_skips, stop, expected, stored, parts):
                pass
        return parts.combined(outer)

    def scan_under(
        self, tops: Sequence[str], skip: SkipReport, stop: StopSignal
    ) -> dict[str, Entry]:
        """One listing per path, by its key as a prefix. A key spelled otherwise (not in
        NFC) is not among them: the next whole listing finds it and holds its twin back;
        till then writes stay conditional, so the twin is never overwritten."""
        found: dict[str, Entry] = {}
        for top in tops:
            found.update(self.objects(top, skip, stop))
        return found

    def objects(self, top: str, skip: SkipReport, stop: StopSignal) -> Iterator[Listed]:
        """The objects at ``top`` and under it ("": all of them), as listed."""
        under = f"{top}/"

        def at_or_under(rel: str) -> bool:  # ``top`` as a prefix lists its siblings too
            return rel == top or rel.startswith(under)

        for page in self._pages(top, skip=skip, stop=stop, keep=at_or_under if top else None):
            yield from page

    def _under(
        self,
        prefix: str,
        after: str | None,
        until: str | None,
        *,
        skip: SkipReport,
        stop: StopSignal,
    ) -> Pages:
        """The objects under ``prefix`` after the relative key ``after`` up to ``until``
        (None: from the first, to the last), a page at a time."""
        return self._pages(prefix, skip=skip, stop=stop, after=after, until=until)

    def _pages(
        self,
        prefix: str,
        *,
        skip: SkipReport,
        stop: StopSignal,
        keep: Callable[[str], bool] | None = None,
        after: str | None = None,
        until: str | None = None,
    ) -> Pages:
        """The objects whose relative key starts with ``prefix``, a page at a time; with
        ``keep``, only the keys it takes (the others not even looked at); with ``after``
        and ``until``, only those after the one and up to the other (the first key past
        ``until`` ends the listing)."""
        start = len(self._prefix) + 1 if self._prefix else 0
        listing = {"Bucket": self._name, "Prefix": self._key(prefix)}
        if after is not None:
            listing["StartAfter"] = self._key(after)
        with self._bucket.calling(self._url):
            for page in self._client.get_paginator("list_objects_v2").paginate(**listing):
                stop.check()  # per page, not per key: the round trip is what takes time
                found: list[Listed] = []
                for obj in page.get("Contents", ()):
                    rel = obj["Key"][start:]
                    if until is not None and rel > until:
                        if found:
                            yield found
                        return
                    if keep is None or keep(rel):
                        entry = listed_entry(rel, obj, skip)
                        if entry is not None:
                            found.append((rel, entry))
                yield found

    def sorted_walk(self, skip: SkipReport, stop: StopSignal) -> Iterator[Listed]:
        """For a server whose listing is not in byte order: folder by folder, each sorted
        (storage.s3_folders), one listing with a delimiter a folder; memory holds the
        folders on the way, not the bucket."""
        return folder_walk(functools.partial(self._folder, skip=skip, stop=stop))

    def _folder(self, folder: str, *, skip: SkipReport, stop: StopSignal) -> Folder:
        """The objects of one folder ("": the root) and its subfolders' prefixes, by key."""
        start = len(self._prefix) + 1 if self._prefix else 0
        listing = {"Bucket": self._name, "Prefix": self._key(folder), "Delimiter": "/"}
        objects: list[Listed] = []
        subfolders: list[str] = []
        with self._bucket.calling(self._url):
            for page in self._client.get_paginator("list_objects_v2").paginate(**listing):
                stop.check()
                for obj in page.get("Contents", ()):
                    rel = obj["Key"][start:]
                    entry = listed_entry(rel, obj, skip)
                    if entry is not None:
                        objects.append((rel, entry))
                for sub in page.get("CommonPrefixes", ()):
                    rel = sub["Prefix"][start:]
                    if not is_own(rel):
                        subfolders.append(rel)
        return objects, subfolders


def _first_of(top: Folder, folder: Callable[[str], Folder], key: str) -> Folder:
    """The top as already listed, any other folder listed now."""
    return top if key == "" else folder(key)
