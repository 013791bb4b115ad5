"""Peak memory per file of ``storsync sync`` on trees of many tiny files.

Usage (from the repository root)::

    .venv/bin/python bench/memory.py --files 100000,1000000 [--work /tmp/storsync-mem]

For each N it builds (once, kept in --work) a tree of N files, 1,000 per directory, half
empty and half 1..128 bytes (like the harness's ``many`` preset), then times under
``/usr/bin/time -v``:

* ``trivial``: ``storsync sync`` of two empty directories (interpreter, imports, SQLite);
* ``initial``: the first sync of the tree to an empty remote directory (everything pushed);
* ``noop``: the same pair again, nothing to do (scan both sides, load the base, plan).

Bytes per file = (max RSS of the phase - max RSS of ``trivial``) / N. Results go to
``bench/results/memory-<timestamp>.jsonl`` (one JSON object per timed run) and a markdown
table is printed. The remote copy and state are deleted after each N; the source tree is
kept unless ``--clean``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PER_DIR = 1000
BASE_MTIME = 1_700_000_000


def build_tree(root: Path, files: int) -> float:
    """N files, PER_DIR a directory (t<NN>/u<NNN>/), half empty, half 1..128 bytes."""
    done = root.with_name(root.name + ".done")
    if done.exists():
        return 0.0
    if root.exists():
        shutil.rmtree(root)
    start = time.monotonic()
    state = 12345
    for i in range(files):
        d = i // PER_DIR
        if i % PER_DIR == 0:
            folder = root / f"t{d // 100:03d}" / f"u{d % 100:03d}"
            folder.mkdir(parents=True)
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF  # deterministic, no imports
        size = 0 if state & 1 else 1 + (state >> 8) % 128
        path = folder / f"x{i:07d}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        if size:
            os.write(fd, (f"{i:07d}" * 19)[:size].encode())
        os.close(fd)
        os.utime(path, ns=((BASE_MTIME + i) * 10**9,) * 2)
    done.write_text(json.dumps({"files": files}))
    return time.monotonic() - start


def timed(argv: list[str], env: dict[str, str], log: Path) -> dict[str, object]:
    tfile = log.with_suffix(".time")
    subprocess.run(["sync"], check=False)
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(
            ["/usr/bin/time", "-v", "-o", str(tfile), *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    wall = time.monotonic() - start
    text = tfile.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    return {
        "rc": proc.returncode,
        "wall_s": round(wall, 3),
        "maxrss_kb": int(rss.group(1)) if rss else None,
        "cpu_s": round(float(user.group(1)) + float(system.group(1)), 2)
        if user and system
        else None,
        "log_tail": log.read_text(errors="replace")[-300:] if proc.returncode else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", default="100000", help="comma list of tree sizes")
    ap.add_argument("--work", default="/tmp/storsync-mem", help="scratch directory")
    ap.add_argument("--phases", default="initial,noop")
    ap.add_argument("--reps", type=int, default=1, help="runs per phase (max RSS is kept)")
    ap.add_argument("--storsync", default=str(ROOT / ".venv" / "bin" / "storsync"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--clean", action="store_true", help="delete the source trees at the end")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(
        a.out or ROOT / "bench" / "results" / f"memory-{dt.datetime.now():%Y%m%d-%H%M%S}.jsonl"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = env.get("STORSYNC_PYCACHE", "/tmp/storsync-bench-pyc")
    sync = [a.storsync, "sync"]
    subprocess.run([a.storsync, "--version"], env=env, check=True, stdout=subprocess.DEVNULL)
    rows: list[dict[str, object]] = []
    with open(out_path, "a") as out:

        def emit(rec: dict[str, object]) -> None:
            rec = {"ts": time.time(), **rec}
            out.write(json.dumps(rec) + "\n")
            out.flush()
            rows.append(rec)
            print(json.dumps(rec), file=sys.stderr, flush=True)

        empty = work / "empty"
        for name in ("a", "b"):
            (empty / name).mkdir(parents=True, exist_ok=True)
        trivial = timed(
            [*sync, str(empty / "a"), str(empty / "b"), "--state-dir", str(empty / "st"), "--json"],
            env,
            work / "trivial.log",
        )
        emit({"phase": "trivial", "files": 0, **trivial})
        for n in (int(x) for x in a.files.split(",")):
            src = work / f"tree-{n}"
            gen_s = build_tree(src, n)
            dst, state = work / f"remote-{n}", work / f"state-{n}"
            for p in (dst, state):
                if p.exists():
                    shutil.rmtree(p)
            dst.mkdir()
            argv = [*sync, str(src), str(dst), "--state-dir", str(state), "--json"]
            for phase in a.phases.split(","):
                for rep in range(1, a.reps + 1):
                    if phase == "initial" and rep > 1:
                        shutil.rmtree(dst)
                        shutil.rmtree(state)
                        shutil.rmtree(src / ".storsync", ignore_errors=True)
                        dst.mkdir()
                    res = timed(argv, env, work / f"{phase}-{n}-{rep}.log")
                    base_kb = trivial["maxrss_kb"]
                    per_file = None
                    if isinstance(res["maxrss_kb"], int) and isinstance(base_kb, int):
                        per_file = round((res["maxrss_kb"] - base_kb) * 1024 / n, 1)
                    emit(
                        {
                            "phase": phase,
                            "files": n,
                            "rep": rep,
                            "gen_s": round(gen_s, 1),
                            "trivial_kb": base_kb,
                            "bytes_per_file": per_file,
                            **res,
                        }
                    )
            shutil.rmtree(dst)
            shutil.rmtree(state)
            shutil.rmtree(src / ".storsync", ignore_errors=True)
            if a.clean:
                shutil.rmtree(src)
                src.with_name(src.name + ".done").unlink()
    print("| files | phase | rep | wall s | CPU s | max RSS MiB | bytes/file over trivial |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rss = r["maxrss_kb"]
        mib = f"{rss / 1024:.0f}" if isinstance(rss, int) else "?"
        print(
            f"| {r['files']:,} | {r['phase']} | {r.get('rep', '')} | {r['wall_s']} | "
            f"{r['cpu_s']} | {mib} | {r.get('bytes_per_file', '')} |"
        )


if __name__ == "__main__":
    main()
