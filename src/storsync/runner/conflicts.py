"""Conflicts as objects (API.md section 7), the runner's part: recording the conflicts a
session settled, and carrying out a person's decision on an open one.

A decision is carried out on the local side only, before the scan; the session's own plan
then takes it to the remote like any local change, so the remote's side of it is guarded
as every change is (a remote version nobody has seen yet becomes a conflict again or is
restored, never lost):

- ``keep both``: nothing to do;
- ``keep local``: the copy goes to this session's trash;
- ``keep remote``: the copy's bytes replace the path (the replaced version to the trash),
  then the copy goes to the trash.

Each is done only while the base still holds the fingerprints the conflict recorded and
the local files are the versions the base recorded; otherwise the conflict stays open.
"""

from __future__ import annotations

from storsync.engine.reconcile import Plan
from storsync.errors import ChangedError, StorsyncError
from storsync.model import (
    BaseEntry,
    ConflictPolicy,
    Entry,
    FoundConflict,
    Keep,
    Resolution,
    Side,
)
from storsync.runner.context import SessionContext

# A conflict before its fingerprints exist: (path, copy, kept, local, remote).
Candidate = tuple[str, str | None, Keep | None, Entry, Entry]


def candidates(plan: Plan) -> list[Candidate]:
    """The conflicts a plan settles: both versions kept (a copy), or one chosen by the
    policy. A file against a directory is renamed aside on both sides and is not an
    object: both versions stay under conflict names."""
    found: list[Candidate] = [
        (k.path, k.copy_path, None, k.local, k.remote) for k in plan.keep_both
    ]
    kept_both = {k.path for k in plan.keep_both}
    chosen = set(plan.conflicts) - kept_both
    for t in plan.push:
        if t.conflict and t.path in chosen and t.target is not None:
            found.append((t.path, None, Keep.LOCAL, t.source, t.target))
    for t in plan.pull:
        if t.conflict and t.path in chosen and t.target is not None:
            found.append((t.path, None, Keep.REMOTE, t.target, t.source))
    return found


def record(ctx: SessionContext, found: list[Candidate]) -> None:
    """Store the conflicts that were settled on both sides (their path, and copy, are in
    the base); one whose copy was not made is met again by the next session."""
    if ctx.log_session is None or not found:
        return
    settled: list[FoundConflict] = []
    policy: ConflictPolicy = ctx.settings.policy
    for path, copy, kept, local, remote in found:
        path_base = ctx.store.base_entry(ctx.repository_id, path)
        copy_base = None if copy is None else ctx.store.base_entry(ctx.repository_id, copy)
        if path_base is None or (copy is not None and copy_base is None):
            continue
        copy_print = None if copy_base is None else copy_base.fingerprint()
        settled.append(
            FoundConflict(
                path, copy, policy, kept, local, remote, path_base.fingerprint(), copy_print
            )
        )
    ctx.store.record_conflicts(ctx.repository_id, ctx.log_session, settled, ctx.clock.now_ns())


def carry_out(ctx: SessionContext, resolutions: list[Resolution]) -> None:
    """Apply each decision on the local side, or leave its conflict open with the reason
    (a session error) when a file changed since the conflict was recorded."""
    for resolution in resolutions:
        ctx.stop.check()
        try:
            _carry_out(ctx, resolution)
        except StorsyncError as exc:
            ctx.report.error(resolution.path, f"conflict left open: {exc.message}")
            done = False
        else:
            done = True
        ctx.store.settle_resolution(
            resolution.conflict_id, ctx.log_session or "", done=done, now_ns=ctx.clock.now_ns()
        )
    if resolutions:
        ctx.local.sync()


def _carry_out(ctx: SessionContext, r: Resolution) -> None:
    path = _unchanged(ctx, r.path, r.path_print)
    copy = _unchanged(ctx, r.copy, r.copy_print)
    if r.keep is Keep.BOTH:
        return
    if r.keep is Keep.REMOTE:
        with ctx.local.open(r.copy, copy) as source:
            staged = ctx.local.stage(
                r.path, source, size=copy.size, mtime_ns=copy.mtime_ns, executable=copy.executable
            )
        ctx.local.publish(staged, expected=path, trash=ctx.trash)
    ctx.local.remove(r.copy, copy, trash=ctx.trash)


def _unchanged(ctx: SessionContext, path: str, fingerprint: str) -> Entry:
    """The local file at ``path``, if both the base and the file are as the conflict left
    them; ChangedError otherwise."""
    base = ctx.store.base_entry(ctx.repository_id, path)
    if base is None or base.fingerprint() != fingerprint:
        raise ChangedError(f"{path} changed on a side since the conflict was recorded")
    now = ctx.local.stat(path)
    if now is None or not _same_local(now, base):
        raise ChangedError(f"{path} changed locally since the conflict was recorded")
    return now


def _same_local(now: Entry, base: BaseEntry) -> bool:
    held = base.stamp(Side.LOCAL)
    return (now.size, now.mtime_ns, now.inode) == (held.size, held.mtime_ns, held.inode)
