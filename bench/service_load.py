"""Latency of `storsync serve` under load: status reads while a sync runs, triggers, and
the sessions list over a large history. Not a test: figures for docs/benchmarks.md.

    PY=.venv/bin/python
    $PY bench/service_load.py status --reps 3 --idle  # 500 req/s of status reads, 10k-file sync
    $PY bench/service_load.py triggers --reps 3       # POST .../sync and PLM POST, one at a time
    $PY bench/service_load.py list --reps 3 --capacity [--db postgres]  # 100,000 sessions
    $PY bench/service_load.py summary bench/results/service-*.jsonl

The load comes from bench/loadgen.c (compiled on first use with cc): an open-loop
generator that sends request i at t0 + i/rate on a free keep-alive connection and
measures its latency from that intended time, so a stalled server is charged for the
requests it held back (no coordinated omission). Every run appends one JSON line to
--out; `summary` prints medians over the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
LOADGEN_SRC = HERE / "loadgen.c"
LOADGEN = Path(tempfile.gettempdir()) / "storsync-loadgen"
ADMIN_PASSWORD = "bench-admin-password"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
SRC_OVERRIDE = ""  # --src: run the server from another copy of src/ (A/B of changes)
LABEL = ""  # --label: recorded with each run, kept apart by `summary`


# -- helpers ----------------------------------------------------------------------------


def build_loadgen() -> Path:
    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < LOADGEN_SRC.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(LOADGEN), str(LOADGEN_SRC)], check=True)
    return LOADGEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def worker_running(server_pid: int) -> bool:
    """Whether a session worker (a child of the server) is alive; read from /proc, so
    that telling when the sync has finished costs the loaded server nothing."""
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    if b"storsync.service.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                        return True
    return False


def runqueue_wait_ns(pid: int) -> dict[str, int]:
    """Per thread: time spent runnable but waiting for a CPU (schedstat), in ns."""
    waits = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            waits[task.name] = int((task / "schedstat").read_text().split()[1])
    return waits


def cpu_pressure_us() -> int:
    """PSI: total microseconds in which some runnable task waited for a CPU."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1])
    return 0


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class Server:
    """`storsync serve` on a loopback port, as tests/api_support.py starts it."""

    def __init__(self, work: Path, database_url: str | None = None) -> None:
        self.work = work
        self.root = work / "root"
        self.data = work / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            "STORSYNC_DATA_DIR": str(self.data),
            "STORSYNC_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "STORSYNC_ALLOWED_ROOTS": str(self.root),
            "STORSYNC_ALLOW_PRIVATE_ENDPOINTS": "1",
            "STORSYNC_LOG_LEVEL": "warning",
        }
        if database_url:
            self.env["STORSYNC_DATABASE_URL"] = database_url
        if SRC_OVERRIDE:
            self.env["PYTHONPATH"] = SRC_OVERRIDE
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        log = (self.work / "server.log").open("ab")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "storsync", "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.work / "server.log").read_text()[-2000:])
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("storsync serve did not answer")
        answer = httpx.post(
            f"{self.url}/v6/token",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD},
            timeout=30,
        )
        answer.raise_for_status()
        self.token = answer.json()["access_token"]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60
        )


@contextlib.contextmanager
def running(work: Path, database_url: str | None = None) -> Iterator[Server]:
    server = Server(work, database_url)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def loadgen_cmd(
    server: Server,
    paths: list[str],
    *,
    rate: float,
    connections: int,
    seconds: float,
    method: str = "GET",
    paths_file: Path | None = None,
) -> list[str]:
    cmd = [
        str(LOADGEN),
        "-p", str(server.port),
        "-r", str(rate),
        "-c", str(connections),
        "-d", str(seconds),
        "-m", method,
        "-h", f"Authorization: Bearer {server.token}",
    ]  # fmt: skip
    if paths_file is not None:
        return [*cmd, "-P", str(paths_file)]
    return [*cmd, *paths]


