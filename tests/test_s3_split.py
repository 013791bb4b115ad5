"""A large S3 listing cut at its folders and listed in parallel (storage/s3_split.py):
every key given once, in byte order, whatever order the server lists a folder in, for
any tree of names (those that sort around ``/`` too); a part's failure reaches the
reader; a reader that leaves early leaves no thread behind. On SeaweedFS, the walk of a
tree cut into parts equals the plain walk, and a session over such a walk converges."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storsync.errors import StorageUnavailable
from storsync.model import Entry, StopSignal
from storsync.storage import s3_split
from storsync.storage import s3_walk as s3_module
from storsync.storage.s3 import S3Storage
from storsync.storage.s3_folders import Folder
from storsync.storage.s3_split import split_walk
from storsync.storage.s3_walk import S3Walk
from tests.conftest import Pair, tree, write
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import settings_for, sync_s3

# Names that sort around the separator: "-" and "." before "/", "0" after it; one that
# sorts as a cut of the ranges does (DEL, after every other ASCII character).
NAME = st.sampled_from(["a", "a.txt", "a-b", "a0", "b", "é", "", "z", "a\x7f"])


def _entry(key: str) -> Entry:
    return Entry(len(key), 0, False, None, key)


class _Server:
    """A bucket's keys, listed as a server that keeps no order would list them."""

    def __init__(self, keys: set[str], seed: int, page: int = 3) -> None:
        self.keys = keys
        self.random = random.Random(seed)
        self.page = page
        self.lock = threading.Lock()

    def folder(self, prefix: str) -> Folder:
        objects, subfolders = [], set()
        for key in self.keys:
            if key.startswith(prefix):
                rest = key[len(prefix) :]
                if "/" in rest:
                    subfolders.add(prefix + rest.split("/", 1)[0] + "/")
                else:
                    objects.append((key, _entry(key)))
        with self.lock:
            self.random.shuffle(objects)
            shuffled = list(subfolders)
            self.random.shuffle(shuffled)
        return objects, shuffled

    def under(
        self, prefix: str, after: str | None = None, until: str | None = None
    ) -> Iterator[list[tuple[str, Entry]]]:
        found = sorted(k for k in self.keys if k.startswith(prefix))
        found = [k for k in found if after is None or k > after]
        found = list(itertools.takewhile(lambda k: until is None or k <= until, found))
        for at in range(0, len(found), self.page):
            yield [(k, _entry(k)) for k in found[at : at + self.page]]


