"""A real PostgreSQL for tests: the machine's server on loopback, else a private one.

    server = PgServer.find_or_start()   # see below; announces slow steps on stderr
    name = server.create_database()     # fresh, empty, uniquely named (from template0)
    server.url(name)                    # "postgresql+psycopg://postgres@127.0.0.1:5432/..."
    with server.database() as url: ...  # a fresh database, dropped afterwards
    server.drop_database(name)          # WITH (FORCE): leftover connections are ended
    server.stop()                       # stops a private server; never the machine's

How the server is found, in order:

1. The server at ``127.0.0.1:$STORSYNC_TEST_PG_PORT`` (default 5432) when it answers
   with trust authentication as ``$STORSYNC_TEST_PG_USER``, ``postgres`` or the current
   OS user, in database ``test`` or ``postgres``, with a role that may create databases.
   A server still starting up is waited for.
2. Otherwise a private server: ``initdb`` (trust, UTF8, locale C) into a fresh directory
   under the temporary directory, then ``postgres`` on a free loopback port, without any
   Unix socket, durability off (fsync, synchronous_commit, full_page_writes: tests only).
   As root, both run as the OS user ``postgres`` (else ``nobody``), since PostgreSQL
   refuses to run as root. The binaries come from ``$STORSYNC_TEST_PG_BINDIR``, else the
   newest ``/usr/lib/postgresql/*/bin`` (Debian), else ``PATH``; when there are none,
   Debian's ``postgresql`` package is installed first (``apt-get install -y postgresql``,
   noninteractive, as root or through ``sudo -n``; ``apt-get update`` when the package is
   unknown). The private server and its directory are removed by :meth:`PgServer.stop`;
   one left behind by a killed session is removed by the next session.

The machine's server is never stopped or reconfigured, and nothing listens beyond
127.0.0.1. Test databases are named ``storsync_test_<epoch>_<pid>_<random>``, so parallel
and repeated sessions never see each other's tables; ones older than a day (from killed
sessions) are dropped when a session starts. Only the standard library and psycopg.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

HOST = "127.0.0.1"
DEFAULT_PORT = 5432
DB_PREFIX = "storsync_test_"
STALE_AFTER_S = 24 * 3600
_DB_NAME_RE = re.compile(rf"^{DB_PREFIX}(\d+)_\d+_[0-9a-f]+$")
_PRIVATE_PREFIX = "storsync-pg-"


def announce(message: str) -> None:
    """A line on stderr about a slow step (the fixture shows it past pytest's capture)."""
    print(f"[storsync tests] {message}", file=sys.stderr, flush=True)


def configured_port() -> int:
    return int(os.environ.get("STORSYNC_TEST_PG_PORT") or DEFAULT_PORT)


def candidate_users() -> list[str]:
    users = [os.environ.get("STORSYNC_TEST_PG_USER", ""), "postgres", pwd.getpwuid(os.getuid())[0]]
    return list(dict.fromkeys(u for u in users if u))


def _connect(port: int, user: str, dbname: str, timeout: int = 3) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=HOST, port=port, user=user, dbname=dbname, connect_timeout=timeout, autocommit=True
    )


def _tcp_answers(port: int, timeout: float = 2.0) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((HOST, port))
        except OSError:
            return False
    return True


def probe(
    port: int, users: Sequence[str], dbnames: Sequence[str] = ("test", "postgres"), wait: float = 30
) -> tuple[str, str] | str:
    """``(user, dbname)`` of a usable admin login at ``port``, else why there is none.

    Usable: trust authentication (no password) and a role that may create databases. A
    server that says it is starting up is waited for (up to ``wait`` seconds); one that
    accepts TCP but does not answer like PostgreSQL within 3 s is given up at once.
    """
    if not _tcp_answers(port):
        return f"nothing answers on {HOST}:{port}"
    reasons: list[str] = []
    deadline = time.monotonic() + wait
    for user in users:
        for dbname in dbnames:
            while True:
                try:
                    with _connect(port, user, dbname) as conn:
                        row = conn.execute(
                            "SELECT rolsuper OR rolcreatedb FROM pg_roles"
                            " WHERE rolname = current_user"
                        ).fetchone()
                except psycopg.OperationalError as exc:
                    text = str(exc).strip().replace("\n", " ")
                    if "starting up" in text and time.monotonic() < deadline:
                        time.sleep(0.5)
                        continue
                    reasons.append(f"{user}@{dbname}: {text}")
                    if isinstance(exc, psycopg.errors.ConnectionTimeout):
                        return f"{HOST}:{port} does not speak PostgreSQL: " + "; ".join(reasons)
                    break
                if row and row[0]:
                    return user, dbname
                reasons.append(f"{user}@{dbname}: role may not create databases")
                break
    return f"{HOST}:{port} answers but refuses us: " + "; ".join(reasons)


