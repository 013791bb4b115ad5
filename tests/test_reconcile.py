"""The three-way table of SYNC.md, row by row, and the rules around it: pure engine, no I/O."""

from __future__ import annotations

import re

import pytest

from storsync.engine.compare import Change, classify
from storsync.engine.reconcile import Options, Plan, check_safety, reconcile
from storsync.errors import SafetyError
from storsync.model import BaseEntry, Capabilities, ConflictPolicy, Entry, Mode, Side
from storsync.storage.content import hash_bytes

STAMP = "20240102-030405"
LOCAL_CAPS = Capabilities(inodes=True, executable_bit=True)
REMOTE_CAPS = Capabilities(etags=True, executable_bit=True)
REMOTE_CAPS_NO_ETAG = Capabilities(executable_bit=True)


def lo(data: bytes, *, mtime: int = 10, inode: int = 1, exe: bool = False) -> Entry:
    """A local file as scanned, hashed (as the runner does when the decision needs it)."""
    return Entry(len(data), mtime, exe, inode=inode, hash=hash_bytes(data))


def rem(data: bytes, *, mtime: int = 10, etag: str = "e1", exe: bool = False) -> Entry:
    return Entry(len(data), mtime, exe, etag=etag, hash=hash_bytes(data))


def unhashed(entry: Entry) -> Entry:
    return Entry(entry.size, entry.mtime_ns, entry.executable, entry.inode, entry.etag)


def synced(data: bytes = b"v1", *, exe: bool = False) -> tuple[Entry, Entry, BaseEntry]:
    """One path as both sides hold it after a sync, scanned again unchanged (no hash)."""
    local, remote = lo(data, exe=exe), rem(data, exe=exe)
    return unhashed(local), unhashed(remote), BaseEntry.of(local, remote, local.hash)


def plan_of(
    local: dict[str, Entry],
    remote: dict[str, Entry],
    base: dict[str, BaseEntry] | None = None,
    *,
    mode: Mode = Mode.TWO_WAY,
    policy: ConflictPolicy = ConflictPolicy.KEEP_BOTH,
    checksum: bool = False,
) -> Plan:
    return reconcile(
        local,
        remote,
        base or {},
        local_caps=LOCAL_CAPS,
        remote_caps=REMOTE_CAPS,
        options=Options(mode, policy, checksum, conflict_stamp=STAMP),
    )


def moves(plan: Plan) -> dict[str, object]:
    """The plan as JSON, without its empty parts and byte counts."""
    return {k: v for k, v in plan.as_json().items() if v and not k.startswith("bytes_")}


def cname(path: str, side: Side) -> str:
    return {
        ("f", Side.REMOTE): f"f.conflict-{STAMP}-remote",
        ("f", Side.LOCAL): f"f.conflict-{STAMP}-local",
        ("a", Side.LOCAL): f"a.conflict-{STAMP}-local",
        ("a", Side.REMOTE): f"a.conflict-{STAMP}-remote",
        ("a/b", Side.LOCAL): f"a/b.conflict-{STAMP}-local",
    }[(path, side)]


# -- the table, row by row ---------------------------------------------------------------


def test_same_same_does_nothing() -> None:
    local, remote, base = synced()
    plan = plan_of({"f": local}, {"f": remote}, {"f": base})
    assert moves(plan) == {}
    assert plan.moves_nothing


def test_same_same_after_a_touch_records_the_new_stamps_and_moves_nothing() -> None:
    _, remote, base = synced(b"v1")
    touched = lo(b"v1", mtime=99, inode=7)
    plan = plan_of({"f": touched}, {"f": remote}, {"f": base})
    assert moves(plan) == {"record": ["f"]}
    assert plan.record[0].local == touched
    assert plan.record[0].hash == hash_bytes(b"v1")


