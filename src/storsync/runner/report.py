"""What a session did: the counts, the paths in conflict, the files that failed or were
skipped, and why it ended as it did."""

from __future__ import annotations

from dataclasses import dataclass, field

from storsync.model import Halt, SessionState, Side, Skipped
from storsync.runner.session_plan import SessionPlan


@dataclass
class Report:
    state: SessionState = SessionState.COMPLETED
    pushed: int = 0
    pulled: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    moved_local: int = 0
    moved_remote: int = 0
    conflicts: list[str] = field(default_factory=list)
    bytes_pushed: int = 0
    bytes_pulled: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    plan: SessionPlan | None = None  # a dry run's
    message: str | None = None
    halt: Halt | None = None
    # Paths the ordered scan merged, each once (whatever it kept): what shows that a
    # session looked at every entry of both sides and the base (runner.stream).
    merged: int = 0

    def error(self, path: str, message: str) -> None:
        self.errors.append({"path": path, "message": message})

    def count_deleted(self, side: Side, files: int) -> None:
        if side is Side.LOCAL:
            self.deleted_local += files
        else:
            self.deleted_remote += files

    def count_moved(self, side: Side, files: int) -> None:
        if side is Side.LOCAL:
            self.moved_local += files
        else:
            self.moved_remote += files

    def summary(self) -> dict[str, object]:
        """The ``--json`` object of CLI.md, plus the log items of skipped paths."""
        out: dict[str, object] = {
            "state": self.state.value,
            "pushed": self.pushed,
            "pulled": self.pulled,
            "deleted_local": self.deleted_local,
            "deleted_remote": self.deleted_remote,
            "moved_local": self.moved_local,
            "moved_remote": self.moved_remote,
            "conflicts": sorted(set(self.conflicts)),
            "bytes_pushed": self.bytes_pushed,
            "bytes_pulled": self.bytes_pulled,
            "errors": self.errors,
            "skipped": [
                {"side": s.side.value, "path": s.path, "reason": s.reason} for s in self.skipped
            ],
        }
        if self.message:
            out["message"] = self.message
        if self.plan is not None:
            out["plan"] = self.plan.as_json()
        if self.halt is not None:
            out["halt"] = {
                "reason": self.halt.reason,
                "delete_local": self.halt.delete_local,
                "delete_remote": self.halt.delete_remote,
                "sample": list(self.halt.sample),
            }
        return out
