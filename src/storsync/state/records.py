"""What the state store hands out about the service's objects: plain values, never rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Role(enum.StrEnum):
    ADMIN = "admin"  # users, repositories, settings
    OPERATOR = "operator"  # trigger, stop, resolve
    VIEWER = "viewer"  # read

    def allows(self, needed: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
        return order.index(self) >= order.index(needed)


class SessionState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"  # finished, some files could not be synchronized
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def active(self) -> bool:
        return self in (SessionState.QUEUED, SessionState.RUNNING)


class PhaseState(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    STOPPED = "stopped"


class TokenKind(enum.StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    API_KEY = "api-key"


@dataclass(frozen=True, slots=True)
class Repository:
    id: str
    name: str
    description: str
    local_url: str
    remote_url: str
    mode: str
    policy: str
    excludes: tuple[str, ...]
    has_credentials: bool
    is_default: bool
    created_ns: int
    updated_ns: int | None


@dataclass(frozen=True, slots=True)
class PhaseCounters:
    files_planned: int = 0
    files_done: int = 0
    bytes_planned: int = 0
    bytes_done: int = 0


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    repository_id: str
    push_id: str
    pull_id: str
    state: SessionState
    push_state: PhaseState | None
    pull_state: PhaseState | None
    created_ns: int
    started_ns: int | None
    ended_ns: int | None
    error: str | None
    stop_requested: bool
    trigger: str
    percent: int
    push: PhaseCounters
    pull: PhaseCounters
    pushed: int
    pulled: int
    deleted_local: int
    deleted_remote: int
    conflicts: int
    errors: int


@dataclass(frozen=True, slots=True)
class LogItem:
    id: int
    session_id: str
    ts_ns: int
    kind: str  # pushed, pulled, deleted-local, deleted-remote, conflict, error, skipped
    path: str
    message: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    role: Role
    created_ns: int


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    user: User
    kind: TokenKind
    label: str
    created_ns: int
    expires_ns: int | None
    revoked: bool
    sign_in: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ts_ns: int
    type: str
    repository_id: str | None
    session_id: str | None
    data: dict[str, Any]
