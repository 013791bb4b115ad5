"""Three renderings of one session and one repository: native, PLM and Veeam.

Each face is a translation table over the same records (ARCHITECTURE.md); the tables are
here side by side so that a change to one is seen against the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from storsync.model import Halt, PhaseCounters, PhaseState, Schedule, SessionState
from storsync.service.auth import TokenPair
from storsync.service.repositories import RepositoryView
from storsync.state.plan_store import PlanStep
from storsync.state.records import (
    Conflict,
    ConflictFound,
    ConflictResolved,
    Detail,
    Event,
    ItemBatch,
    LogItem,
    PhaseChanged,
    Progressed,
    Queued,
    Session,
    SessionSnapshot,
    Token,
    User,
    Version,
)


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    when = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token_answer(pair: TokenPair) -> dict[str, Any]:
    """OAuth 2 style, the same on the native and the Veeam face."""
    return {
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": "bearer",
        "expires_in": pair.expires_in,
        "userName": pair.user.name,
        ".issued": iso(pair.issued_ns),
        ".expires": iso(pair.expires_ns),
    }


# -- native ---------------------------------------------------------------------------


def _counters(counters: PhaseCounters) -> dict[str, int]:
    return {
        "filesPlanned": counters.files_planned,
        "filesDone": counters.files_done,
        "bytesPlanned": counters.bytes_planned,
        "bytesDone": counters.bytes_done,
    }


def _state(state: PhaseState | None) -> str | None:
    return None if state is None else state.value


def _phase(phase_id: str, state: PhaseState | None, counters: PhaseCounters) -> dict[str, Any]:
    return {"id": phase_id, "state": _state(state), **_counters(counters)}


def native_session(s: Session) -> dict[str, Any]:
    return {
        "id": s.id,
        "repositoryId": s.repository_id,
        "state": s.state.value,
        "progressPercent": s.percent,
        "push": _phase(s.push_id, s.push_state, s.push),
        "pull": _phase(s.pull_id, s.pull_state, s.pull),
        "createdAt": iso(s.created_ns),
        "startedAt": iso(s.started_ns),
        "endedAt": iso(s.ended_ns),
        "error": s.error,
        "trigger": s.trigger.value,
        "stopRequested": s.stop_requested,
        "pushed": s.pushed,
        "pulled": s.pulled,
        "deletedLocal": s.deleted_local,
        "deletedRemote": s.deleted_remote,
        "movedLocal": s.moved_local,
        "movedRemote": s.moved_remote,
        "conflicts": s.conflicts,
        "errors": s.errors,
        "halt": _halt(s.halt),
        "haltOutcome": None if s.halt_outcome is None else s.halt_outcome.value,
        "approves": s.approves,
    }


def _halt(halt: Halt | None) -> dict[str, Any] | None:
    if halt is None:
        return None
    return {
        "reason": halt.reason,
        "deleteLocal": halt.delete_local,
        "deleteRemote": halt.delete_remote,
        "sample": list(halt.sample),
    }


def native_conflict(c: Conflict) -> dict[str, Any]:
    pending = None
    if c.resolving is not None and c.resolving_session_id is not None:
        pending = {"keep": c.resolving.value, "sessionId": c.resolving_session_id}
    resolution = None
    if c.kept is not None:
        resolution = {
            "keep": c.kept.value,
            "by": c.resolved_by,
            "sessionId": c.resolved_session_id,
            "at": iso(c.resolved_ns),
        }
    return {
        "id": c.id,
        "repositoryId": c.repository_id,
        "path": c.path,
        "copyPath": c.copy_path,
        "state": c.state.value,
        "policy": c.policy.value,
        "foundBySessionId": c.found_session_id,
        "foundAt": iso(c.found_ns),
        "local": _version(c.local),
        "remote": _version(c.remote),
        "pending": pending,
        "resolution": resolution,
    }


def _version(v: Version) -> dict[str, Any]:
    return {"size": v.size, "mtime": iso(v.mtime_ns), "hash": v.hash}


def native_plan_step(step: PlanStep) -> dict[str, Any]:
    return {"id": step.id, "action": step.action.value, "path": step.path, "size": step.size}


def _remote_options(view: RepositoryView) -> dict[str, Any]:
    """Where the remote is beyond its URL (an S3 endpoint and region), as every face that
    edits repositories shows it; its credentials are write-only (``hasCredentials``)."""
    options = view.repository.remote_options
    return {"remoteEndpoint": options.get("endpoint"), "remoteRegion": options.get("region")}


def _settings(view: RepositoryView) -> dict[str, Any]:
    """The sync settings of a repository, as every face that edits them shows them."""
    settings = view.settings
    return {
        "mode": settings.mode.value,
        "conflictPolicy": settings.policy.value,
        "excludes": list(settings.excludes),
        "checksum": settings.checksum,
        "maxDeletePercent": settings.max_delete_percent,
        "trashDays": settings.trash_days,
        "transfers": settings.transfers,
        "bwlimitBytesPerSecond": settings.bwlimit_bps,
        **_left_running(view),
    }


def _left_running(view: RepositoryView) -> dict[str, Any]:
    """How a repository synchronizes by itself, and how it is doing."""
    stored = view.repository.settings
    last = view.last_session
    return {
        "schedule": _schedule(stored.schedule),
        "watch": stored.watch,
        "watchDelaySeconds": stored.watch_delay_s,
        "paused": stored.paused,
        "status": view.status.value,
        "nextRunAt": iso(view.next_run_ns),
        "lastSuccessAt": iso(view.repository.last_success_ns),
        "lastSessionId": None if last is None else last.id,
    }


def _schedule(schedule: Schedule | None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    if schedule.interval_s is not None:
        return {"intervalSeconds": schedule.interval_s}
    return {"cron": schedule.cron, "timezone": schedule.timezone}


def native_repository(view: RepositoryView) -> dict[str, Any]:
    r = view.repository
    return {
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "localPath": view.local_path,
        "remote": view.remote,
        **_remote_options(view),
        **_settings(view),
        "hasCredentials": r.has_credentials,
        "isDefault": r.is_default,
        "createdAt": iso(r.created_ns),
        "updatedAt": iso(r.updated_ns),
    }


def native_item(item: LogItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "time": iso(item.ts_ns),
        "kind": item.kind.value,
        "path": item.path,
        "message": item.message,
        "size": item.size,
    }


def native_event(event: Event) -> dict[str, Any]:
    data = _detail(event.detail)
    if event.session is not None:
        data["session"] = _snapshot(event.session)
    return {
        "id": event.id,
        "time": iso(event.ts_ns),
        "type": event.type.value,
        "repositoryId": event.repository_id,
        "sessionId": event.session_id,
        "data": data,
    }


def _detail(detail: Detail) -> dict[str, Any]:
    if isinstance(detail, Queued):
        return {"trigger": detail.trigger.value}
    if isinstance(detail, PhaseChanged):
        return {"phase": detail.phase.value, "state": detail.state.value}
    if isinstance(detail, Progressed):
        return {"phase": detail.stage, "rateBps": detail.rate_bps, "etaSeconds": detail.eta_s}
    if isinstance(detail, ConflictFound):
        return {"path": detail.path}
    if isinstance(detail, ConflictResolved):
        return {
            "conflictId": detail.conflict_id,
            "path": detail.path,
            "keep": detail.kept.value,
            "by": detail.by,
        }
    if isinstance(detail, ItemBatch):
        batch: dict[str, Any] = {
            "kind": detail.kind.value,
            "count": detail.count,
            "firstItemId": detail.first_id,
            "lastItemId": detail.last_id,
        }
        if detail.items is not None:
            batch["items"] = [{"path": path, "size": size} for path, size in detail.items]
        return batch
    return {}


def _snapshot(s: SessionSnapshot) -> dict[str, Any]:
    """A session as an event carries it."""
    return {
        "id": s.id,
        "repositoryId": s.repository_id,
        "state": s.state.value,
        "started": s.started,
        "pushId": s.push_id,
        "pullId": s.pull_id,
        "pushState": _state(s.push_state),
        "pullState": _state(s.pull_state),
        "progressPercent": s.percent,
        "push": _counters(s.push),
        "pull": _counters(s.pull),
        "error": s.error,
    }


def native_user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role.value,
        "createdAt": iso(user.created_ns),
    }


def native_api_key(key: Token, secret: str | None = None) -> dict[str, Any]:
    """An API key; its ``token`` only when it was just made (never shown again)."""
    out: dict[str, Any] = {
        "id": key.id,
        "label": key.label,
        "createdAt": iso(key.created_ns),
        "revoked": key.revoked,
    }
    if secret is not None:
        out["token"] = secret
    return out


# -- PLM Media Manager ----------------------------------------------------------------

_PLM_SESSION = {
    SessionState.QUEUED: "triggered",
    SessionState.RUNNING: "triggered",
    SessionState.COMPLETED: "completed",
    SessionState.PARTIAL: "error",
    SessionState.FAILED: "error",
    SessionState.STOPPED: "error",
    SessionState.HALTED: "error",
}
_PLM_PHASE = {
    PhaseState.RUNNING: "triggered",
    PhaseState.COMPLETED: "completed",
    PhaseState.PARTIAL: "error",
    PhaseState.FAILED: "error",
    PhaseState.STOPPED: "error",
}


def plm_synchronizer(s: Session) -> dict[str, Any]:
    return _plm(s.state, s.push_id, s.push_state, s.pull_id, s.pull_state)


def _plm(
    state: SessionState,
    push_id: str,
    push_state: PhaseState | None,
    pull_id: str,
    pull_state: PhaseState | None,
) -> dict[str, Any]:
    def phase(phase_id: str, phase_state: PhaseState | None) -> dict[str, str]:
        out = {"id": f"${phase_id}"}
        if phase_state is not None:  # the original omits a state not yet known
            out["state"] = _PLM_PHASE[phase_state]
        return out

    return {
        "id": f"${push_id}+{pull_id}",
        "state": _PLM_SESSION[state],
        "push": phase(push_id, push_state),
        "pull": phase(pull_id, pull_state),
    }


def plm_from_snapshot(snapshot: SessionSnapshot, *, progress: bool = False) -> dict[str, Any]:
    """The synchronizer of an event's session snapshot (``sync.*`` notifications);
    with ``progress``, plus ``progressPercent`` and the counters of both phases."""
    s = snapshot
    out = _plm(s.state, s.push_id, s.push_state, s.pull_id, s.pull_state)
    if progress:
        out["progressPercent"] = s.percent
        out["counters"] = {"push": _counters(s.push), "pull": _counters(s.pull)}
    return out


# -- Veeam Backup for Microsoft 365 ---------------------------------------------------

_VEEAM_STATE = {
    SessionState.QUEUED: "Synchronizing",
    SessionState.RUNNING: "Synchronizing",
    SessionState.COMPLETED: "None",
    SessionState.PARTIAL: "None",
    SessionState.FAILED: "Failed",
    SessionState.STOPPED: "None",
    SessionState.HALTED: "Failed",
}
_VEEAM_RESULT = {
    SessionState.COMPLETED: "Success",
    SessionState.PARTIAL: "Warning",
    SessionState.FAILED: "Failed",
    SessionState.STOPPED: "Stopped",
    SessionState.HALTED: "Failed",
}


def veeam_session(s: Session) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id,
        "repositoryId": s.repository_id,
        "state": _VEEAM_STATE[s.state],
        "progressPercent": s.percent,
    }
    if s.state is SessionState.FAILED:
        out["error"] = s.error or "the synchronization failed"
    if s.state is SessionState.HALTED:
        out["error"] = (
            f"{s.error}; nothing was changed: approve the listed deletions with POST "
            f"/api/v1/sessions/{s.id}/approve, or reject them with .../reject"
        )
    if s.state in _VEEAM_RESULT:
        out["result"] = _VEEAM_RESULT[s.state]
    if s.state is SessionState.PARTIAL and s.error:
        out["warning"] = s.error
    out["creationTime"] = iso(s.created_ns)
    out["endTime"] = iso(s.ended_ns)
    out["transferredFiles"] = s.pushed + s.pulled
    out["deletedFiles"] = s.deleted_local + s.deleted_remote
    out["conflicts"] = s.conflicts
    out["_links"] = {
        "self": {"href": f"/v6/RepositorySynchronizeSessions/{s.id}"},
        "repository": {"href": f"/v6/backuprepositories/{s.repository_id}"},
    }
    return out


def veeam_repository(view: RepositoryView) -> dict[str, Any]:
    r = view.repository
    return {
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "path": view.local_path,
        "objectStorageCachePath": view.local_path,
        "isOutOfSync": view.out_of_sync,
        "remote": view.remote,
        **_remote_options(view),
        **_settings(view),
        "hasCredentials": r.has_credentials,
        "_links": {
            "self": {"href": f"/v6/backuprepositories/{r.id}"},
            "sync": {"href": f"/v6/backuprepositories/{r.id}/Sync"},
            "synchronizeSessions": {
                "href": f"/v6/RepositorySynchronizeSessions?repositoryId={r.id}"
            },
        },
    }