@pytest.mark.parametrize("side", [Side.LOCAL, Side.REMOTE])
def test_a_rewrite_with_the_same_bytes_on_a_side_with_etags_records_its_new_etag(
    side: Side,
) -> None:
    """Else every later session would hash the file again to find it unchanged."""
    old, new = rem(b"v1", etag="e1"), rem(b"v1", etag="e7")
    base = BaseEntry.of(old, old, old.hash)
    local, remote = (new, unhashed(old)) if side is Side.LOCAL else (unhashed(old), new)
    plan = reconcile(
        {"f": local},
        {"f": remote},
        {"f": base},
        local_caps=REMOTE_CAPS,
        remote_caps=REMOTE_CAPS,
        options=Options(conflict_stamp=STAMP),
    )
    assert moves(plan) == {"record": ["f"]}
    recorded = BaseEntry.of(plan.record[0].local, plan.record[0].remote, plan.record[0].hash)
    assert (recorded.local_etag, recorded.remote_etag) == (local.etag, remote.etag)


@pytest.mark.parametrize("kind", ["changed", "new"])
def test_changed_or_new_against_same_or_absent_pushes(kind: str) -> None:
    _, remote, base = synced()
    edited = lo(b"v2", mtime=20, inode=2)
    if kind == "changed":
        plan = plan_of({"f": edited}, {"f": remote}, {"f": base})
        expected_target: Entry | None = remote
    else:
        plan = plan_of({"f": edited}, {})
        expected_target = None
    assert moves(plan) == {"push": ["f"]}
    (push,) = plan.push
    assert (push.source, push.target, push.keep_replaced) == (edited, expected_target, True)


@pytest.mark.parametrize("kind", ["changed", "new"])
def test_same_or_absent_against_changed_or_new_pulls(kind: str) -> None:
    local, _, base = synced()
    edited = rem(b"v2", mtime=20, etag="e2")
    if kind == "changed":
        plan = plan_of({"f": local}, {"f": edited}, {"f": base})
        expected_target: Entry | None = local
    else:
        plan = plan_of({}, {"f": edited})
        expected_target = None
    assert moves(plan) == {"pull": ["f"]}
    (pull,) = plan.pull
    assert (pull.source, pull.target, pull.keep_replaced) == (edited, expected_target, True)


def test_deleted_against_same_deletes_remote() -> None:
    _, remote, base = synced()
    plan = plan_of({}, {"f": remote}, {"f": base})
    assert moves(plan) == {"delete_remote": ["f"]}
    assert plan.delete_remote[0].entry == remote


def test_same_against_deleted_deletes_local() -> None:
    local, _, base = synced()
    plan = plan_of({"f": local}, {}, {"f": base})
    assert moves(plan) == {"delete_local": ["f"]}
    assert plan.delete_local[0].entry == local


def test_deleted_on_both_sides_is_forgotten() -> None:
    _, _, base = synced()
    plan = plan_of({}, {}, {"f": base})
    assert moves(plan) == {"forget": ["f"]}


def test_changed_against_deleted_pushes_a_modification_beats_a_deletion() -> None:
    _, _, base = synced()
    edited = lo(b"v2", mtime=20, inode=2)
    plan = plan_of({"f": edited}, {}, {"f": base})
    assert moves(plan) == {"push": ["f"]}
    assert plan.push[0].target is None


def test_deleted_against_changed_pulls_a_modification_beats_a_deletion() -> None:
    _, _, base = synced()
    edited = rem(b"v2", etag="e2")
    plan = plan_of({}, {"f": edited}, {"f": base})
    assert moves(plan) == {"pull": ["f"]}
    assert plan.pull[0].target is None


def test_a_chmod_is_a_modification_and_beats_a_deletion() -> None:
    local, _, base = synced(b"v1")
    chmodded = Entry(local.size, local.mtime_ns, True, local.inode)
    plan = plan_of({"f": chmodded}, {}, {"f": base})
    assert moves(plan) == {"push": ["f"]}


@pytest.mark.parametrize("kind", ["changed", "new"])
def test_both_changed_to_the_same_bytes_records_and_moves_nothing(kind: str) -> None:
    _, _, base = synced()
    a, b = lo(b"v2", mtime=20, inode=2), rem(b"v2", mtime=30, etag="e2")
    plan = plan_of({"f": a}, {"f": b}, {"f": base} if kind == "changed" else {})
    assert moves(plan) == {"record": ["f"]}
    (record,) = plan.record
    assert (record.local, record.remote, record.hash) == (a, b, hash_bytes(b"v2"))


