"""What a session's worker writes and reads of conflicts (storsync.state.protocol), as
plain SQL with named parameters: the same statements run through ``sqlite3`` (the command
line's and the service's SQLite store) and through SQLAlchemy (other databases)."""

from __future__ import annotations

import uuid
from typing import Any

from storsync.model import ConflictState, FoundConflict, Keep, Resolution

COLUMNS = (
    "id",
    "repository_id",
    "path",
    "copy_path",
    "state",
    "policy",
    "found_session_id",
    "found_ns",
    "local_size",
    "local_mtime_ns",
    "local_hash",
    "remote_size",
    "remote_mtime_ns",
    "remote_hash",
    "path_print",
    "copy_print",
    "kept",
    "resolved_by",
    "resolved_session_id",
    "resolved_ns",
)
INSERT = (
    f"INSERT INTO conflicts ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in COLUMNS)})"
)
RESOLUTIONS = (
    "SELECT id, path, copy_path, resolving, path_print, copy_print FROM conflicts "
    "WHERE resolving_session_id = :session_id AND state = 'open' ORDER BY found_ns, id"
)
RESOLVED = (
    "UPDATE conflicts SET state = 'resolved', kept = resolving, resolved_by = 'person', "
    "resolved_session_id = :session_id, resolved_ns = :now_ns, resolving = NULL, "
    "resolving_session_id = NULL WHERE id = :id AND resolving_session_id = :session_id"
)
LEFT_OPEN = (
    "UPDATE conflicts SET resolving = NULL, resolving_session_id = NULL "
    "WHERE id = :id AND resolving_session_id = :session_id"
)


def row(repository_id: str, session_id: str, found: FoundConflict, now_ns: int) -> dict[str, Any]:
    """The columns of a conflict a session settled: resolved at once when a policy chose."""
    by_policy = found.kept is not None
    return {
        "id": str(uuid.uuid4()),
        "repository_id": repository_id,
        "path": found.path,
        "copy_path": found.copy,
        "state": (ConflictState.RESOLVED if by_policy else ConflictState.OPEN).value,
        "policy": found.policy.value,
        "found_session_id": session_id,
        "found_ns": now_ns,
        "local_size": found.local.size,
        "local_mtime_ns": found.local.mtime_ns,
        "local_hash": found.local.hash,
        "remote_size": found.remote.size,
        "remote_mtime_ns": found.remote.mtime_ns,
        "remote_hash": found.remote.hash,
        "path_print": found.path_print,
        "copy_print": found.copy_print,
        "kept": None if found.kept is None else found.kept.value,
        "resolved_by": "policy" if by_policy else None,
        "resolved_session_id": session_id if by_policy else None,
        "resolved_ns": now_ns if by_policy else None,
    }


def resolution(
    conflict_id: str, path: str, copy: str, keep: str, path_print: str, copy_print: str
) -> Resolution:
    return Resolution(conflict_id, path, copy, Keep(keep), path_print, copy_print)


def settled(
    conflict_id: str, session_id: str, done: bool, now_ns: int
) -> tuple[str, dict[str, Any]]:
    """The statement that ends a resolution: carried out, or left open."""
    values = {"id": conflict_id, "session_id": session_id, "now_ns": now_ns}
    return (RESOLVED if done else LEFT_OPEN), values
