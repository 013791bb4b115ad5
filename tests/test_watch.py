"""Watching (SYNC.md promise 9, API.md section 7, CLI.md --watch) on real file systems:
local edits, new files, deletions and renames reach the remote without any trigger; a
burst starts a few sessions, not one per file; storsync's own downloads start nothing
but a person's edit to one does; lost notifications (an overflow, a watcher error, the
kernel's watch limit) are followed by a rescan that finds what they missed; the command
line keeps a pair synchronized and stops cleanly; the cadence's rules, with a set time."""

from __future__ import annotations

import errno
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from asyncinotify import Inotify

from storsync.runner.watching import Cadence, WatchTimes
from storsync.storage import local_watch
from storsync.storage.local_watch import Hints, LocalWatcher
from tests.api_support import Api
from tests.conftest import run_cli, tree, write
from tests.session_support import wait_for
from tests.test_service_lifecycle import in_process


def _watched(api: Api, **settings: Any) -> tuple[dict[str, Any], Path, Path]:
    """A watched repository, once its watch is in place: the session it starts with (the
    watch's first act once its notifications are set up) exists."""
    repository = api.new_repository(watch=True, watchDelaySeconds=0.3, **settings)
    wait_for(lambda: _sessions(api, repository["id"]), "the session the watch starts with")
    return repository, Path(repository["localPath"]), Path(repository["remote"])


def _sessions(api: Api, rid: str, trigger: str | None = None) -> list[dict[str, Any]]:
    page = api.get(f"/api/v1/sessions?repositoryId={rid}&limit=1000").json()["items"]
    return [s for s in page if trigger is None or s["trigger"] == trigger]


def _settled(api: Api, rid: str) -> None:
    """No session of the repository queued or running, for a moment."""
    wait_for(
        lambda: all(s["state"] not in ("queued", "running") for s in _sessions(api, rid)),
        "the sessions to end",
    )


def _same(local: Path, remote: Path) -> bool:
    return tree(local) == tree(remote)


def test_local_changes_reach_the_remote_without_a_trigger(api: Api) -> None:
    repository, local, remote = _watched(api)
    rid = repository["id"]
    for name in ("a", "b", "c"):  # so that one deletion stays under the delete guard
        write(local, f"kept/{name}.txt", name)
    wait_for(lambda: len(tree(remote)) == 3, "the first files")
    write(local, "docs/new.txt", "a new file")
    wait_for(lambda: tree(remote).get("docs/new.txt") == b"a new file", "a new file")
    write(local, "docs/new.txt", "edited")
    wait_for(lambda: tree(remote).get("docs/new.txt") == b"edited", "an edit")
    (local / "docs" / "new.txt").rename(local / "docs" / "renamed.txt")
    wait_for(lambda: set(tree(remote)) == set(tree(local)), "a rename")
    assert tree(remote)["docs/renamed.txt"] == b"edited"
    (local / "docs" / "renamed.txt").unlink()
    wait_for(lambda: set(tree(remote)) == set(tree(local)), "a deletion")
    _settled(api, rid)
    assert {s["trigger"] for s in _sessions(api, rid)} == {"watch"}  # no trigger of ours
    assert _same(local, remote)


