"""The command line contract of CLI.md: options, JSON summary, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Pair, run_cli, trash, tree, write


def test_two_way_sync_moves_files_both_ways_and_reports_json(pair: Pair) -> None:
    write(pair.local, "a.txt", "local")
    write(pair.remote, "dir/b.txt", "remote")
    result = pair.cli("--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "completed"
    assert (summary["pushed"], summary["pulled"]) == (1, 1)
    assert summary["bytes_pushed"] == 5
    assert summary["bytes_pulled"] == 6
    assert set(summary) >= {
        "state",
        "pushed",
        "pulled",
        "deleted_local",
        "deleted_remote",
        "conflicts",
        "bytes_pushed",
        "bytes_pulled",
        "errors",
    }
    assert tree(pair.local) == tree(pair.remote) == {"a.txt": b"local", "dir/b.txt": b"remote"}
    again = json.loads(pair.cli("--json").stdout)
    assert (again["pushed"], again["pulled"]) == (0, 0)


def test_dry_run_prints_the_plan_and_changes_nothing(pair: Pair) -> None:
    write(pair.local, "a.txt", "local")
    result = pair.cli("--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)["plan"]
    assert plan["push"] == ["a.txt"]
    assert tree(pair.remote) == {}
    assert not (pair.remote / ".storsync").exists()


def test_delete_guard_stops_before_deleting_and_force_overrides(pair: Pair) -> None:
    for i in range(10):
        write(pair.local, f"f{i}", str(i))
    assert pair.cli().returncode == 0
    for i in range(6):
        (pair.local / f"f{i}").unlink()
    result = pair.cli("--json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert summary["state"] == "failed"
    assert "6 of 10" in summary["message"]
    assert len(tree(pair.remote)) == 10
    assert pair.cli("--max-delete", "70").returncode == 0
    assert len(tree(pair.remote)) == 4


def test_emptied_local_root_is_not_a_wish_to_delete_everything(pair: Pair) -> None:
    write(pair.local, "a", "1")
    write(pair.local, "b", "2")
    assert pair.cli().returncode == 0
    for name in ("a", "b"):
        (pair.local / name).unlink()
    result = pair.cli("--max-delete", "100")
    assert result.returncode == 1
    assert "empty" in result.stderr
    assert len(tree(pair.remote)) == 2
    assert pair.cli("--force").returncode == 0
    assert tree(pair.remote) == {}
    assert sorted(
        p.name for p in (pair.remote / ".storsync" / "trash").rglob("*") if p.is_file()
    ) == ["a", "b"]


def test_replaced_root_without_marker_is_refused(pair: Pair, tmp_path: Path) -> None:
    write(pair.local, "a", "1")
    assert pair.cli().returncode == 0
    (pair.remote / ".storsync" / "repositories").rename(tmp_path / "gone")
    result = pair.cli()
    assert result.returncode == 1
    assert "marker" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "Missing argument"),
        (("sync",), "Missing argument"),
        (("sync", "/nonexistent-dir-storsync", "/tmp"), "does not exist"),
        (("sync", ".", "/tmp", "--mode", "sideways"), "Invalid value"),
        (("sync", ".", "/tmp", "--transfers", "0"), "Invalid value"),
        (("sync", ".", "/tmp", "--max-delete", "abc"), "Invalid value"),
        (("sync", ".", "ftp://host/x"), "unsupported remote"),
        (("sync", ".", "file://otherhost/x"), "names a host"),
        (("sync", ".", "/tmp", "--bogus"), "No such option"),
        (("frobnicate",), "No such command"),
    ],
)
def test_bad_usage_exits_2_with_one_clear_line(args: tuple[str, ...], needle: str) -> None:
    result = run_cli(*args) if args else run_cli("sync")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_local_dir_that_is_a_file_is_bad_usage(tmp_path: Path) -> None:
    f = write(tmp_path, "file", "x")
    result = run_cli("sync", str(f), str(tmp_path / "r"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_help_documents_every_option() -> None:
    out = run_cli("sync", "--help").stdout
    for option in (
        "--state-dir",
        "--mode",
        "--dry-run",
        "--checksum",
        "--conflict",
        "--exclude",
        "--max-delete",
        "--force",
        "--transfers",
        "--json",
        "--no-trash",
    ):
        assert option in out


def test_python_dash_m_and_console_script_agree() -> None:
    assert run_cli("--version").stdout.startswith("storsync")


def test_trash_days_zero_keeps_no_trash_as_no_trash_does(pair: Pair) -> None:
    """``--trash-days 0`` means what ``trashDays: 0`` means on a repository: replaced and
    deleted versions are removed outright (it used to keep them until the next run)."""
    write(pair.local, "a.txt", "one")
    write(pair.local, "b.txt", "gone soon")
    assert pair.cli("--json").returncode == 0
    write(pair.local, "a.txt", "two, replacing one")
    (pair.local / "b.txt").unlink()
    result = pair.cli("--json", "--trash-days", "0")
    assert result.returncode == 0, result.stderr
    assert tree(pair.remote) == {"a.txt": b"two, replacing one"}
    assert trash(pair.remote) == {}
    # The default keeps them.
    write(pair.local, "a.txt", "three")
    assert pair.cli("--json").returncode == 0
    assert trash(pair.remote) == {"a.txt": [b"two, replacing one"]}


@pytest.mark.parametrize(
    ("local", "remote"),
    [("a", "a/sub"), ("n/inner", "n"), ("same", "same"), ("a", "file://{tmp}/a/deeper")],
)
def test_overlapping_roots_are_bad_usage(tmp_path: Path, local: str, remote: str) -> None:
    (tmp_path / local).mkdir(parents=True, exist_ok=True)
    write(tmp_path / local, "f.txt", "stays where it is")
    target = remote.format(tmp=tmp_path) if "://" in remote else str(tmp_path / remote)
    result = run_cli("sync", str(tmp_path / local), target)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "overlap" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["f.txt"]


def test_a_symbolic_link_does_not_hide_an_overlap(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = run_cli("sync", str(tmp_path / "real"), str(tmp_path / "link" / "sub"))
    assert result.returncode == 2 and "overlap" in result.stderr, result.stderr
