"""The S3 benchmarks of issue 3: storsync against rclone on one SeaweedFS, interleaved.

One ``weed server`` (started as the tests' ``s3_server`` fixture does, tests/s3_server.py)
serves both tools; datasets come from ../shared/bench/gen_tree.py. Each repetition runs
storsync and rclone back to back on the same dataset, the order alternating from one
repetition to the next, so that both see the same load on this shared machine.

* ``small``: push 10,000 x 4 KiB into a new prefix: ``storsync sync --mode push-only``
  against ``rclone sync --transfers 16`` (target: storsync <= 0.5 x rclone's wall time);
* ``pull``: ``small`` pulled from a prefix into a new empty folder: ``storsync sync --mode
  pull-only`` against ``rclone sync --transfers 16`` (no target: for the record);
* ``large``: the same with 4 x 256 MiB (target: storsync's MB/s >= rclone's);
* ``many``: two-way, 100,000 files (half empty, the rest 1-128 bytes), an established pair
  each (storsync's first sync, ``rclone bisync --resync``: timed once, for the record); then
  the no-op (target: <= 0.3 x ``rclone bisync``), then a 1% mutation of both sides
  (``gen_tree.py mutate``: the local side ``--part even``; the S3 side ``--part odd`` on a
  copy of the expected tree, pushed untimed with ``rclone sync --checksum``) (target:
  <= 0.5 x ``rclone bisync``).

Every timed run is checked: the command exits 0 (storsync also reports ``completed``), the
local side equals the expected tree (``diff -rq``), and, once per tool and phase, the
prefix equals it (``rclone check``, or ``--download`` for ``large``, whose multipart
objects have no MD5 to compare). storsync's own ``.storsync/`` is left out of the checks.

Usage::

    bash ../shared/bench/setup.sh    # rclone, /usr/bin/time (see its README)
    .venv/bin/python bench/s3.py [--reps 3] [--scenarios small,large,many] [--work DIR]
    .venv/bin/python bench/s3.py --reps 1 --scale 0.02    # a smoke test of this script
    .venv/bin/python bench/s3.py --before-src OLD/src --no-peers   # an A/B of a change

Records (one JSON line per timed run: wall, CPU of the command, CPU of the S3 server, and
the requests the server answered by type, from its Prometheus counters) go to
``bench/results/s3-<timestamp>.jsonl``; the summary with the ratios, and per file for the
pushes (client CPU, server CPU, requests), is printed at the end and can be printed again
with ``--summary FILE``. 72 minutes on the 2 shared cores here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(os.environ.get("HARNESS", ROOT.parent / "shared" / "bench"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HARNESS))

import gen_tree  # type: ignore[import-not-found]  # noqa: E402
from tests.s3_server import SeaweedS3  # noqa: E402

BUCKET = "bench-sync"
STORSYNC = ROOT / ".venv" / "bin" / "storsync"
OWN = "/.storsync/**"  # rclone filter: storsync's own objects, never compared or synced


def dataset(work: Path, preset: str, scale: float) -> Path:
    path = work / "data" / f"{preset}-{scale}"
    if not (work / "data" / f"{preset}-{scale}.done").exists():
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        generate = [sys.executable, str(HARNESS / "gen_tree.py"), "generate", preset, str(path)]
        subprocess.run([*generate, "--scale", str(scale)], check=True, stdout=subprocess.DEVNULL)
        (work / "data" / f"{preset}-{scale}.done").touch()
    return path


def copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


@contextmanager
def parked(folder: Path) -> Iterator[None]:
    """``folder`` moved out of its tree meanwhile, if it exists."""
    aside = folder.parent.with_name(f"{folder.parent.name}-parked{folder.name}")
    moved = folder.exists()
    if moved:
        folder.rename(aside)
    try:
        yield
    finally:
        if moved:
            aside.rename(folder)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


class Bench:
    def __init__(
        self,
        work: Path,
        scale: float,
        out: Path,
        server: SeaweedS3,
        *,
        before_src: Path | None = None,
        peers: bool = True,
    ) -> None:
        self.work = work
        # storsync, and with --before-src the same command run from another copy of src/
        # (an A/B of a change, in the same interleaved run); rclone unless --no-peers.
        self.before_src = before_src
        self.storsyncs = ["storsync", *(["storsync-before"] if before_src else [])]
        self.peers = peers
        self.scale = scale
        self.out = out
        self.server = server
        self.env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.env.update(server.env())
        rclone_conf = work / "rclone.conf"
        rclone_conf.touch()
        self.env.update(
            {
                "RCLONE_CONFIG": str(rclone_conf),
                "RCLONE_CONFIG_SW_TYPE": "s3",
                "RCLONE_CONFIG_SW_PROVIDER": "SeaweedFS",
                "RCLONE_CONFIG_SW_ENDPOINT": server.endpoint,
                "RCLONE_CONFIG_SW_REGION": server.region,
                "RCLONE_CONFIG_SW_ACCESS_KEY_ID": server.access_key,
                "RCLONE_CONFIG_SW_SECRET_ACCESS_KEY": server.secret_key,
                # storsync with its bytecode cached, as an installed package runs (the
                # shell here sets PYTHONDONTWRITEBYTECODE=1; see bench/README.md)
                "PYTHONPYCACHEPREFIX": "/tmp/storsync-bench-pyc",
            }
        )
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.walls: dict[tuple[str, str, str], list[float]] = {}

    # -- running and recording --------------------------------------------------------

    def env_of(self, tool: str) -> dict[str, str]:
        if tool != "storsync-before":
            return self.env
        assert self.before_src is not None
        pyc = "/tmp/storsync-bench-pyc-before"
        return {**self.env, "PYTHONPATH": str(self.before_src), "PYTHONPYCACHEPREFIX": pyc}

    def timed(self, cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        subprocess.run(["sync"], check=True)  # setup writeback is not billed to the tool
        requests_before = self.requests()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = self.server.cpu_seconds() or 0.0
        start = time.monotonic()
        proc = subprocess.run(cmd, env=env or self.env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        ok = proc.returncode == 0
        if ok and cmd[0] == str(STORSYNC):
            ok = json.loads(proc.stdout)["state"] == "completed"
        if not ok:
            raise RuntimeError(f"{cmd} failed ({proc.returncode}): {proc.stderr[-800:]}")
        server_cpu = (self.server.cpu_seconds() or 0.0) - server_before
        requests = self.requests()
        requests.subtract(requests_before)
        return {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 2),
            "srv_cpu_s": round(server_cpu, 2),
            "load1": round(os.getloadavg()[0], 1),
            "requests": {kind: n for kind, n in sorted(requests.items()) if n},
        }

    def requests(self) -> Counter[str]:
        """The requests the server answered so far, by type (GET counts HEADs too)."""
        answered: Counter[str] = Counter()
        with urllib.request.urlopen(self.server.metrics_url, timeout=10) as page:
            for line in page.read().decode().splitlines():
                if line.startswith("SeaweedFS_s3_request_total{") and 'type="' in line:
                    kind = line.split('type="', 1)[1].split('"', 1)[0]
                    answered[kind] += int(float(line.rsplit(" ", 1)[1]))
        return answered

    def record(self, scenario: str, phase: str, tool: str, rep: int, **fields: Any) -> None:
        rec = {"ts": time.time(), "scenario": scenario, "phase": phase, "tool": tool}
        rec |= {"rep": rep, **fields}
        self.walls.setdefault((scenario, phase, tool), []).append(fields["wall_s"])
        with open(self.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    def check_local(self, expected: Path, local: Path) -> None:
        diff = ["diff", "-rq", "--no-dereference", "-x", ".storsync", str(expected), str(local)]
        proc = subprocess.run(diff, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"{local} differs from {expected}: {proc.stdout[:800]}")

    def check_remote(self, expected: Path, prefix: str, *, download: bool = False) -> None:
        cmd = ["rclone", "check", "--checkers", "16", "--exclude", OWN, str(expected)]
        cmd += [f"sw:{BUCKET}/{prefix}", *(["--download"] if download else [])]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"{prefix} differs from {expected}: {proc.stderr[-800:]}")

    @staticmethod
    def order(rep: int, tools: list[str]) -> list[str]:
        return tools if rep % 2 else tools[::-1]

    # -- scenarios --------------------------------------------------------------------

    def push(self, preset: str, reps: int) -> None:
        """storsync push-only and rclone sync --transfers 16, each into a new prefix."""
        data = dataset(self.work, preset, self.scale)
        size = tree_bytes(data)
        files = sum(1 for p in data.rglob("*") if p.is_file())
        mine = {t: copy(data, self.work / "runs" / f"{preset}-{t}") for t in self.storsyncs}
        tools = [*self.storsyncs, *(["rclone"] if self.peers else [])]
        for rep in range(1, reps + 1):
            for tool in self.order(rep, tools):
                prefix = f"{tool}-{preset}-{rep}"
                if tool in mine:
                    shutil.rmtree(mine[tool] / ".storsync", ignore_errors=True)  # a fresh side
                    state = self.work / "runs" / f"state-{prefix}"
                    cmd = [str(STORSYNC), "sync", str(mine[tool]), f"s3://{BUCKET}/{prefix}"]
                    cmd += ["--mode", "push-only", "--state-dir", str(state), "--json"]
                else:
                    cmd = ["rclone", "sync", "--transfers", "16", str(data)]
                    cmd += [f"sw:{BUCKET}/{prefix}"]
                result = self.timed(cmd, self.env_of(tool))
                self.check_remote(data, prefix, download=preset == "large")
                mbps = round(size / result["wall_s"] / 1e6, 1)
                self.record(
                    preset, "push", tool, rep, **result, bytes=size, files=files, mb_per_s=mbps
                )

    def pull(self, preset: str, reps: int) -> None:
        """storsync pull-only and rclone sync --transfers 16 of one prefix (put there once
        by rclone), each into a new empty folder."""
        data = dataset(self.work, preset, self.scale)
        size = tree_bytes(data)
        files = sum(1 for p in data.rglob("*") if p.is_file())
        source = f"pulled-{preset}"
        put = ["rclone", "sync", "--transfers", "16", str(data), f"sw:{BUCKET}/{source}"]
        subprocess.run(put, env=self.env, check=True, capture_output=True)
        tools = [*self.storsyncs, *(["rclone"] if self.peers else [])]
        for rep in range(1, reps + 1):
            for tool in self.order(rep, tools):
                into = self.work / "runs" / f"pull-{tool}-{preset}-{rep}"
                into.mkdir()
                if tool in self.storsyncs:
                    state = self.work / "runs" / f"state-pull-{tool}-{preset}-{rep}"
                    cmd = [str(STORSYNC), "sync", str(into), f"s3://{BUCKET}/{source}"]
                    cmd += ["--mode", "pull-only", "--state-dir", str(state), "--json"]
                else:
                    cmd = ["rclone", "sync", "--transfers", "16", "--exclude", OWN]
                    cmd += [f"sw:{BUCKET}/{source}", str(into)]
                result = self.timed(cmd, self.env_of(tool))
                self.check_local(data, into)
                mbps = round(size / result["wall_s"] / 1e6, 1)
                self.record(
                    preset, "pull", tool, rep, **result, bytes=size, files=files, mb_per_s=mbps
                )

    def two_way(self, reps: int) -> None:
        """``many``: establish a pair per tool, then no-op, then 1% mutations of both sides."""
        data = dataset(self.work, "many", self.scale)
        runs = self.work / "runs"
        expected = copy(data, runs / "many-expected")
        sides = {
            tool: (copy(data, runs / f"many-{tool}"), f"{tool}-many", runs / f"{tool}-state")
            for tool in self.storsyncs
        }
        if self.peers:
            sides["rclone-bisync"] = (
                copy(data, runs / "many-bisync"),
                "bisync-many",
                runs / "bi-state",
            )

        def command(tool: str, *, first: bool = False) -> list[str]:
            local, prefix, state = sides[tool]
            if tool in self.storsyncs:
                cmd = [str(STORSYNC), "sync", str(local), f"s3://{BUCKET}/{prefix}"]
                return [*cmd, "--state-dir", str(state), "--json"]
            state.mkdir(exist_ok=True)
            cmd = ["rclone", "bisync", str(local), f"sw:{BUCKET}/{prefix}"]
            return [*cmd, "--workdir", str(state), *(["--resync"] if first else [])]

        for tool in sides:
            result = self.timed(command(tool, first=True), self.env_of(tool))
            self.check_local(expected, sides[tool][0])
            self.record("many", "initial", tool, 1, **result)
        for rep in range(1, reps + 1):
            for tool in self.order(rep, list(sides)):
                result = self.timed(command(tool), self.env_of(tool))
                self.check_local(expected, sides[tool][0])
                self.record("many", "noop", tool, rep, **result)
        for _, prefix, _ in sides.values():
            self.check_remote(expected, prefix)
        for rep in range(1, reps + 1):
            # the remote side's edit: the expected tree with part "odd" of generation rep
            theirs = copy(expected, runs / "many-theirs")
            gen_tree.mutate(str(theirs), rep, part="odd")
            gen_tree.mutate(str(expected), rep, part="even")
            gen_tree.mutate(str(expected), rep, part="odd")
            for tool in self.order(rep, list(sides)):
                local, prefix, _ = sides[tool]
                with parked(local / ".storsync"):  # not among the files mutate picks from
                    gen_tree.mutate(str(local), rep, part="even")
                push = ["rclone", "sync", "--fast-list", "--checksum", "--transfers", "16"]
                push += ["--exclude", OWN, str(theirs), f"sw:{BUCKET}/{prefix}"]
                subprocess.run(push, env=self.env, check=True, capture_output=True)
                result = self.timed(command(tool), self.env_of(tool))
                self.check_local(expected, local)
                self.record("many", "mutate", tool, rep, **result)
        for _, prefix, _ in sides.values():
            self.check_remote(expected, prefix)

    # -- summary ----------------------------------------------------------------------

    def summary(self) -> None:
        print_summary(self.out)


TARGETS = [
    # (scenario, phase, reference tool, how the ratio reads, limit, higher is better)
    ("small", "push", "rclone", "wall storsync / rclone", 0.5, False),
    ("large", "push", "rclone", "MB/s storsync / rclone", 1.0, True),
    ("small", "pull", "rclone", "wall storsync / rclone", 1.0, False),
    ("many", "noop", "rclone-bisync", "wall storsync / bisync", 0.3, False),
    ("many", "mutate", "rclone-bisync", "wall storsync / bisync", 0.5, False),
]


def print_summary(path: Path) -> None:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    walls: dict[tuple[str, str, str], list[float]] = {}
    for rec in records:
        walls.setdefault((rec["scenario"], rec["phase"], rec["tool"]), []).append(rec["wall_s"])
    print_walls(walls)
    print_per_file(records)


def print_per_file(records: list[dict[str, Any]]) -> None:
    """Per file of the pushes: client CPU, server CPU and requests (medians over reps)."""
    per: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for rec in records:
        files = rec.get("files")
        if rec["phase"] not in ("push", "pull") or not files or "requests" not in rec:
            continue
        requests = sum(rec["requests"].values())
        per.setdefault((f"{rec['phase']} {rec['scenario']}", rec["tool"]), []).append(
            (rec["cpu_s"] / files * 1e3, rec["srv_cpu_s"] / files * 1e3, requests / files)
        )
    if not per:
        return
    print("| transfer | tool | client CPU ms/file | server CPU ms/file | requests/file |")
    print("|---|---|---|---|---|")
    for (scenario, tool), rows in per.items():
        client, server, requests = (statistics.median(column) for column in zip(*rows, strict=True))
        print(f"| {scenario} | {tool} | {client:.3f} | {server:.3f} | {requests:.3f} |")


def print_walls(walls: dict[tuple[str, str, str], list[float]]) -> None:
    print("| scenario | phase | tool | n | median s | min-max s |")
    print("|---|---|---|---|---|---|")
    for (scenario, phase, tool), w in walls.items():
        print(
            f"| {scenario} | {phase} | {tool} | {len(w)} | {statistics.median(w):.2f} | "
            f"{min(w):.2f}-{max(w):.2f} |"
        )
    for scenario, phase, ref, what, limit, higher in TARGETS:
        mine, theirs = walls.get((scenario, phase, "storsync")), walls.get((scenario, phase, ref))
        if not mine or not theirs:
            continue
        ratio = statistics.median(mine) / statistics.median(theirs)
        if higher:
            ratio = 1 / ratio  # MB/s of the same bytes: the inverse ratio of the walls
        verdict = "pass" if (ratio >= limit if higher else ratio <= limit) else "MISS"
        sign = ">=" if higher else "<="
        print(f"{scenario} {phase}: {what} = {ratio:.2f} (target {sign} {limit}): {verdict}")


@contextmanager
def s3_server(work: Path) -> Iterator[SeaweedS3]:
    root = work / "s3"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    server = SeaweedS3(root, buckets=[BUCKET], volume_size_limit_mb=1024, metrics=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scenarios", default="small,large,many")
    ap.add_argument("--work", default="/tmp/storsync-s3-bench")
    ap.add_argument("--summary", type=Path, help="print the summary of a results file and exit")
    ap.add_argument("--scale", type=float, default=1.0, help="dataset scale (smoke test: 0.02)")
    ap.add_argument(
        "--before-src", type=Path, help="also run storsync from this copy of src/ (an A/B)"
    )
    ap.add_argument("--no-peers", action="store_true", help="leave rclone out")
    a = ap.parse_args()
    if a.summary:
        print_summary(a.summary)
        return
    work = Path(a.work)
    if (work / "runs").exists():
        shutil.rmtree(work / "runs")
    (work / "runs").mkdir(parents=True)
    out = ROOT / "bench" / "results" / f"s3-{dt.datetime.now():%Y%m%d-%H%M%S}.jsonl"
    out.parent.mkdir(exist_ok=True)
    scenarios = a.scenarios.split(",")
    for preset in scenarios:
        dataset(work, "small" if preset == "pull" else preset, a.scale)
    with s3_server(work) as server:
        bench = Bench(work, a.scale, out, server, before_src=a.before_src, peers=not a.no_peers)
        subprocess.run([str(STORSYNC), "--version"], env=bench.env, check=True)  # compile once
        for preset in ("small", "large"):
            if preset in scenarios:
                bench.push(preset, a.reps)
        if "pull" in scenarios:
            bench.pull("small", a.reps)
        if "many" in scenarios:
            bench.two_way(a.reps)
        bench.summary()
    print(f"records: {out}")


if __name__ == "__main__":
    main()
