"""Request and response bodies of the native API, for validation and the OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, Strict, model_validator
from starlette.exceptions import HTTPException
from starlette.requests import Request

from storsync.model import (
    MIN_BWLIMIT,
    ConflictPolicy,
    ConflictState,
    EventType,
    Keep,
    LogKind,
    PlanAction,
    RepositoryStatus,
    SessionState,
    Trigger,
)

Mode = Literal["two-way", "push-only", "pull-only"]
Policy = Literal["keep-both", "newer", "local", "remote"]
# The repository settings of API.md section 7: a wrong type is refused, never coerced
# ("yes" is no boolean, 8.0 no integer).
Flag = Annotated[bool, Strict()]
Percent = Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]
Days = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Transfers = Annotated[int, Strict(), Field(ge=1, le=256)]
Pattern = Annotated[str, Strict(), Field(min_length=1, max_length=4096)]
Excludes = Annotated[list[Pattern], Field(max_length=1000)]
Delay = Annotated[float, Strict(), Field(ge=0.1, le=3600, allow_inf_nan=False)]
# Bytes per second: at least 1 KiB/s (less would hold a transfer for hours per chunk).
Rate = Annotated[int, Strict(), Field(ge=MIN_BWLIMIT, le=2**50)]


def has_nul(value: Any) -> bool:
    """Whether a string anywhere in a JSON value holds a NUL character (iteratively: a
    body may be nested as deep as the JSON parser allows)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class Text(BaseModel):
    """A request body whose strings hold no NUL character: no name, path, label or token
    has a use for one, and PostgreSQL refuses them in text."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if has_nul(data):
            raise ValueError("text must not contain NUL characters")
        return data


class Closed(Text):
    model_config = ConfigDict(extra="forbid")


class Credentials(Closed):
    """The remote's credentials (write-only: a repository shows ``hasCredentials``) and
    where it is beyond its URL (shown back as ``remoteEndpoint``, ``remoteRegion``); an
    update that gives them replaces all four."""

    accessKeyId: str | None = Field(default=None, max_length=4096)
    secretAccessKey: str | None = Field(default=None, max_length=4096)
    endpoint: str | None = Field(default=None, max_length=4096)
    region: str | None = Field(default=None, max_length=128)


class ScheduleIn(Closed):
    """``{"intervalSeconds": N}`` (N >= 10), or ``{"cron": "*/15 * * * *", "timezone":
    "Europe/Paris"}`` (timezone default UTC)."""

    intervalSeconds: Annotated[int, Strict()] | None = None
    cron: Annotated[str, Strict(), Field(min_length=1, max_length=200)] | None = None
    timezone: Annotated[str, Strict(), Field(min_length=1, max_length=64)] = "UTC"


class RepositoryIn(Text):
    """What every face that edits repositories takes alike: the sync settings and the
    remote's credentials (each face adds its names for the rest); all optional."""

    mode: Mode | None = None
    conflictPolicy: Policy | None = None
    excludes: Excludes | None = None
    checksum: Flag | None = None
    maxDeletePercent: Percent | None = None
    trashDays: Days | None = None
    transfers: Transfers | None = None
    bwlimitBytesPerSecond: Rate | None = None  # null: no limit of its own (as schedule)
    schedule: ScheduleIn | None = None  # null: no schedule (unlike the others: not "not given")
    watch: Flag | None = None
    watchDelaySeconds: Delay | None = None
    paused: Flag | None = None
    remoteCredentials: Credentials | None = None


class RepositoryCreate(RepositoryIn):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    localPath: str = Field(min_length=1, max_length=4096)
    remote: str = Field(min_length=1, max_length=4096)
    description: str = Field(default="", max_length=4096)


class RepositoryUpdate(RepositoryIn):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=128)
    localPath: str | None = Field(default=None, min_length=1, max_length=4096)
    remote: str | None = Field(default=None, min_length=1, max_length=4096)
    description: str | None = Field(default=None, max_length=4096)


class RepositoryOut(BaseModel):
    id: str
    name: str
    description: str
    localPath: str
    remote: str
    remoteEndpoint: str | None = Field(
        description="The S3 endpoint given in remoteCredentials (null: AWS's)."
    )
    remoteRegion: str | None = Field(
        description="The S3 region given in remoteCredentials (null: us-east-1)."
    )
    mode: str
    conflictPolicy: str
    excludes: list[str]
    checksum: bool
    maxDeletePercent: float
    trashDays: float
    transfers: int
    bwlimitBytesPerSecond: int | None
    schedule: dict[str, Any] | None
    watch: bool
    watchDelaySeconds: float
    paused: bool
    status: RepositoryStatus
    nextRunAt: str | None
    lastSuccessAt: str | None
    lastSessionId: str | None
    hasCredentials: bool = Field(
        description="Whether the remote has credentials of its own (remoteCredentials "
        "accessKeyId and secretAccessKey); they are write-only, never shown."
    )
    isDefault: bool
    createdAt: str | None
    updatedAt: str | None


