"""One line of what a session did, the same for `storsync sync` and for the client
commands that wait for a session, worded as the service's log line of a session's end."""

from __future__ import annotations

from dataclasses import dataclass

from storsync.units import duration, size


@dataclass(frozen=True, slots=True)
class Totals:
    """A session's results: files each way, their bytes, deletions, conflicts, errors."""

    pushed: int
    bytes_pushed: int
    pulled: int
    bytes_pulled: int
    deleted_local: int
    deleted_remote: int
    conflicts: int
    errors: int
    moved: int = 0  # files moved as the other side moved them (the command line's own)

    def line(self, state: str, seconds: float | None = None) -> str:
        """``completed in 1.2 s: pushed 3 (1.5 MiB), pulled 0 (0 B), ...``."""
        took = "" if seconds is None else f" in {duration(seconds)}"
        return (
            f"{state}{took}: pushed {self.pushed} ({size(self.bytes_pushed)}), "
            f"pulled {self.pulled} ({size(self.bytes_pulled)}), "
            + (f"moved {self.moved}, " if self.moved else "")
            + f"deleted {self.deleted_local} local and {self.deleted_remote} remote, "
            f"{self.conflicts} conflicts, {self.errors} errors"
        )
