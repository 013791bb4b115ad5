"""One session's work as a value: which pair, where its base lives, and every setting.

``storsync sync`` builds a job from its flags; the service builds one from a repository
(with its credentials sealed: a job may wait in a database queue, and secrets stay out of
the database, API.md section 5); its worker process reads the job back with ``from_json``
and runs it (storsync.runner.run). A job holds no secret in the clear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from storsync.errors import UsageError
from storsync.model import EVERYTHING, ConflictPolicy, Mode, Scope, SyncSettings
from storsync.paths import is_own, normalize, refusal
from storsync.storage.registry import RemoteSpec

FORMAT = 1
T = TypeVar("T")


@dataclass(frozen=True)
class SyncJob:
    """``repository_id``: None on the command line, whose pairs are keyed in their store
    by their two URLs; ``session_id``: the service's session that the run's log items
    belong to (None: none are kept); ``state_url``: the database of the base."""

    local_root: Path
    remote: RemoteSpec
    settings: SyncSettings
    state_url: str
    repository_id: str | None = None
    session_id: str | None = None
    # A session that trips a deletion guard halts (waits for approval) instead of failing.
    halts: bool = False
    # The halted session whose listed deletions this one carries (an approval).
    approves: str | None = None
    # What the session looks at: everything, unless a watch or a remote check started it.
    scope: Scope = EVERYTHING

    def to_json(self) -> str:
        s, r = self.settings, self.remote
        return json.dumps(
            {
                "format": FORMAT,
                "local_root": str(self.local_root),
                "remote": {
                    "url": r.url,
                    "options": dict(r.options),
                    "sealed_credentials": r.sealed_credentials,
                    "private_endpoint_allowed": r.private_endpoint_allowed,
                },
                "settings": {
                    "mode": s.mode.value,
                    "policy": s.policy.value,
                    "checksum": s.checksum,
                    "dry_run": s.dry_run,
                    "excludes": list(s.excludes),
                    "max_delete_percent": float(s.max_delete_percent),
                    "force": s.force,
                    "transfers": s.transfers,
                    "trash_days": float(s.trash_days),
                    "bwlimit_bps": s.bwlimit_bps,
                },
                "state_url": self.state_url,
                "repository_id": self.repository_id,
                "session_id": self.session_id,
                "halts": self.halts,
                "approves": self.approves,
                "scope": {
                    "paths": None if self.scope.paths is None else sorted(self.scope.paths),
                    "remote_whole": self.scope.remote_whole,
                },
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> SyncJob:
        """The job ``to_json`` wrote; UsageError for anything else."""
        try:
            raw = json.loads(text)
            if _get(raw, "format", int) != FORMAT:
                raise ValueError("an unknown format")
            remote, settings = _get(raw, "remote", dict), _get(raw, "settings", dict)
            return cls(
                local_root=Path(_get(raw, "local_root", str)),
                remote=RemoteSpec(
                    url=_get(remote, "url", str),
                    options=_strings(_get(remote, "options", dict)),
                    sealed_credentials=_get(remote, "sealed_credentials", str, optional=True),
                    private_endpoint_allowed=_get(remote, "private_endpoint_allowed", bool),
                ),
                settings=_settings(settings),
                state_url=_get(raw, "state_url", str),
                repository_id=_get(raw, "repository_id", str, optional=True),
                session_id=_get(raw, "session_id", str, optional=True),
                halts=_get(raw, "halts", bool),
                approves=_get(raw, "approves", str, optional=True),
                scope=_scope(_get(raw, "scope", dict)),
            )
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise UsageError(f"not a sync job: {exc}") from None


def _settings(raw: Mapping[str, Any]) -> SyncSettings:
    return SyncSettings(
        mode=Mode(_get(raw, "mode", str)),
        policy=ConflictPolicy(_get(raw, "policy", str)),
        checksum=_get(raw, "checksum", bool),
        dry_run=_get(raw, "dry_run", bool),
        excludes=tuple(_strings_list(_get(raw, "excludes", list))),
        max_delete_percent=float(_number(raw, "max_delete_percent")),
        force=_get(raw, "force", bool),
        transfers=_get(raw, "transfers", int),
        trash_days=float(_number(raw, "trash_days")),
        bwlimit_bps=_get(raw, "bwlimit_bps", int, optional=True),
    )


def _scope(raw: Mapping[str, Any]) -> Scope:
    paths = _get(raw, "paths", list, optional=True)
    remote_whole = _get(raw, "remote_whole", bool)
    if paths is None:
        return EVERYTHING
    for path in _strings_list(paths):
        if refusal(path) or normalize(path) != path or is_own(path):
            raise ValueError(f"the scope names {path!r}, which is not a path of a pair")
    return Scope.named(paths, remote_whole=remote_whole)


def _get(raw: Mapping[str, Any], name: str, kind: type[T], *, optional: bool = False) -> T:
    if not isinstance(raw, dict):
        raise TypeError("a part of it is not an object")
    value = raw[name]
    if value is None and optional:
        return None  # type: ignore[return-value]  # optional: T | None to the caller
    # bool is an int to isinstance; a job's integers are never booleans, nor the reverse.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{name} is not a {kind.__name__}")
    return value


def _number(raw: Mapping[str, Any], name: str) -> float:
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is not a number")
    return value


def _strings(raw: dict[str, Any]) -> dict[str, str]:
    if not all(isinstance(v, str) for v in raw.values()):
        raise TypeError("an option is not a string")
    return dict(raw)


def _strings_list(raw: list[Any]) -> list[str]:
    if not all(isinstance(v, str) for v in raw):
        raise TypeError("a list holds something other than a string")
    return raw