class HaltOut(BaseModel):
    reason: str
    deleteLocal: int
    deleteRemote: int
    sample: list[str]


class PlanStepOut(BaseModel):
    id: int
    action: PlanAction
    path: str
    size: int | None


class PlanPage(BaseModel):
    items: list[PlanStepOut]
    next: str | None


class ServiceSettingsIn(Closed):
    """The service's settings an admin changes while it runs (they outlive a restart):
    the total bandwidth of all running sessions, bytes per second (null: no limit). The
    configuration's name ``bwlimit_bytes_per_second`` is taken as well."""

    bwlimitBytesPerSecond: Rate | None = Field(
        default=None,
        validation_alias=AliasChoices("bwlimitBytesPerSecond", "bwlimit_bytes_per_second"),
    )


class ServiceSettingsOut(BaseModel):
    bwlimitBytesPerSecond: int | None


class ResolveIn(Closed):
    """Which version a conflict ends with: ``local``, ``remote`` or ``both``."""

    keep: Keep


class VersionOut(BaseModel):
    size: int
    mtime: str | None
    hash: str | None


class ResolutionOut(BaseModel):
    keep: Keep
    by: str
    sessionId: str | None
    at: str | None


class PendingResolutionOut(BaseModel):
    keep: Keep
    sessionId: str


class ConflictOut(BaseModel):
    id: str
    repositoryId: str
    path: str
    copyPath: str | None
    state: ConflictState
    policy: ConflictPolicy
    foundBySessionId: str
    foundAt: str | None
    local: VersionOut
    remote: VersionOut
    pending: PendingResolutionOut | None
    resolution: ResolutionOut | None


class ConflictPage(BaseModel):
    items: list[ConflictOut]
    offset: int
    limit: int
    next: str | None


class PhaseOut(BaseModel):
    id: str
    state: str | None
    filesPlanned: int
    filesDone: int
    bytesPlanned: int
    bytesDone: int


class SessionOut(BaseModel):
    id: str
    repositoryId: str
    state: SessionState
    progressPercent: int
    push: PhaseOut
    pull: PhaseOut
    createdAt: str | None
    startedAt: str | None
    endedAt: str | None
    error: str | None
    trigger: Trigger
    stopRequested: bool
    pushed: int
    pulled: int
    deletedLocal: int
    deletedRemote: int
    movedLocal: int  # files moved on this side as the other side had moved them
    movedRemote: int
    conflicts: int
    errors: int
    halt: HaltOut | None
    haltOutcome: Literal["approved", "rejected"] | None
    approves: str | None


class SessionPage(BaseModel):
    items: list[SessionOut]
    offset: int
    limit: int
    next: str | None


class LogItemOut(BaseModel):
    id: int
    time: str | None
    kind: LogKind
    path: str
    message: str | None
    size: int | None


class LogItemPage(BaseModel):
    items: list[LogItemOut]
    next: str | None


class EventOut(BaseModel):
    id: int
    time: str | None
    type: EventType
    repositoryId: str | None
    sessionId: str | None
    data: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    lastId: int


class Login(Closed):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(Closed):
    refresh_token: str = Field(min_length=1, max_length=1024)


class Revocation(Text):
    """A token to revoke (RFC 7009 section 2.1). Other fields (client_id, ...) are ignored,
    as OAuth clients send them; the hint is accepted but unused: a token is found by its
    value, whatever its kind."""

    token: str = Field(min_length=1, max_length=1024)
    token_type_hint: str = Field(default="", max_length=64)


async def form_or_json(request: Request) -> dict[str, Any] | None:
    """The fields of a form-encoded or JSON object body, as the OAuth 2 endpoints take
    them (RFC 6749 section 4.3, RFC 7009 section 2.1); None when the body is neither."""
    try:
        if "json" in request.headers.get("content-type", ""):
            raw = await request.json()
            return raw if isinstance(raw, dict) else None
        return dict((await request.form()).items())
    except (ValueError, UnicodeDecodeError, AssertionError, RecursionError, HTTPException):
        # RecursionError: JSON nested too deep; HTTPException: a malformed or oversized form.
        return None


class TokenOut(BaseModel):
    """OAuth 2 style, the same as the Veeam face's token answer."""

    model_config = ConfigDict(populate_by_name=True)

    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    userName: str
    issued: str = Field(alias=".issued")
    expires: str = Field(alias=".expires")


class UserCreate(Closed):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["admin", "operator", "viewer"] = "viewer"


class UserUpdate(Closed):
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    role: Literal["admin", "operator", "viewer"] | None = None


class UserOut(BaseModel):
    id: str
    name: str
    role: str
    createdAt: str | None


class ApiKeyCreate(Closed):
    label: str = Field(default="", max_length=256)


class ApiKeyOut(BaseModel):
    id: str
    label: str
    createdAt: str | None
    revoked: bool
    token: str | None = None


class Health(BaseModel):
    status: str
    version: str
