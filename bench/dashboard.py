"""The dashboard's pages over a large store (issue "A face for people"): 500 repositories
and 100,000 sessions, on SQLite or PostgreSQL; each page asked for ``--reps`` times, one
at a time, as a signed-in person (the session cookie), timed from the request to the last
byte. Not a test: figures for docs/benchmarks.md.

    .venv/bin/python bench/dashboard.py --db sqlite
    .venv/bin/python bench/dashboard.py --db postgres   # the machine's PostgreSQL

Each run appends one JSON line per page to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from service_load import (  # noqa: E402
    ADMIN_PASSWORD,
    append,
    insert_sessions,
    new_repository,
    postgres_database,
    running,
)


def timed(person: httpx.Client, path: str, reps: int) -> dict[str, Any]:
    took = []
    for _ in range(reps):
        began = time.perf_counter()
        answer = person.get(path)
        took.append(time.perf_counter() - began)
        answer.raise_for_status()
    return {
        "median_ms": round(statistics.median(took) * 1000, 1),
        "p95_ms": round(statistics.quantiles(took, n=20, method="inclusive")[18] * 1000, 1),
        "bytes": len(answer.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--repositories", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=30)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    parser.add_argument("--out", type=Path, default=ROOT / f"bench/results/dashboard-{stamp}.jsonl")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="storsync-dashboard-"))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_database()) if args.db == "postgres" else None
        with running(work, url) as server, server.client() as client:
            ids = [
                new_repository(client, server.root, f"r{i:03d}")["id"]
                for i in range(args.repositories)
            ]
        database_url = url or f"sqlite:///{work / 'data' / 'storsync.db'}"
        insert_sessions(database_url, args.sessions, ids)
        with running(work, url) as server, httpx.Client(base_url=server.url, timeout=60) as person:
            signed = person.post("/signin", data={"username": "admin", "password": ADMIN_PASSWORD})
            if signed.status_code != 303:
                raise SystemExit(f"cannot sign in: {signed.status_code} {signed.text[:200]}")
            newest = server.client().get("/api/v1/sessions?limit=1").json()["items"][0]["id"]
            pages = {
                "repositories": "/",
                "sessions": "/sessions",
                "sessions of one repository": f"/sessions?repository={ids[0]}",
                "sessions, failed": "/sessions?state=failed",
                "one session": f"/sessions/{newest}",
                "conflicts": "/conflicts",
            }
            for page, path in pages.items():
                timed(person, path, 3)  # warm
                row = {
                    "bench": "dashboard",
                    "db": args.db,
                    "repositories": args.repositories,
                    "sessions": args.sessions,
                    "page": page,
                    **timed(person, path, args.reps),
                    "date": stamp,
                }
                append(args.out, row)


if __name__ == "__main__":
    main()