def run_load(server: Server, cmd: list[str], stop_when: Any = None) -> dict[str, Any]:
    """Run the generator; ``stop_when()`` is polled every 0.25 s and ends the run early.
    Adds the server's CPU time per request and what the machine did meanwhile."""
    cpu0, (busy0, total0), load0 = cpu_ticks(server.pid), machine_busy(), loadavg()
    wait0, pressure0 = runqueue_wait_ns(server.pid), cpu_pressure_us()
    started = time.monotonic()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stopped_early = False
    while process.poll() is None:
        time.sleep(0.25)
        if stop_when is not None and not stopped_early and stop_when():
            process.send_signal(signal.SIGINT)
            stopped_early = True
    out, _ = process.communicate()
    wall = time.monotonic() - started
    cpu1, (busy1, total1) = cpu_ticks(server.pid), machine_busy()
    wait1, pressure1 = runqueue_wait_ns(server.pid), cpu_pressure_us()
    result: dict[str, Any] = json.loads(out)
    ticks = os.sysconf("SC_CLK_TCK")
    server_cpu_s = (cpu1 - cpu0) / ticks
    ncpu = os.cpu_count() or 1
    result.update(
        {
            "stopped_early": stopped_early,
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server_cpu_s, 3),
            "server_cpu_ms_per_request": round(
                1000 * server_cpu_s / max(1, result["completed"]), 3
            ),
            # busy share of all CPUs over the run, whoever used them (ours included)
            "machine_busy_percent": round(100 * (busy1 - busy0) / max(1, total1 - total0), 1),
            # the server's threads runnable but not running (another process had the CPU,
            # or another of its own threads), per request; threads that ended before the
            # end of the run are missed
            "server_runqueue_wait_ms_per_request": round(
                sum(w - wait0.get(t, 0) for t, w in wait1.items())
                / 1e6
                / max(1, result["completed"]),
                3,
            ),
            # share of the run during which some task on the machine waited for a CPU
            "cpu_pressure_percent": round(100 * (pressure1 - pressure0) / 1e6 / wall, 1),
            "machine_cpus": ncpu,
            "loadavg_1m_before": load0,
            "loadavg_1m_after": loadavg(),
        }
    )
    return result