class PgServer:
    """A PostgreSQL server on 127.0.0.1 and an admin login to it (see the module doc)."""

    def __init__(
        self, port: int, user: str, admin_db: str, private: PrivateCluster | None = None
    ) -> None:
        self.host = HOST
        self.port = port
        self.user = user
        self.admin_db = admin_db
        self.private = private

    @classmethod
    def find_or_start(
        cls, port: int | None = None, say: Callable[[str], None] = announce
    ) -> PgServer:
        """The usable server at ``port`` (default: configured), else a private one."""
        port = configured_port() if port is None else port
        users = candidate_users()
        found = probe(port, users)
        if isinstance(found, tuple):
            server = cls(port, *found)
        else:
            say(f"no usable PostgreSQL ({found}); starting a private one")
            bindir = find_bindir()
            if bindir is None:
                install_postgresql(say)
                bindir = find_bindir()
                if bindir is None:
                    raise RuntimeError(
                        "PostgreSQL installed, but no initdb/postgres found: "
                        "set STORSYNC_TEST_PG_BINDIR"
                    )
            reap_stale_clusters()
            cluster = PrivateCluster(bindir)
            cluster.start()
            say(f"private PostgreSQL on {HOST}:{cluster.port} ({cluster.root})")
            server = cls(cluster.port, PrivateCluster.superuser, "postgres", cluster)
        try:
            server.drop_stale_databases()
        except BaseException:
            server.stop()
            raise
        return server

    # ------------------------------------------------------------------ databases
    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL (psycopg 3 driver) of a database on this server."""
        return f"postgresql+psycopg://{quote(self.user, safe='')}@{self.host}:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection[Any]:
        """A new autocommit connection to the admin database; close it (``with``)."""
        return _connect(self.port, self.user, self.admin_db, timeout=10)

    def create_database(self, *, icu_locale: str | None = None) -> str:
        """A fresh, empty database (UTF8, locale C, from template0); its name. With
        ``icu_locale`` (``"en-US"``) it collates by ICU's rules for that locale instead."""
        name = f"{DB_PREFIX}{int(time.time())}_{os.getpid()}_{secrets.token_hex(4)}"
        icu = sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(icu_locale))
        with self.admin() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'"
                    " LC_COLLATE 'C' LC_CTYPE 'C'{}"
                ).format(sql.Identifier(name), icu if icu_locale else sql.SQL(""))
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database even if connections to it are left open. Idempotent."""
        with self.admin() as conn:
            if conn.info.server_version >= 130000:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                return
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """The URL of a fresh, empty database, dropped on exit."""
        name = self.create_database()
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)

    def databases(self) -> list[str]:
        """Names of the test databases now on the server (any session's)."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (DB_PREFIX + "%",)
            ).fetchall()
        return sorted(str(r[0]) for r in rows if _DB_NAME_RE.match(str(r[0])))

    def drop_stale_databases(self, older_than: float = STALE_AFTER_S) -> list[str]:
        """Drop test databases left by sessions killed more than ``older_than`` s ago."""
        dropped = []
        for name in self.databases():
            match = _DB_NAME_RE.match(name)
            if match and time.time() - int(match.group(1)) > older_than:
                # no FORCE: a database still in use (a very long session) is kept
                with contextlib.suppress(psycopg.Error), self.admin() as conn:
                    conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))
                    dropped.append(name)
        return dropped

    # ------------------------------------------------------------------ life cycle
    def stop(self) -> None:
        """Stop and remove the private server, if this object started one."""
        if self.private is not None:
            self.private.stop()