@pytest.mark.parametrize("kind", ["changed", "new"])
def test_both_changed_to_different_bytes_is_a_conflict(kind: str) -> None:
    _, _, base = synced()
    a, b = lo(b"v2", mtime=20, inode=2), rem(b"v3", mtime=30, etag="e2")
    plan = plan_of({"f": a}, {"f": b}, {"f": base} if kind == "changed" else {})
    assert plan.conflicts == ["f"]
    assert [(k.path, k.copy_path) for k in plan.keep_both] == [("f", cname("f", Side.REMOTE))]


# -- "equal bytes" is never guessed ------------------------------------------------------


def test_first_session_with_same_size_and_mtime_but_no_hash_is_a_conflict_not_a_record() -> None:
    a, b = unhashed(lo(b"v2")), unhashed(rem(b"v3"))
    plan = plan_of({"f": a}, {"f": b})
    assert plan.conflicts == ["f"]
    assert plan.record == []


def test_same_bytes_with_different_executable_bits_is_a_conflict() -> None:
    plan = plan_of({"f": lo(b"v", exe=True)}, {"f": rem(b"v", exe=False)})
    assert plan.conflicts == ["f"]


def test_a_local_file_replaced_with_same_size_and_mtime_is_seen_by_its_inode() -> None:
    local, remote, base = synced(b"v1")
    assert local.inode == 1
    replaced = unhashed(lo(b"v2", inode=2))
    plan = plan_of({"f": replaced}, {"f": remote}, {"f": base})
    assert moves(plan) == {"push": ["f"]}


def test_a_remote_version_with_a_new_etag_but_the_base_hash_is_the_same() -> None:
    local, _, base = synced(b"v1")
    rewritten = rem(b"v1", mtime=50, etag="e9")
    plan = plan_of({"f": local}, {"f": rewritten}, {"f": base})
    assert moves(plan) == {"record": ["f"]}


def test_checksum_mode_sees_an_edit_that_kept_size_mtime_and_inode() -> None:
    local, remote, base = synced(b"v1")
    sneaky = Entry(local.size, local.mtime_ns, False, local.inode, hash=hash_bytes(b"v2"))
    assert moves(plan_of({"f": sneaky}, {"f": remote}, {"f": base})) == {}
    plan = plan_of({"f": sneaky}, {"f": remote}, {"f": base}, checksum=True)
    assert moves(plan) == {"push": ["f"]}


# -- mtime precision: what a side declares it keeps ----------------------------------------

SECOND = 10**9
COARSE = Capabilities(executable_bit=True, mtime_precision_ns=SECOND)  # no inodes, no ETags


def test_an_mtime_within_the_declared_precision_is_the_same_mtime() -> None:
    """A store that keeps whole seconds reports a written file's mtime rounded: the
    version the base recorded, not a change (it was compared exactly before)."""
    written = Entry(2, 5 * SECOND + 600_000_000, False)
    base = BaseEntry.of(lo(b"v1", mtime=written.mtime_ns), written, hash_bytes(b"v1"))
    scanned = Entry(2, 5 * SECOND, False)  # the same file, as its listing gives it
    assert classify(scanned, base, Side.REMOTE, COARSE, checksum=False) is Change.SAME
    assert classify(scanned, base, Side.REMOTE, REMOTE_CAPS_NO_ETAG, checksum=False) is (
        Change.CHANGED
    )
    moved = Entry(2, 6 * SECOND + 600_000_000, False)  # a whole precision away
    assert classify(moved, base, Side.REMOTE, COARSE, checksum=False) is Change.CHANGED


def test_newer_is_a_tie_within_the_coarser_precision_and_keeps_local() -> None:
    local = lo(b"local", mtime=10 * SECOND)
    remote = Entry(6, 10 * SECOND + 400_000_000, False, hash=hash_bytes(b"remote"))
    for caps, winner in ((COARSE, "push"), (REMOTE_CAPS_NO_ETAG, "pull")):
        plan = reconcile(
            {"f": local},
            {"f": remote},
            {},
            local_caps=LOCAL_CAPS,
            remote_caps=caps,
            options=Options(policy=ConflictPolicy.NEWER, conflict_stamp=STAMP),
        )
        assert moves(plan) == {winner: ["f"], "conflicts": ["f"]}


# -- conflict policies -------------------------------------------------------------------


