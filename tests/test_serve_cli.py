"""`storsync serve` from the command line: settings, the default repository, TLS, and the
client commands (login, repos, repo-add, trigger, sessions, watch) against it."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.api_support import ADMIN_PASSWORD, ServerProcess, service_env
from tests.conftest import run_cli as _run_cli
from tests.conftest import tree, write


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return _run_cli(*args, env={**os.environ, **env}, timeout=timeout)


@pytest.fixture
def client_env(tmp_path: Path) -> dict[str, str]:
    """The client commands' saved login goes to a config dir of the test's own."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "STORSYNC_PASSWORD": ADMIN_PASSWORD}


def test_default_repository_from_local_and_remote_and_client_commands(
    tmp_path: Path, client_env: dict[str, str]
) -> None:
    local, remote = tmp_path / "mine", tmp_path / "theirs"
    write(local, "notes/today.txt", "remember the milk")
    server = ServerProcess(
        service_env(tmp_path / "data", tmp_path, None),
        tmp_path / "server.log",
        args=("--local", str(local), "--remote", str(remote)),
    )
    server.start()
    try:
        env = {**client_env, "STORSYNC_SERVER": server.url}
        logged = run_cli("login", env=env)
        assert logged.returncode == 0, logged.stderr
        saved = Path(client_env["XDG_CONFIG_HOME"]) / "storsync" / "login.json"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600

        listed = run_cli("repos", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        (default,) = json.loads(listed.stdout)
        assert default["isDefault"] and default["localPath"] == str(local)
        assert default["remote"] == str(remote)

        done = run_cli("trigger", "--wait", "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["state"] == "completed"
        assert tree(remote) == {"notes/today.txt": b"remember the milk"}

        other = tmp_path / "second"
        added = run_cli("repo-add", "second", str(other / "l"), str(other / "r"), env=env)
        assert added.returncode == 0, added.stderr
        write(other / "r", "x.bin", b"\x00\x01")
        by_name = run_cli("trigger", "second", "--json", env=env)
        session_id = json.loads(by_name.stdout)["id"]
        watched = run_cli("watch", session_id, "--json", env=env)
        assert watched.returncode == 0, watched.stderr
        assert json.loads(watched.stdout)["pulled"] == 1
        assert tree(other / "l") == {"x.bin": b"\x00\x01"}

        history = run_cli("sessions", "--repository", "second", "--json", env=env)
        assert [s["id"] for s in json.loads(history.stdout)] == [session_id]
        unknown = run_cli("trigger", "no-such-repository", env=env)
        assert unknown.returncode == 2 and "no-such-repository" in unknown.stderr
        assert "Traceback" not in unknown.stderr
    finally:
        server.stop()

    # A restart with another remote moves the default repository; its id stays.
    moved = tmp_path / "elsewhere"
    server = ServerProcess(
        service_env(tmp_path / "data", tmp_path, None),
        tmp_path / "server2.log",
        port=server.port,
        args=("--local", str(local), "--remote", str(moved)),
    )
    server.start()
    try:
        env = {**client_env, "STORSYNC_SERVER": server.url}
        listed = json.loads(run_cli("repos", "--json", env=env).stdout)
        (again,) = [r for r in listed if r["isDefault"]]
        assert again["id"] == default["id"] and again["remote"] == str(moved)
    finally:
        server.stop()


def test_client_without_login_or_server_says_what_to_do(
    tmp_path: Path, client_env: dict[str, str]
) -> None:
    env = {**client_env, "STORSYNC_SERVER": "http://127.0.0.1:9"}
    not_logged = run_cli("repos", env=env)
    assert not_logged.returncode == 2 and "storsync login" in not_logged.stderr
    unreachable = run_cli("repos", "--token", "ss_x", env=env)
    assert unreachable.returncode == 1 and "cannot reach the server" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--local", "/tmp/x"), {}, "--remote"),
        (("--port", "70000"), {}, "port"),
        (("--tls-cert", "/tmp/c.pem"), {}, "--tls-key"),
        ((), {"STORSYNC_RETENTION_DAYS": "soon"}, "retention_days"),
        ((), {"STORSYNC_ALLOW_PRIVATE_ENDPOINTS": "maybe"}, "allow_private_endpoints"),
        ((), {"STORSYNC_WORKER_NICENESS": "20"}, "worker_niceness"),
        ((), {"STORSYNC_WORKER_NICENESS": "-5"}, "worker_niceness"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path), *args, env=env, timeout=60)
    assert result.returncode == 2, result
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3


def test_settings_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    result = run_cli("serve", "--config", str(bad), env={}, timeout=60)
    assert result.returncode == 2 and "not valid TOML" in result.stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    result = run_cli("serve", "--config", str(unknown), env={}, timeout=60)
    assert result.returncode == 2 and "prot" in result.stderr


def test_self_signed_tls(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = ServerProcess(
        service_env(data, tmp_path, None),
        tmp_path / "server.log",
        args=("--tls-self-signed",),
        scheme="https",
    )
    server.start()
    try:
        cert = data / "tls" / "self-signed.crt"
        key = data / "tls" / "self-signed.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        context = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(f"{server.url}/healthz", verify=context)
        assert answer.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(
                f"http://127.0.0.1:{server.port}/healthz".replace("http://", "https://"),
                verify=True,
            )
    finally:
        server.stop()
    assert os.path.exists(cert)
