"""Halted sessions waiting for a person (API.md section 7): their plan, approval and
rejection. A halt changed nothing; approving it carries out exactly the deletions it
listed (storsync.runner.session), rejecting it pauses the repository, and while it waits
neither schedule nor watch starts anything for that repository."""

from __future__ import annotations

from storsync.service.repositories import Repositories
from storsync.service.sessions import SessionManager
from storsync.state.plan_store import PlanStep, PlanStore
from storsync.state.records import Session


class Halts:
    def __init__(
        self, sessions: SessionManager, repositories: Repositories, plans: PlanStore
    ) -> None:
        self.sessions = sessions
        self.repositories = repositories
        self.plans = plans

    def plan(self, session_id: str, *, after_id: int, limit: int) -> list[PlanStep]:
        """A halted session's plan, step by step (none for a session that did not halt)."""
        self.sessions.get(session_id)
        return self.plans.page(session_id, after_id=after_id, limit=limit)

    def approve(self, session_id: str) -> Session:
        """The session that carries the approval."""
        return self.sessions.approve(session_id)

    def reject(self, session_id: str) -> Session:
        """The halted session, its halt rejected; its repository is paused."""
        rejected = self.sessions.reject(session_id)
        self.repositories.set_paused(rejected.repository_id, True)
        return rejected