def both_changed(
    *, local_mtime: int = 20, remote_mtime: int = 30
) -> tuple[Entry, Entry, dict[str, BaseEntry]]:
    _, _, base = synced()
    a = lo(b"local edit", mtime=local_mtime, inode=2)
    b = rem(b"remote edit", mtime=remote_mtime, etag="e2")
    return a, b, {"f": base}


def test_keep_both_keeps_the_remote_version_as_a_copy_on_both_sides() -> None:
    a, b, base = both_changed()
    plan = plan_of({"f": a}, {"f": b}, base)
    copy = cname("f", Side.REMOTE)
    assert moves(plan) == {
        "push": ["f"],
        "pull": [copy],
        "keep_both": [{"path": "f", "copy": copy}],
        "conflicts": ["f"],
    }
    (push,) = plan.push
    # The remote version is saved as the copy first, so replacing it needs no trash.
    assert (push.source, push.target, push.keep_replaced, push.conflict) == (a, b, False, True)
    (pull,) = plan.pull
    assert (pull.source, pull.target) == (b, None)


@pytest.mark.parametrize(
    ("path", "copy"),
    [
        ("dir/report.txt", f"dir/report.conflict-{STAMP}-remote.txt"),
        ("a.tar.gz", f"a.tar.conflict-{STAMP}-remote.gz"),
        ("Makefile", f"Makefile.conflict-{STAMP}-remote"),
        (".bashrc", f".bashrc.conflict-{STAMP}-remote"),
        ("d.x/noext", f"d.x/noext.conflict-{STAMP}-remote"),
    ],
)
def test_keep_both_copy_name_is_name_conflict_stamp_remote_ext(path: str, copy: str) -> None:
    plan = plan_of({path: lo(b"one")}, {path: rem(b"two")})
    assert [k.copy_path for k in plan.keep_both] == [copy]
    head, _, name = copy.rpartition("/")
    assert re.fullmatch(r"[^/]+\.conflict-\d{8}-\d{6}-remote(\.[a-z]+)?", name), name
    assert head == path.rpartition("/")[0]


@pytest.mark.parametrize(
    ("policy", "local_mtime", "remote_mtime", "winner"),
    [
        (ConflictPolicy.LOCAL, 20, 30, Side.LOCAL),
        (ConflictPolicy.REMOTE, 30, 20, Side.REMOTE),
        (ConflictPolicy.NEWER, 30, 20, Side.LOCAL),
        (ConflictPolicy.NEWER, 20, 30, Side.REMOTE),
        (ConflictPolicy.NEWER, 25, 25, Side.LOCAL),  # a tie goes to local
    ],
)
def test_winning_policies_send_the_loser_to_the_trash(
    policy: ConflictPolicy, local_mtime: int, remote_mtime: int, winner: Side
) -> None:
    a, b, base = both_changed(local_mtime=local_mtime, remote_mtime=remote_mtime)
    plan = plan_of({"f": a}, {"f": b}, base, policy=policy)
    assert plan.conflicts == ["f"]
    assert plan.keep_both == []
    direction = "push" if winner is Side.LOCAL else "pull"
    assert moves(plan) == {direction: ["f"], "conflicts": ["f"]}
    (transfer,) = plan.push or plan.pull
    assert transfer.source == (a if winner is Side.LOCAL else b)
    assert transfer.target == (b if winner is Side.LOCAL else a)
    assert transfer.keep_replaced  # the losing version goes to the trash, never nowhere


@pytest.mark.parametrize("policy", list(ConflictPolicy))
def test_policies_do_not_apply_where_there_is_no_conflict(policy: ConflictPolicy) -> None:
    local, _, base = synced()
    edited = rem(b"v2", etag="e2")
    assert moves(plan_of({"f": local}, {"f": edited}, {"f": base}, policy=policy)) == {
        "pull": ["f"]
    }
    assert moves(plan_of({}, {"f": edited}, {"f": base}, policy=policy)) == {"pull": ["f"]}


# -- one-way modes -----------------------------------------------------------------------


# What each side did to one path ``f`` (None: nothing there), whether a base exists, and
# what the mirror side must get.
MIRROR_CASES = {
    "both same": ("same", "same", True, None),
    "master changed": ("edit", "same", True, "copy"),
    "mirror changed": ("same", "edit", True, "copy"),
    "both changed": ("edit", "edit", True, "copy"),
    "master deleted": (None, "same", True, "delete"),
    "mirror deleted": ("same", None, True, "copy"),
    "only on mirror": (None, "edit", False, "delete"),
    "only on master": ("edit", None, False, "copy"),
}


