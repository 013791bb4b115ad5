"""A directory of many files moved (issue "Millions of files": "A directory of 10,000 files
moved: 0 bytes uploaded, 0 downloaded, guard not tripped, both sides equal, on local,
directory and S3 remotes"). Not a test: figures for docs/benchmarks.md.

For each remote (a directory; S3 on a SeaweedFS started here), `storsync sync` pushes
``--files`` files of 4 KiB under ``album/``; the directory is then renamed on the local
side to ``2026/holidays/`` and synchronized (a move on the remote); then renamed back on
the remote side (a move on the local side) and synchronized again. Each sync after a move
is timed, with what its ``--json`` summary says it moved and transferred.

    .venv/bin/python bench/moves.py [--files 10000]

Each run appends one JSON line per timed sync to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from service_load import append  # noqa: E402
from tests.s3_server import SeaweedS3  # noqa: E402

STORSYNC = ROOT / ".venv" / "bin" / "storsync"


def sync(local: Path, remote: str, state: Path, env: dict[str, str]) -> dict[str, Any]:
    began = time.monotonic()
    done = subprocess.run(
        [str(STORSYNC), "sync", str(local), remote, "--state-dir", str(state), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    took = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"storsync sync failed ({done.returncode}): {done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    summary["wall_s"] = round(took, 2)
    return summary


def keys(s3: SeaweedS3, prefix: str) -> int:
    client = s3.boto3_client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return sum(len(page.get("Contents", [])) for page in pages)


def rename_remote(kind: str, remote: Path | None, s3: SeaweedS3 | None, prefix: str) -> None:
    """``2026/holidays/`` back to ``album/`` on the remote, as another tool would."""
    if kind == "directory":
        assert remote is not None
        (remote / "2026" / "holidays").rename(remote / "album")
        (remote / "2026").rmdir()
        return
    assert s3 is not None
    client = s3.boto3_client()
    old = f"{prefix}/2026/holidays/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=old)
    for page in pages:
        for item in page.get("Contents", []):
            new = f"{prefix}/album/{item['Key'][len(old) :]}"
            client.copy_object(
                Bucket=s3.bucket, Key=new, CopySource={"Bucket": s3.bucket, "Key": item["Key"]}
            )
            client.delete_object(Bucket=s3.bucket, Key=item["Key"])


def one(kind: str, files: int, work: Path, out: Path, stamp: str) -> None:
    local, state = work / f"{kind}-local", work / f"{kind}-state"
    for i in range(files):
        folder = local / "album" / f"{i // 1000:02}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05}.jpg").write_bytes(os.urandom(4096))
    env = dict(os.environ)
    s3, remote_dir, prefix = None, None, f"moves-{stamp}"
    if kind == "s3":
        s3 = SeaweedS3(work / "seaweed", buckets=["bench-moves"])
        s3.start()
        env |= s3.env()
        remote = f"s3://{s3.bucket}/{prefix}"
    else:
        remote_dir = work / f"{kind}-remote"
        remote = str(remote_dir)
    try:
        sync(local, remote, state, env)
        (local / "2026").mkdir()
        (local / "album").rename(local / "2026" / "holidays")
        rows = [("moved on the local side", sync(local, remote, state, env))]
        rename_remote(kind, remote_dir, s3, prefix)
        rows.append(("moved on the remote side", sync(local, remote, state, env)))
        rows.append(("then a no-op", sync(local, remote, state, env)))
        for what, summary in rows:
            row = {
                "bench": "moves",
                "remote": kind,
                "files": files,
                "what": what,
                **{
                    k: summary[k]
                    for k in (
                        "state",
                        "wall_s",
                        "moved_local",
                        "moved_remote",
                        "pushed",
                        "pulled",
                        "bytes_pushed",
                        "bytes_pulled",
                        "deleted_local",
                        "deleted_remote",
                    )
                },
                "date": stamp,
            }
            append(out, row)
        if s3 is not None:
            assert keys(s3, f"{prefix}/album/") == files
    finally:
        if s3 is not None:
            s3.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--remotes", default="directory,s3")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M")
    parser.add_argument("--out", type=Path, default=ROOT / f"bench/results/moves-{stamp}.jsonl")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="storsync-moves-"))
    try:
        for kind in args.remotes.split(","):
            one(kind, args.files, work, args.out, stamp)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
