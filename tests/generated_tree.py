"""A pair whose listings and base are generated, not stored: a session over millions of
entries without millions of files (issue 13, SYNC.md "Scale").

Run as a program, it plans one dry-run session over ENTRIES generated paths (1,000 a
directory) and prints, as JSON, how many entries each side and the base gave the merge,
what the plan holds, and the process's peak resident memory::

    python tests/generated_tree.py ENTRIES [--changed-every N] [--moved-every N]

``--changed-every N``: every N-th local file is one byte longer than the base recorded
(a push each); none by default (a no-op). ``--moved-every N``: every N-th local file is
under ``moved/`` instead, as a rename keeps it (its size, mtime and inode; its hash known,
so that confirming the move reads nothing): a move each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from storsync.model import (  # noqa: E402
    BaseEntry,
    Capabilities,
    Entry,
    Side,
    StopSignal,
    SyncSettings,
)
from storsync.runner.session import SyncSession  # noqa: E402
from storsync.storage.base import SkipReport, Storage, StoredKeys  # noqa: E402

PER_DIR = 1000
MTIME = 1_700_000_000 * 10**9


def path_of(i: int) -> str:
    """Zero-padded: the order of ``i`` is the order of the keys."""
    return f"d{i // PER_DIR:05d}/f{i % PER_DIR:04d}"


def base_of(i: int) -> BaseEntry:
    size = i % 997
    return BaseEntry(size, hash_of(i), False, MTIME + i, i + 1, None, MTIME + i, i + 2, None)


def hash_of(i: int) -> str:
    return f"{i:064x}"


class GeneratedStorage(Storage):
    """One side of the generated pair: its listing made as it is read."""

    def __init__(
        self, entries: int, side: Side, changed_every: int | None, moved_every: int | None = None
    ) -> None:
        self.entries = entries
        self.side = side
        self.changed_every = changed_every
        self.moved_every = moved_every if side is Side.LOCAL else None
        self.url = f"generated://{side.value}"
        self.caps = Capabilities(mtime_precision_ns=1, inodes=True)

    def walk(
        self,
        skip: SkipReport,
        stop: StopSignal,
        expected: int = 0,
        stored: StoredKeys | None = None,
    ) -> Iterator[tuple[str, Entry]]:
        every = self.changed_every if self.side is Side.LOCAL else None
        inode = 1 if self.side is Side.LOCAL else 2
        moved = self.moved_every
        for i in range(self.entries):
            grown = every is not None and i % every == 0
            if moved is None or i % moved:
                yield path_of(i), Entry(i % 997 + grown, MTIME + i, False, i + inode)
        for i in range(0, self.entries, moved) if moved else ():  # "moved/" after "d"
            entry = Entry(i % 997, MTIME + i, False, i + inode, None, hash_of(i))
            yield f"moved/{path_of(i)}", entry

    def scan(self, skip: SkipReport, stop: StopSignal) -> dict[str, Entry]:
        return dict(self.walk(skip, stop))

    def read_own(self, name: str) -> bytes | None:
        return b"1" if name == "format" else b"{}"  # marked, as an established side is

    def stat(self, path: str) -> Entry | None:
        raise NotImplementedError

    def open(self, path: str, expected: Entry) -> contextlib.AbstractContextManager[object]:  # type: ignore[override]
        raise NotImplementedError

    def stage(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise NotImplementedError

    def publish(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise NotImplementedError

    def discard(self, *args: object) -> None:  # type: ignore[override]
        raise NotImplementedError

    def remove(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        raise NotImplementedError

    def copy(self, *args: object) -> Entry:  # type: ignore[override]
        raise NotImplementedError

    def write_own(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def prune_trash(self, older_than_ns: int) -> None:
        raise NotImplementedError


class GeneratedBase:
    """The base of the generated pair, read in key order as the state stores read it."""

    def __init__(self, entries: int) -> None:
        self.entries = entries

    def base_count(self, repository_id: str) -> int:
        return self.entries

    def walk_base(self, repository_id: str) -> Iterator[tuple[str, BaseEntry]]:
        for i in range(self.entries):
            yield path_of(i), base_of(i)


def plan_once(entries: int, changed_every: int | None, moved_every: int | None) -> dict[str, int]:
    session = SyncSession(
        GeneratedStorage(entries, Side.LOCAL, changed_every, moved_every),
        GeneratedStorage(entries, Side.REMOTE, None),
        GeneratedBase(entries),  # type: ignore[arg-type]
        "generated",
        SyncSettings(dry_run=True),
    )
    report = session.run()
    assert report.state == "completed", report.message
    assert report.plan is not None
    return {
        "merged": report.merged,
        "push": report.plan.count("push"),
        "pull": report.plan.count("pull"),
        "moves": report.plan.count("moves"),
        "deletes": report.plan.count("delete_local") + report.plan.count("delete_remote"),
        "peak_kib": peak_kib(),
    }


def peak_kib() -> int:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries the
    parent's peak over a fork and exec into it (a test runner's, here)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("entries", type=int)
    ap.add_argument("--changed-every", type=int, default=None)
    ap.add_argument("--moved-every", type=int, default=None)
    a = ap.parse_args()
    print(json.dumps(plan_once(a.entries, a.changed_every, a.moved_every)))


if __name__ == "__main__":
    main()
