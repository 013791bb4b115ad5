"""The checks of a repository a client asks for (API.md sections 5 and 7).

A token must not become a way to read or write any file the server can reach, so local
paths (and directory remotes) must lie under the allowed roots, and an endpoint on a
private or loopback address needs an explicit setting. Settings have strict ranges.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storsync.engine.filters import PathFilter
from storsync.errors import Conflict, Forbidden, InvalidRequest, UsageError
from storsync.service import scheduling
from storsync.state.records import RepositorySettings
from storsync.state.repository_store import RepositoryStore
from storsync.storage import endpoints
from storsync.storage.registry import kind_of, overlapping, split_fields

if TYPE_CHECKING:
    from storsync.service.repositories import RepositorySpec

MAX_TRANSFERS = 256


@dataclass(frozen=True)
class Checked:
    name: str
    local_url: str
    remote_url: str
    options: dict[str, str]
    credentials: dict[str, str]


class RepositoryChecks:
    def __init__(
        self, store: RepositoryStore, *, roots: Sequence[Path], allow_private_endpoints: bool
    ) -> None:
        self.store = store
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)
        self.allow_private_endpoints = allow_private_endpoints

    def check(
        self,
        spec: RepositorySpec,
        *,
        trusted: bool,
        exclude_id: str | None,
        check_endpoint: bool = True,
    ) -> Checked:
        """What to store of ``spec``; InvalidRequest, Forbidden or Conflict if it may not
        be. ``trusted``: given by whoever starts the server (no allowed roots, any
        endpoint); ``check_endpoint``: the endpoint was given now, not kept."""
        name = spec.name.strip()
        if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
            raise InvalidRequest("name must be 1 to 128 printable characters")
        if len(spec.description) > 4096:
            raise InvalidRequest("description must be at most 4096 characters")
        _check_settings(spec.settings)
        local = self._local_path(spec.local_path, "localPath", trusted=trusted)
        try:
            kind = kind_of(spec.remote)
            remote_url = kind.canonical(spec.remote)
            options, credentials = split_fields(spec.remote_fields or {})
            kind.check_fields(options, credentials)
        except UsageError as exc:
            raise InvalidRequest(exc.message) from None
        endpoint = kind.endpoint(options)
        if endpoint and check_endpoint and not trusted and not self.allow_private_endpoints:
            endpoints.check(endpoint)
        directory = kind.directory(remote_url)
        if directory is not None:
            remote_dir = self._local_path(str(directory), "remote", trusted=trusted)
            if overlapping(local, remote_dir):
                raise InvalidRequest("the local path and the remote directory overlap")
            remote_url = remote_dir.as_uri()
        for other in self.store.all():
            if other.id != exclude_id and other.name == name:
                raise Conflict(f"a repository is named {name!r} already ({other.id})")
            if other.id != exclude_id and overlapping(local, other.local_root):
                raise Conflict(
                    f"the local path overlaps that of repository {other.name!r} ({other.id})"
                )
        local.mkdir(parents=True, exist_ok=True)
        return Checked(name, local.as_uri(), remote_url, options, credentials)

    def _local_path(self, raw: str, what: str, *, trusted: bool) -> Path:
        if not raw or "\0" in raw:
            raise InvalidRequest(f"{what} must be an absolute path")
        path = Path(raw)
        if not path.is_absolute():
            raise InvalidRequest(f"{what} must be an absolute path, not {raw!r}")
        real = Path(os.path.realpath(path))
        if not trusted and not any(real == r or r in real.parents for r in self.roots):
            raise Forbidden(
                f"{what} {raw!r} is outside the allowed roots "
                f"({', '.join(str(r) for r in self.roots)})"
            )
        if real.exists() and not real.is_dir():
            raise InvalidRequest(f"{what} {raw!r} is not a directory")
        return real


def _check_settings(settings: RepositorySettings) -> None:
    """The ranges of API.md section 7 (the faces check the types)."""
    if not 0 <= settings.max_delete_percent <= 100:
        raise InvalidRequest("maxDeletePercent must be a number from 0 to 100")
    if not (math.isfinite(settings.trash_days) and settings.trash_days >= 0):
        raise InvalidRequest("trashDays must be a number of 0 or more")
    transfers = settings.transfers
    if transfers is not None and not 1 <= transfers <= MAX_TRANSFERS:
        raise InvalidRequest(f"transfers must be an integer from 1 to {MAX_TRANSFERS}")
    if not 0.1 <= settings.watch_delay_s <= 3600:
        raise InvalidRequest("watchDelaySeconds must be a number from 0.1 to 3600")
    if settings.schedule is not None:
        scheduling.check(settings.schedule)
    for pattern in settings.excludes:
        if not pattern.strip() or "\0" in pattern:
            raise InvalidRequest(f"exclude pattern {pattern!r} is empty or invalid")
    try:
        PathFilter(settings.excludes).excluded("probe")
    except Exception as exc:  # pathspec raises several kinds for a bad pattern
        raise InvalidRequest(f"an exclude pattern is invalid: {exc}") from None
