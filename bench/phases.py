"""Time the phases of one ``storsync sync`` run, in-process, by wrapping the methods.

Usage: ``.venv/bin/python bench/phases.py LOCAL REMOTE --state-dir DIR [sync options]``

Prints (to stderr) wall seconds spent in each wrapped step, counted once per outermost
call: start-up imports, state open (including a first-run schema creation), scan,
base load, hashing, reconcile, staging (worker threads, summed: may exceed wall),
publishing, syncfs and base commits. The sync itself runs exactly as the CLI runs it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

T0 = time.perf_counter()

import importlib  # noqa: E402

from storsync import cli  # noqa: E402
from storsync.runner import execute as execute_mod  # noqa: E402
from storsync.runner import session as session_mod  # noqa: E402
from storsync.runner import staging as staging_mod  # noqa: E402
from storsync.runner import transfers as transfers_mod  # noqa: E402
from storsync.state import sqlite_base  # noqa: E402
from storsync.storage import local  # noqa: E402

# The module, not the click command of the same name that storsync.cli exports.
cli_sync = importlib.import_module("storsync.cli.sync")
IMPORTED = time.perf_counter()
TOTALS: dict[str, float] = defaultdict(float)
COUNTS: dict[str, int] = defaultdict(int)
_depth = threading.local()


def _wrap(owner: Any, name: str, label: str) -> None:
    inner: Callable[..., Any] = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        active: set[str] = getattr(_depth, "active", set())
        _depth.active = active
        if label in active:
            return inner(*args, **kwargs)
        active.add(label)
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            TOTALS[label] += time.perf_counter() - start
            COUNTS[label] += 1
            active.discard(label)

    setattr(owner, name, timed)


# Each step where its caller looks it up: a function is wrapped in the module that
# imported it by name, a method on its class.
STEPS = [
    (sqlite_base.SqliteBaseStore, "__init__", "state open (+schema)"),
    (sqlite_base.SqliteBaseStore, "walk_base", "base walk (lazy: its first rows)"),
    (sqlite_base.SqliteBaseStore, "commit_base", "base commits"),
    (session_mod, "check_markers", "marker check"),
    (session_mod, "write_markers", "marker write"),
    (session_mod, "scan_scope", "scan and merge (both sides)"),
    (session_mod, "hash_what_decides", "hashing"),
    (session_mod, "reconcile", "reconcile"),
    (session_mod, "execute", "execute (all)"),
    (execute_mod, "_deletions", "deletions"),
    (transfers_mod, "stage", "staging on workers (thread-sum)"),
    (staging_mod, "stage", "staging on the calling thread"),
    (transfers_mod, "stage_together", "groups read at once (thread-sum)"),
    (transfers_mod, "_publish", "publish (incl. syncfs+commit)"),
    (local.LocalStorage, "sync", "syncfs"),
    (local.LocalStorage, "publish", "publish: recheck+rename"),
    (cli_sync, "run_job", "session total"),
]


def main() -> None:
    for owner, name, label in STEPS:
        _wrap(owner, name, label)
    sys.argv = ["storsync", "sync", *sys.argv[1:]]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    end = time.perf_counter()
    out = sys.stderr
    print(f"{'imports':<32} {IMPORTED - T0:8.3f} s", file=out)
    for _owner, _name, label in STEPS:
        if COUNTS[label]:
            print(f"{label:<32} {TOTALS[label]:8.3f} s  x{COUNTS[label]}", file=out)
    print(f"{'wall (after interpreter start)':<32} {end - T0:8.3f} s", file=out)
    sys.exit(code)


if __name__ == "__main__":
    main()
