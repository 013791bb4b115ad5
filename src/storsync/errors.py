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


class ChangedError(StorsyncError):
    """A file is no longer as the scan saw it; the next session handles it."""


class PreconditionFailed(ChangedError):
    """A conditional write or delete lost a race against another writer."""
