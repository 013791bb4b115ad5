"""Watching left running (issue "Left running"): a watched repository of N files served by
`storsync serve`, on a directory remote or S3 (SeaweedFS).

- latency: a local save to its bytes on the remote, one edit at a time (each after the
  session of the one before has ended), p50 and p95 over ``--edits`` edits, with the
  default 2 s quiet period;
- idle: CPU seconds per hour of the service and all its workers (the workers are reaped
  by the service, so their CPU is in its ``cutime``) with nothing changing, the remote
  checked every ``--check`` seconds by a schedule, from the end of the first check after
  the edits (which reads the listing they changed; its CPU is reported apart); the CPU
  and wall time of one remote check (one schedule session); the service's memory.

    .venv/bin/python bench/watch.py --files 100000 --remote dir --edits 30 --idle 600
    .venv/bin/python bench/watch.py --files 100000 --remote s3 --edits 30 --idle 600

Each run appends one JSON line to ``--out`` (bench/results/watch-<date>.jsonl).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from service_load import append, make_tree, running  # noqa: E402
from tests.s3_server import SeaweedS3  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if int(_stat(int(name))[1]) == pid:
                    found.append(int(name))
            except OSError:
                continue
    return found


def cpu_seconds_with_children(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (its reaped workers included), and of
    its children still running (a spare worker waiting since its warm-up)."""
    total = sum(int(v) for v in _stat(pid)[11:15])
    for child in children(pid):
        try:
            total += sum(int(v) for v in _stat(child)[11:15])
        except OSError:  # ended meanwhile: in the parent's cutime once reaped
            continue
    return total / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def repository_body(root: Path, remote: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"watched-{uuid.uuid4().hex[:6]}",
        "localPath": str(root / "local"),
        "remote": remote,
        **fields,
    }


def sessions(client: httpx.Client, rid: str) -> list[dict[str, Any]]:
    answer = client.get(f"/api/v1/sessions?repositoryId={rid}&limit=1000")
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["items"]
    return found


def settled(client: httpx.Client, rid: str) -> list[dict[str, Any]]:
    while True:
        found = sessions(client, rid)
        if all(s["state"] not in ("queued", "running") for s in found):
            return found
        time.sleep(0.05)


def latency(
    client: httpx.Client, rid: str, local: Path, arrived: Callable[[str, bytes], bool], edits: int
) -> list[float]:
    took = []
    for i in range(edits):
        settled(client, rid)
        path, data = f"d{i % 100:04d}/f{i % 100:03d}.bin", f"edit {i} {uuid.uuid4()}".encode()
        target = local / path
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        began = time.monotonic()
        os.replace(tmp, target)  # as an editor saves
        while not arrived(path, data):
            time.sleep(0.01)
            if time.monotonic() - began > 600:
                raise RuntimeError(f"edit {i} never arrived")
        took.append(time.monotonic() - began)
        print(f"edit {i}: {took[-1]:.2f} s", flush=True)
    return took


def wall_of(session: dict[str, Any]) -> float | None:
    if not (session["startedAt"] and session["endedAt"]):
        return None
    ended = dt.datetime.fromisoformat(session["endedAt"])
    return (ended - dt.datetime.fromisoformat(session["startedAt"])).total_seconds()


