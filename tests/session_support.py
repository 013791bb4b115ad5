"""Helpers for the tests of the service's session lifecycle: worker processes found through
/proc, frozen with SIGSTOP so that a session is still running when a test acts on it,
triggers and polls through each face, and a replay of the event log that checks the
one-running-one-waiting rule (API.md section 6)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import struct
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from storsync.service.reports import WORKER_NAME
from tests.api_support import Api
from tests.conftest import write

PLM = "/api/media-manager/v0/storage/synchronizers"
FACES = ("native", "plm", "veeam")
SESSION_EVENTS = (
    "session.queued",
    "session.started",
    "session.finished",
    "session.failed",
    "session.stopped",
)
ENDS = frozenset(SESSION_EVENTS[2:])
T = TypeVar("T")


# -- waiting --------------------------------------------------------------------------


def wait_for(check: Callable[[], T], what: str, timeout: float = 60.0, every: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


# -- processes ------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _is_worker(pid: int) -> bool:
    """A session's worker: named so once given its job (a spare waiting for one, or a
    worker still starting, is not one yet)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return b"storsync.service.worker" in command and name == WORKER_NAME


def alive(pid: int) -> bool:
    """Running (or stopped), not gone and not a zombie left for its parent to reap."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def workers_of(parent: int) -> list[int]:
    """Live session workers (``python -m storsync.service.worker``) started by ``parent``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat and stat[1] == parent and stat[0] != "Z" and _is_worker(int(name)):
                found.append(int(name))
    return found


def service_pid(api: Api) -> int:
    """The process of the service: this one (in process), else the `storsync serve`
    listening on the client's port."""
    if api.kind == "inprocess":
        return os.getpid()
    port = str(api.client.base_url.port).encode()
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                command = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                if b"serve" in command and command[command.index(b"--port") + 1] == port:
                    return int(name)
    raise AssertionError(f"no storsync serve on port {port.decode()}")


def new_worker(parent: int, known: set[int]) -> int:
    """The worker ``parent`` started after ``known`` was listed, stopped (SIGSTOP) the
    moment it is seen: it has just been given its job, the session has done nothing.
    Use it with ``frozen`` or ``run_until``; SIGCONT lets it go."""
    found = wait_for(lambda: set(workers_of(parent)) - known, "a new worker", every=0.005)
    [pid] = found
    os.kill(pid, signal.SIGSTOP)
    _wait_stopped(pid)
    return pid


def _wait_stopped(pid: int) -> None:
    def stopped() -> bool:
        stat = _stat(pid)
        return stat is None or stat[0] in ("T", "t", "Z", "X")

    wait_for(stopped, f"process {pid} to stop", every=0.001)


def run_until(pid: int, condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Let a stopped process run in slices of 20 ms until ``condition`` holds, checked
    between slices; it is left stopped. The slice bounds how far past the condition the
    process can get, however loaded the machine."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert alive(pid), f"process {pid} ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)  # the slice itself, not a wait for something to happen
        os.kill(pid, signal.SIGSTOP)
        _wait_stopped(pid)


def held_mid_push(parent: int, start: Callable[[], str], remote: Path) -> tuple[str, int]:
    """``start()`` triggers a session pushing into the directory ``remote`` and returns
    its id. Its worker (a child of ``parent``) is stopped the instant it appears, then
    let run in short slices until it has staged or published its first upload; the
    session id and the worker, left stopped with nearly all of the push still to do."""
    known = set(workers_of(parent))
    staged, published = set(partials(remote)), names(remote)
    session_id = start()
    worker = new_worker(parent, known)

    def begun() -> bool:
        return bool(set(partials(remote)) - staged or names(remote) - published)

    run_until(worker, begun, "the push to begin")
    return session_id, worker


def pending_input(pid: int) -> int:
    """Bytes written to a process's standard input (a pipe) that it has not read yet."""
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        count: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
        return count
    finally:
        os.close(fd)


def wait_gone(pid: int, timeout: float = 60.0) -> None:
    wait_for(lambda: not alive(pid), f"process {pid} to end", timeout)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block, continued after it whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    _wait_stopped(pid)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


# -- files ----------------------------------------------------------------------------


def make_files(root: Path, count: int, seed: int = 0, prefix: str = "") -> dict[str, bytes]:
    """``count`` small files of 0.5-3 KiB spread over a few folders."""
    rng = random.Random(seed)
    files = {
        f"{prefix}d{i % 16:02d}/f{i:05d}.bin": rng.randbytes(rng.randint(512, 3072))
        for i in range(count)
    }
    for path, data in files.items():
        write(root, path, data)
    return files