def test_a_burst_of_a_thousand_files_starts_a_few_sessions(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (_, api):
        repository, local, remote = _watched(api)
        rid = repository["id"]
        _settled(api, rid)
        before = len(_sessions(api, rid))
        for i in range(1000):
            write(local, f"burst/{i % 10}/f{i:04d}.txt", f"file {i}")
        wait_for(lambda: len(tree(remote)) == 1000, "the burst on the remote", timeout=120)
        _settled(api, rid)
        assert len(_sessions(api, rid)) - before <= 4


@pytest.mark.slow
def test_a_file_written_to_without_pause_still_starts_a_session_within_30_s(
    tmp_path: Path,
) -> None:
    with in_process(tmp_path, None) as (_, api):
        repository, local, remote = _watched(api)
        rid = repository["id"]
        _settled(api, rid)
        before = len(_sessions(api, rid))
        began = time.monotonic()
        while len(_sessions(api, rid)) == before:  # never quiet for 0.3 s
            assert time.monotonic() - began < 31, "no session within 30 s"
            with (local / "log.txt").open("a") as log:  # each write a closed file
                log.write("a line\n")
            time.sleep(0.1)
        assert time.monotonic() - began > 25  # it did wait for quiet, up to the cap
        wait_for(lambda: "log.txt" in tree(remote), "the file on the remote")


def test_storsync_own_downloads_start_nothing_but_an_edit_to_one_does(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (_, api):
        repository, local, remote = _watched(api)
        rid = repository["id"]
        _settled(api, rid)
        # The directory remote is watched too: its change starts the session that
        # downloads the file into the watched folder.
        write(remote, "from-remote.txt", "pulled by a session")
        wait_for(lambda: "from-remote.txt" in tree(local), "the download")
        _settled(api, rid)
        pulled = _sessions(api, rid)[0]
        assert (pulled["trigger"], pulled["pulled"]) == ("watch", 1), pulled
        time.sleep(2)  # several quiet periods
        _settled(api, rid)
        assert _sessions(api, rid)[0]["id"] == pulled["id"]  # nothing started since
        write(local, "from-remote.txt", "a person edits the file just downloaded")
        wait_for(
            lambda: tree(remote)["from-remote.txt"] == b"a person edits the file just downloaded",
            "the edit on the remote",
        )
        _settled(api, rid)  # the file is on the remote before its session ends
        assert _sessions(api, rid, "watch")[0]["pushed"] == 1


def test_lost_notifications_are_followed_by_a_rescan_that_finds_the_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A watcher that misses what happens (the paths dropped, as an overflowed queue
    # drops events), and then says so once.
    lose = {"paths": False, "overflow": False}
    real_poll = LocalWatcher.poll

    def lossy(self: LocalWatcher, timeout_s: float) -> Hints:
        hints = real_poll(self, timeout_s)
        if lose["paths"]:
            hints.paths.clear()
        if lose["overflow"]:
            lose["overflow"] = False
            return Hints(complete=False, why="the notification queue overflowed (injected)")
        return hints

    monkeypatch.setattr(LocalWatcher, "poll", lossy)
    with in_process(tmp_path, None) as (_, api):
        repository, local, remote = _watched(api)
        rid = repository["id"]
        _settled(api, rid)
        lose["paths"] = True
        write(local, "unseen.txt", "written while the notifications were lost")
        time.sleep(1.5)
        assert "unseen.txt" not in tree(remote)  # the hints said nothing
        lose["overflow"] = True
        wait_for(lambda: "unseen.txt" in tree(remote), "the rescan after the overflow")


def test_past_the_kernel_watch_limit_a_rescan_still_finds_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        (tmp_path / "root" / f"d{i}").mkdir(parents=True)
    real = Inotify.add_watch
    count = {"added": 0}

    def limited(self: Inotify, path: Any, mask: Any) -> Any:
        if count["added"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        count["added"] += 1
        return real(self, path, mask)

    monkeypatch.setattr(Inotify, "add_watch", limited)
    watcher = LocalWatcher(tmp_path / "root")
    try:
        started = watcher.start()
        assert started.limited is not None and "max_user_watches" in started.limited
        write(tmp_path / "root", "seen.txt", "in the watched root")
        hints = watcher.poll(2)
        assert "seen.txt" in hints.paths and hints.complete
    finally:
        watcher.close()
    # The cadence still rescans the whole pair periodically: what an unwatched folder
    # holds is found then.
    times = WatchTimes(rescan_s=60, jitter_s=0)
    cadence = Cadence(times, now=0.0)
    assert cadence.due(59.9) is None and cadence.due(60.0) == "periodic rescan"


def test_a_watcher_error_is_reported_not_raised(tmp_path: Path) -> None:
    watcher = LocalWatcher(tmp_path)
    watcher.start()
    watcher.close()  # its descriptor is gone: every read fails
    hints = watcher.poll(0.1)
    assert not hints.complete and "failed" in (hints.why or "")
    assert local_watch.LocalWatcher is LocalWatcher


# -- the cadence, with a set time -----------------------------------------------------


def test_the_cadence_waits_for_quiet_but_not_longer_than_thirty_seconds() -> None:
    cadence = Cadence(WatchTimes(delay_s=2, rescan_s=3600, jitter_s=0), now=0.0)
    assert cadence.due(10) is None
    cadence.changed(10)
    assert cadence.due(11.9) is None and cadence.due(12) == "local changes"
    # Writes that never pause: every 0.5 s from 20 s on.
    cadence.ran(12)
    t = 20.0
    while cadence.due(t) is None:
        cadence.changed(t)
        t += 0.5
    assert t == pytest.approx(50.0) and cadence.due(t) == "local changes still going on"
    cadence.ran(t)
    cadence.lost()
    assert cadence.due(t) == "rescan after lost notifications"


def test_the_rescan_comes_hourly_with_jitter_and_the_remote_every_interval() -> None:
    starts = []
    for seed in range(20):
        cadence = Cadence(WatchTimes(rescan_s=3600, jitter_s=300), 0.0, random.Random(seed))
        when = cadence.next_look(0.0)
        assert cadence.due(when - 0.001) is None and cadence.due(when) == "periodic rescan"
        starts.append(when)
    assert all(3600 <= s <= 3900 for s in starts) and len(set(starts)) > 1
    cadence = Cadence(WatchTimes(remote_s=60), 0.0)
    assert cadence.next_look(0.0) == 60 and cadence.due(60) == "remote check"


# -- the command line ---------------------------------------------------------------------


def _watching_cli(local: Path, remote: Path, state: Path, *extra: str) -> subprocess.Popen[str]:
    args = ["--state-dir", str(state), "--watch", "--json", "--watch-delay", "0.3", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "storsync", "sync", str(local), str(remote), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_command_line_keeps_a_pair_synchronized(tmp_path: Path, signum: int) -> None:
    local, remote, state = tmp_path / "l", tmp_path / "r", tmp_path / "s"
    for d in (local, remote, state):
        d.mkdir()
    write(local, "first.txt", "there at the start")
    proc = _watching_cli(local, remote, state, "--interval", "2")
    try:
        wait_for(lambda: "first.txt" in tree(remote), "the first session")
        write(local, "sub/new.txt", "new")
        wait_for(lambda: tree(remote).get("sub/new.txt") == b"new", "a local change")
        write(remote, "remote.txt", "made on the remote")
        began = time.monotonic()
        wait_for(lambda: "remote.txt" in tree(local), "a remote change", timeout=15)
        assert time.monotonic() - began < 6  # within about one interval
        time.sleep(1)
    finally:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["reason"] == "start" and lines[0]["pushed"] == 1
    assert all(line["state"] in ("completed", "stopped") for line in lines), lines
    reasons = {line["reason"] for line in lines}
    assert {"local changes", "remote check"} <= reasons
    assert _same(local, remote)


def test_watch_with_dry_run_is_bad_usage(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir()
    result = run_cli("sync", str(tmp_path / "l"), str(tmp_path / "r"), "--watch", "--dry-run")
    assert result.returncode == 2 and "--watch and --dry-run" in result.stderr


MOUNTS = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/nas rw,relatime shared:20 - nfs4 nas:/export rw,vers=4.2
41 40 0:36 / /mnt/nas/local\040disk rw shared:21 - xfs /dev/sdb1 rw
42 22 0:37 / /home/u/remote rw,nosuid shared:22 - fuse.sshfs u@host:/srv rw
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/srv/data", None),
        ("/mnt/nas", "nfs4"),
        ("/mnt/nas/photos/2024", "nfs4"),
        ("/mnt/nas/local disk/x", None),  # a local disk mounted inside the share
        ("/mnt/nasty", None),  # a longer name is not under /mnt/nas
        ("/home/u/remote/x", "fuse.sshfs"),
    ],
)
def test_a_remote_on_a_network_file_system_is_not_trusted_to_notify(
    path: str, kind: str | None
) -> None:
    assert local_watch.network_file_system(Path(path), MOUNTS) == kind
