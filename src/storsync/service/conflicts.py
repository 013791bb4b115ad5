"""Conflicts as objects (API.md section 7): listed, and resolved by a person through a
session (``trigger: resolve``) that carries the decision out (storsync.runner.conflicts).

A decision is refused (409) when the path or its copy changed on either side since the
conflict was recorded, as far as the service can tell without the remote: the base (what
the last session saw of both sides) no longer holds the fingerprints the conflict
recorded, or a local file is not the version the base recorded. A remote change that no
session has seen yet is met by the resolving session, which never loses it.
"""

from __future__ import annotations

import threading

from storsync.clock import Clock
from storsync.errors import Conflict as ConflictError
from storsync.errors import UnknownObject
from storsync.model import ConflictState, Keep, Side
from storsync.service.sessions import SessionManager
from storsync.state.conflict_store import ConflictStore
from storsync.state.protocol import BaseStore
from storsync.state.records import Conflict, ConflictQuery, Session
from storsync.state.repository_store import RepositoryStore
from storsync.storage.local import LocalStorage


class Conflicts:
    def __init__(
        self,
        store: ConflictStore,
        repositories: RepositoryStore,
        sessions: SessionManager,
        base: BaseStore,
        clock: Clock,
    ) -> None:
        self.store = store
        self.repositories = repositories
        self.sessions = sessions
        self._base = base
        self._base_lock = threading.Lock()  # one connection, many request threads
        self._deciding = threading.Lock()  # one decision at a time in this process
        self.clock = clock

    def search(self, query: ConflictQuery) -> list[Conflict]:
        """A filter naming no repository finds nothing, as the sessions' does."""
        return self.store.search(query)

    def get(self, conflict_id: str) -> Conflict:
        found = self.store.get(conflict_id)
        if found is None:
            raise UnknownObject(f"no conflict with id {conflict_id!r}")
        return found

    def resolve(self, conflict_id: str, keep: Keep) -> Session:
        """The session that carries the decision: the repository's waiting one, or a new
        one."""
        with self._deciding:
            return self._resolve(self.get(conflict_id), keep)

    def _resolve(self, conflict: Conflict, keep: Keep) -> Session:
        if conflict.state is ConflictState.RESOLVED:
            raise ConflictError("the conflict is resolved already")
        if conflict.resolving_session_id is not None:
            raise ConflictError(
                f"session {conflict.resolving_session_id} carries a decision on this "
                "conflict already"
            )
        self._unchanged(conflict)
        session = self.sessions.resolve(
            conflict.repository_id,
            lambda session_id: self.store.carry(conflict.id, keep, session_id),
        )
        if session is None:
            raise ConflictError("another decision on this conflict came first")
        return session

    def close(self) -> None:
        self._base.close()

    def _unchanged(self, conflict: Conflict) -> None:
        repository = self.repositories.get(conflict.repository_id)
        if repository is None or conflict.copy_path is None:
            raise ConflictError("the conflict has no copy to decide on")
        local = LocalStorage(repository.local_root, clock=self.clock)
        for path, fingerprint in (
            (conflict.path, conflict.path_print),
            (conflict.copy_path, conflict.copy_print),
        ):
            with self._base_lock:
                base = self._base.base_entry(repository.id, path)
            if base is None or base.fingerprint() != fingerprint:
                raise ConflictError(
                    f"{path} changed on a side since the conflict was recorded; the file as "
                    "it is now is synchronized as any other"
                )
            now, held = local.stat(path), base.stamp(Side.LOCAL)
            if now is None or (now.size, now.mtime_ns, now.inode) != (
                held.size,
                held.mtime_ns,
                held.inode,
            ):
                raise ConflictError(
                    f"{path} changed locally since the conflict was recorded; the next "
                    "session synchronizes it as any other change"
                )
