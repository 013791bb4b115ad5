"""How long a session's progress takes to reach the dashboard (issue "A face for people":
"a progress event reaches the page within 1 s"). Not a test: figures for
docs/benchmarks.md.

`storsync serve` on loopback, one repository of ``--files`` files held to a bandwidth
limit so that its push lasts about ``--seconds``; Debian's chromium (Playwright, no
browser download) signed in on `/`. The page records, with a MutationObserver, the time
each change of the repository's row is rendered (its progress bar and counts); every
``session.progress`` event the service stored carries the server's time of the event.
Both clocks are this machine's wall clock. An event's delay is from its time to the
first rendered state that shows at least its percent and its files done (a later event
that overtook it counts for it: the page was then at least as far).

    .venv/bin/python bench/dashboard_live.py [--files 3000] [--seconds 25] [--runs 3]

Each run appends one JSON line to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from service_load import ADMIN_PASSWORD, append, new_repository, running  # noqa: E402

FILE_BYTES = 32 * 1024

# Installed in the page: every mutation of the repository's row, rendered state and time.
OBSERVE = """(rid) => {
  window.__seen = [];
  const row = document.querySelector(`[data-repository="${CSS.escape(rid)}"]`);
  const note = () => {
    const bar = row.querySelector("progress");
    const counts = row.querySelector(".counts");
    window.__seen.push({t: Date.now(), percent: bar ? bar.value : null,
                        counts: counts ? counts.textContent : "",
                        state: (row.querySelector(".state") || {}).textContent || ""});
  };
  new MutationObserver(note).observe(row, {subtree: true, attributes: true,
                                           childList: true, characterData: true});
}"""


def files_done(counts: str) -> int:
    """``"120 of 3000 files"`` -> 120 (0 when the row shows no counts)."""
    head = counts.split(" of ", 1)[0].strip()
    return int(head) if head.isdigit() else 0


def parse_time(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def delays(events: list[dict[str, Any]], seen: list[dict[str, Any]]) -> list[float]:
    """Each progress event's delay to the first rendered state as far as it."""
    found = []
    for event in events:
        session = event["data"]["session"]
        push = session.get("push") or {}
        percent = session.get("progressPercent") or 0
        done = push.get("filesDone") or 0
        at = parse_time(event["time"])
        for state in seen:
            if (state["percent"] or 0) >= percent and files_done(state["counts"]) >= done:
                found.append(state["t"] / 1000 - at)
                break
        else:
            found.append(float("inf"))  # never shown: the run reports it as a miss
    return found


def one_run(
    page: Page, client: httpx.Client, root: Path, name: str, files: int, rate: int
) -> dict[str, Any]:
    repository = new_repository(client, root, name)
    rid = repository["id"]
    local = Path(repository["localPath"])
    local.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (local / f"f{i:05d}.bin").write_bytes(os.urandom(FILE_BYTES))
    answer = client.patch(f"/api/v1/repositories/{rid}", json={"bwlimitBytesPerSecond": rate})
    answer.raise_for_status()
    page.goto(f"{client.base_url}/")
    page.wait_for_selector(f'[data-repository="{rid}"]')
    page.evaluate(OBSERVE, rid)
    answer = client.post(f"/api/v1/repositories/{rid}/sync")
    answer.raise_for_status()
    session_id = answer.json()["id"]
    page.wait_for_function(
        '(rid) => (document.querySelector(`[data-repository="${CSS.escape(rid)}"] .state`)'
        " || {}).textContent === 'completed'",
        arg=rid,
        timeout=600_000,
    )
    seen: list[dict[str, Any]] = page.evaluate("window.__seen")
    events = []
    after = 0
    while True:
        query = f"since={after}&limit=1000&type=session.progress&sessionId={session_id}"
        page_of = client.get(f"/api/v1/events?{query}").json()
        if not page_of["items"]:
            break
        events += page_of["items"]
        after = page_of["lastId"]
    took = sorted(delays(events, seen))
    return {
        "events": len(events),
        "renders": len(seen),
        "p50_ms": round(statistics.median(took) * 1000, 1),
        "p95_ms": round(statistics.quantiles(took, n=20, method="inclusive")[18] * 1000, 1),
        "max_ms": round(took[-1] * 1000, 1),
        "over_1s": sum(1 for t in took if t > 1.0),
    }


def chromium() -> str:
    found = os.environ.get("STORSYNC_CHROMIUM") or shutil.which("chromium")
    if found is None:
        raise SystemExit("no chromium: bash scripts/chromium.sh installs Debian's")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--runs", type=int, default=3)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    default_out = ROOT / f"bench/results/dashboard-live-{stamp}.jsonl"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    rate = int(args.files * FILE_BYTES / args.seconds)
    work = Path(tempfile.mkdtemp(prefix="storsync-dashboard-live-"))
    with (
        running(work) as server,
        server.client() as client,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{server.url}/")
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/")
        for run in range(1, args.runs + 1):
            row = {
                "bench": "dashboard-live",
                "run": run,
                "files": args.files,
                "bwlimit": rate,
                **one_run(page, client, server.root, f"live{run}", args.files, rate),
                "date": stamp,
            }
            append(args.out, row)
        browser.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
