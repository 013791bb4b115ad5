"""The shared vocabulary: sides, entries as scanned, the base, what a storage can keep,
the settings of a synchronization, the lifecycles every layer reports, and the stop signal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, NamedTuple

from storsync.errors import Stopped
from storsync.paths import is_own, outermost, refusal


class Side(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"

    @property
    def other(self) -> Side:
        return Side.REMOTE if self is Side.LOCAL else Side.LOCAL


class Mode(StrEnum):
    TWO_WAY = "two-way"
    PUSH_ONLY = "push-only"
    PULL_ONLY = "pull-only"


class ConflictPolicy(StrEnum):
    KEEP_BOTH = "keep-both"
    NEWER = "newer"
    LOCAL = "local"
    REMOTE = "remote"


class Keep(StrEnum):
    """Which version a conflict ends with (API.md section 7): the path's (local), the
    conflict copy's (remote), or both files as they stand."""

    LOCAL = "local"
    REMOTE = "remote"
    BOTH = "both"


class ConflictState(StrEnum):
    OPEN = "open"  # both versions kept, a person decides
    RESOLVED = "resolved"  # by a person, or by the policy in force when it was found


class Phase(StrEnum):
    """The two directions of a session's one plan: push writes the remote, pull the local."""

    PUSH = "push"
    PULL = "pull"

    @property
    def target(self) -> Side:
        return Side.REMOTE if self is Phase.PUSH else Side.LOCAL

    @classmethod
    def writing(cls, side: Side) -> Phase:
        return cls.PUSH if side is Side.REMOTE else cls.PULL


class SessionState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"  # finished, some files could not be synchronized
    FAILED = "failed"
    STOPPED = "stopped"
    HALTED = "halted"  # the plan tripped a deletion guard: nothing changed; it waits for approval

    @property
    def active(self) -> bool:
        return self in (SessionState.QUEUED, SessionState.RUNNING)


class PhaseState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    STOPPED = "stopped"


class RepositoryStatus(StrEnum):
    """How a repository left running is doing (API.md section 7)."""

    IDLE = "idle"
    RUNNING = "running"
    HALTED = "halted"  # a session halted before deleting; it waits for approval
    FAILING = "failing"  # failed several times in a row: its schedule and watch back off
    PAUSED = "paused"  # neither its schedule nor its watch fires


class LogKind(StrEnum):
    """What a log item of a session records about one path."""

    PUSHED = "pushed"
    PULLED = "pulled"
    DELETED_LOCAL = "deleted-local"
    DELETED_REMOTE = "deleted-remote"
    MOVED_LOCAL = "moved-local"  # the path a file was moved to, on that side
    MOVED_REMOTE = "moved-remote"
    CONFLICT = "conflict"
    ERROR = "error"
    SKIPPED = "skipped"

    @classmethod
    def written(cls, side: Side) -> LogKind:
        return cls.PULLED if side is Side.LOCAL else cls.PUSHED

    @classmethod
    def deleted(cls, side: Side) -> LogKind:
        return cls.DELETED_LOCAL if side is Side.LOCAL else cls.DELETED_REMOTE

    @classmethod
    def moved(cls, side: Side) -> LogKind:
        return cls.MOVED_LOCAL if side is Side.LOCAL else cls.MOVED_REMOTE


class PlanAction(StrEnum):
    """One kind of step of a session's plan, as a halted plan lists them."""

    PUSH = "push"
    PULL = "pull"
    DELETE_LOCAL = "delete-local"
    DELETE_REMOTE = "delete-remote"
    CONFLICT = "conflict"

    @classmethod
    def deleting(cls, side: Side) -> PlanAction:
        return cls.DELETE_LOCAL if side is Side.LOCAL else cls.DELETE_REMOTE


class Trigger(StrEnum):
    """Who started a session (API.md section 7): a client by face, the service resuming
    one, and the starters of a service left running (schedules, watching, approvals of a
    halt, resolutions of a conflict), which the contract names already."""

    API = "api"
    PLM = "plm"
    VEEAM = "veeam"
    RESUME = "resume"
    SCHEDULE = "schedule"
    WATCH = "watch"
    APPROVAL = "approval"
    RESOLVE = "resolve"


