"""The move pairing over many old paths (runner.pairing): peak memory and time.

Feeds the pairing the parts of a plan that deletes ``--paths`` files with a hash (1,024 a
part, as windows give them; no transfers), then pairs, and prints the process's peak RSS
and the time. ``--held`` pairs as before the partitions: every old path in memory;
``--moved``: every deleted file is found again under a new name (a folder moved), so that
each old path is paired.

Usage: ``.venv/bin/python bench/pairing.py --paths 1000000 [--held] [--moved]``
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator

from storsync.engine.moves import Pairing, remembered
from storsync.engine.reconcile import Delete, Plan, Transfer
from storsync.model import BaseEntry, Capabilities, Entry, Side
from storsync.runner.pairing import SpilledPairing

PART = 1024
CAPS = {side: Capabilities(inodes=True) for side in Side}


def parts(paths: int) -> Iterator[tuple[Plan, dict[str, BaseEntry]]]:
    for start in range(0, paths, PART):
        base = {
            f"dir/sub{i // 1000}/file-{i:08d}.jpg": BaseEntry(
                4096, f"{i:064x}", False, 10 + i, i, None, 10 + i, 10**7 + i, None
            )
            for i in range(start, min(paths, start + PART))
        }
        deletes = [
            Delete(path, Entry(4096, known.remote_mtime_ns, inode=known.remote_inode))
            for path, known in base.items()
        ]
        yield Plan(delete_remote=deletes), base


def moved(paths: int) -> Iterator[Transfer]:
    """The local side's files under their new names, for the remote side."""
    for i in range(paths):
        yield Transfer(f"moved/sub{i // 1000}/file-{i:08d}.jpg", Entry(4096, 10 + i, inode=i), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--held", action="store_true", help="every old path in memory")
    ap.add_argument("--moved", action="store_true", help="each old path found moved")
    a = ap.parse_args()
    began = time.perf_counter()

    def transfers(side: Side) -> Iterator[Transfer]:
        return moved(a.paths) if a.moved and side is Side.REMOTE else iter(())

    if a.held:
        whole = Pairing(CAPS)
        for plan, base in parts(a.paths):
            whole.add(remembered(plan, base, CAPS))
        found = len(whole.candidates(lambda side: enumerate(transfers(side))))
    else:
        spilled = SpilledPairing(CAPS)
        for plan, base in parts(a.paths):
            spilled.remember(plan, base)
        found = sum(1 for _ in spilled.candidates(transfers))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kind = "held" if a.held else "partitions"
    print(
        f"{kind}: {a.paths} old paths, {found} moves, peak RSS {peak:.1f} MiB, "
        f"{time.perf_counter() - began:.1f} s"
    )


if __name__ == "__main__":
    main()