@settings(max_examples=200, deadline=None)
@given(
    paths=st.sets(st.lists(NAME, min_size=1, max_size=4).map("/".join), max_size=40),
    workers=st.sampled_from([1, 2, 3, 8, 32]),
    seed=st.integers(0, 1000),
)
def test_every_key_once_in_byte_order(paths: set[str], workers: int, seed: int) -> None:
    keys = {p for p in paths if not any(other.startswith(p + "/") for other in paths)}
    server = _Server(keys, seed)
    walked = [key for key, _ in split_walk(server.folder, server.under, workers=workers)]
    assert walked == sorted(keys, key=lambda k: k.encode())
    # Its folders in ranges at names of keys stored before (some gone, some never there).
    stored = sorted(random.Random(seed).sample(sorted(paths), len(paths) // 2))
    cut = split_walk(server.folder, server.under, workers=workers, stored=stored)
    assert [key for key, _ in cut] == walked


def test_a_level_of_large_folders_is_not_cut_but_listed_in_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3_split, "HELD", 10)
    keys = {f"{d}/{n:02}" for d in "ab" for n in range(8)} | {"c/x/y"}
    server = _Server(keys, 0)
    folders: list[str] = []
    listed = server.folder

    def folder(prefix: str) -> Folder:
        folders.append(prefix)
        return listed(prefix)

    walked = [key for key, _ in split_walk(folder, server.under, workers=8)]
    assert walked == sorted(keys)
    assert folders[0] == "" and len(folders) <= 3  # the cut of a/ and b/ given up


def test_a_parts_failure_reaches_the_reader_where_it_reads_it() -> None:
    keys = {f"{d}/{n}" for d in "abcd" for n in range(10)} | {"top"}
    server = _Server(keys, 0)

    def under(prefix: str, *ends: str | None) -> Iterator[list[tuple[str, Entry]]]:
        if prefix == "c/":
            raise StorageUnavailable("the server failed")
        yield from server.under(prefix, *ends)

    walked: list[str] = []

    def read() -> None:
        for key, _ in split_walk(server.folder, under, workers=2):
            walked.append(key)

    with pytest.raises(StorageUnavailable, match="the server failed"):
        read()
    assert walked == sorted(k for k in keys if k < "c/")


def test_a_reader_that_leaves_early_leaves_no_thread_behind() -> None:
    keys = {f"{d}/{n:03}" for d in "abcdefgh" for n in range(200)}
    server = _Server(keys, 0, page=1)
    before = threading.active_count()
    walk = split_walk(server.folder, server.under, workers=4)
    assert next(walk)[0] == "a/000"
    walk.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_on_seaweedfs_the_walk_in_parts_is_the_plain_walk(s3_server: SeaweedS3, pair: Pair) -> None:
    prefix = f"split/{uuid.uuid4().hex[:12]}"
    names = [f"d{d}/sub{s}/f{n}.txt" for d in range(5) for s in range(3) for n in range(4)]
    # None that SeaweedFS lists out of byte order (as "d1.txt" after "d1/...") here.
    names += ["top.txt", "d2/x.bin", "é/nfc.txt"]
    for name in names:
        write(pair.local, name, name.encode())
    assert sync_s3(pair, s3_server, prefix).errors == []
    storage = S3Storage(settings_for(s3_server, prefix))
    try:
        skipped: list[Any] = []

        def skip(*args: Any) -> None:
            skipped.append(args)

        plain = list(storage.walk(skip, StopSignal(), expected=0))
        split = list(storage.walk(skip, StopSignal(), expected=s3_module.SPLIT_FROM))
    finally:
        storage.close()
    assert [k for k, _ in plain] == sorted(names, key=lambda k: k.encode())
    assert split == plain and skipped == []


def test_a_session_over_a_listing_in_parts_converges(
    s3_server: SeaweedS3, pair: Pair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every listing cut into parts, names SeaweedFS lists out of byte order among them
    in a part (``a/b/c`` before ``a/b.txt``): the session falls back to its sorted walk
    as before."""
    monkeypatch.setattr(s3_module, "SPLIT_FROM", 0)
    monkeypatch.setattr(s3_module, "SPLIT_WORKERS", 2)
    sorted_walks: list[str] = []
    plain_sorted_walk = S3Storage.sorted_walk

    def sorted_walk(self: S3Storage, *args: Any) -> Iterator[tuple[str, Entry]]:
        sorted_walks.append(self.url)
        return plain_sorted_walk(self, *args)

    monkeypatch.setattr(S3Storage, "sorted_walk", sorted_walk)
    prefix = f"split/{uuid.uuid4().hex[:12]}"
    names = ("a.txt", "a/x", "a/b.txt", "a/b/c", "a/y/z", "a0", "b/c")
    for name in names:
        write(pair.local, name, name.encode())
    first = sync_s3(pair, s3_server, prefix)
    assert first.errors == [] and first.pushed == len(names)
    (pair.local / "a/x").unlink()
    write(pair.local, "b/new", b"new")
    second = sync_s3(pair, s3_server, prefix)
    assert second.errors == [] and second.pushed == 1
    assert sorted_walks  # the part "a/" came out of order, and was found out
    other = Pair(tmp_path / "other", tmp_path / "unused", tmp_path / "other-state")
    other.local.mkdir()
    other.state.mkdir()
    third = sync_s3(other, s3_server, prefix)
    assert third.errors == [] and tree(other.local) == tree(pair.local)


# -- ranges cut at keys of the base -------------------------------------------------------


def _folder_order(key: str) -> tuple[str, ...]:
    """Where a server that lists folder by folder (SeaweedFS) lists ``key``."""
    return tuple(key.split("/"))


def _ranges_server(keys: set[str], by_folder: bool, after_by_folder: bool) -> Any:
    """``under`` of a server listing in byte order, or folder by folder (a "start
    after" then taken in either order)."""
    listed = sorted(keys, key=_folder_order if by_folder else None)

    def after_it(key: str, after: str) -> bool:
        return _folder_order(key) > _folder_order(after) if after_by_folder else key > after

    def under(
        prefix: str, after: str | None, until: str | None
    ) -> Iterator[list[tuple[str, Entry]]]:
        page: list[tuple[str, Entry]] = []
        for key in (k for k in listed if k.startswith(prefix)):
            if after is not None and not after_it(key, after):
                continue
            if until is not None and key > until:
                break
            page.append((key, _entry(key)))
        yield page

    return under


def _files_only(paths: set[str]) -> set[str]:
    return {p for p in paths if not any(other.startswith(p + "/") for other in paths)}


@settings(max_examples=300, deadline=None)
@given(
    paths=st.sets(st.lists(NAME, min_size=1, max_size=3).map("/".join), max_size=30),
    stored=st.sets(st.lists(NAME, min_size=1, max_size=3).map("/".join), max_size=8),
    order=st.sampled_from([(False, False), (True, True), (True, False)]),
    workers=st.sampled_from([1, 3]),
)
def test_ranges_lose_no_key_without_a_sign(
    paths: set[str], stored: set[str], order: tuple[bool, bool], workers: int
) -> None:
    """Cut at any stored keys (the base may be older than the bucket), over a server
    listing in byte order or folder by folder: the ranges give every key once in byte
    order, or give a key out of order, which the caller's check finds."""
    keys = _files_only(paths)
    under = _ranges_server(keys, *order)
    ranges = s3_split.range_walk(under, s3_split.cuts_of(stored), workers=workers)
    # And each folder of the folders cut in ranges at the names under it.
    folders = s3_split.split_walk(
        _Server(keys, 0).folder, under, workers=workers, stored=sorted(stored)
    )
    for walk in (ranges, folders):
        walked = [key for key, _ in walk]
        in_order = all(a < b for a, b in itertools.pairwise(walked))
        if in_order or order == (False, False):
            assert walked == sorted(keys)


def test_a_cut_at_a_stored_key_itself_would_lose_keys_without_a_sign() -> None:
    """Why a cut is not the stored key: a server listing folder by folder lists ``a/x``
    before ``a.txt``; a range ending at ``a.txt`` ends at ``a/x``, in order, and both are
    lost. Cut at ``a`` and DEL, the keys come as the server lists them, out of order: a
    sign the caller's check finds."""
    keys = {"a.txt", "a/x", "b"}
    under = _ranges_server(keys, True, True)
    walked = [key for key, _ in s3_split.range_walk(under, ["a.txt"], workers=1)]
    assert walked == ["b"]  # in order, and two keys short
    cut = [key for key, _ in s3_split.range_walk(under, s3_split.cuts_of(["a.txt"]), workers=1)]
    assert cut == ["a/x", "a.txt", "b"]


def test_a_cut_is_a_first_name_of_characters_that_sort_after_the_separator() -> None:
    stored = ["photos/2020/img-01.jpg", "a.txt", "a.txt", "-x", "zz", "zz0/a"]
    assert s3_split.cuts_of(stored) == ["a\x7f", "photos\x7f", "zz0\x7f", "zz\x7f", "\x7f"]


def test_on_seaweedfs_a_flat_folder_cut_into_ranges_is_the_plain_walk(
    s3_server: SeaweedS3, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flat folder (no folder to cut at) cut into ranges at names stored before it
    changed: keys added at a cut and beside it, a stored key removed, all given once, in
    order, one listing a range."""
    monkeypatch.setattr(s3_module, "SPLIT_FROM", 0)
    monkeypatch.setattr(s3_module, "SPLIT_WORKERS", 4)
    monkeypatch.setattr(s3_module, "RANGE_KEYS", 10)
    names = [f"f{n:03}.dat" for n in range(0, 120, 2)] + ["g/x.txt", "é.txt"]
    added = ["f010", "f010.dat.bak", "f011.dat", "f0101", "f~.dat"]
    whole, cut, listed = _walks_after_changes(s3_server, pair, names, added, "f020.dat")
    assert [k for k, _ in whole] == sorted(tree(pair.local))
    assert cut == whole
    ranges = [r for r in listed if r[1] or r[2]]
    assert len(ranges) == 7  # cut after f018, f038, f058, f078, f098 and f118


def test_a_session_over_a_listing_in_ranges_converges(
    s3_server: SeaweedS3, pair: Pair, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ranges cut at names of the base, in every session past the first (most of the tree
    at the top, no folder to cut at), with names
    SeaweedFS lists out of byte order among them (``a/x`` before ``a.txt``): found out, the
    session falls back to its sorted walk; without them, the ranges are the listing."""
    monkeypatch.setattr(s3_module, "SPLIT_FROM", 0)
    monkeypatch.setattr(s3_module, "RANGE_KEYS", 1)
    monkeypatch.setattr(s3_module, "SPLIT_WORKERS", 2)
    listed: list[tuple[str | None, str | None]] = []
    under = S3Walk._under

    def counted(self: S3Walk, prefix: str, after: str | None, until: str | None, **kw: Any) -> Any:
        if after or until:  # a range, not a folder listed whole
            listed.append((after, until))
        return under(self, prefix, after, until, **kw)

    monkeypatch.setattr(S3Walk, "_under", counted)
    prefix = f"split/{uuid.uuid4().hex[:12]}"
    names = ("b.txt", "c/x", "d/y/z", "e", "f", "g.txt")  # most at the top: ranges
    for name in names:
        write(pair.local, name, name.encode())
    assert sync_s3(pair, s3_server, prefix).pushed == len(names)
    assert listed == []  # no base yet: the folders were cut
    write(pair.local, "c/new", b"new")
    second = sync_s3(pair, s3_server, prefix)
    assert (second.errors, second.pushed) == ([], 1)
    assert len(listed) == 7  # up to b, c, d, e, f, g, and after
    write(pair.local, "a.txt", b"beside a folder")
    write(pair.local, "a/x", b"in it")
    assert sync_s3(pair, s3_server, prefix).pushed == 2
    (pair.local / "a/x").unlink()
    write(pair.local, "d/new", b"new")
    fourth = sync_s3(pair, s3_server, prefix)
    assert (fourth.errors, fourth.pushed, fourth.deleted_remote) == ([], 1, 1)
    other = Pair(tmp_path / "other", tmp_path / "unused", tmp_path / "other-state")
    other.local.mkdir()
    other.state.mkdir()
    assert sync_s3(other, s3_server, prefix).errors == []
    assert tree(other.local) == tree(pair.local)


def test_on_seaweedfs_a_large_folder_of_the_folders_cut_is_listed_in_ranges(
    s3_server: SeaweedS3, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder holding most of the tree (``photos/``, siblings ``photos.old/`` and
    ``photos-2/`` beside it, which SeaweedFS lists around it) listed in ranges at names of
    the base within it: the walk is the plain one, and ranges were listed."""
    monkeypatch.setattr(s3_module, "SPLIT_FROM", 0)
    monkeypatch.setattr(s3_module, "SPLIT_WORKERS", 2)  # the three folders at the top: parts
    monkeypatch.setattr(s3_module, "RANGE_KEYS", 10)
    monkeypatch.setattr(s3_module, "SMALL_FOLDER", 0)  # the folders cut, however small
    names = [f"photos/img{n:03}.jpg" for n in range(0, 100, 2)]
    names += ["photos/sub/a.txt", "photos.old/x", "photos-2/y", "top.txt"]
    added = ["photos/img010", "photos/img011.jpg", "photos/img0101", "photos/zz"]
    whole, cut, listed = _walks_after_changes(s3_server, pair, names, added, "photos/img020.jpg")
    assert [k for k, _ in whole] == sorted(tree(pair.local))
    assert cut == whole
    assert ("photos/", None, None) in listed  # listed whole, then in six ranges
    assert len([r for r in listed if r[0] == "photos/" and (r[1] or r[2])]) == 6


@pytest.mark.parametrize("small", [True, False], ids=["small", "large"])
def test_small_folders_at_the_top_are_listed_in_ranges(
    s3_server: SeaweedS3, pair: Pair, monkeypatch: pytest.MonkeyPatch, small: bool
) -> None:
    """Twenty folders of five keys: smaller than ``SMALL_FOLDER`` on average, the top is
    listed in ranges at names of the base, not a part a folder (a request a folder);
    with folders taken as large, the folders cut. The walk is the plain one either way."""
    monkeypatch.setattr(s3_module, "SPLIT_FROM", 0)
    monkeypatch.setattr(s3_module, "SPLIT_WORKERS", 2)
    monkeypatch.setattr(s3_module, "RANGE_KEYS", 10)
    monkeypatch.setattr(s3_module, "SMALL_FOLDER", 500 if small else 0)
    names = [f"d{i:02}/f{j}" for i in range(20) for j in range(5)] + ["top.txt"]
    whole, cut, listed = _walks_after_changes(s3_server, pair, names, ["d05/new"], "d07/f1")
    assert [k for k, _ in whole] == sorted(tree(pair.local))
    assert cut == whole
    ranges = [r for r in listed if r[0] == "" and (r[1] or r[2])]
    folders = [r for r in listed if r[0] != ""]  # the walk with no base lists each once
    assert (bool(ranges), len(folders)) == (small, 20 if small else 40), listed


Listing = list[tuple[str, Entry]]


def _walks_after_changes(
    server: SeaweedS3, pair: Pair, names: list[str], added: list[str], removed: str
) -> tuple[Listing, Listing, list[tuple[str, str | None, str | None]]]:
    """``names`` pushed, then ``added`` and ``removed`` since: the walk with no base (each
    folder of the folders cut listed whole: SPLIT_FROM is 0 in these tests), the walk
    with ``names`` as the base's paths, and every listing under a prefix the two made
    (prefix, after, until)."""
    prefix = f"split/{uuid.uuid4().hex[:12]}"
    for name in names:
        write(pair.local, name, name.encode())
    assert sync_s3(pair, server, prefix).errors == []
    for name in added:
        write(pair.local, name, b"new")
    (pair.local / removed).unlink()
    assert sync_s3(pair, server, prefix).errors == []
    stored = sorted(names)
    storage = S3Storage(settings_for(server, prefix))
    listed: list[tuple[str, str | None, str | None]] = []
    under = storage._listings._under

    def counted(prefix: str, after: str | None, until: str | None, **kw: Any) -> Any:
        listed.append((prefix, after, until))
        return under(prefix, after, until, **kw)

    storage._listings._under = counted  # type: ignore[method-assign]
    try:
        whole = list(storage.walk(lambda *_: None, StopSignal(), expected=0))
        cut = list(
            storage.walk(
                lambda *_: None,
                StopSignal(),
                expected=len(stored),
                stored=lambda step: stored[step - 1 :: step],
            )
        )
    finally:
        storage.close()
    return whole, cut, listed