class EventType(StrEnum):
    SESSION_QUEUED = "session.queued"
    SESSION_STARTED = "session.started"
    SESSION_PROGRESS = "session.progress"
    SESSION_CONFLICT = "session.conflict"
    SESSION_FINISHED = "session.finished"
    SESSION_FAILED = "session.failed"
    SESSION_STOPPED = "session.stopped"
    SESSION_HALTED = "session.halted"
    PHASE_STARTED = "phase.started"
    PHASE_FINISHED = "phase.finished"
    ITEMS_TRANSFERRED = "items.transferred"
    CONFLICT_RESOLVED = "conflict.resolved"

    @classmethod
    def ending(cls, state: SessionState) -> EventType:
        """The event that announces a session's end in this state."""
        if state is SessionState.FAILED:
            return cls.SESSION_FAILED
        if state is SessionState.STOPPED:
            return cls.SESSION_STOPPED
        if state is SessionState.HALTED:
            return cls.SESSION_HALTED
        return cls.SESSION_FINISHED


@dataclass(frozen=True, slots=True)
class PhaseCounters:
    """Files and bytes one direction of a session planned and has done."""

    files_planned: int = 0
    files_done: int = 0
    bytes_planned: int = 0
    bytes_done: int = 0


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a storage can tell; the engine and the runner trust nothing else about it.

    ``mtime_precision_ns``: the granularity of the mtimes it keeps (1 for nanoseconds);
    two mtimes closer than that are the same. ``inodes``/``etags``: whether its entries
    carry them, so that a replaced file with the same size and mtime is still seen as
    changed. ``case_sensitive``: ``A`` and ``a`` are two names. ``executable_bit``: it
    keeps the executable bit. ``listing_metadata``: a scan gives each file's own mtime and
    bit (an object listing does not: the runner takes them from the base while the ETag is
    unchanged). ``network``: each call is a round trip, worth running in parallel.
    ``move_limit``: the largest file it moves within itself (None: any); a larger one
    moved on the other side is transferred again.
    """

    mtime_precision_ns: int = 1
    inodes: bool = False
    etags: bool = False
    case_sensitive: bool = True
    executable_bit: bool = False
    listing_metadata: bool = True
    network: bool = False
    move_limit: int | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a repository synchronizes by itself: every ``interval_s`` seconds, at instants
    counted from the epoch (so they are the same after a restart), or at the instants of
    a cron expression read in a time zone (``timezone``, an IANA name)."""

    interval_s: int | None = None
    cron: str | None = None
    timezone: str = "UTC"


# The lowest bandwidth limit taken, bytes per second: less would hold one chunk of a
# transfer for minutes.
MIN_BWLIMIT = 1024


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """How one session synchronizes; every option of the command line and a repository.

    ``trash_days``: how long replaced and deleted versions are kept in each side's trash;
    0 keeps none (they are removed outright, as ``--no-trash``).
    """

    mode: Mode = Mode.TWO_WAY
    policy: ConflictPolicy = ConflictPolicy.KEEP_BOTH
    checksum: bool = False
    dry_run: bool = False
    excludes: tuple[str, ...] = ()
    max_delete_percent: float = 50.0
    force: bool = False
    transfers: int = 16
    trash_days: float = 30.0
    bwlimit_bps: int | None = None  # bytes per second all transfers read; None: no limit

    @property
    def trash(self) -> bool:
        return self.trash_days > 0


@dataclass(frozen=True)
class Scope:
    """What one session looks at. SYNC.md promise 9 lets a session a watch or a remote
    check started look at less than everything, never a session a person asked for.

    ``paths`` None: every path of both sides (a full session). Otherwise only the named
    paths and what lies under them, on both sides and in the base; with
    ``remote_whole``, the remote is listed whole and every path where it differs from
    the base is looked at too (a remote check: the local side's own changes come from
    its notifications). More than ``MAX_PATHS`` named paths make a full session: past
    that, one listing costs less than many small ones.
    """

    paths: frozenset[str] | None = None
    remote_whole: bool = False

    MAX_PATHS: ClassVar[int] = 256

    @classmethod
    def named(cls, paths: Iterable[str], *, remote_whole: bool = False) -> Scope:
        """Everything past ``MAX_PATHS``, or when a name is one a scan refuses (only a
        whole scan reports it, as a log item, and leaves it alone)."""
        tops = outermost(paths)
        if len(tops) > cls.MAX_PATHS or any(refusal(p) or is_own(p) for p in tops):
            return EVERYTHING
        return cls(frozenset(tops), remote_whole)

    @property
    def whole(self) -> bool:
        return self.paths is None

    @property
    def empty(self) -> bool:
        """Whether it looks at no path at all (nothing named, no remote listing)."""
        return self.paths is not None and not self.paths and not self.remote_whole

    def __str__(self) -> str:
        """What it looks at, for a log line."""
        if self.paths is None:
            return "everything"
        named = f"{len(self.paths)} named path{'' if len(self.paths) == 1 else 's'}"
        return f"the whole remote and {named}" if self.remote_whole else named

    def joined(self, other: Scope) -> Scope:
        """What one session must look at to carry both."""
        if self.paths is None or other.paths is None:
            return EVERYTHING
        return Scope.named(
            self.paths | other.paths, remote_whole=self.remote_whole or other.remote_whole
        )


