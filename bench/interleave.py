"""Interleaved timing of the target comparisons, for a machine whose load moves.

run_peers.py runs one tool's whole series, then the next tool's: when other work on the
machine comes and goes, one tool can catch a busy minute and another a quiet one. This
script alternates the tools rep by rep on the same dataset, so each comparison sees the
same load, and prints medians (n, min-max; and of CPU seconds, user and system, which a
busy file system moves less than the wall) and ratios:

* ``initial``: two-way first sync of a fresh copy of the dataset (default ``small``) into an
  empty directory, by storsync (bench/storsync-bench.sh), ``unison -batch -silent -times``
  and ``rclone bisync --resync``, exactly the harness's commands;
* ``noop``: storsync's no-op on an established pair of the dataset (default ``many``)
  against unison's no-op on its own established pair and ``find -printf`` over both
  trees (the harness's scan command, once per tree).

Usage: ``.venv/bin/python bench/interleave.py [--reps 5] [--initial small] [--noop many]``
(datasets from ../shared/bench/gen_tree.py, generated under --work if missing).
Records go to ``bench/results/interleave-<ts>.jsonl``.

``--before-src DIR`` adds ``storsync-before``: the same command run from another copy of
``src/`` (an A/B of a change, both in one interleaved run); ``--no-peers`` leaves unison
and rclone out of the initial comparison.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(os.environ.get("HARNESS", ROOT.parent / "shared" / "bench"))
WRAPPER = ROOT / "bench" / "storsync-bench.sh"
# CPU seconds of each timed command, in order: a first sync's wall swings with the file
# system's mood here (creating a file took 3 to 120 µs from one minute to the next), its CPU
# much less.
CPU: list[float] = []


def dataset(work: Path, preset: str) -> Path:
    path = work / "data" / preset
    if not (work / "data" / f"{preset}.done").exists():
        if path.exists():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, str(HARNESS / "gen_tree.py"), "generate", preset, str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (work / "data" / f"{preset}.done").touch()
    return path


def launcher(work: Path, src: Path) -> Path:
    """A ``storsync`` command that runs the code of another copy of ``src/``."""
    path = work / "storsync-before"
    python = ROOT / ".venv" / "bin" / "python"
    path.write_text(f'#!/bin/sh\nPYTHONPATH={src.resolve()} exec {python} -m storsync "$@"\n')
    path.chmod(0o755)
    return path


def timed(cmd: str, env: dict[str, str]) -> float:
    """Wall seconds of ``cmd``; its CPU seconds (user and system) are added to CPU."""
    subprocess.run(["sync"], check=False)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", "-c", cmd],
        check=False,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode:
        raise RuntimeError(f"{cmd!r} failed ({proc.returncode}): {proc.stderr[-500:]}")
    return wall


def rotated(tools: dict[str, str], rep: int) -> list[tuple[str, str]]:
    """The tools in another order at each rep: the run after another's can find the file
    system busier (an A/B once read 17% slower in first place for the same code)."""
    items = list(tools.items())
    turn = (rep - 1) % len(items)
    return items[turn:] + items[:turn]


def same_tree(a: Path, b: Path) -> bool:
    return (
        subprocess.run(["diff", "-rq", str(a), str(b)], check=False, capture_output=True).returncode
        == 0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--initial", default="small", help="preset for the initial comparison")
    ap.add_argument("--noop", default="many", help="preset for the no-op comparison")
    ap.add_argument("--work", default="/tmp/storsync-interleave")
    ap.add_argument("--before-src", default="", help="another copy of src/ to run beside")
    ap.add_argument("--no-peers", action="store_true", help="storsync only (with --before-src)")
    a = ap.parse_args()
    work = Path(a.work)
    runs = work / "runs"
    if runs.exists():
        shutil.rmtree(runs)
    runs.mkdir(parents=True)
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    env["STORSYNC"] = str(ROOT / ".venv" / "bin" / "storsync")
    out_path = ROOT / "bench" / "results" / f"interleave-{dt.datetime.now():%Y%m%d-%H%M%S}.jsonl"
    walls: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}

    def record(phase: str, tool: str, rep: int, wall: float, ok: bool | None) -> None:
        walls.setdefault((phase, tool), []).append(wall)
        cpu = sum(CPU[-2:]) if tool == "find x2" else CPU[-1]
        cpus.setdefault((phase, tool), []).append(cpu)
        rec = {
            "ts": time.time(),
            "phase": phase,
            "tool": tool,
            "rep": rep,
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
        }
        rec["verified"] = ok
        with open(out_path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)

    subprocess.run([env["STORSYNC"], "--version"], env=env, check=True, stdout=subprocess.DEVNULL)
    variants = {"storsync": ""}
    if a.before_src:
        variants["storsync-before"] = f"STORSYNC={launcher(work, Path(a.before_src))} "
    if a.initial:
        data = dataset(work, a.initial)
        tools = {name: f"{prefix}{WRAPPER} {{a}} {{b}} {{st}}" for name, prefix in variants.items()}
        if not a.no_peers:
            tools["unison"] = "UNISON={st} unison {a} {b} -batch -silent -times"
            tools["rclone-bisync"] = "rclone bisync {a} {b} --workdir {st} --resync"
        for rep in range(1, a.reps + 1):
            for tool, tpl in rotated(tools, rep):
                d = runs / f"init-{tool}-{rep}"
                d.mkdir()
                subprocess.run(["cp", "-a", str(data), str(d / "a")], check=True)
                (d / "b").mkdir()
                (d / "st").mkdir()
                wall = timed(tpl.format(a=d / "a", b=d / "b", st=d / "st"), env)
                record("initial", tool, rep, wall, same_tree(data, d / "b"))
    if a.noop:
        data = dataset(work, a.noop)
        pairs = {}
        for name, prefix in variants.items():  # an established pair each
            d = runs / f"noop-{name}"
            d.mkdir()
            subprocess.run(["cp", "-a", str(data), str(d / "a")], check=True)
            (d / "b").mkdir()
            (d / "st").mkdir()
            pairs[name] = f"{prefix}{WRAPPER} {d / 'a'} {d / 'b'} {d / 'st'}"
            timed(pairs[name], env)
        if not a.no_peers:  # unison's own no-op on its own established copy
            d = runs / "noop-unison"
            d.mkdir()
            subprocess.run(["cp", "-a", str(data), str(d / "a")], check=True)
            (d / "b").mkdir()
            (d / "st").mkdir()
            pairs["unison"] = f"UNISON={d / 'st'} unison {d / 'a'} {d / 'b'} -batch -silent -times"
            timed(pairs["unison"], env)
        find = "find {t} -printf '%s %T@\\n' | wc -l"
        d = runs / "noop-storsync"
        for rep in range(1, a.reps + 1):
            for name, command in rotated(pairs, rep):
                record("noop", name, rep, timed(command, env), None)
            wall = timed(find.format(t=d / "a"), env) + timed(find.format(t=d / "b"), env)
            record("noop", "find x2", rep, wall, None)
    print("| phase | tool | n | median s | min-max s | median CPU s |")
    print("|---|---|---|---|---|---|")
    for (phase, tool), w in walls.items():
        print(
            f"| {phase} | {tool} | {len(w)} | {statistics.median(w):.3f} | "
            f"{min(w):.3f}-{max(w):.3f} | {statistics.median(cpus[(phase, tool)]):.3f} |"
        )
    med = {k: statistics.median(v) for k, v in walls.items()}
    for phase in ("initial", "noop"):
        if (phase, "storsync-before") in med:
            before = walls[(phase, "storsync-before")]
            after = med[(phase, "storsync")]
            inside = min(before) <= after <= max(before)
            print(
                f"{phase} storsync / storsync-before: {after / med[(phase, 'storsync-before')]:.3f}"
                f" (after median {'within' if inside else 'OUTSIDE'} the before runs' range)"
            )
    for phase, ref in (("initial", "rclone-bisync"), ("initial", "unison"), ("noop", "unison")):
        if (phase, ref) in med:
            ratio = med[(phase, "storsync")] / med[(phase, ref)]
            cpu = statistics.median(cpus[(phase, "storsync")]) / statistics.median(
                cpus[(phase, ref)]
            )
            print(f"{phase} storsync / {ref}: {ratio:.2f} (CPU {cpu:.2f})")
    if ("noop", "find x2") in med:
        print(
            f"noop storsync / (find x2): {med[('noop', 'storsync')] / med[('noop', 'find x2')]:.2f}"
        )


if __name__ == "__main__":
    main()
