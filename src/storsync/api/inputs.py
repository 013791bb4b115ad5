"""Request bodies to the service's inputs: one rename table for every face that edits
repositories (the native face's ``localPath`` is Veeam's ``path``; the settings and the
remote's credentials are named the same on both)."""

from __future__ import annotations

from typing import Any

from storsync.api.schemas import Credentials, RepositoryIn, ScheduleIn
from storsync.model import ConflictPolicy, Mode, Schedule
from storsync.service.repositories import RepositoryChanges, RepositorySpec
from storsync.state.records import RepositorySettings

# The repository's own fields, by each face's name.
_FIELDS = {
    "name": "name",
    "localPath": "local_path",
    "path": "local_path",
    "remote": "remote",
    "description": "description",
}
# ``remoteCredentials`` as the wire names them, to the remote registry's field names.
_REMOTE_FIELDS = {
    "accessKeyId": "access_key_id",
    "secretAccessKey": "secret_access_key",
    "endpoint": "endpoint",
    "region": "region",
}
# The settings as the wire names them, to RepositorySettings' fields and types.
_SETTINGS: dict[str, tuple[str, Any]] = {
    "mode": ("mode", Mode),
    "conflictPolicy": ("policy", ConflictPolicy),
    "excludes": ("excludes", tuple),
    "checksum": ("checksum", bool),
    "maxDeletePercent": ("max_delete_percent", float),
    "trashDays": ("trash_days", float),
    "transfers": ("transfers", int),
    "watch": ("watch", bool),
    "watchDelaySeconds": ("watch_delay_s", float),
    "paused": ("paused", bool),
}


def _remote_fields(credentials: Credentials | None) -> dict[str, str] | None:
    if credentials is None:
        return None
    given = credentials.model_dump(exclude_none=True)
    return {_REMOTE_FIELDS[name]: value for name, value in given.items()}


def _settings(body: RepositoryIn) -> dict[str, Any]:
    given = body.model_dump(include=set(_SETTINGS), exclude_none=True)
    settings = {_SETTINGS[name][0]: _SETTINGS[name][1](value) for name, value in given.items()}
    if "schedule" in body.model_fields_set:  # given, null included: null removes it
        settings["schedule"] = _schedule(body.schedule)
    if "bwlimitBytesPerSecond" in body.model_fields_set:  # the same: null removes it
        settings["bwlimit_bps"] = body.bwlimitBytesPerSecond
    return settings


def _schedule(given: ScheduleIn | None) -> Schedule | None:
    if given is None:
        return None
    return Schedule(given.intervalSeconds, given.cron, given.timezone)


def repository_changes(body: RepositoryIn) -> RepositoryChanges:
    """What the body gives (a null is not given), as an update."""
    given = body.model_dump(include=set(_FIELDS), exclude_none=True)
    return RepositoryChanges(
        **{_FIELDS[name]: value for name, value in given.items()},
        remote_fields=_remote_fields(body.remoteCredentials),
        settings=_settings(body),
    )


def repository_spec(body: RepositoryIn) -> RepositorySpec:
    """A new repository: the body's name, local path and remote, which its model requires."""
    changes = repository_changes(body)
    assert changes.name and changes.local_path and changes.remote
    return RepositorySpec(
        name=changes.name,
        local_path=changes.local_path,
        remote=changes.remote,
        description=changes.description or "",
        settings=RepositorySettings(**_settings(body)),
        remote_fields=changes.remote_fields,
    )
