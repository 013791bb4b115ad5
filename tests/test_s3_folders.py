"""A listing folder by folder, each folder sorted (storage.s3_folders): for any set of
keys and any order a server lists a folder in, every key once, in byte order."""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from storsync.model import Entry
from storsync.storage.s3_folders import Folder, folder_walk

# Names that sort around the slash: ".", "-", " " and "0" next to it, empty names between
# two slashes, names past ASCII.
SEGMENTS = st.sampled_from(["a", "a.txt", "a-b", "a b", "a0", "b", "", "é", "\x01", "A"])
KEYS = st.lists(
    st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join), unique=True, max_size=40
).map(lambda keys: [k for k in keys if k and not k.endswith("/")])


def server(keys: list[str], seed: int, calls: list[str]) -> Callable[[str], Folder]:
    """A server's listings with a delimiter over ``keys``, each folder in an order of its
    own; the folders listed go to ``calls``."""
    shuffle = random.Random(seed)

    def listed(folder: str) -> Folder:
        calls.append(folder)
        objects: list[tuple[str, Entry]] = []
        subfolders: set[str] = set()
        for key in keys:
            if not key.startswith(folder):
                continue
            rest = key[len(folder) :]
            if "/" in rest:
                subfolders.add(folder + rest.split("/", 1)[0] + "/")
            else:
                objects.append((key, Entry(len(key), 1)))
        ordered = sorted(subfolders)
        shuffle.shuffle(objects)
        shuffle.shuffle(ordered)
        return objects, ordered

    return listed


@settings(max_examples=300)
@given(keys=KEYS, seed=st.integers(0, 2**32))
def test_a_folder_walk_gives_every_key_once_in_byte_order(keys: list[str], seed: int) -> None:
    calls: list[str] = []
    walked = [key for key, _ in folder_walk(server(keys, seed, calls))]
    assert walked == sorted(keys)
    # One listing a folder: the root, and each folder some key lies in.
    folders = {key[: i + 1] for key in keys for i, c in enumerate(key) if c == "/"}
    assert sorted(calls) == sorted({"", *folders})
