"""A no-op over a large S3 prefix with the network's round trip added: the listing in one
sequence of pages against the listing cut at its folders (storage/s3_split.py).

SeaweedFS on 127.0.0.1 answers in a fraction of a millisecond; a store across a network
answers each page 20-50 ms later, which is what a listing's parts in parallel save. A
TCP proxy in this process holds every answer back ``--latency-ms`` before passing it on;
storsync is pointed at the proxy (``--s3-endpoint``). The tree: ``--files`` empty files,
1,000 to a folder (``--per-folder``), pushed once by storsync (its base then knows them
all); then each timed run is a no-op, storsync and the same command from another ``src/``
(``--before-src``) alternating, for each latency::

    .venv/bin/python bench/s3_listing.py --before-src OLD/src [--files 100000]
        [--latencies 0,20] [--reps 5] [--flat]

``--flat`` puts every file in the root folder (``--under NAME``: in that folder): no
folder to cut the listing at, only the names of the base (ranges, from the second
session on).

``--check`` times a remote check instead (the session a schedule starts while the local
root is watched: the remote listing whole, the local side only where they differ): a
check saves the listing's digest, and each timed check after it finds the listing
unchanged by a probe of that digest.

Prints the medians (wall seconds) per latency and tool; records go to
``bench/results/s3-listing-<timestamp>.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import queue
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.s3_server import SeaweedS3  # noqa: E402

BUCKET = "bench-listing"
STORSYNC = ROOT / ".venv" / "bin" / "storsync"
PYTHON = ROOT / ".venv" / "bin" / "python"


class DelayingProxy:
    """A TCP proxy that passes each answer on ``delay`` seconds after it came."""

    def __init__(self, upstream: int) -> None:
        self._upstream = upstream
        self.delay = 0.0  # seconds; read by each answer passed on
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self._upstream))
            for src, dst, delayed in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pump, args=(src, dst, delayed), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delayed: bool) -> None:
        """Bytes from ``src`` to ``dst``; if ``delayed``, each chunk sent ``delay`` after
        it came (a latency, not a bandwidth: chunks in flight overlap)."""
        held: queue.Queue[tuple[float, bytes]] = queue.Queue()
        if delayed:
            threading.Thread(target=self._send_held, args=(held, dst), daemon=True).start()
        try:
            while data := src.recv(1 << 16):
                if delayed:
                    held.put((time.monotonic() + self.delay, data))
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            held.put((0.0, b""))
            if not delayed:
                _shut(src, dst)

    @staticmethod
    def _send_held(held: queue.Queue[tuple[float, bytes]], dst: socket.socket) -> None:
        try:
            while True:
                due, data = held.get()
                if not data:
                    return
                time.sleep(max(0.0, due - time.monotonic()))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(dst)

    def close(self) -> None:
        self._listener.close()


def _shut(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def make_tree(root: Path, files: int, flat: bool, under: str, per_folder: int) -> None:
    """``files`` empty files, ``per_folder`` to a folder, or all in one folder (``flat``:
    the root, or ``under`` it: no folder to cut a listing at but that one)."""
    (root / under).mkdir(parents=True, exist_ok=True)
    for at in range(files):
        if flat:
            (root / under / f"file{at:07}.txt").touch()
            continue
        folder = root / f"folder{at // per_folder:05}"
        folder.mkdir(exist_ok=True)
        (folder / f"file{at % per_folder:04}.txt").touch()


# A remote check, as the service's worker runs one, from the command line's job.
CHECK = """
import dataclasses
import sys
from pathlib import Path
from storsync.cli.sync import _job
from storsync.model import Scope, SyncSettings
from storsync.runner.run import run_job
from storsync.storage.registry import remote_spec
local, remote, state, endpoint = sys.argv[1:]
spec = remote_spec(remote, {"endpoint": endpoint, "region": ""})
job = _job(Path(local), spec, Path(state), SyncSettings())
job = dataclasses.replace(job, scope=Scope.named([], remote_whole=True))
report = run_job(job)
assert report.state.value == "completed", report
print('{"pushed": %d, "pulled": %d, "merged": %d}' % (report.pushed, report.pulled, report.merged))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before-src", type=Path, required=True)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--latencies", default="0,20")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--flat", action="store_true", help="every file in one folder")
    ap.add_argument("--under", default="", help="that folder (with --flat; default the root)")
    ap.add_argument("--check", action="store_true", help="time a remote check, probed")
    ap.add_argument("--per-folder", type=int, default=1000, help="files a folder")
    a = ap.parse_args()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results" / f"s3-listing-{stamp}.jsonl"
    with (
        tempfile.TemporaryDirectory() as work_dir,
        SeaweedS3(Path(work_dir) / "weed", buckets=[BUCKET]) as server,
    ):
        work = Path(work_dir)
        local = work / "local"
        make_tree(local, a.files, a.flat, a.under, a.per_folder)
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(server.env())
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        tools = {
            "storsync": {**env, "PYTHONPYCACHEPREFIX": "/tmp/storsync-bench-pyc"},
            "storsync-before": {
                **env,
                "PYTHONPATH": str(a.before_src),
                "PYTHONPYCACHEPREFIX": "/tmp/storsync-bench-pyc-before",
            },
        }
        remote = f"s3://{BUCKET}/tree"
        state = work / "state"
        # One proxy for every run: the endpoint is part of what names the repository.
        proxy = DelayingProxy(server.port)
        first = [str(STORSYNC), "sync", str(local), remote, "--state-dir", str(state), "--json"]
        first += ["--s3-endpoint", proxy.endpoint]
        subprocess.run(first, env=tools["storsync"], check=True, capture_output=True)
        states = {}
        for tool, tool_env in tools.items():
            states[tool] = work / f"state-{tool}"
            shutil.copytree(state, states[tool])
            if a.check:  # the check that saves the digest the timed ones probe
                cmd = [str(PYTHON), "-c", CHECK, str(local), remote]
                cmd += [str(states[tool]), proxy.endpoint]
                subprocess.run(cmd, env=tool_env, check=True, capture_output=True)
        walls: dict[tuple[int, str], list[float]] = {}
        with out.open("a") as records:
            for latency in (int(x) for x in a.latencies.split(",")):
                proxy.delay = latency / 1000
                for rep in range(a.reps):
                    order = list(tools) if rep % 2 == 0 else list(reversed(tools))
                    for tool in order:
                        cmd = [str(STORSYNC), "sync", str(local), remote]
                        cmd += ["--state-dir", str(states[tool]), "--json"]
                        cmd += ["--s3-endpoint", proxy.endpoint]
                        if a.check:
                            cmd = [str(PYTHON), "-c", CHECK, str(local), remote]
                            cmd += [str(states[tool]), proxy.endpoint]
                        before = resource.getrusage(resource.RUSAGE_CHILDREN)
                        start = time.monotonic()
                        done = subprocess.run(
                            cmd, env=tools[tool], capture_output=True, check=False
                        )
                        wall = time.monotonic() - start
                        after = resource.getrusage(resource.RUSAGE_CHILDREN)
                        if done.returncode != 0:
                            sys.exit(f"{tool} failed: {done.stderr.decode()[-500:]}")
                        report = json.loads(done.stdout)
                        moved = report.get("pushed", 0) + report.get("pulled", 0)
                        assert moved == 0, report
                        cpu = after.ru_utime + after.ru_stime
                        cpu -= before.ru_utime + before.ru_stime
                        walls.setdefault((latency, tool), []).append(wall)
                        record = {
                            "latency_ms": latency,
                            "tool": tool,
                            "rep": rep,
                            "files": a.files,
                            "layout": (
                                f"flat {a.under or '(root)'}"
                                if a.flat
                                else f"folders of {a.per_folder}"
                            ),
                            "work": "check" if a.check else "sync",
                            # A check that found its digest merged no path: a probe.
                            "merged": report.get("merged"),
                            "wall_s": round(wall, 3),
                            "cpu_s": round(cpu, 3),
                        }
                        records.write(json.dumps(record) + "\n")
                        print(json.dumps(record), flush=True)
        proxy.close()
    print("| latency | tool | median wall s | min-max |")
    print("|---|---|---|---|")
    for (latency, tool), values in walls.items():
        print(
            f"| {latency} ms | {tool} | {statistics.median(values):.2f} | "
            f"{min(values):.2f}-{max(values):.2f} |"
        )
    print(f"records: {out}")


if __name__ == "__main__":
    main()
