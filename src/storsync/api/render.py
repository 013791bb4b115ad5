"""Three renderings of one session and one repository: native, PLM and Veeam.

Each face is a translation table over the same records (ARCHITECTURE.md); the tables are
here side by side so that a change to one is seen against the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from storsync.state.records import (
    Event,
    LogItem,
    PhaseCounters,
    PhaseState,
    Repository,
    Session,
    SessionState,
    User,
)


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    when = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_path(repository: Repository) -> str:
    return unquote(urlsplit(repository.local_url).path)


def remote(repository: Repository) -> str:
    url = repository.remote_url
    return unquote(urlsplit(url).path) if url.startswith("file://") else url


# -- native ---------------------------------------------------------------------------


def _phase(phase_id: str, state: PhaseState | None, counters: PhaseCounters) -> dict[str, Any]:
    return {
        "id": phase_id,
        "state": None if state is None else state.value,
        "filesPlanned": counters.files_planned,
        "filesDone": counters.files_done,
        "bytesPlanned": counters.bytes_planned,
        "bytesDone": counters.bytes_done,
    }


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
        "trigger": s.trigger,
        "stopRequested": s.stop_requested,
        "pushed": s.pushed,
        "pulled": s.pulled,
        "deletedLocal": s.deleted_local,
        "deletedRemote": s.deleted_remote,
        "conflicts": s.conflicts,
        "errors": s.errors,
    }


def native_repository(r: Repository) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "localPath": local_path(r),
        "remote": remote(r),
        "mode": r.mode,
        "conflictPolicy": r.policy,
        "excludes": list(r.excludes),
        "hasCredentials": r.has_credentials,
        "isDefault": r.is_default,
        "createdAt": iso(r.created_ns),
        "updatedAt": iso(r.updated_ns),
    }


def native_item(item: LogItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "time": iso(item.ts_ns),
        "kind": item.kind,
        "path": item.path,
        "message": item.message,
        "size": item.size,
    }


def native_event(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": iso(event.ts_ns),
        "type": event.type,
        "repositoryId": event.repository_id,
        "sessionId": event.session_id,
        "data": event.data,
    }


def native_user(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role.value,
        "createdAt": iso(user.created_ns),
    }


# -- PLM Media Manager ----------------------------------------------------------------

_PLM_SESSION = {
    SessionState.QUEUED: "triggered",
    SessionState.RUNNING: "triggered",
    SessionState.COMPLETED: "completed",
    SessionState.PARTIAL: "error",
    SessionState.FAILED: "error",
    SessionState.STOPPED: "error",
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


def plm_from_snapshot(snapshot: dict[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """The synchronizer of an event's session snapshot (``sync.*`` notifications);
    with ``progress``, plus ``progressPercent`` and the counters of both phases."""

    def phase_state(raw: str | None) -> PhaseState | None:
        return None if raw is None else PhaseState(raw)

    out = _plm(
        SessionState(snapshot["state"]),
        snapshot["pushId"],
        phase_state(snapshot["pushState"]),
        snapshot["pullId"],
        phase_state(snapshot["pullState"]),
    )
    if progress:
        out["progressPercent"] = snapshot["progressPercent"]
        out["counters"] = {"push": snapshot["push"], "pull": snapshot["pull"]}
    return out


# -- Veeam Backup for Microsoft 365 ---------------------------------------------------

_VEEAM_STATE = {
    SessionState.QUEUED: "Synchronizing",
    SessionState.RUNNING: "Synchronizing",
    SessionState.COMPLETED: "None",
    SessionState.PARTIAL: "None",
    SessionState.FAILED: "Failed",
    SessionState.STOPPED: "None",
}
_VEEAM_RESULT = {
    SessionState.COMPLETED: "Success",
    SessionState.PARTIAL: "Warning",
    SessionState.FAILED: "Failed",
    SessionState.STOPPED: "Stopped",
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


def veeam_repository(r: Repository, *, out_of_sync: bool) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "description": r.description,
        "path": local_path(r),
        "objectStorageCachePath": local_path(r),
        "isOutOfSync": out_of_sync,
        "remote": remote(r),
        "mode": r.mode,
        "conflictPolicy": r.policy,
        "excludes": list(r.excludes),
        "hasCredentials": r.has_credentials,
        "_links": {
            "self": {"href": f"/v6/backuprepositories/{r.id}"},
            "sync": {"href": f"/v6/backuprepositories/{r.id}/Sync"},
            "synchronizeSessions": {
                "href": f"/v6/RepositorySynchronizeSessions?repositoryId={r.id}"
            },
        },
    }
