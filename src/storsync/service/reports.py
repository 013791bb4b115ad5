"""What passes between the service and a session's worker process, one JSON line each.

Started as ``python -m storsync.service.worker --niceness N`` (with ``--spare SCHEMES``, a
spare that warms up and waits for its job). In (the worker's standard input):
``WorkerSetup``, then the job (``SyncJob.to_json``), then ``stop`` and ``bwlimit`` lines;
the end of the input before the setup lets a spare go. Out: ``PlannedReport`` (once the
plan is made), ``PhaseReport``, ``ProgressReport`` (at most 5 a second), ``ItemsReport``
(per durable batch, whose log items the worker stored itself), then exactly one
``FinishedReport``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from storsync.model import Halt, LogKind, Phase, PhaseCounters, PhaseState, SessionState
from storsync.runner.observer import Planned
from storsync.runner.progress import Snapshot, Stage
from storsync.runner.report import Report
from storsync.state.records import SessionTotals

# What the service tells a running worker, one line each: stop at the next safe point;
# the session's bandwidth limit is now N bytes per second (or "none").
STOP = "stop"
BWLIMIT = "bwlimit"

# A worker's name in ps and top (/proc/PID/comm, at most 15 bytes): a spare waiting for a
# job, then the worker of a session.
SPARE_NAME = "storsync-spare"
WORKER_NAME = "storsync-worker"


def bwlimit_line(bytes_per_second: int | None) -> str:
    return f"{BWLIMIT} {'none' if bytes_per_second is None else bytes_per_second}"


def parse_bwlimit(line: str) -> tuple[bool, int | None]:
    """(whether ``line`` sets the bandwidth limit, the limit)."""
    word, _, value = line.strip().partition(" ")
    if word != BWLIMIT:
        return False, None
    if value == "none":
        return True, None
    try:
        return True, max(1, int(value))
    except ValueError:
        return False, None


@dataclass(frozen=True)
class WorkerSetup:
    """What the worker needs apart from its job: the key that unseals the job's
    credentials (never part of the job, which may be stored)."""

    vault_key: str | None = field(default=None, repr=False)

    def to_json(self) -> str:
        return json.dumps({"vault_key": self.vault_key})

    @classmethod
    def from_json(cls, line: str) -> WorkerSetup:
        return cls(json.loads(line)["vault_key"])


@dataclass(frozen=True)
class PlannedReport:
    plan: Planned


@dataclass(frozen=True)
class PhaseReport:
    phase: Phase
    state: PhaseState


@dataclass(frozen=True)
class ProgressReport:
    stage: Stage
    percent: int
    push: PhaseCounters
    pull: PhaseCounters
    rate_bps: int
    eta_s: float | None

    @classmethod
    def of(cls, snapshot: Snapshot) -> ProgressReport:
        s = snapshot
        return cls(s.stage, s.percent, s.push, s.pull, s.rate_bps, s.eta_s)


@dataclass(frozen=True)
class ItemsReport:
    kind: LogKind
    count: int
    first_id: int
    last_id: int


@dataclass(frozen=True)
class FinishedReport:
    totals: SessionTotals
    conflicts: tuple[str, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()  # (path, message)
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason)

    @classmethod
    def of(cls, report: Report) -> FinishedReport:
        conflicts = tuple(sorted(set(report.conflicts)))
        errors = tuple((e["path"], e["message"]) for e in report.errors)
        totals = SessionTotals(
            state=report.state,
            error=report.message,
            pushed=report.pushed,
            pulled=report.pulled,
            deleted_local=report.deleted_local,
            deleted_remote=report.deleted_remote,
            conflicts=len(conflicts),
            errors=len(errors),
            halt=report.halt,
            moved_local=report.moved_local,
            moved_remote=report.moved_remote,
        )
        skipped = tuple((s.path, s.reason) for s in report.skipped)
        return cls(totals, conflicts, errors, skipped)

    @classmethod
    def failed(cls, error: str, state: SessionState = SessionState.FAILED) -> FinishedReport:
        return cls(SessionTotals(state=state, error=error))


WorkerReport = PlannedReport | PhaseReport | ProgressReport | ItemsReport | FinishedReport


def _counters(c: PhaseCounters) -> list[int]:
    return [c.files_planned, c.files_done, c.bytes_planned, c.bytes_done]


def encode(report: WorkerReport) -> str:
    body: dict[str, Any]
    if isinstance(report, PlannedReport):
        plan = report.plan
        body = {
            "type": "planned",
            "push": _counters(plan.push),
            "pull": _counters(plan.pull),
            "conflicts": plan.conflicts,
        }
    elif isinstance(report, PhaseReport):
        body = {"type": "phase", "phase": report.phase, "state": report.state}
    elif isinstance(report, ProgressReport):
        body = {
            "type": "progress",
            "stage": report.stage,
            "percent": report.percent,
            "push": _counters(report.push),
            "pull": _counters(report.pull),
            "rate_bps": report.rate_bps,
            "eta_s": report.eta_s,
        }
    elif isinstance(report, ItemsReport):
        body = {"type": "items", "kind": report.kind, **_ids(report)}
    else:
        t = report.totals
        body = {
            "type": "finished",
            "state": t.state,
            "error": t.error,
            "counts": [
                t.pushed,
                t.pulled,
                t.deleted_local,
                t.deleted_remote,
                t.moved_local,
                t.moved_remote,
            ],
            "halt": None if t.halt is None else dataclasses.asdict(t.halt),
            "conflicts": report.conflicts,
            "errors": report.errors,
            "skipped": report.skipped,
        }
    return json.dumps(body, separators=(",", ":"))


def _ids(report: ItemsReport) -> dict[str, int]:
    return {"count": report.count, "first": report.first_id, "last": report.last_id}


def decode(line: str) -> WorkerReport:
    """One line a worker wrote; ValueError (or KeyError) when it is not a report."""
    raw = json.loads(line)
    kind = raw["type"]
    if kind == "planned":
        push, pull = PhaseCounters(*raw["push"]), PhaseCounters(*raw["pull"])
        return PlannedReport(Planned(push, pull, tuple(raw["conflicts"])))
    if kind == "phase":
        return PhaseReport(Phase(raw["phase"]), PhaseState(raw["state"]))
    if kind == "progress":
        push, pull = PhaseCounters(*raw["push"]), PhaseCounters(*raw["pull"])
        stage, percent = Stage(raw["stage"]), int(raw["percent"])
        return ProgressReport(stage, percent, push, pull, int(raw["rate_bps"]), raw["eta_s"])
    if kind == "items":
        return ItemsReport(LogKind(raw["kind"]), raw["count"], raw["first"], raw["last"])
    if kind == "finished":
        conflicts = tuple(raw["conflicts"])
        errors = tuple((p, m) for p, m in raw["errors"])
        state, error, counts = SessionState(raw["state"]), raw["error"], raw["counts"]
        pushed, pulled, deleted_local, deleted_remote, moved_local, moved_remote = counts
        halt = raw["halt"]
        totals = SessionTotals(
            state,
            error,
            pushed,
            pulled,
            deleted_local,
            deleted_remote,
            len(conflicts),
            len(errors),
            None if halt is None else Halt(**{**halt, "sample": tuple(halt["sample"])}),
            moved_local,
            moved_remote,
        )
        skipped = tuple((p, r) for p, r in raw["skipped"])
        return FinishedReport(totals, conflicts, errors, skipped)
    raise ValueError(f"not a worker report: {kind!r}")
