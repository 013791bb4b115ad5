"""Client CPU of one small S3 request: botocore's ``put_object``/``get_object``/
``copy_object``/``delete_object`` against storsync's signed requests
(storage/s3_signed.py), the same headers each way (``Content-MD5``, a condition,
storsync's three metadata values; a copy conditional on its source).

One thread, requests one after the other on a SeaweedFS of its own on 127.0.0.1, the two
ways interleaved in rounds; the figure is the process's CPU time per request (client only:
the server is another process), median of the rounds::

    .venv/bin/python bench/s3_requests.py [--requests 1000] [--rounds 5] [--size 4096]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.s3_server import SeaweedS3  # noqa: E402

from storsync.storage.s3_client import S3Bucket, S3Settings, make_client  # noqa: E402
from storsync.storage.s3_signed import SignedRequests  # noqa: E402

BUCKET = "bench-requests"
META = {
    "storsync-mtime-ns": "1700000000123456789",
    "storsync-exec": "0",
    "storsync-blake3": "ab" * 32,
}


def cpu_per_request(calls: Callable[[int], None], n: int) -> float:
    start = time.process_time()
    for i in range(n):
        calls(i)
    return (time.process_time() - start) / n


def ways(client: Any, settings: S3Settings, data: bytes) -> dict[str, Callable[[int], None]]:
    signed = SignedRequests(client, S3Bucket.of(settings, f"s3://{BUCKET}"))
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    headers = {"Content-MD5": md5, **{f"x-amz-meta-{k}": v for k, v in META.items()}}

    def key(way: str, i: int) -> str:
        return f"{way}/{i} name with space.bin"

    def boto_get(i: int) -> None:
        client.get_object(Bucket=BUCKET, Key=key("botocore", i), IfMatch="*")["Body"].read()

    def signed_get(i: int) -> None:
        _, body = signed.get("f", key("signed", i), {"If-Match": "*"}, len(data))
        body.read()
        body.close()

    return {
        "put botocore": lambda i: client.put_object(
            Bucket=BUCKET,
            Key=key("botocore", i),
            Body=data,
            ContentMD5=md5,
            Metadata=META,
            IfNoneMatch="*",
        ),
        "put signed": lambda i: signed.put(
            "f", key("signed", i), data, {**headers, "If-None-Match": "*"}
        ),
        "get botocore": boto_get,
        "get signed": signed_get,
        "copy botocore": lambda i: client.copy_object(
            Bucket=BUCKET,
            Key=key("botocore-copy", i),
            CopySource={"Bucket": BUCKET, "Key": key("botocore", i)},
            CopySourceIfMatch=f'"{hashlib.md5(data).hexdigest()}"',
        ),
        "copy signed": lambda i: signed.copy(
            "f",
            key("signed-copy", i),
            key("signed", i),
            {"x-amz-copy-source-if-match": f'"{hashlib.md5(data).hexdigest()}"'},
        ),
        "delete botocore": lambda i: client.delete_object(
            Bucket=BUCKET, Key=key("botocore", i), IfMatch=f'"{hashlib.md5(data).hexdigest()}"'
        ),
        "delete signed": lambda i: signed.delete(
            "f", key("signed", i), {"If-Match": f'"{hashlib.md5(data).hexdigest()}"'}
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=4096)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work, SeaweedS3(work, buckets=[BUCKET]) as server:
        settings = S3Settings(
            bucket=BUCKET,
            endpoint=server.endpoint,
            region=server.region,
            access_key_id=server.access_key,
            secret_access_key=server.secret_key,
        )
        client = make_client(settings)
        calls = ways(client, settings, os.urandom(a.size))
        figures: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(a.rounds):
            for verb in ("put", "get", "copy", "delete"):  # write, read, copy, delete
                for way in ("botocore", "signed"):
                    name = f"{verb} {way}"
                    figures[name].append(cpu_per_request(calls[name], a.requests))
        print(f"| request ({a.size} B) | client CPU µs, median of {a.rounds} x {a.requests} |")
        print("|---|---|")
        for name, values in figures.items():
            print(f"| {name} | {statistics.median(values) * 1e6:.0f} |")


if __name__ == "__main__":
    main()