def append(out: Path, row: dict[str, Any]) -> None:
    """One result: printed, and appended to ``out`` as a JSON line."""
    print(json.dumps(row), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as stream:
        stream.write(json.dumps(row) + "\n")


def record(out: Path, row: dict[str, Any]) -> None:
    row = {
        "label": LABEL,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
        **row,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    lat = row.get("latency_ms", {})
    print(
        f"{row['scenario']:8s} {row.get('case', ''):34s}"
        f" rate {row.get('achieved_rate', 0):7.1f}/s  p50 {lat.get('p50', 0):8.2f}"
        f"  p99 {lat.get('p99', 0):9.2f}  max {lat.get('max', 0):9.2f} ms"
        f"  errors {row.get('errors', 0) + row.get('non_2xx', 0)}"
        f"  server {row.get('server_cpu_ms_per_request', 0):.2f} ms CPU/req"
        f"  runq {row.get('server_runqueue_wait_ms_per_request', 0):.2f} ms/req"
        f"  machine {row.get('machine_busy_percent', 0)}% busy,"
        f" pressure {row.get('cpu_pressure_percent', 0)}%, load {row.get('loadavg_1m_before')}",
        flush=True,
    )


def make_tree(folder: Path, files: int, size: int, seed: int) -> None:
    """``files`` files of ``size`` random bytes, 100 to a directory."""
    rng = random.Random(seed)
    per_dir = 100
    for i in range(files):
        d = folder / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i % per_dir:03d}.bin").write_bytes(rng.randbytes(size))


def new_repository(client: httpx.Client, root: Path, name: str) -> dict[str, Any]:
    folder = root / name
    answer = client.post(
        "/api/v1/repositories",
        json={"name": name, "localPath": str(folder / "local"), "remote": str(folder / "remote")},
    )
    answer.raise_for_status()
    repository: dict[str, Any] = answer.json()
    return repository


def wait_finished(client: httpx.Client, session_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        session: dict[str, Any] = client.get(f"/api/v1/sessions/{session_id}").json()
        if session["state"] not in ("queued", "running"):
            return session
        if time.monotonic() > deadline:
            raise RuntimeError(f"session {session_id} still {session['state']}")
        time.sleep(0.1)


def seconds_between(a: str | None, b: str | None) -> float | None:
    from datetime import datetime

    if not a or not b:
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return round((parse(b) - parse(a)).total_seconds(), 3)


# -- scenario 1: status reads while a sync runs --------------------------------------------

FACES = {
    "native": "/api/v1/sessions/{id}",
    "veeam": "/v6/RepositorySynchronizeSessions/{id}",
}


def scenario_status(args: argparse.Namespace) -> None:
    for rep in range(args.reps):
        work = Path(tempfile.mkdtemp(prefix="storsync-load-", dir=args.work))
        try:
            with running(work) as server, server.client() as client:
                for face, template in FACES.items():
                    if args.idle:
                        # the same reads with no sync running, against a finished session
                        repository = new_repository(client, server.root, f"idle-{face}")
                        done = client.post(f"/api/v1/repositories/{repository['id']}/sync")
                        wait_finished(client, done.json()["id"])
                        path = template.format(id=done.json()["id"])
                        cmd = loadgen_cmd(
                            server,
                            [path],
                            rate=args.rate,
                            connections=args.connections,
                            seconds=args.idle_seconds,
                        )
                        row = run_load(server, cmd)
                        record(
                            args.out,
                            {"scenario": "status", "case": f"{face} idle", "rep": rep, **row},
                        )
                    name = f"sync-{face}"
                    make_tree(server.root / name / "local", args.files, args.size, seed=rep)
                    repository = new_repository(client, server.root, name)
                    t = time.perf_counter()
                    answer = client.post(f"/api/v1/repositories/{repository['id']}/sync")
                    trigger_ms = (time.perf_counter() - t) * 1000
                    answer.raise_for_status()
                    session = answer.json()
                    while session["state"] == "queued":
                        time.sleep(0.01)
                        session = client.get(f"/api/v1/sessions/{session['id']}").json()
                    path = template.format(id=session["id"])
                    cmd = loadgen_cmd(
                        server,
                        [path],
                        rate=args.rate,
                        connections=args.connections,
                        seconds=args.max_seconds,
                    )

                    row = run_load(server, cmd, stop_when=lambda: not worker_running(server.pid))
                    ended = wait_finished(client, session["id"])
                    record(
                        args.out,
                        {
                            "scenario": "status",
                            "case": f"{face} during sync",
                            "rep": rep,
                            "files": args.files,
                            "file_size": args.size,
                            "trigger_ms": round(trigger_ms, 3),
                            "sync_state": ended["state"],
                            "sync_pushed": ended["pushed"],
                            "sync_seconds": seconds_between(ended["startedAt"], ended["endedAt"]),
                            **row,
                        },
                    )
        finally:
            shutil.rmtree(work, ignore_errors=True)


# -- scenario 1b: trigger latency ----------------------------------------------------------

TRIGGERS = {
    "native POST /api/v1/repositories/{id}/sync": "/api/v1/repositories/{id}/sync",
    "PLM POST /api/media-manager/v0/storage/synchronizers": (
        "/api/media-manager/v0/storage/synchronizers?repositoryId={id}"
    ),
}


def scenario_triggers(args: argparse.Namespace) -> None:
    """Each trigger starts a session (and its worker process) of an idle repository with
    a few files: requests at ``--trigger-rate`` over one connection, repositories round
    robin so that each has finished before it is triggered again."""
    for rep in range(args.reps):
        work = Path(tempfile.mkdtemp(prefix="storsync-load-", dir=args.work))
        try:
            with running(work) as server, server.client() as client:
                repositories = []
                for i in range(args.repositories):
                    name = f"t{i:03d}"
                    make_tree(server.root / name / "local", 10, 1024, seed=i)
                    repositories.append(new_repository(client, server.root, name)["id"])
                for case, template in TRIGGERS.items():
                    paths_file = work / "paths.txt"
                    paths_file.write_text(
                        "".join(template.format(id=r) + "\n" for r in repositories)
                    )
                    cmd = loadgen_cmd(
                        server,
                        [],
                        rate=args.trigger_rate,
                        connections=1,
                        seconds=args.count / args.trigger_rate,
                        method="POST",
                        paths_file=paths_file,
                    )
                    row = run_load(server, cmd)
                    record(args.out, {"scenario": "trigger", "case": case, "rep": rep, **row})
                    # let the last sessions finish before the next case
                    for session in client.get("/api/v1/sessions?limit=200").json()["items"]:
                        wait_finished(client, session["id"])
        finally:
            shutil.rmtree(work, ignore_errors=True)


# -- scenario 2: the sessions list over 100,000 sessions -----------------------------------

LISTS = {
    "native GET /api/v1/sessions?limit=50": "/api/v1/sessions?limit=50",
    "veeam GET /v6/RepositorySynchronizeSessions": "/v6/RepositorySynchronizeSessions",
}


def insert_sessions(database_url: str, count: int, repository_ids: list[str]) -> float:
    """``count`` finished sessions over the last 20 days, straight into the database (its
    schema made by the server's first start)."""
    import sqlalchemy as sa

    from storsync.state import schema

    engine = sa.create_engine(database_url)
    now = time.time_ns()
    span = 20 * 86_400 * 10**9
    rng = random.Random(42)
    states = ["completed"] * 90 + ["partial"] * 5 + ["failed"] * 3 + ["stopped"] * 2
    started = time.monotonic()
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for i in range(count):
            created = now - span + span * i // count
            state = rng.choice(states)
            files = rng.randrange(0, 2000)
            phase = {"completed": "completed", "partial": "partial"}.get(state, "failed")
            batch.append(
                {
                    "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "repository_id": repository_ids[i % len(repository_ids)],
                    "push_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "pull_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "state": state,
                    "push_state": phase,
                    "pull_state": phase,
                    "created_ns": created,
                    "started_ns": created + 1_000_000,
                    "ended_ns": created + 2_000_000_000,
                    "error": None if state == "completed" else f"{state}: something went wrong",
                    "stop_requested": state == "stopped",
                    "trigger": rng.choice(["api", "plm", "veeam", "schedule"]),
                    "percent": 100 if state in ("completed", "partial") else 40,
                    "push_files_planned": files,
                    "push_files_done": files,
                    "push_bytes_planned": files * 4096,
                    "push_bytes_done": files * 4096,
                    "pushed": files,
                    "pulled": files // 3,
                    "conflicts": rng.randrange(0, 3),
                    "errors": 0 if state == "completed" else 1,
                }
            )
            if len(batch) == 5000:
                conn.execute(schema.sessions.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(schema.sessions.insert(), batch)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(schema.sessions)).scalar()
    engine.dispose()
    print(f"inserted {count} sessions ({total} in all) in {time.monotonic() - started:.1f} s")
    return time.monotonic() - started


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    import psycopg

    name = f"storsync_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.format(db=name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scenario_list(args: argparse.Namespace) -> None:
    # The catalog that inserts the history must be the server's (same schema head).
    sys.path[:0] = [*(p for p in SRC_OVERRIDE.split(":") if p), str(ROOT / "src")]
    for rep in range(args.reps):
        work = Path(tempfile.mkdtemp(prefix="storsync-load-", dir=args.work))
        try:
            with contextlib.ExitStack() as stack:
                url = None
                if args.db == "postgres":
                    url = stack.enter_context(postgres_database())
                # First start: schema, admin, a few repositories; then the history goes
                # in while the server is down; then the measured start.
                with running(work, url) as server, server.client() as client:
                    repository_ids = [
                        new_repository(client, server.root, f"r{i}")["id"] for i in range(10)
                    ]
                database_url = url or f"sqlite:///{work / 'data' / 'storsync.db'}"
                insert_seconds = insert_sessions(database_url, args.sessions, repository_ids)
                with running(work, url) as server:
                    for case, path in LISTS.items():
                        cmd = loadgen_cmd(
                            server,
                            [path],
                            rate=args.list_rate,
                            connections=args.list_connections,
                            seconds=args.list_seconds,
                        )
                        row = run_load(server, cmd)
                        record(
                            args.out,
                            {
                                "scenario": "list",
                                "case": case,
                                "db": args.db,
                                "sessions": args.sessions,
                                "rep": rep,
                                "insert_seconds": round(insert_seconds, 1),
                                **row,
                            },
                        )
                        if args.capacity:
                            cmd = loadgen_cmd(server, [path], rate=2000, connections=20, seconds=8)
                            row = run_load(server, cmd)
                            record(
                                args.out,
                                {
                                    "scenario": "capacity",
                                    "case": case,
                                    "db": args.db,
                                    "sessions": args.sessions,
                                    "rep": rep,
                                    **row,
                                },
                            )
        finally:
            shutil.rmtree(work, ignore_errors=True)


# -- summary ---------------------------------------------------------------------------------


def summary(paths: list[Path]) -> None:
    rows = [json.loads(line) for p in paths for line in p.read_text().splitlines() if line]
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row.get("label", ""), row["scenario"], row["case"], row.get("db", "sqlite"))
        groups.setdefault(key, []).append(row)

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.1f}" if values else "-"

    def med2(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}" if values else "-"

    print(
        "| variant | scenario | case | db | runs | target req/s | achieved req/s "
        "| p50 ms | p99 ms | max ms | server CPU ms/req | server run-queue wait ms/req "
        "| CPU pressure % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (label, scenario, case, db), group in sorted(groups.items()):
        lat = [g["latency_ms"] for g in group]
        print(
            f"| {label} | {scenario} | {case} | {db} | {len(group)} "
            f"| {med([g['target_rate'] for g in group])} "
            f"| {med([g['achieved_rate'] for g in group])} "
            f"| {med([x['p50'] for x in lat])} | {med([x['p99'] for x in lat])} "
            f"| {med([x['max'] for x in lat])} "
            f"| {med2([g['server_cpu_ms_per_request'] for g in group])} "
            f"| {med2([g.get('server_runqueue_wait_ms_per_request', 0) for g in group])} "
            f"| {med([g.get('cpu_pressure_percent', 0) for g in group])} |"
        )
    for label in sorted({r.get("label", "") for r in rows}):
        syncs = [
            r
            for r in rows
            if r["scenario"] == "status" and "trigger_ms" in r and r.get("label", "") == label
        ]
        if syncs:
            print(
                f"\n{label}: {len(syncs)} 10k-file syncs under load; startedAt to endedAt "
                f"median {med([r['sync_seconds'] for r in syncs if r['sync_seconds']])} s, "
                f"states {sorted({r['sync_state'] for r in syncs})}; the trigger that "
                f"started each: median {med([r['trigger_ms'] for r in syncs])} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("scenario", choices=["status", "triggers", "list", "summary"])
    parser.add_argument("files_", nargs="*", type=Path, help="summary: JSON lines files")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "service-load.jsonl")
    parser.add_argument("--work", default=None, help="parent of the scratch folders (/tmp)")
    # status
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=25)
    parser.add_argument("--idle", action="store_true", help="also measure with no sync")
    parser.add_argument("--idle-seconds", type=float, default=10)
    # triggers
    parser.add_argument("--repositories", type=int, default=20)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--trigger-rate", type=float, default=2)
    # list
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--list-rate", type=float, default=50)
    parser.add_argument("--list-connections", type=int, default=10)
    parser.add_argument("--list-seconds", type=float, default=20)
    parser.add_argument("--capacity", action="store_true", help="also the saturated rate")
    parser.add_argument("--src", default="", help="a copy of src/ to run the server from")
    parser.add_argument("--label", default="", help="a name for this variant, in each row")
    args = parser.parse_args()
    global SRC_OVERRIDE, LABEL  # noqa: PLW0603  # read by Server, scenario_list, record
    SRC_OVERRIDE = ":".join(str(Path(p).resolve()) for p in args.src.split(":") if p)
    LABEL = args.label
    if args.scenario == "summary":
        summary(args.files_)
        return
    build_loadgen()
    {"status": scenario_status, "triggers": scenario_triggers, "list": scenario_list}[
        args.scenario
    ](args)


if __name__ == "__main__":
    main()
