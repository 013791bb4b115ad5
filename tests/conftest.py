"""Shared fixtures: a local/remote pair on real temporary directories, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from storsync.model import SyncSettings
from storsync.runner.report import Report
from storsync.runner.session import SyncSession
from storsync.state.sqlite_base import SqliteBaseStore
from storsync.storage.base import Storage
from storsync.storage.local import LocalStorage


def tree(root: Path) -> dict[str, bytes]:
    """Every user file under ``root`` (``.storsync/`` left out) with its bytes."""
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".storsync"]
        for name in filenames:
            full = Path(dirpath) / name
            if full.is_symlink() or not full.is_file():
                continue
            found[full.relative_to(root).as_posix()] = full.read_bytes()
    return found


def trash(root: Path) -> dict[str, list[bytes]]:
    """Every version kept in ``root``'s trash, by original path."""
    kept: dict[str, list[bytes]] = {}
    base = root / ".storsync" / "trash"
    if base.is_dir():
        for folder in base.iterdir():
            for full in folder.rglob("*"):
                if full.is_file():
                    kept.setdefault(full.relative_to(folder).as_posix(), []).append(
                        full.read_bytes()
                    )
    return kept


def write(root: Path, path: str, data: bytes | str) -> Path:
    full = root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(data.encode() if isinstance(data, str) else data)
    return full


@dataclass
class Pair:
    local: Path
    remote: Path
    state: Path

    def sync(
        self,
        remote_storage: Storage | None = None,
        local_storage: Storage | None = None,
        **settings: object,
    ) -> Report:
        """One session in-process, through the same runner the CLI uses."""
        store = SqliteBaseStore(self.state / "state.db")
        try:
            repo = store.repository_id(self.local.as_uri(), self.remote.as_uri(), now_ns=0)
            session = SyncSession(
                local_storage or LocalStorage(self.local),
                remote_storage or LocalStorage(self.remote),
                store,
                repo,
                SyncSettings(**settings),  # type: ignore[arg-type]
            )
            return session.run()
        finally:
            store.close()

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "sync", str(self.local), str(self.remote), "--state-dir", str(self.state), *args
        )


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    local, remote, state = tmp_path / "local", tmp_path / "remote", tmp_path / "state"
    for d in (local, remote, state):
        d.mkdir()
    return Pair(local, remote, state)


def run_cli(*args: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run the real ``storsync`` command in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "storsync", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[call-overload]
    )


Tree = Callable[[Path], dict[str, bytes]]


# ---------------------------------------------------------------- S3 (SeaweedFS)
from collections.abc import Iterator  # noqa: E402 - appended section, kept self-contained

from tests.s3_server import SeaweedS3  # noqa: E402

S3_TEST_BUCKET = "storsync-test"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One real S3 server (SeaweedFS on 127.0.0.1, free ports) for the whole session.

    ``s3_server.endpoint``, ``.access_key``/``.secret_key``/``.region`` (any key works),
    ``.bucket`` (``storsync-test``, already created), ``.create_bucket(name)``,
    ``.boto3_client()``, ``.env()`` (AWS_* variables for a child process), ``.restart()``,
    ``.kill()`` (SIGKILL) and ``.stop()``. Tests share the bucket: use a unique prefix
    each. A test that stops or kills the server must call ``s3_server.ensure_running()``
    in a ``finally``. Server log: ``s3_server.log_path``.
    """
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"), buckets=[S3_TEST_BUCKET])
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- PostgreSQL
import contextlib  # noqa: E402 - appended section, kept self-contained

from tests.pg_server import PgServer, announce  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """A PostgreSQL server on 127.0.0.1 for the whole session (tests/pg_server.py).

    The machine's server at 127.0.0.1:5432 (``STORSYNC_TEST_PG_PORT``) when it answers
    with trust authentication; else a private one on a free port (installing Debian's
    ``postgresql`` first when there are no binaries), stopped and removed at the end.
    ``.url(name)``, ``.create_database()``, ``.drop_database(name)``, ``.database()``.
    """
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:  # past pytest's capture: installing takes minutes
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            announce(message)

    server = PgServer.find_or_start(say=say)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PgServer) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of this session's own database.

    Created empty for the session and dropped at its end; tests in the session share it.
    A test that needs an empty database of its own takes ``fresh_postgres_url``.
    """
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def fresh_postgres_url(postgres_server: PgServer) -> Iterator[str]:
    """SQLAlchemy URL of an empty database for this test alone (~0.1 s), dropped after."""
    with postgres_server.database() as url:
        yield url


# ---------------------------------------------------------------- the service
from tests.api_support import Api, running_api  # noqa: E402


@pytest.fixture(
    scope="module",
    params=["inprocess-sqlite", "server-sqlite", "server-postgres"],
)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The service, once per module and backend: in-process on SQLite, a real
    `storsync serve` on loopback with SQLite, and one with PostgreSQL. Tests share it:
    each makes its own repositories (``api.new_repository()``) under ``api.root``."""
    kind, database = request.param.split("-")
    url = None
    if database == "postgres":
        server = request.getfixturevalue("postgres_server")
        name = server.create_database()
        url = server.url(name)
    try:
        with running_api(kind, tmp_path_factory.mktemp(request.param), url) as client:
            yield client
    finally:
        if url is not None:
            server.drop_database(name)
