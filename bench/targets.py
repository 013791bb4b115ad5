"""Medians from run_peers.py results and storsync's ratios against the issue's targets.

Usage: ``python3 bench/targets.py bench/results/final.jsonl [more.jsonl ...]``

For every (tool, kind, preset, phase) the newest run's timed rows are summarised as median
wall seconds, n and min-max (only runs that exited 0 and were not killed). Then:

* two-way ``small`` initial: storsync / rclone-bisync <= 0.5 and storsync / unison <= 1.0;
* no-op on ``many``: storsync / (2 x find scan of one tree) <= 3 (a local pair is two trees);
* mutate (1% of both sides): storsync / rclone-bisync <= 0.5, for each preset measured.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

Key = tuple[str, str, str, str]  # tool, kind, preset, phase


def load(paths: list[str]) -> dict[Key, list[float]]:
    runs: dict[Key, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        with open(path) as fh:
            for line in fh:
                rec = json.loads(line)
                if "wall_s" not in rec or rec.get("rc") != 0 or rec.get("timed_out"):
                    continue
                key = (rec["tool"], rec["kind"], rec["preset"], rec["phase"])
                runs[key][rec["run_id"]].append(rec["wall_s"])
    return {key: by_run[max(by_run)] for key, by_run in runs.items()}


def fmt(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def main() -> None:
    rows = load(sys.argv[1:])
    med = {k: statistics.median(v) for k, v in rows.items()}
    print("| kind | preset | phase | tool | n | median s | min-max s |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(
        rows,
        key=lambda k: (
            k[1],
            k[2],
            ["scan", "initial", "noop", "mutate"].index(k[3])
            if k[3] in ("scan", "initial", "noop", "mutate")
            else 9,
            k[0],
        ),
    ):
        tool, kind, preset, phase = key
        walls = rows[key]
        print(
            f"| {kind} | {preset} | {phase} | {tool} | {len(walls)} | {fmt(med[key])} | "
            f"{fmt(min(walls))}-{fmt(max(walls))} |"
        )
    print()
    print("| target | storsync s | reference s | ratio | limit | result |")
    print("|---|---|---|---|---|---|")

    def target(label: str, ours: Key, ref: float | None, limit: float) -> None:
        if ours not in med or ref is None:
            print(f"| {label} | - | - | - | {limit} | not measured |")
            return
        ratio = med[ours] / ref
        verdict = "pass" if ratio <= limit else f"miss ({ratio / limit:.2f}x the limit)"
        print(f"| {label} | {fmt(med[ours])} | {fmt(ref)} | {ratio:.2f} | <= {limit} | {verdict} |")

    tw = "twoway-local"
    ours = ("storsync", tw, "small", "initial")
    target(
        "small initial vs rclone bisync",
        ours,
        med.get(("rclone-bisync", tw, "small", "initial")),
        0.5,
    )
    target("small initial vs unison", ours, med.get(("unison", tw, "small", "initial")), 1.0)
    find = med.get(("find", "scan", "many", "scan"))
    target(
        "many no-op vs 2 x find", ("storsync", tw, "many", "noop"), 2 * find if find else None, 3.0
    )
    for preset in ("small", "mixed", "large", "many"):
        ref = med.get(("rclone-bisync", tw, preset, "mutate"))
        if ref is not None:
            target(
                f"{preset} mutate vs rclone bisync", ("storsync", tw, preset, "mutate"), ref, 0.5
            )


if __name__ == "__main__":
    main()
