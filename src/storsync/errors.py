"""One exception tree for the whole project.

Every error says what went wrong in one sentence a user can act on. ``retryable`` tells the
runner whether trying the same call again may help; ``exit_code`` is what the command line
returns for it (2: bad usage or configuration, 1: the session failed).
"""

from __future__ import annotations


class StorsyncError(Exception):
    retryable = False
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(StorsyncError):
    """The command or its configuration is wrong; nothing was attempted."""

    exit_code = 2


class LockedError(StorsyncError):
    """Another process is synchronizing the same local root."""


class SafetyError(StorsyncError):
    """A guard stopped the session before it deleted or overwrote anything."""


class DeletionGuard(SafetyError):
    """The plan would delete more than the limit, or everything of a side that went empty:
    a session that may wait for approval halts instead of failing (API.md section 7)."""


class OutOfOrder(SafetyError):
    """A listing or the base gave a key not after the one before it: the ordered merge
    cannot pair it, so the session ends before it changes anything."""


class ListingOutOfOrder(OutOfOrder):
    """A storage listed a key before one it had given already: its listing is not in
    byte order (SeaweedFS lists folder by folder), so the session sorts a whole listing
    of that side instead."""


class Stopped(StorsyncError):
    """A stop was asked for; raised at the next safe point (StopSignal.check)."""


class StorageError(StorsyncError):
    """A storage call failed; transient unless a subclass says otherwise."""

    retryable = True


class StorageUnavailable(StorageError):
    """The storage cannot be reached or answered with a server error."""


class PermanentStorageError(StorageError):
    """The storage refused the call (permission, full disk, invalid name)."""

    retryable = False


class NotFoundError(PermanentStorageError):
    """The object or file is not there."""


class ScratchError(StorsyncError):
    """The session's scratch file (its plan, spilled) could not be written or read."""


class ChangedError(StorsyncError):
    """A file is no longer as the scan saw it; the next session handles it."""


class PreconditionFailed(ChangedError):
    """A conditional write or delete lost a race against another writer."""


# -- the service's answers to a request; each HTTP face maps them to its own shape ------


class RequestError(StorsyncError):
    """What a client asked cannot be done as asked."""

    exit_code = 2


class InvalidRequest(RequestError):
    """A value in the request is not acceptable."""


class Unauthorized(RequestError):
    """Missing, unknown, expired, revoked or forged credentials."""


class Forbidden(RequestError):
    """Authenticated, but the role or a setting does not allow it."""


class UnknownObject(RequestError):
    """The request names an object that does not exist."""


class Conflict(RequestError):
    """The request contradicts the current state (a duplicate name, an overlap)."""


class TooManyAttempts(RequestError):
    """Refused for a while after repeated failures (failed sign-ins for one user name)."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