EVERYTHING = Scope()  # a full session's


class StopSignal:
    """A request to stop, made from any thread or a signal handler, honoured at the safe
    points of whoever was handed the signal (a scan between entries, a hash between
    chunks, a session between files)."""

    def __init__(self) -> None:
        # A plain attribute, not a threading.Event: read once per scanned entry and hashed
        # chunk, where an Event's is_set() call costs twice as much.
        self.requested = False

    def set(self) -> None:
        self.requested = True

    def check(self) -> None:
        """Raise Stopped once a stop was asked for."""
        if self.requested:
            raise Stopped("the session was stopped before it finished")


class Entry(NamedTuple):
    """One file as a side holds it now. Fields a side cannot give are None.

    A named tuple, not a dataclass: a scan makes one per file of each side, and a tuple
    is made in a third of the time (docs/decisions.md "Entries as named tuples").
    """

    size: int
    mtime_ns: int
    executable: bool = False
    inode: int | None = None
    etag: str | None = None
    hash: str | None = None


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One step of a plan; ``entry`` is the version it acts on (a deletion's is the
    version an approval may delete, and no other)."""

    action: PlanAction
    path: str
    entry: Entry | None


@dataclass(frozen=True, slots=True)
class Halt:
    """Why a session halted instead of deleting: the guard's reason, how many deletions
    each side would have had, and some of them (the whole plan is stored apart)."""

    reason: str
    delete_local: int
    delete_remote: int
    sample: tuple[str, ...]


class BaseEntry(NamedTuple):
    """What both sides held after the last verified transfer of a path.

    The bytes were the same on both sides (one size, one hash); the stamps are per side,
    since each side reports its own mtime precision, inode or ETag. A named tuple, as
    ``Entry``: one is read per path of the base.
    """

    size: int
    hash: str | None
    executable: bool
    local_mtime_ns: int
    local_inode: int | None
    local_etag: str | None
    remote_mtime_ns: int
    remote_inode: int | None
    remote_etag: str | None

    @classmethod
    def of(cls, local: Entry, remote: Entry, content_hash: str | None) -> BaseEntry:
        return cls(
            size=local.size,
            hash=content_hash,
            executable=local.executable,
            local_mtime_ns=local.mtime_ns,
            local_inode=local.inode,
            local_etag=local.etag,
            remote_mtime_ns=remote.mtime_ns,
            remote_inode=remote.inode,
            remote_etag=remote.etag,
        )

    def fingerprint(self) -> str:
        """One string that changes whenever the recorded version of either side does."""
        parts = (
            self.size,
            self.hash,
            self.executable,
            self.local_mtime_ns,
            self.local_inode,
            self.remote_mtime_ns,
            self.remote_inode,
            self.remote_etag,
        )
        return ":".join(str(part) for part in parts)

    def stamp(self, side: Side) -> Entry:
        """The entry this side held when the base was recorded."""
        if side is Side.LOCAL:
            return Entry(
                self.size, self.local_mtime_ns, self.executable, self.local_inode, self.local_etag
            )
        return Entry(
            self.size, self.remote_mtime_ns, self.executable, self.remote_inode, self.remote_etag
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path a scan or a transfer left alone, and why (a log item)."""

    side: Side
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class FoundConflict:
    """A conflict a session settled: the path, the copy that keeps the remote version
    (None when a policy chose one), which version a policy kept (None: both, for a person
    to decide), both versions as scanned, and the base's fingerprints of the path and the
    copy once both sides held them (what a resolution must still find)."""

    path: str
    copy: str | None
    policy: ConflictPolicy
    kept: Keep | None
    local: Entry
    remote: Entry
    path_print: str
    copy_print: str | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """A person's decision on an open conflict, carried out by a session only while the
    base still holds the fingerprints the conflict recorded."""

    conflict_id: str
    path: str
    copy: str
    keep: Keep
    path_print: str
    copy_print: str
