"""What the runner needs of the state: the pair's id, its base, and (in the service) the
log items of the session it runs; and the store that keeps them for a database URL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from storsync.model import BaseEntry

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

    def commit_base(
        self,
        repository_id: str,
        records: Iterable[tuple[str, BaseEntry]],
        forgotten: Iterable[str],
    ) -> None:
        """Record verified paths and forget removed ones, in one transaction."""
        ...

    def record_items(
        self, session_id: str, kind: str, ts_ns: int, items: Sequence[tuple[str, int | None]]
    ) -> tuple[int, int]:
        """Store one batch of a service session's log items in one transaction; the lowest
        and highest id given. Written by the session's own process: per-file rows never
        pass through (and never stall) the process that answers the API."""
        ...

    def close(self) -> None: ...


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