def names(root: Path) -> set[str]:
    """Every name a user sees under ``root``: files and anything else, ``.storsync/`` aside."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".storsync"]
        found.update(Path(dirpath, n).relative_to(root).as_posix() for n in filenames)
    return found


def partials(root: Path) -> list[Path]:
    folder = root / ".storsync" / "partial"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


# -- faces ----------------------------------------------------------------------------


def trigger(api: Api, face: str, repository_id: str) -> tuple[str, str]:
    """Trigger a sync through one face: (the id it names, the state it shows). The id is
    the session id on the native and Veeam faces, ``$push+pull`` on the PLM one."""
    if face == "native":
        answer = api.post(f"/api/v1/repositories/{repository_id}/sync")
        assert answer.status_code == 202, answer.text
        return answer.json()["id"], answer.json()["state"]
    if face == "veeam":
        answer = api.post(f"/v6/BackupRepositories/{repository_id}/Sync")
        assert answer.status_code == 200, answer.text
        return answer.json()["id"], answer.json()["state"]
    answer = api.post(f"{PLM}?repositoryId={repository_id}")
    assert answer.status_code == 200 and answer.json()["status"] == 0, answer.text
    synchronizer = answer.json()["synchronizer"]
    return synchronizer["id"], synchronizer["state"]


def finished_on(api: Api, face: str, key: str) -> str | None:
    """The final state a face shows for the session ``key``; None while it is not over."""
    if face == "native":
        state: str = api.session(key)["state"]
        return None if state in ("queued", "running") else state
    if face == "veeam":
        answer = api.get(f"/v6/RepositorySynchronizeSessions/{key}")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return None if body["state"] == "Synchronizing" else str(body["result"])
    answer = api.get(f"{PLM}/{key}")
    assert answer.status_code == 200, answer.text
    state = answer.json()["synchronizer"]["state"]
    return None if state == "triggered" else state


def sessions_of(api: Api, repository_id: str, *states: str) -> list[dict[str, Any]]:
    query = "".join(f"&state={s}" for s in states)
    answer = api.get(f"/api/v1/sessions?repositoryId={repository_id}&limit=1000{query}")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def plm_ids(api: Api, repository_id: str) -> dict[str, str]:
    """PLM synchronizer id to session id, for every session of the repository."""
    return {
        f"${s['push']['id']}+{s['pull']['id']}": s["id"] for s in sessions_of(api, repository_id)
    }


def items(api: Api, session_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        query = f"?after={after}&limit=1000" + (f"&kind={kind}" if kind else "")
        answer = api.get(f"/api/v1/sessions/{session_id}/items{query}")
        assert answer.status_code == 200, answer.text
        page = answer.json()["items"]
        found.extend(page)
        if len(page) < 1000:
            return found
        after = page[-1]["id"]


def events(
    api: Api, since: int = 0, types: tuple[str, ...] = SESSION_EVENTS, **filters: str
) -> list[dict[str, Any]]:
    """Every event after ``since`` of the given types, oldest first, all pages. A page may
    hold fewer matching events than the limit while more follow: only an empty page
    ends the history; ``lastId`` is where the next page starts."""
    query = "".join(f"&type={t}" for t in types)
    query += "".join(f"&{k}={v}" for k, v in filters.items())
    found: list[dict[str, Any]] = []
    while True:
        answer = api.get(f"/api/v1/events?since={since}&limit=1000{query}")
        assert answer.status_code == 200, answer.text
        page = answer.json()
        if not page["items"]:
            return found
        found.extend(page["items"])
        since = page["lastId"]


def last_event_id(api: Api) -> int:
    """The newest event's id, from the metrics (the events route pages from the oldest)."""
    metrics = api.get("/metrics").text
    for line in metrics.splitlines():
        if line.startswith("storsync_last_event_id "):
            return int(float(line.split()[1]))
    raise AssertionError("no storsync_last_event_id in /metrics")


def check_one_at_a_time(found: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Replay the session events of repositories: never two sessions of one repository
    running at once, never two waiting; each session queued (or resumed), started at most
    once, ended exactly once, in that order. Returns each session's event types."""
    ids = [e["id"] for e in found]
    assert ids == sorted(set(ids)), "event ids are not strictly increasing"
    running: dict[str, set[str]] = {}
    waiting: dict[str, set[str]] = {}
    history: dict[str, list[str]] = {}
    for event in found:
        repository, session, kind = event["repositoryId"], event["sessionId"], event["type"]
        seen = history.setdefault(session, [])
        assert not any(k in ENDS for k in seen), f"{kind} after the end of {session}: {seen}"
        runs, waits = running.setdefault(repository, set()), waiting.setdefault(repository, set())
        if kind == "session.queued":
            assert not seen, f"{session} queued twice"
            waits.add(session)
        elif kind == "session.started":
            assert "session.started" not in seen, f"{session} started twice"
            waits.discard(session)
            runs.add(session)
        else:
            waits.discard(session)
            runs.discard(session)
        seen.append(kind)
        assert len(runs) <= 1, f"two sessions of {repository} running at once: {runs}"
        assert len(waits) <= 1, f"two sessions of {repository} waiting at once: {waits}"
    return history