# ---------------------------------------------------------------- binaries, installation
def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``, or None (see the module doc)."""
    explicit = os.environ.get("STORSYNC_TEST_PG_BINDIR")
    if explicit:
        if not _has_server(Path(explicit)):
            raise RuntimeError(f"STORSYNC_TEST_PG_BINDIR={explicit}: no initdb and postgres")
        return Path(explicit)

    def version(path: str) -> tuple[int, ...]:
        major = Path(path).parent.name
        return tuple(int(p) for p in major.split(".") if p.isdigit())

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if _has_server(Path(candidate)):
            return Path(candidate)
    for name in ("initdb", "postgres"):
        found = shutil.which(name)
        if found and _has_server(Path(found).resolve().parent):
            return Path(found).resolve().parent
    return None


def install_postgresql(say: Callable[[str], None] = announce) -> None:
    """``apt-get install -y postgresql`` (noninteractive), as root or via ``sudo -n``."""
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            "no PostgreSQL server binaries and no apt-get to install them: install "
            "PostgreSQL, set STORSYNC_TEST_PG_BINDIR, or start a server with trust "
            f"authentication on {HOST}:{configured_port()}"
        )
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and _run(["sudo", "-n", "true"], timeout=30).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        raise RuntimeError(
            "no PostgreSQL server binaries, and installing them needs root: run "
            "`apt-get install -y postgresql` as root (or allow `sudo -n`)"
        )
    apt = [
        *prefix,
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-q",
        "-y",
        "-o",
        "DPkg::Lock::Timeout=600",
    ]
    say("installing PostgreSQL: apt-get install -y postgresql (once; takes a while)")
    result = _run([*apt, "install", "postgresql"], timeout=1800)
    if result.returncode != 0:  # a fresh image has no package lists yet
        say("apt-get install failed; apt-get update, then again")
        update = _run([*apt, "update"], timeout=1800)
        result = _run([*apt, "install", "postgresql"], timeout=1800)
        if result.returncode != 0:
            raise RuntimeError(
                "apt-get install -y postgresql failed:\n"
                + _tail(update.stdout)
                + "\n"
                + _tail(result.stdout)
            )


def _run(cmd: list[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
        **kw,
    )


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- the private server
class PrivateCluster:
    """``initdb`` + ``postgres`` in a fresh directory, on a free loopback port."""

    superuser = "postgres"

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix=_PRIVATE_PREFIX, dir=_shared_tmp()))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        (self.root / "owner").write_text(f"{os.getpid()}\n")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:  # PostgreSQL refuses root: run as postgres (else nobody)
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return ""

    def start(self, timeout: float = 90.0) -> None:
        try:
            self._initdb()
            for _attempt in range(5):
                self.port = free_port()
                if self._launch(timeout):
                    return
            raise RuntimeError(f"postgres never found a free port; log:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _initdb(self) -> None:
        result = _run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.superuser,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=300,
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
            **self._as,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{_tail(result.stdout)}")

    def _launch(self, timeout: float) -> bool:
        """Start postgres on ``self.port``; False when the port was taken meanwhile."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    f"listen_addresses={HOST}",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
                start_new_session=True,  # our Ctrl-C does not reach it; stop() ends it
                **self._as,
            )
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                if "could not bind" in self.log_tail() or "in use" in self.log_tail():
                    return False
                raise RuntimeError(f"postgres exited early; log:\n{self.log_tail()}")
            try:
                with _connect(self.port, self.superuser, "postgres"):
                    return True
            except psycopg.OperationalError as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"postgres not ready after {timeout} s ({last}):\n{self.log_tail()}")

    def stop(self, grace: float = 30.0) -> None:
        """Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL; remove the directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGINT, grace), (signal.SIGQUIT, 5), (signal.SIGKILL, 30)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.root, ignore_errors=True)


def _shared_tmp() -> str:
    """The temporary directory, if another user (postgres) can reach it; else /tmp."""
    tmp = Path(tempfile.gettempdir()).resolve()
    if os.geteuid() != 0:
        return str(tmp)
    for part in (tmp, *tmp.parents):
        if not part.stat().st_mode & 0o001:
            return "/tmp"
    return str(tmp)


def reap_stale_clusters() -> list[Path]:
    """Stop and remove private servers whose pytest process is gone (killed sessions)."""
    reaped = []
    for root in Path(_shared_tmp()).glob(_PRIVATE_PREFIX + "*"):
        try:
            owner = int((root / "owner").read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        try:
            postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{postmaster}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            postmaster, cmdline = 0, b""
        if postmaster and str(root / "data").encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGQUIT)
            for _ in range(50):
                if not _pid_alive(postmaster):
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(postmaster, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        reaped.append(root)
    return reaped
