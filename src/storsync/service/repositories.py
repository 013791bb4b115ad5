"""Repositories: validation of what a client may point the server at (API.md section 5).

A token must not become a way to read or write any file the server can reach, so local
paths (and directory remotes) must lie under the allowed roots, and an S3 endpoint on a
private or loopback address needs an explicit setting.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from storsync.clock import Clock
from storsync.engine.filters import PathFilter
from storsync.errors import Conflict, Forbidden, InvalidRequest, UnknownObject, UsageError
from storsync.model import ConflictPolicy, Mode
from storsync.service import endpoints
from storsync.service.sessions import SessionManager
from storsync.service.vault import Vault
from storsync.state.catalog import Catalog
from storsync.state.records import Repository
from storsync.storage.remotes import S3Options, canonical_url

CREDENTIAL_KEYS = ("accessKeyId", "secretAccessKey", "endpoint", "region")
DEFAULT_NAME = "default"


@dataclass(frozen=True)
class RepositorySpec:
    name: str
    local_path: str
    remote: str
    mode: str = Mode.TWO_WAY.value
    policy: str = ConflictPolicy.KEEP_BOTH.value
    excludes: tuple[str, ...] = ()
    description: str = ""
    credentials: Mapping[str, str] | None = None


class Repositories:
    def __init__(
        self,
        catalog: Catalog,
        vault: Vault,
        clock: Clock,
        sessions: SessionManager,
        *,
        roots: Sequence[Path],
        allow_private_endpoints: bool,
    ) -> None:
        self.catalog = catalog
        self.vault = vault
        self.clock = clock
        self.sessions = sessions
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)
        self.allow_private_endpoints = allow_private_endpoints

    def list(self) -> list[Repository]:
        return self.catalog.list_repositories()

    def get(self, repository_id: str) -> Repository:
        found = self.catalog.get_repository(repository_id)
        if found is None:
            raise UnknownObject(f"no repository with id {repository_id!r}")
        return found

    def default(self) -> Repository:
        found = self.catalog.default_repository()
        if found is None:
            raise UnknownObject(
                "there is no default repository; start the server with --local/--remote"
            )
        return found

    def create(self, spec: RepositorySpec, *, trusted: bool = False) -> Repository:
        values = self._validate(spec, trusted=trusted, exclude_id=None)
        return self.catalog.create_repository(now_ns=self.clock.now_ns(), **values)

    def update(self, repository_id: str, changes: Mapping[str, Any]) -> Repository:
        current = self.get(repository_id)
        local_path = unquote(urlsplit(current.local_url).path)
        spec = RepositorySpec(
            name=changes.get("name", current.name),
            local_path=changes.get("local_path", local_path),
            remote=changes.get("remote", current.remote_url),
            mode=changes.get("mode", current.mode),
            policy=changes.get("policy", current.policy),
            excludes=tuple(changes.get("excludes", current.excludes)),
            description=changes.get("description", current.description),
            credentials=changes.get("credentials"),
        )
        values = self._validate(spec, trusted=False, exclude_id=repository_id)
        if spec.credentials is None:
            del values["credentials"]  # not given: the stored ones stay
        with self.sessions.idle(repository_id, "changed"):
            updated = self.catalog.update_repository(
                repository_id, values, now_ns=self.clock.now_ns()
            )
        if updated is None:
            raise UnknownObject(f"no repository with id {repository_id!r}")
        return updated

    def delete(self, repository_id: str) -> None:
        self.get(repository_id)
        with self.sessions.idle(repository_id, "deleted"):
            self.catalog.delete_repository(repository_id)

    def ensure_default(self, spec: RepositorySpec) -> Repository:
        """The server's default repository (``--local``/``--remote``), created or updated.

        It is given by whoever starts the server, so the allowed roots do not apply.
        """
        current = self.catalog.default_repository()
        values = self._validate(spec, trusted=True, exclude_id=current.id if current else None)
        if current is None:
            created = self.catalog.create_repository(now_ns=self.clock.now_ns(), **values)
            self.catalog.set_default_repository(created.id)
            return self.get(created.id)
        if values["credentials"] is None:
            del values["credentials"]
        del values["name"]
        moved = (
            current.local_url != values["local_url"] or current.remote_url != values["remote_url"]
        )
        with self.sessions.idle(current.id, "changed") if moved else contextlib.nullcontext():
            updated = self.catalog.update_repository(current.id, values, now_ns=self.clock.now_ns())
        assert updated is not None
        return updated

    # -- validation -------------------------------------------------------------------

    def _validate(
        self, spec: RepositorySpec, *, trusted: bool, exclude_id: str | None
    ) -> dict[str, Any]:
        name = spec.name.strip()
        if not name or len(name) > 128 or any(ord(c) < 32 for c in name):
            raise InvalidRequest("name must be 1 to 128 printable characters")
        if len(spec.description) > 4096:
            raise InvalidRequest("description must be at most 4096 characters")
        if spec.mode not in {m.value for m in Mode}:
            raise InvalidRequest(f"mode must be one of {', '.join(m.value for m in Mode)}")
        if spec.policy not in {p.value for p in ConflictPolicy}:
            raise InvalidRequest(
                f"conflict policy must be one of {', '.join(p.value for p in ConflictPolicy)}"
            )
        for pattern in spec.excludes:
            if not pattern.strip() or "\0" in pattern:
                raise InvalidRequest(f"exclude pattern {pattern!r} is empty or invalid")
        try:
            PathFilter(spec.excludes).excluded("probe")
        except Exception as exc:  # pathspec raises several kinds for a bad pattern
            raise InvalidRequest(f"an exclude pattern is invalid: {exc}") from None
        local = self._local_path(spec.local_path, "localPath", trusted=trusted)
        credentials = self._credentials(spec.credentials)
        s3 = S3Options(endpoint=(credentials or {}).get("endpoint"))
        try:
            remote_url = canonical_url(spec.remote, s3)
        except UsageError as exc:
            raise InvalidRequest(exc.message) from None
        if remote_url.startswith("s3://"):
            remote_url = remote_url.split("?", 1)[0]
            if s3.endpoint and not trusted and not self.allow_private_endpoints:
                endpoints.check(s3.endpoint)
        else:
            remote_dir = self._local_path(
                unquote(urlsplit(remote_url).path), "remote", trusted=trusted
            )
            if _overlap(local, remote_dir):
                raise InvalidRequest("the local path and the remote directory overlap")
            remote_url = remote_dir.as_uri()
        for other in self.catalog.list_repositories():
            other_local = Path(unquote(urlsplit(other.local_url).path))
            if other.id != exclude_id and _overlap(local, other_local):
                raise Conflict(
                    f"the local path overlaps that of repository {other.name!r} ({other.id})"
                )
        local.mkdir(parents=True, exist_ok=True)
        return {
            "name": name,
            "description": spec.description,
            "local_url": local.as_uri(),
            "remote_url": remote_url,
            "mode": spec.mode,
            "policy": spec.policy,
            "excludes": list(spec.excludes),
            "credentials": None if credentials is None else self.vault.seal(credentials),
        }

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

    def _credentials(self, given: Mapping[str, str] | None) -> dict[str, str] | None:
        if given is None:
            return None
        unknown = set(given) - set(CREDENTIAL_KEYS)
        if unknown:
            raise InvalidRequest(
                f"unknown remoteCredentials field {sorted(unknown)[0]!r}; "
                f"expected {', '.join(CREDENTIAL_KEYS)}"
            )
        values = {k: v for k, v in given.items() if v}
        if any(not isinstance(v, str) or len(v) > 4096 for v in values.values()):
            raise InvalidRequest("remoteCredentials fields must be strings")
        if ("accessKeyId" in values) != ("secretAccessKey" in values):
            raise InvalidRequest("give both accessKeyId and secretAccessKey, or neither")
        endpoint = values.get("endpoint")
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidRequest(f"endpoint {endpoint!r} must be an http:// or https:// URL")
            if "@" in endpoint:
                raise InvalidRequest("the endpoint URL must not carry credentials")
        return values


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents
