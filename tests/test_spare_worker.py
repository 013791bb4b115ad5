"""The spare worker (storsync.service.workers.Workers): once a session has ended, one
worker process is started ahead, warmed for that session's remote, and the next session
runs in it; never more than one; gone with the service; none with ``spare_worker`` off."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from storsync.service.reports import SPARE_NAME
from tests.conftest import tree, write
from tests.session_support import alive, trigger, wait_for
from tests.test_service_lifecycle import in_process


def _children(parent: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(name))
    return found


def _command(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


def _worker_processes() -> list[int]:
    """This process's children running the worker module, whatever their state."""
    found = []
    for pid in _children(os.getpid()):
        try:
            if "storsync.service.worker" in _command(pid):
                found.append(pid)
        except OSError:
            continue
    return found


def spares() -> list[int]:
    """This process's spare workers: started with --spare, not yet given a job."""
    found = []
    for pid in _children(os.getpid()):
        try:
            spare = "--spare" in _command(pid)
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if spare and name == SPARE_NAME:
            found.append(pid)
    return found


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_next_session_runs_in_the_spare_the_last_one_left(tmp_path: Path) -> None:
    with in_process(tmp_path, None) as (_, api):
        repository = api.new_repository()
        rid, local = repository["id"], Path(repository["localPath"])
        assert spares() == []  # none before a session has run
        write(local, "a.txt", "a")
        assert api.sync(rid)["state"] == "completed"
        [spare] = wait_for(spares, "a spare after the first session")
        assert _command(spare)[-2:] == ["--spare", "file"]  # warmed for this remote
        assert _niceness(spare) == _niceness(os.getpid()) + 10  # background work already

        write(local, "b.txt", "b")
        session_id, _ = trigger(api, "native", rid)
        assert api.wait(session_id)["state"] == "completed"
        assert tree(Path(repository["remote"])) == {"a.txt": b"a", "b.txt": b"b"}
        # The spare ran the session and ended with it; another waits in its place.
        wait_for(lambda: not alive(spare), "the spare to run the session and end")
        [replacement] = wait_for(spares, "a new spare")
        assert replacement != spare

        # A spare that died meanwhile is not given a session: a new worker is.
        os.kill(replacement, signal.SIGKILL)
        wait_for(lambda: not alive(replacement), "the spare to die")
        write(local, "c.txt", "c")
        assert api.sync(rid)["state"] == "completed"
        assert set(tree(Path(repository["remote"]))) == {"a.txt", "b.txt", "c.txt"}
        [last] = wait_for(spares, "a spare after the killed one")
    # Let go with the service.
    assert not alive(last)
    assert spares() == []


def test_no_spare_when_the_setting_is_off(tmp_path: Path) -> None:
    with in_process(tmp_path, None, STORSYNC_SPARE_WORKER="off") as (service, api):
        repository = api.new_repository()
        write(Path(repository["localPath"]), "a.txt", "a")
        for _ in range(2):
            assert api.sync(repository["id"])["state"] == "completed"
        wait_for(lambda: not service.sessions.active(repository["id"]), "the worker's end")
        # The reader thread starts a spare, if it does, right after the worker has ended.
        wait_for(lambda: not _worker_processes(), "no worker process at all", timeout=2)
        assert spares() == []


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_a_spare_let_go_ends_quietly(scheme: str) -> None:
    """The end of its input before any job ends a spare, after its warm-up (the S3 one
    makes a client for nowhere: no request, no error), with nothing written."""
    done = subprocess.run(
        [sys.executable, "-m", "storsync.service.worker", "--niceness", "0", "--spare", scheme],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