def held_by(side: Side, state: str | None) -> dict[str, Entry]:
    if state is None:
        return {}
    local, remote, _ = synced()
    if side is Side.LOCAL:
        return {"f": local if state == "same" else lo(b"local edit", mtime=20, inode=2)}
    return {"f": remote if state == "same" else rem(b"remote edit", mtime=30, etag="e2")}


@pytest.mark.parametrize("mode", [Mode.PUSH_ONLY, Mode.PULL_ONLY])
@pytest.mark.parametrize("case", list(MIRROR_CASES))
def test_one_way_modes_make_the_mirror_equal_to_the_master(mode: Mode, case: str) -> None:
    master_state, mirror_state, with_base, expected = MIRROR_CASES[case]
    master = Side.LOCAL if mode is Mode.PUSH_ONLY else Side.REMOTE
    held = {
        master: held_by(master, master_state),
        master.other: held_by(master.other, mirror_state),
    }
    _, _, base = synced()
    plan = plan_of(held[Side.LOCAL], held[Side.REMOTE], {"f": base} if with_base else {}, mode=mode)
    copy = "push" if master is Side.LOCAL else "pull"
    delete = f"delete_{master.other.value}"
    assert moves(plan) == (
        {} if expected is None else {{"copy": copy, "delete": delete}[expected]: ["f"]}
    )
    assert plan.conflicts == []
    for transfer in plan.push + plan.pull:
        assert transfer.keep_replaced  # a replaced mirror version goes to the trash


def test_one_way_mode_with_the_same_bytes_on_both_sides_only_records() -> None:
    a, b = lo(b"same", mtime=20, inode=2), rem(b"same", mtime=30, etag="e2")
    for mode in (Mode.PUSH_ONLY, Mode.PULL_ONLY):
        assert moves(plan_of({"f": a}, {"f": b}, mode=mode)) == {"record": ["f"]}


# -- a file against a directory ----------------------------------------------------------


def test_local_file_against_remote_directory_renames_the_file_aside() -> None:
    plan = plan_of({"a": lo(b"file")}, {"a/b": rem(b"in dir")})
    assert moves(plan) == {
        "push": [cname("a", Side.LOCAL)],
        "pull": ["a/b"],
        "renames": [{"side": "local", "path": "a", "to": cname("a", Side.LOCAL)}],
        "conflicts": ["a"],
    }
    assert plan.push[0].target is None


def test_remote_file_against_local_directory_renames_the_file_aside() -> None:
    plan = plan_of({"a/b": lo(b"in dir")}, {"a": rem(b"file")})
    assert moves(plan) == {
        "push": ["a/b"],
        "pull": [cname("a", Side.REMOTE)],
        "renames": [{"side": "remote", "path": "a", "to": cname("a", Side.REMOTE)}],
        "conflicts": ["a"],
    }


def test_nested_clash_renames_the_deeper_file() -> None:
    plan = plan_of({"a/b": lo(b"file")}, {"a/b/c": rem(b"in dir")})
    assert moves(plan)["renames"] == [
        {"side": "local", "path": "a/b", "to": cname("a/b", Side.LOCAL)}
    ]
    assert [t.path for t in plan.push] == [cname("a/b", Side.LOCAL)]


def test_object_store_holding_a_and_a_slash_b_keeps_both() -> None:
    plan = plan_of({}, {"a": rem(b"file"), "a/b": rem(b"in dir", etag="e2")})
    assert sorted(t.path for t in plan.pull) == sorted(["a/b", cname("a", Side.REMOTE)])
    assert moves(plan)["renames"] == [
        {"side": "remote", "path": "a", "to": cname("a", Side.REMOTE)}
    ]
    assert plan.conflicts == ["a"]
    assert plan.push == []


