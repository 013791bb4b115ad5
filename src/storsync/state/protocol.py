"""What the runner needs of the state: the pair's id, its base, and (in the service) the
log items of the session it runs; and the store that keeps them for a database URL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from storsync.model import BaseEntry, Entry, FoundConflict, PlanAction, PlanItem, Resolution

BASE_COLUMNS = (
    "size",
    "hash",
    "executable",
    "local_mtime_ns",
    "local_inode",
    "local_etag",
    "remote_mtime_ns",
    "remote_inode",
    "remote_etag",
)


class BaseStore(Protocol):
    def repository_id(self, local_url: str, remote_url: str, *, now_ns: int) -> str:
        """The id of the pair, created on first use."""
        ...

    def load_base(self, repository_id: str) -> dict[str, BaseEntry]: ...

    def walk_base(self, repository_id: str) -> Iterator[tuple[str, BaseEntry]]:
        """The whole base in the byte order of the UTF-8 of its paths (engine.merge),
        whatever the database's collation, read as it is consumed."""
        ...

    def load_base_under(self, repository_id: str, tops: Sequence[str]) -> dict[str, BaseEntry]:
        """The base of the paths at ``tops`` and under them (a session of a few paths)."""
        ...

    def base_count(self, repository_id: str) -> int:
        """How many paths the base records."""
        ...

    def base_every(self, repository_id: str, step: int) -> list[str]:
        """Every ``step``-th path of the base, in ``walk_base``'s order (where a remote's
        listing may be cut into ranges listed at once)."""
        ...

    def base_entry(self, repository_id: str, path: str) -> BaseEntry | None:
        """What the base recorded for one path (a watcher telling storsync's own writes
        apart)."""
        ...

    def base_has_below(self, repository_id: str, folder: str) -> bool:
        """Whether the base records a path under ``folder/``."""
        ...

    def commit_base(
        self,
        repository_id: str,
        records: Iterable[tuple[str, BaseEntry]],
        forgotten: Iterable[str],
    ) -> None:
        """Record verified paths and forget removed ones, in one transaction, which also
        forgets the remote listing's digest: it vouched for the base as it was."""
        ...

    def listing_digest(self, repository_id: str) -> str:
        """The digest of the remote listing last found equal to the base ("": none, or
        the base has changed since)."""
        ...

    def save_listing_digest(self, repository_id: str, digest: str, now_ns: int) -> None:
        """The remote listing, as this digest, was found equal to the base."""
        ...

    def record_items(
        self, session_id: str, kind: str, ts_ns: int, items: Sequence[tuple[str, int | None]]
    ) -> tuple[int, int]:
        """Store one batch of a service session's log items in one transaction; the lowest
        and highest id given. Written by the session's own process: per-file rows never
        pass through (and never stall) the process that answers the API."""
        ...

    def record_plan(self, session_id: str, items: Iterable[PlanItem]) -> None:
        """Store a halted session's plan, in one transaction."""
        ...

    def plan_deletions(self, session_id: str, action: PlanAction) -> Iterator[PlanItem]:
        """The deletions (``action``: of one side) of a halted session's plan, each with
        the version it listed, in the order recorded (the plan's: key order), read a
        thousand at a time as consumed."""
        ...

    def record_conflicts(
        self, repository_id: str, session_id: str, found: Sequence[FoundConflict], now_ns: int
    ) -> None:
        """Store the conflicts a service session settled (open, or resolved by the policy),
        in one transaction."""
        ...

    def resolutions(self, session_id: str) -> list[Resolution]:
        """The decisions on open conflicts this session carries."""
        ...

    def settle_resolution(
        self, conflict_id: str, session_id: str, *, done: bool, now_ns: int
    ) -> None:
        """A carried decision ends: the conflict resolved, or (not ``done``) left open."""
        ...

    def close(self) -> None: ...


def plan_row(item: PlanItem) -> tuple[str, str, int | None, int | None, int | None, str | None]:
    """A plan item as the columns action, path, size, mtime_ns, inode, etag."""
    e = item.entry
    if e is None:
        return (item.action.value, item.path, None, None, None, None)
    return (item.action.value, item.path, e.size, e.mtime_ns, e.inode, e.etag)


def plan_item(
    action: str, path: str, size: int, mtime_ns: int, inode: int | None, etag: str | None
) -> PlanItem:
    """A deletion read back from its columns."""
    return PlanItem(PlanAction(action), path, Entry(size, mtime_ns, False, inode, etag))


def below(folder: str) -> tuple[str, str]:
    """The byte-order range of the paths under ``folder/``: ['folder/', 'folder0')."""
    return f"{folder}/", f"{folder}0"


def open_base_store(url: str) -> BaseStore:
    """SQLite through the standard library (SQLAlchemy's import costs ~0.5 s, more than
    a small session: docs/decisions.md); other databases through SQLAlchemy."""
    if url.startswith("sqlite:///"):
        from storsync.state.sqlite_base import SqliteBaseStore

        return SqliteBaseStore(Path(url.removeprefix("sqlite:///")))
    from storsync.state.store import StateStore

    return StateStore(url)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
