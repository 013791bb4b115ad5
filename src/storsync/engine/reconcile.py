"""Three-way reconciliation: one plan from one scan of both sides and the base.

The table is the one of SYNC.md; every row is a branch of ``_decide``. The plan's push
and pull directions are carried out by the runner; this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from storsync.engine.compare import Change, classify, same_bytes, untouched
from storsync.errors import DeletionGuard
from storsync.model import BaseEntry, Capabilities, ConflictPolicy, Entry, Mode, Side
from storsync.paths import conflict_name


@dataclass(frozen=True, slots=True)
class Transfer:
    """Copy ``path`` from one side to the other.

    ``target`` is what the destination holds now (None: nothing, the write must create);
    the runner refuses to replace anything else. ``keep_replaced`` is False only where the
    replaced version is already kept elsewhere (as a conflict copy).
    """

    path: str
    source: Entry
    target: Entry | None
    conflict: bool = False
    keep_replaced: bool = True


@dataclass(frozen=True, slots=True)
class Delete:
    path: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class Move:
    """Move ``path`` to ``new_path`` on ``side``, as the other side did (engine.moves).

    ``entry`` is what ``side`` holds at ``path`` (the move's condition); ``source`` is
    the moved file on the other side at ``new_path``, with its hash. ``edited``: ``side``
    holds an edit of it, which a transfer then takes to the other side.
    """

    side: Side
    path: str
    new_path: str
    entry: Entry
    source: Entry
    edited: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """Both sides hold the same bytes: remember it, move nothing."""

    path: str
    local: Entry
    remote: Entry
    hash: str | None


@dataclass(frozen=True, slots=True)
class Rename:
    """Move a file aside on one side under a conflict name (a file against a directory)."""

    side: Side
    path: str
    new_path: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class KeepBoth:
    """Two different versions: the remote one is kept as ``copy_path`` on both sides."""

    path: str
    copy_path: str
    local: Entry
    remote: Entry


@dataclass
class Plan:
    push: list[Transfer] = field(default_factory=list)
    pull: list[Transfer] = field(default_factory=list)
    delete_local: list[Delete] = field(default_factory=list)
    delete_remote: list[Delete] = field(default_factory=list)
    renames: list[Rename] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    keep_both: list[KeepBoth] = field(default_factory=list)
    record: list[Record] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def transfers(self, side: Side) -> list[Transfer]:
        """The transfers that write to ``side``."""
        return self.pull if side is Side.LOCAL else self.push

    def deletes(self, side: Side) -> list[Delete]:
        return self.delete_local if side is Side.LOCAL else self.delete_remote

    @staticmethod
    def transfer_list(side: Side) -> str:
        """The name of the list of transfers that write to ``side``."""
        return "pull" if side is Side.LOCAL else "push"

    @staticmethod
    def delete_list(side: Side) -> str:
        return "delete_local" if side is Side.LOCAL else "delete_remote"

    @property
    def moves_nothing(self) -> bool:
        return not (
            self.push
            or self.pull
            or self.delete_local
            or self.delete_remote
            or self.renames
            or self.moves
            or self.keep_both
        )

    def as_json(self) -> dict[str, object]:
        return {
            "push": [t.path for t in self.push],
            "pull": [t.path for t in self.pull],
            "delete_local": [d.path for d in self.delete_local],
            "delete_remote": [d.path for d in self.delete_remote],
            "renames": [
                {"side": r.side.value, "path": r.path, "to": r.new_path} for r in self.renames
            ],
            "moves": [{"side": m.side.value, "path": m.path, "to": m.new_path} for m in self.moves],
            "keep_both": [{"path": k.path, "copy": k.copy_path} for k in self.keep_both],
            "record": [r.path for r in self.record],
            "forget": list(self.forget),
            "conflicts": list(self.conflicts),
            "bytes_push": sum(t.source.size for t in self.push),
            "bytes_pull": sum(t.source.size for t in self.pull),
        }


@dataclass(frozen=True, slots=True)
class Options:
    mode: Mode = Mode.TWO_WAY
    policy: ConflictPolicy = ConflictPolicy.KEEP_BOTH
    checksum: bool = False
    conflict_stamp: str = "00000000-000000"


def reconcile(
    local: Mapping[str, Entry],
    remote: Mapping[str, Entry],
    base: Mapping[str, BaseEntry],
    *,
    local_caps: Capabilities,
    remote_caps: Capabilities,
    options: Options,
) -> Plan:
    """Decide, for every path either side or the base knows, what the session must do."""
    plan = Plan()
    shortcut = not options.checksum
    for path in _union(local, remote, base):
        lo, re, known = local.get(path), remote.get(path), base.get(path)
        if shortcut and untouched(lo, re, known):
            continue  # what _decide concludes too, in every mode: nothing to do
        _decide(plan, path, lo, re, known, local_caps, remote_caps, options)
    _resolve_file_against_directory(plan, local, remote, base, options)
    return plan


def _union(*maps: Mapping[str, object]) -> list[str]:
    first = maps[0]
    extra = {p for m in maps[1:] for p in m if p not in first}
    return [*first, *extra]


def _decide(
    plan: Plan,
    path: str,
    lo: Entry | None,
    re: Entry | None,
    base: BaseEntry | None,
    local_caps: Capabilities,
    remote_caps: Capabilities,
    options: Options,
) -> None:
    lc = classify(lo, base, Side.LOCAL, local_caps, checksum=options.checksum)
    rc = classify(re, base, Side.REMOTE, remote_caps, checksum=options.checksum)
    if options.mode is Mode.PUSH_ONLY:
        _mirror(plan, path, lo, re, base, lc, rc, Side.LOCAL)
        return
    if options.mode is Mode.PULL_ONLY:
        _mirror(plan, path, re, lo, base, rc, lc, Side.REMOTE)
        return

    live = (Change.CHANGED, Change.NEW)
    if lc is Change.SAME and rc is Change.SAME:
        assert lo is not None and re is not None and base is not None
        if _stale_stamps(lo, re, base):
            plan.record.append(Record(path, lo, re, base.hash))
    elif lc in live and rc in live:
        assert lo is not None and re is not None
        if same_bytes(lo, re) and lo.executable == re.executable:
            plan.record.append(Record(path, lo, re, lo.hash))
        else:
            precision = max(local_caps.mtime_precision_ns, remote_caps.mtime_precision_ns)
            _conflict(plan, path, lo, re, options, precision)
    elif lc in live:
        assert lo is not None
        plan.push.append(Transfer(path, lo, re))
    elif rc in live:
        assert re is not None
        plan.pull.append(Transfer(path, re, lo))
    elif lc is Change.DELETED and rc is Change.SAME:
        assert re is not None
        plan.delete_remote.append(Delete(path, re))
    elif lc is Change.SAME and rc is Change.DELETED:
        assert lo is not None
        plan.delete_local.append(Delete(path, lo))
    elif lc is Change.DELETED and rc is Change.DELETED:
        plan.forget.append(path)


def _stale_stamps(lo: Entry, re: Entry, base: BaseEntry) -> bool:
    """Same content, but a stamp moved (a touch): the base should learn the new stamps."""
    return (
        lo.mtime_ns != base.local_mtime_ns
        or lo.inode != base.local_inode
        or lo.etag != base.local_etag
        or re.mtime_ns != base.remote_mtime_ns
        or re.inode != base.remote_inode
        or re.etag != base.remote_etag
    )


def _mirror(
    plan: Plan,
    path: str,
    master: Entry | None,
    mirror: Entry | None,
    base: BaseEntry | None,
    master_change: Change,
    mirror_change: Change,
    master_side: Side,
) -> None:
    """One-way modes: the mirror side is made equal to the master side."""
    transfers = plan.push if master_side is Side.LOCAL else plan.pull
    deletes = plan.delete_remote if master_side is Side.LOCAL else plan.delete_local
    if master is None:
        if mirror is not None:
            deletes.append(Delete(path, mirror))
        elif base is not None:
            plan.forget.append(path)
        return
    if mirror is None:
        transfers.append(Transfer(path, master, None))
        return
    if master_change is Change.SAME and mirror_change is Change.SAME:
        assert base is not None
        lo, re = (master, mirror) if master_side is Side.LOCAL else (mirror, master)
        if _stale_stamps(lo, re, base):
            plan.record.append(Record(path, lo, re, base.hash))
        return
    if same_bytes(master, mirror) and master.executable == mirror.executable:
        lo, re = (master, mirror) if master_side is Side.LOCAL else (mirror, master)
        plan.record.append(Record(path, lo, re, master.hash))
        return
    transfers.append(Transfer(path, master, mirror))


def _conflict(
    plan: Plan, path: str, lo: Entry, re: Entry, options: Options, precision_ns: int
) -> None:
    plan.conflicts.append(path)
    policy = options.policy
    if policy is ConflictPolicy.NEWER:
        # Within the coarser side's precision neither is newer: the local version stays.
        newer_remote = re.mtime_ns - lo.mtime_ns >= precision_ns
        policy = ConflictPolicy.REMOTE if newer_remote else ConflictPolicy.LOCAL
    if policy is ConflictPolicy.LOCAL:
        plan.push.append(Transfer(path, lo, re, conflict=True))
    elif policy is ConflictPolicy.REMOTE:
        plan.pull.append(Transfer(path, re, lo, conflict=True))
    else:
        copy = conflict_name(path, options.conflict_stamp, Side.REMOTE.value)
        plan.keep_both.append(KeepBoth(path, copy, lo, re))
        # The remote's version is saved as the copy before it is replaced: nothing to trash.
        plan.push.append(Transfer(path, lo, re, conflict=True, keep_replaced=False))
        plan.pull.append(Transfer(copy, re, None, conflict=True))


def _resolve_file_against_directory(
    plan: Plan,
    local: Mapping[str, Entry],
    remote: Mapping[str, Entry],
    base: Mapping[str, BaseEntry],
    options: Options,
) -> None:
    """A path that would end up both a file and a directory keeps the file under a new name.

    The outcome of the plan is computed first; a file whose path is also the parent of a
    surviving file is renamed aside, on each side that holds it, and copied to the other.
    """
    gone = {d.path for d in plan.delete_local} | {d.path for d in plan.delete_remote}
    gone.update(plan.forget)
    survivors = (set(local) | set(remote)) - gone
    survivors.update(k.copy_path for k in plan.keep_both)
    clashing = _directories(survivors) & survivors
    if not clashing:
        return
    # A clashing conflict's copy is not made: the renames below keep both versions.
    dropped = clashing | {k.copy_path for k in plan.keep_both if k.path in clashing}
    plan.push = [t for t in plan.push if t.path not in dropped]
    plan.pull = [t for t in plan.pull if t.path not in dropped]
    plan.record = [r for r in plan.record if r.path not in clashing]
    plan.keep_both = [k for k in plan.keep_both if k.path not in clashing]
    for path in sorted(clashing):
        if path not in plan.conflicts:
            plan.conflicts.append(path)
        if path in base:
            plan.forget.append(path)
        for side, held in ((Side.LOCAL, local.get(path)), (Side.REMOTE, remote.get(path))):
            if held is None:
                continue
            new_path = conflict_name(path, options.conflict_stamp, side.value)
            plan.renames.append(Rename(side, path, new_path, held))
            transfers = plan.push if side is Side.LOCAL else plan.pull
            transfers.append(Transfer(new_path, held, None, conflict=True))


def _directories(paths: Iterable[str]) -> set[str]:
    """Every directory the paths imply: the union of their ``parents()``."""
    found: set[str] = set()
    for path in paths:
        end = path.rfind("/")
        while end > 0:
            folder = path[:end]
            if folder in found:
                break  # its own parents were added with it
            found.add(folder)
            end = path.rfind("/", 0, end)
    return found


def check_safety(
    delete_local: int,
    delete_remote: int,
    *,
    local_count: int,
    remote_count: int,
    base_count: int,
    max_delete_percent: float,
) -> None:
    """Refuse a plan whose deletions (so many on each side) look like a vanished side
    rather than a wish to delete.

    Raises DeletionGuard before anything is deleted; ``--force`` skips this check.
    """
    for side, count, deletes in (
        (Side.LOCAL, local_count, delete_local),
        (Side.REMOTE, remote_count, delete_remote),
    ):
        if not deletes:
            continue
        other_count = remote_count if side is Side.LOCAL else local_count
        if base_count and other_count == 0:
            raise DeletionGuard(
                f"the {side.other.value} side is empty on an established repository, so "
                f"{deletes} files would be deleted on the {side.value} side; "
                "check that it is mounted and the right one, or use --force"
            )
        if deletes * 100 > max_delete_percent * count:
            raise DeletionGuard(
                f"the session would delete {deletes} of {count} files on the {side.value} "
                f"side, more than the {max_delete_percent:g}% limit; "
                "use --max-delete or --force if this is intended"
            )
