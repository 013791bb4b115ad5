"""Bandwidth limits (SYNC.md "Modes and options", API.md section 7):

- the throttle: many threads together keep to the limit, a changed limit holds at once;
- shares of the service's total among running sessions (water-filling);
- `--bwlimit` on the command line: K/M/G, bad values exit 2, a sync keeps to it;
- through the service, measured at the destination (a directory and S3): while held by
  the limit, every 10-second window moves between 90% and 110% of it; a repository's
  limit changed mid-session, and the service's total changed by `PATCH /api/v1/settings`,
  hold within 2 s;
- the settings endpoint: admins only, strict, kept across a restart.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from storsync.clock import SystemClock
from storsync.runner import bandwidth
from storsync.runner.bandwidth import Throttle
from storsync.service.bandwidth import shares
from tests.api_support import Api, s3_remote
from tests.conftest import run_cli, tree, write
from tests.s3_server import SeaweedS3
from tests.test_service_lifecycle import in_process

KiB = 1024
FILE = 16 * KiB


def _pump(throttle: Throttle, seconds: float, threads: int = 4, chunk: int = 4096) -> int:
    """Bytes taken by ``threads`` threads within ``seconds``."""
    taken = [0] * threads
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        while time.monotonic() < deadline:
            throttle.take(chunk)
            taken[i] += chunk

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(taken)


def test_threads_together_keep_to_the_limit_and_a_change_holds_at_once() -> None:
    throttle = Throttle(200 * KiB, SystemClock())
    moved = _pump(throttle, 2.0)
    assert 0.9 * 400 * KiB <= moved <= 1.1 * 400 * KiB, moved
    throttle.set_rate(800 * KiB)
    moved = _pump(throttle, 1.0)
    assert 0.85 * 800 * KiB <= moved <= 1.15 * 800 * KiB, moved
    throttle.set_rate(None)
    assert _pump(throttle, 0.2) > 10 * 800 * KiB * 0.2  # no limit


def test_a_lower_limit_holds_even_with_bytes_granted_ahead() -> None:
    # Large chunks granted at a high rate do not keep the old pace after the change.
    throttle = Throttle(4096 * KiB, SystemClock())
    throttle.take(4096 * KiB)
    started = time.monotonic()
    throttle.set_rate(100 * KiB)
    moved = _pump(throttle, 1.5, threads=2, chunk=8 * KiB)
    elapsed = time.monotonic() - started
    # What the new limit allowed from its change to the last grant (the pump's own 1.5 s
    # starts later on a busy machine: CI once saw 192 KiB against 181 for those alone),
    # its burst, and a chunk a thread asked for before its deadline.
    allowed = 100 * KiB * (elapsed + bandwidth.BURST_S) + 2 * 8 * KiB
    assert moved <= allowed, (moved, allowed)
    assert elapsed < 2.0


def test_shares_divide_the_total_and_keep_each_own_limit() -> None:
    assert shares(None, {"a": None, "b": 5000}) == {"a": None, "b": 5000}
    assert shares(9000, {"a": None, "b": None, "c": None}) == {"a": 3000, "b": 3000, "c": 3000}
    # b keeps to its own lower limit; what it leaves goes to the others.
    assert shares(9000, {"a": None, "b": 1000, "c": None}) == {"a": 4000, "b": 1000, "c": 4000}
    assert shares(9000, {"a": 20000}) == {"a": 9000}


@pytest.mark.parametrize(
    ("given", "rate"), [("2M", 2 * 1024**2), ("512K", 512 * KiB), ("1G", 1024**3), ("4096", 4096)]
)
def test_bwlimit_values(tmp_path: Path, given: str, rate: int) -> None:
    from storsync.cli.rates import ByteRate

    assert ByteRate().convert(given, None, None) == rate


@pytest.mark.parametrize("given", ["fast", "2X", "-1M", "100", "0"])
def test_bad_bwlimit_values_exit_2(tmp_path: Path, given: str) -> None:
    (tmp_path / "l").mkdir()
    result = run_cli("sync", str(tmp_path / "l"), str(tmp_path / "r"), "--bwlimit", given)
    assert result.returncode == 2, result.stderr
    assert "--bwlimit" in result.stderr and "Traceback" not in result.stderr


def test_the_command_line_keeps_to_its_limit(tmp_path: Path) -> None:
    local, remote = tmp_path / "l", tmp_path / "r"
    for i in range(96):  # 1.5 MiB at 512 KiB/s: 3 s
        write(local, f"f{i:03}.bin", os.urandom(FILE))
    started = time.monotonic()
    result = run_cli("sync", str(local), str(remote), "--bwlimit", "512K", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert tree(local) == tree(remote)
    assert 2.6 < elapsed < 6.0, elapsed  # 3 s of bytes, plus the start of a process


# -- through the service, measured where the bytes land ----------------------------------


class Arrivals:
    """Bytes of user files at the destination, sampled every 0.1 s in a thread."""

    def __init__(self, measure: Callable[[], int]) -> None:
        self.measure = measure
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.measure()))
            self._stop.wait(0.1)

    def at(self, t: float) -> int:
        """Bytes arrived by instant ``t`` (the last sample at or before it)."""
        found = 0
        for when, total in self.samples:
            if when > t:
                break
            found = total
        return found

    def first(self) -> float:
        return next(when for when, total in self.samples if total > 0)

    def windows(self, start: float, end: float) -> list[float]:
        """Bytes per second in every 10-second window within [start, end], each 0.5 s."""
        rates, t = [], start
        while t + 10 <= end + 1e-9:
            rates.append((self.at(t + 10) - self.at(t)) / 10)
            t += 0.5
        return rates

    @contextmanager
    def running(self) -> Iterator[Arrivals]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _within(rates: list[float], limit: int) -> None:
    assert rates, "no whole 10-second window"
    low, high = min(rates) / limit, max(rates) / limit
    assert low >= 0.9 and high <= 1.1, (round(low, 3), round(high, 3))


def _s3_bytes(s3: SeaweedS3, prefix: str) -> Callable[[], int]:
    client = s3.boto3_client()

    def measure() -> int:
        total = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=s3.bucket, Prefix=f"{prefix}/"
        ):
            for item in page.get("Contents", []):
                if not item["Key"][len(prefix) + 1 :].startswith(".storsync/"):
                    total += item["Size"]
        return total

    return measure


def _dir_bytes(root: Path) -> Callable[[], int]:
    def measure() -> int:
        total = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != ".storsync"]
            for name in filenames:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except FileNotFoundError:
                    continue
        return total

    return measure


def _wait_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_every_ten_second_window_keeps_within_ten_percent_of_the_limit(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    first, second, total = 256 * KiB, 512 * KiB, 160 * KiB
    with in_process(tmp_path, None) as (service, api):
        fields: dict[str, object] = {"bwlimitBytesPerSecond": first}
        if kind == "s3":
            s3: SeaweedS3 = request.getfixturevalue("s3_server")
            prefix = f"bwlimit-{uuid.uuid4().hex[:12]}"
            fields |= s3_remote(s3, prefix)
        repository = api.new_repository(**fields)
        assert repository["bwlimitBytesPerSecond"] == first
        rid, local = repository["id"], Path(repository["localPath"])
        for i in range(250):  # 15.6 MiB: more than the phases below move
            write(local, f"d{i % 10}/f{i:04}.bin", os.urandom(4 * FILE))
        measure = _s3_bytes(s3, prefix) if kind == "s3" else _dir_bytes(Path(repository["remote"]))
        with Arrivals(measure).running() as arrivals:
            session = api.post(f"/api/v1/repositories/{rid}/sync").json()
            deadline = time.monotonic() + 60
            while not arrivals.samples or arrivals.samples[-1][1] == 0:
                assert time.monotonic() < deadline, "nothing arrived"
                time.sleep(0.05)
            t0 = arrivals.first()
            # The repository's own limit, then that limit changed while the session runs.
            _wait_until(t0 + 11)
            changed = api.request(
                "PATCH", f"/api/v1/repositories/{rid}", json={"bwlimitBytesPerSecond": second}
            )
            assert changed.status_code == 200, changed.text
            t1 = time.monotonic()
            phases = [(t0 + 0.5, t1, first), (t1 + 2, t1 + 12, second)]
            _wait_until(t1 + 12)
            if kind == "directory":  # the service's total, lower than the repository's
                answer = api.request(
                    "PATCH", "/api/v1/settings", json={"bwlimitBytesPerSecond": total}
                )
                assert answer.json() == {"bwlimitBytesPerSecond": total}
                t2 = time.monotonic()
                phases.append((t2 + 2, t2 + 12, total))
                _wait_until(t2 + 12)
            assert api.session(session["id"])["state"] == "running"
            api.post(f"/api/v1/sessions/{session['id']}/stop")
            api.wait(session["id"])
        for start, end, limit in phases:
            _within(arrivals.windows(start, end), limit)
        assert service.bwlimit() == (total if kind == "directory" else None)


@pytest.mark.slow
def test_two_sessions_share_the_service_total(tmp_path: Path) -> None:
    """Two repositories' sessions at once under the service's total: the one with a lower
    limit of its own keeps to it, the other takes the rest, and together they keep to
    the total, each within 10% over 20 s from 2 s after both began (the time to adopt a
    share), measured where the bytes land. (Every 10-second window of one session is the
    test above; here a window holds 10 or 11 of a session's once-a-second publications,
    which alone is 10%.)"""
    total, own, span = 256 * KiB, 64 * KiB, 20
    with in_process(tmp_path, None, STORSYNC_BWLIMIT_BYTES_PER_SECOND=str(total)) as (_, api):
        # Two transfers each: a stop waits for the files in flight, held to the limit.
        held = api.new_repository(bwlimitBytesPerSecond=own, transfers=2)
        free = api.new_repository(transfers=2)
        for repository in (held, free):
            for i in range(120):  # 7.5 MiB each: more than 25 s moves
                write(Path(repository["localPath"]), f"f{i:04}.bin", os.urandom(4 * FILE))
        measures = [_dir_bytes(Path(r["remote"])) for r in (held, free)]
        arrivals = [Arrivals(measure) for measure in measures]
        together = Arrivals(lambda: sum(measure() for measure in measures))
        with contextlib.ExitStack() as running:
            for each in (*arrivals, together):
                running.enter_context(each.running())
            sessions = [
                api.post(f"/api/v1/repositories/{r['id']}/sync").json() for r in (held, free)
            ]
            deadline = time.monotonic() + 60
            while not all(a.samples and a.samples[-1][1] for a in arrivals):
                assert time.monotonic() < deadline, "nothing arrived"
                time.sleep(0.05)
            start = max(a.first() for a in arrivals) + 2
            _wait_until(start + span)
            for session in sessions:
                assert api.session(session["id"])["state"] == "running"
                api.post(f"/api/v1/sessions/{session['id']}/stop")
            for session in sessions:
                api.wait(session["id"])
        for measured, limit in ((arrivals[0], own), (arrivals[1], total - own), (together, total)):
            rate = (measured.at(start + span) - measured.at(start)) / span
            assert 0.9 <= rate / limit <= 1.1, (limit, round(rate / limit, 3))


def test_the_service_total_is_for_admins_strict_and_kept_across_a_restart(
    tmp_path: Path,
) -> None:
    with in_process(tmp_path, None) as (_, api):
        assert api.get("/api/v1/settings").json() == {"bwlimitBytesPerSecond": None}
        for body in ({"bwlimitBytesPerSecond": "2M"}, {"bwlimitBytesPerSecond": 10}, {"x": 1}):
            answer = api.request("PATCH", "/api/v1/settings", json=body)
            assert answer.status_code == 400, (body, answer.text)
        answer = api.request(
            "PATCH", "/api/v1/settings", json={"bwlimit_bytes_per_second": 2 * 1024**2}
        )
        assert answer.json() == {"bwlimitBytesPerSecond": 2 * 1024**2}
        _viewer(api)
    with in_process(tmp_path, None, STORSYNC_BWLIMIT_BYTES_PER_SECOND="4096") as (_, api):
        # Set through the API, it wins over the configuration's start value.
        assert api.get("/api/v1/settings").json() == {"bwlimitBytesPerSecond": 2 * 1024**2}
        api.request("PATCH", "/api/v1/settings", json={"bwlimitBytesPerSecond": None})
        assert api.get("/api/v1/settings").json() == {"bwlimitBytesPerSecond": None}


def _viewer(api: Api) -> None:
    created = api.post(
        "/api/v1/users", json={"name": "viewer", "password": "viewer-pass-1", "role": "viewer"}
    )
    assert created.status_code == 201, created.text
    token = api.login("viewer", "viewer-pass-1")
    answer = api.request(
        "PATCH", "/api/v1/settings", json={"bwlimitBytesPerSecond": 4096}, token=token
    )
    assert answer.status_code == 403
    assert api.get("/api/v1/settings", token=token).status_code == 200
