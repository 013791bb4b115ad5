"""What the state store hands out about the service's objects: plain values, never rows."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storsync.model import (
    ConflictPolicy,
    ConflictState,
    EventType,
    Halt,
    Keep,
    LogKind,
    Mode,
    Phase,
    PhaseCounters,
    PhaseState,
    Schedule,
    SessionState,
    SyncSettings,
    Trigger,
)


class Role(enum.StrEnum):
    ADMIN = "admin"  # users, repositories, settings
    OPERATOR = "operator"  # trigger, stop, resolve
    VIEWER = "viewer"  # read

    def allows(self, needed: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
        return order.index(self) >= order.index(needed)


class HaltOutcome(enum.StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class TokenKind(enum.StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    API_KEY = "api-key"
    # A person signed in to the dashboard: accepted from the session cookie alone.
    BROWSER = "browser"


@dataclass(frozen=True, slots=True)
class RepositorySettings:
    """A repository's sync settings as stored; ``transfers`` None: the service's default."""

    mode: Mode = Mode.TWO_WAY
    policy: ConflictPolicy = ConflictPolicy.KEEP_BOTH
    excludes: tuple[str, ...] = ()
    checksum: bool = False
    max_delete_percent: float = 50.0
    trash_days: float = 30.0
    transfers: int | None = None
    bwlimit_bps: int | None = None  # None: only the service's total limits it
    # Left running (API.md section 7): when it synchronizes by itself.
    schedule: Schedule | None = None
    watch: bool = False
    watch_delay_s: float = 2.0
    paused: bool = False

    def sync_settings(self, default_transfers: int) -> SyncSettings:
        return SyncSettings(
            mode=self.mode,
            policy=self.policy,
            checksum=self.checksum,
            excludes=self.excludes,
            max_delete_percent=self.max_delete_percent,
            transfers=self.transfers or default_transfers,
            trash_days=self.trash_days,
            bwlimit_bps=self.bwlimit_bps,
        )


@dataclass(frozen=True, slots=True)
class RepositoryFields:
    """What a repository is made of: its name, both sides and its settings."""

    name: str
    description: str
    local_url: str
    remote_url: str
    # The remote's options that are not secret (an S3 endpoint and region); its
    # credentials are sealed apart and never handed out with the repository.
    remote_options: Mapping[str, str]
    settings: RepositorySettings


@dataclass(frozen=True, slots=True)
class Repository(RepositoryFields):
    id: str
    has_credentials: bool
    is_default: bool
    created_ns: int
    updated_ns: int | None
    # What its sessions did lately, kept with it so that its status costs no query: when
    # its schedule was set, its failures in a row, and when it last succeeded and failed.
    schedule_set_ns: int | None = None
    failures: int = 0
    last_success_ns: int | None = None
    last_failure_ns: int | None = None

    @property
    def local_root(self) -> Path:
        return Path(unquote(urlsplit(self.local_url).path))


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
    trigger: Trigger
    percent: int
    push: PhaseCounters
    pull: PhaseCounters
    pushed: int
    pulled: int
    deleted_local: int
    deleted_remote: int
    conflicts: int
    errors: int
    halt: Halt | None = None
    halt_outcome: HaltOutcome | None = None
    approves: str | None = None  # the halted session whose deletions it carries
    moved_local: int = 0
    moved_remote: int = 0

    def phase_state(self, phase: Phase) -> PhaseState | None:
        return self.push_state if phase is Phase.PUSH else self.pull_state


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Which sessions to list, newest first: of one repository, in some states, a page."""

    repository_id: str | None = None
    states: tuple[SessionState, ...] = ()
    offset: int = 0
    limit: int = 100


@dataclass
class RepositoryTotals:
    """What a repository's sessions in the history did, for the metrics."""

    sessions_by_state: dict[SessionState, int] = field(default_factory=dict)
    files_pushed: int = 0
    files_pulled: int = 0
    bytes_pushed: int = 0
    bytes_pulled: int = 0


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a conflicting file as the session that found it scanned it."""

    size: int
    mtime_ns: int
    hash: str | None


@dataclass(frozen=True, slots=True)
class Conflict:
    """A conflict as the service shows it (API.md section 7)."""

    id: str
    repository_id: str
    path: str
    copy_path: str | None
    state: ConflictState
    policy: ConflictPolicy
    found_session_id: str
    found_ns: int
    local: Version
    remote: Version
    path_print: str
    copy_print: str | None
    resolving: Keep | None  # the decision a queued or running session carries
    resolving_session_id: str | None
    kept: Keep | None
    resolved_by: str | None  # "policy" or "person"
    resolved_session_id: str | None
    resolved_ns: int | None


@dataclass(frozen=True, slots=True)
class ConflictQuery:
    """Which conflicts to list, oldest first: of one repository, in one state, a page."""

    repository_id: str | None = None
    state: ConflictState | None = None
    offset: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """A session as an event carries it: what any face needs to render the event as of
    its time, without reading the store again."""

    id: str
    repository_id: str
    state: SessionState
    started: bool
    push_id: str
    pull_id: str
    push_state: PhaseState | None
    pull_state: PhaseState | None
    percent: int
    push: PhaseCounters
    pull: PhaseCounters
    error: str | None

    @classmethod
    def of(cls, session: Session) -> SessionSnapshot:
        return cls(
            id=session.id,
            repository_id=session.repository_id,
            state=session.state,
            started=session.started_ns is not None,
            push_id=session.push_id,
            pull_id=session.pull_id,
            push_state=session.push_state,
            pull_state=session.pull_state,
            percent=session.percent,
            push=session.push,
            pull=session.pull,
            error=session.error,
        )


@dataclass(frozen=True, slots=True)
class SessionTotals:
    """What a finished session did, as its worker reports it."""

    state: SessionState
    error: str | None = None
    pushed: int = 0
    pulled: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    conflicts: int = 0
    errors: int = 0
    halt: Halt | None = None
    moved_local: int = 0
    moved_remote: int = 0


@dataclass(frozen=True, slots=True)
class LogItem:
    id: int
    session_id: str
    ts_ns: int
    kind: LogKind
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


# -- events: one detail type per kind of event ----------------------------------------


@dataclass(frozen=True, slots=True)
class Queued:
    trigger: Trigger


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    phase: Phase
    state: PhaseState


@dataclass(frozen=True, slots=True)
class Progressed:
    stage: str  # scanning, hashing, push, pull
    rate_bps: int
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class ConflictFound:
    path: str


@dataclass(frozen=True, slots=True)
class ConflictResolved:
    conflict_id: str
    path: str
    kept: Keep
    by: str  # "policy" or "person"


@dataclass(frozen=True, slots=True)
class ItemBatch:
    """A durable batch of a session's files; stored by where its log items are, and
    delivered with the items themselves (``items``) to the consumers that ask."""

    kind: LogKind
    count: int
    first_id: int
    last_id: int
    items: tuple[tuple[str, int | None], ...] | None = None


@dataclass(frozen=True, slots=True)
class Nothing:
    """The event says all by its type (a session started or ended)."""


Detail = Queued | PhaseChanged | Progressed | ConflictFound | ConflictResolved | ItemBatch | Nothing


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ts_ns: int
    type: EventType
    repository_id: str | None
    session_id: str | None
    session: SessionSnapshot | None = None
    detail: Detail = field(default_factory=Nothing)

    def with_items(self, items: tuple[tuple[str, int | None], ...]) -> Event:
        assert isinstance(self.detail, ItemBatch)
        return replace(self, detail=replace(self.detail, items=items))