def test_clash_with_a_conflicting_file_plans_each_copy_once() -> None:
    """Local ``a`` differs from the remote's ``a``, and the remote also holds ``a/b``."""
    plan = plan_of({"a": lo(b"local")}, {"a": rem(b"remote"), "a/b": rem(b"d", etag="e2")})
    pulls = [t.path for t in plan.pull]
    pushes = [t.path for t in plan.push]
    assert sorted(pulls) == sorted(["a/b", cname("a", Side.REMOTE)])
    assert pushes == [cname("a", Side.LOCAL)]
    assert plan.keep_both == []
    assert sorted(r.side for r in plan.renames) == [Side.LOCAL, Side.REMOTE]
    assert plan.conflicts == ["a"]


def test_file_replaced_by_directory_on_the_other_side_is_just_a_deletion() -> None:
    local, _, base = synced()
    plan = plan_of({"a": local}, {"a/b": rem(b"d", etag="e2")}, {"a": base})
    assert moves(plan) == {"pull": ["a/b"], "delete_local": ["a"]}


def test_file_replaced_by_directory_against_a_modified_file_keeps_both() -> None:
    _, _, base = synced()
    edited = rem(b"modified", etag="e2")
    plan = plan_of({"a/b": lo(b"d", inode=5)}, {"a": edited}, {"a": base})
    assert moves(plan) == {
        "push": ["a/b"],
        "pull": [cname("a", Side.REMOTE)],
        "renames": [{"side": "remote", "path": "a", "to": cname("a", Side.REMOTE)}],
        "forget": ["a"],
        "conflicts": ["a"],
    }


# -- the delete guard --------------------------------------------------------------------


def established(n: int) -> tuple[dict[str, Entry], dict[str, Entry], dict[str, BaseEntry]]:
    local, remote, base = {}, {}, {}
    for i in range(n):
        local[f"f{i}"], remote[f"f{i}"], base[f"f{i}"] = synced(f"v{i}".encode())
    return local, remote, base


def guard(
    plan: Plan, local: dict[str, Entry], remote: dict[str, Entry], n: int, pct: float
) -> None:
    check_safety(
        len(plan.delete_local),
        len(plan.delete_remote),
        local_count=len(local),
        remote_count=len(remote),
        base_count=n,
        max_delete_percent=pct,
    )


@pytest.mark.parametrize("side", [Side.LOCAL, Side.REMOTE])
def test_delete_guard_allows_the_limit_and_refuses_one_more(side: Side) -> None:
    local, remote, base = established(10)
    gone = local if side is Side.REMOTE else remote  # deleting here propagates to ``side``
    for i in range(5):
        del gone[f"f{i}"]
    guard(plan_of(local, remote, base), local, remote, 10, 50)
    del gone["f5"]
    plan = plan_of(local, remote, base)
    assert len(plan.deletes(side)) == 6
    with pytest.raises(SafetyError, match=f"6 of 10 files on the {side.value} side"):
        guard(plan, local, remote, 10, 50)
    guard(plan, local, remote, 10, 60)


def test_delete_guard_counts_each_side_against_its_own_files() -> None:
    local, remote, base = established(4)
    del local["f0"]
    del remote["f1"]
    plan = plan_of(local, remote, base)
    assert (len(plan.delete_local), len(plan.delete_remote)) == (1, 1)
    guard(plan, local, remote, 4, 34)
    with pytest.raises(SafetyError):
        guard(plan, local, remote, 4, 33)


@pytest.mark.parametrize("side", [Side.LOCAL, Side.REMOTE])
def test_an_empty_side_on_an_established_repository_is_refused_even_at_100_percent(
    side: Side,
) -> None:
    local, remote, base = established(3)
    emptied = local if side is Side.LOCAL else remote
    emptied.clear()
    plan = plan_of(local, remote, base)
    assert len(plan.deletes(side.other)) == 3
    with pytest.raises(SafetyError, match=f"the {side.value} side is empty"):
        guard(plan, local, remote, 3, 100)


def test_an_empty_side_on_a_first_session_is_a_plain_union() -> None:
    local, _, _ = established(3)
    plan = plan_of(local, {})
    assert sorted(t.path for t in plan.push) == ["f0", "f1", "f2"]
    guard(plan, local, {}, 0, 0)


def test_no_deletion_passes_the_guard_whatever_the_counts() -> None:
    local, remote, base = established(3)
    edited = {p: lo(b"new", mtime=99, inode=9) for p in local}
    guard(plan_of(edited, remote, base), edited, remote, 3, 0)
