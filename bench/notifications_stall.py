"""Does a subscriber that never reads slow a sync down? Wall time of one sync of N small
files, with and without stalled subscribers, on a real `storsync serve` (SQLite).

Usage: ``.venv/bin/python bench/notifications_stall.py [--files 10000] [--runs 3]
[--out bench/results/notifications_stall.jsonl]``

Each run makes a fresh repository of ``--files`` files and times its first sync two ways:
``trigger``, from the trigger's answer to the moment the session's REST view says it
finished (polled every 20 ms), and ``server``, the session's own ``startedAt`` to
``endedAt``. "stalled" runs first open three subscribers that never read past the answer's
head (a tiny receive buffer each): an event stream asking for every per-file batch (the
paths are ~500 characters long, so 10,000 files make ~5 MB of batches, more than the
kernel's and the server's buffers hold: the server's sends to it block), a plain event
stream, and a PLM WebSocket subscribed to the synchronizers. Runs alternate between the
two ways (ABBA...) so that drift of a shared machine touches both alike; medians at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.notifications_support import (
    Live,
    live_server,
    stalled_sse,
    stalled_websocket,
)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def one_run(live: Live, files: int, stalled: bool) -> dict[str, Any]:
    repository, _ = live.new_repository(files=files, size=32, pad=240)
    port = live.server.port
    sockets = []
    if stalled:
        sockets = [
            stalled_sse(port, live.token, {"type": ["items.transferred", "session.finished"]}),
            stalled_sse(port, live.token),
            stalled_websocket(port, live.token),
        ]
    try:
        began = time.monotonic()
        session = live.trigger(repository["id"])
        while True:
            found = live.session(session["id"])
            if found["state"] not in ("queued", "running"):
                break
            time.sleep(0.02)
        wall = time.monotonic() - began
    finally:
        for sock in sockets:
            sock.close()
    assert found["state"] == "completed", found
    return {
        "stalled": stalled,
        "files": files,
        "trigger_s": round(wall, 3),
        "server_s": round(_seconds(found["endedAt"]) - _seconds(found["startedAt"]), 3),
    }


def summarize(results: list[dict[str, Any]], files: int, runs: int) -> dict[str, Any]:
    summary: dict[str, Any] = {"files": files, "runs": runs}
    for stalled, name in ((False, "baseline"), (True, "stalled")):
        mine = [r for r in results if r["stalled"] is stalled]
        for key in ("trigger_s", "server_s"):
            summary[f"{name}_{key}_median"] = round(statistics.median(r[key] for r in mine), 3)
    summary["ratio_trigger"] = round(
        summary["stalled_trigger_s_median"] / summary["baseline_trigger_s_median"], 3
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind (>= 3)")
    parser.add_argument("--out", type=Path, help="append the runs and medians as JSON lines")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    # The trees are removed at the end (slowly: ~20,000 files a run).
    with tempfile.TemporaryDirectory(prefix="storsync-stall-") as tmp:
        with live_server(Path(tmp)) as live:
            one_run(live, 200, stalled=False)  # warm-up: worker start, caches
            order = [False, True, True, False] * ((args.runs + 1) // 2)
            counts = {False: 0, True: 0}
            for stalled in order:
                if counts[stalled] == args.runs:
                    continue
                counts[stalled] += 1
                result = one_run(live, args.files, stalled)
                results.append(result)
                print(json.dumps(result), flush=True)
        summary = summarize(results, args.files, args.runs)
        print(json.dumps(summary), flush=True)
        if args.out:
            with args.out.open("a") as out:
                for line in [*results, summary]:
                    out.write(json.dumps({"bench": "notifications_stall", **line}) + "\n")


if __name__ == "__main__":
    main()