def next_check(client: httpx.Client, rid: str) -> dict[str, Any]:
    """The next schedule session to end from now on (polled each 0.5 s: the CPU measured
    around it includes the polling, so it is an upper bound)."""
    known = {s["id"] for s in sessions(client, rid)}
    while True:
        time.sleep(0.5)
        for s in sessions(client, rid):
            ended = s["state"] not in ("queued", "running")
            if s["id"] not in known and s["trigger"] == "schedule" and ended:
                return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--remote", choices=["dir", "s3"], default="dir")
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--idle", type=float, default=600, help="seconds of idle measurement")
    parser.add_argument("--check", type=int, default=60, help="remote check interval, s")
    parser.add_argument("--work", type=Path, default=None)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    parser.add_argument("--out", type=Path, default=ROOT / f"bench/results/watch-{stamp}.jsonl")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="storsync-watch-"))
    with running(work / "service") as server:
        client = server.client()
        root = server.root / "repo"
        make_tree(root / "local", args.files, 64, seed=1)
        fields: dict[str, Any] = {"watch": True, "schedule": {"intervalSeconds": args.check}}
        s3 = None
        if args.remote == "s3":
            s3 = SeaweedS3(work / "seaweed", buckets=["bench-watch"])
            s3.start()
            prefix = f"watch-{uuid.uuid4().hex[:8]}"
            remote = f"s3://{s3.bucket}/{prefix}"
            fields["remoteCredentials"] = {
                "accessKeyId": s3.access_key,
                "secretAccessKey": s3.secret_key,
                "endpoint": s3.endpoint,
                "region": s3.region,
            }
            s3_client = s3.boto3_client()

            def arrived(path: str, data: bytes) -> bool:
                try:
                    got = s3_client.get_object(Bucket=s3.bucket, Key=f"{prefix}/{path}")
                except s3_client.exceptions.NoSuchKey:
                    return False
                return bool(got["Body"].read() == data)
        else:
            remote = str(root / "remote")

            def arrived(path: str, data: bytes) -> bool:
                try:
                    return (root / "remote" / path).read_bytes() == data
                except FileNotFoundError:
                    return False

        try:
            answer = client.post("/api/v1/repositories", json=repository_body(root, remote, fields))
            answer.raise_for_status()
            rid = answer.json()["id"]
            began = time.monotonic()
            time.sleep(1)
            first = settled(client, rid)  # the watch's first session: the initial sync
            initial_s = time.monotonic() - began
            print(f"initial sync of {args.files} files: {initial_s:.1f} s", flush=True)
            took = latency(client, rid, root / "local", arrived, args.edits)
            settled(client, rid)
            # The first check after the edits reads the listing they changed (and saves
            # its digest): the cost of a check after a change, apart from the quiet ones.
            cpu_a = cpu_seconds_with_children(server.pid)
            after_edits = next_check(client, rid)
            changed_check_cpu = cpu_seconds_with_children(server.pid) - cpu_a
            before = len(sessions(client, rid))
            cpu0, t0 = cpu_seconds_with_children(server.pid), time.monotonic()
            time.sleep(args.idle)
            cpu1, t1 = cpu_seconds_with_children(server.pid), time.monotonic()
            checks = [
                s
                for s in sessions(client, rid)[: len(sessions(client, rid)) - before]
                if s["trigger"] == "schedule"
            ]
            durations = [d for d in map(wall_of, checks) if d is not None]
            cpu_per_hour = (cpu1 - cpu0) / (t1 - t0) * 3600
            row = {
                "bench": "watch",
                "remote": args.remote,
                "files": args.files,
                "edits": len(took),
                "latency_p50_s": round(statistics.median(took), 3),
                "latency_p95_s": round(statistics.quantiles(took, n=20, method="inclusive")[18], 3),
                "latency_max_s": round(max(took), 3),
                "initial_sync_s": round(initial_s, 1),
                "first_sessions": len(first),
                "idle_s": round(t1 - t0, 1),
                "idle_cpu_s_per_hour": round(cpu_per_hour, 1),
                "idle_core_percent": round(cpu_per_hour / 36, 2),
                "remote_checks": len(checks),
                "idle_cpu_s_per_check": round((cpu1 - cpu0) / max(1, len(checks)), 2),
                "remote_check_wall_s_median": round(statistics.median(durations), 2)
                if durations
                else None,
                "check_after_edits_cpu_s_upper_bound": round(changed_check_cpu, 2),
                "check_after_edits_wall_s": wall_of(after_edits),
                "service_rss_kib": rss_kib(server.pid),
                "spare_rss_kib": sum(rss_kib(c) for c in children(server.pid)),
                "date": stamp,
            }
            append(args.out, row)
        finally:
            if s3 is not None:
                s3.stop()


if __name__ == "__main__":
    main()
