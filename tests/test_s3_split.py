"""A large S3 listing cut at its folders and listed in parallel (storage/s3_split.py):
every key given once, in byte order, whatever order the server lists a folder in, for
any tree of names (those that sort around ``/`` too); a part's failure reaches the
reader; a reader that leaves early leaves no thread behind. On SeaweedFS, the walk of a
tree cut into parts equals the plain walk, and a session over such a walk converges."""

from __future__ import annotations

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
from storsync.storage import s3 as s3_module
from storsync.storage import s3_split
from storsync.storage.s3 import S3Storage
from storsync.storage.s3_folders import Folder
from storsync.storage.s3_split import split_walk
from tests.conftest import Pair, tree, write
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import settings_for, sync_s3

# Names that sort around the separator: "-" and "." before "/", "0" after it.
NAME = st.sampled_from(["a", "a.txt", "a-b", "a0", "b", "é", "", "z"])


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

    def under(self, prefix: str) -> Iterator[list[tuple[str, Entry]]]:
        found = sorted(k for k in self.keys if k.startswith(prefix))
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

    def under(prefix: str) -> Iterator[list[tuple[str, Entry]]]:
        if prefix == "c/":
            raise StorageUnavailable("the server failed")
        yield from server.under(prefix)

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
