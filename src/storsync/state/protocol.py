"""What the runner needs of the state: the pair's id and its base."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

    def close(self) -> None: ...


class SessionLogStore(BaseStore, Protocol):
    """A service's session worker also writes its log items, beside the base: per-file
    rows never pass through (and never stall) the process that answers the API."""

    def record_items(
        self, session_id: str, kind: str, ts_ns: int, items: Sequence[tuple[str, int | None]]
    ) -> tuple[int, int]:
        """Store one batch of items in one transaction; the lowest and highest id given."""
        ...
