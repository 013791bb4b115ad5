"""What a new user meets in the first hour with an S3 remote (issue 12): each problem is
one sentence that says what to do, and the command line can add an S3 repository.

- no credentials anywhere: where to give them (to the service, to the command line);
- no endpoint given: messages name AWS S3 and its region, not a made-up endpoint;
- an endpoint that does not answer: is it running, is that the right address;
- a bucket that does not exist: storsync does not create buckets, how to create it;
- a region that is no region name: refused when given (400 on the API, exit 2);
- an AWS profile that no config file has: exit 2 with its name, not a traceback;
- `storsync repo-add` takes the endpoint, region and keys (or this shell's AWS
  variables) of an s3:// remote; the API and `storsync repos` show the endpoint and
  region back, never the keys.

Real SeaweedFS (``s3_server``, which takes any keys) and a real service. Nothing leaves
loopback: where no credentials are wanted there are no AWS variables, the AWS config
files do not exist and the instance metadata lookup is off.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storsync.api.app import create_app
from storsync.config import Settings
from storsync.errors import PermanentStorageError, StorageUnavailable, UsageError
from storsync.model import StopSignal
from storsync.storage.s3 import S3Settings, S3Storage
from tests.api_support import ADMIN_PASSWORD, ServerProcess, free_port, running_api, service_env
from tests.conftest import run_cli, write
from tests.s3_server import SeaweedS3

# Keys only a leak could print (SeaweedFS takes any).
KEY = f"AKIA{uuid.uuid4().hex[:16].upper()}"
SECRET = f"first-hour-secret-{uuid.uuid4().hex}"


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process, and the children it starts, without AWS credentials anywhere."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    missing = str(tmp_path / "no-aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _prefix() -> str:
    return f"first-hour/{uuid.uuid4().hex[:12]}"


def _scan_error(settings: S3Settings) -> Exception:
    storage = S3Storage(settings)
    try:
        storage.scan(lambda _path, _reason: None, StopSignal())
    except Exception as exc:
        return exc
    finally:
        storage.close()
    raise AssertionError("the scan succeeded")


# -- messages -------------------------------------------------------------------------


@pytest.mark.usefixtures("no_aws")
def test_no_credentials_say_where_to_give_them(s3_server: SeaweedS3) -> None:
    prefix = _prefix()
    settings = S3Settings(bucket=s3_server.bucket, prefix=prefix, endpoint=s3_server.endpoint)
    error = _scan_error(settings)
    assert isinstance(error, PermanentStorageError) and not error.retryable
    assert error.message.startswith(
        f"no S3 credentials were found for s3://{s3_server.bucket}/{prefix} on S3 endpoint "
        f"{s3_server.endpoint}: give an access key id and a secret access key"
    ), error.message
    for where in (
        "remoteCredentials accessKeyId and secretAccessKey",
        "s3_access_key_id",
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        "AWS config file",
    ):
        assert where in error.message
    assert "Error" not in error.message  # no botocore class name


@pytest.mark.usefixtures("no_aws")
def test_without_an_endpoint_messages_name_aws_s3_and_its_region() -> None:
    # No credentials: the call fails while being signed, before any connection.
    for region, named in ((None, "us-east-1"), ("eu-west-3", "eu-west-3")):
        error = _scan_error(S3Settings(bucket="some-bucket", prefix="p", region=region))
        assert isinstance(error, PermanentStorageError)
        assert f"on AWS S3 (no endpoint given, region {named}):" in error.message, error.message
        assert "default AWS endpoint" not in error.message


def test_an_endpoint_that_does_not_answer_asks_whether_it_runs() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    settings = S3Settings(
        bucket="some-bucket",
        endpoint=endpoint,
        access_key_id=KEY,
        secret_access_key=SECRET,
        connect_timeout=2,
    )
    error = _scan_error(settings)
    assert isinstance(error, StorageUnavailable)
    assert error.message == (
        f"cannot reach S3 endpoint {endpoint}: is it running, and is that the right address?"
    )


def test_a_missing_bucket_says_how_to_create_it(s3_server: SeaweedS3) -> None:
    bucket = f"first-hour-{uuid.uuid4().hex[:12]}"
    settings = S3Settings(
        bucket=bucket,
        endpoint=s3_server.endpoint,
        access_key_id=KEY,
        secret_access_key=SECRET,
    )
    error = _scan_error(settings)
    assert isinstance(error, PermanentStorageError) and not error.retryable
    assert error.message == (
        f"bucket {bucket!r} does not exist on S3 endpoint {s3_server.endpoint}; storsync "
        "does not create buckets: create it with the store's own tool, such as "
        f"`aws s3 mb s3://{bucket} --endpoint-url {s3_server.endpoint}`"
    )
    s3_server.create_bucket(bucket)  # what the hint's command does
    storage = S3Storage(settings)
    try:
        assert storage.scan(lambda _path, _reason: None, StopSignal()) == {}
    finally:
        storage.close()


def test_a_region_that_is_no_region_name_is_refused_when_given(
    s3_server: SeaweedS3, tmp_path: Path
) -> None:
    bad = "eu west 3"
    (tmp_path / "local").mkdir()
    ran = run_cli(
        "sync",
        str(tmp_path / "local"),
        f"s3://{s3_server.bucket}/{_prefix()}",
        "--state-dir",
        str(tmp_path / "state"),
        "--s3-endpoint",
        s3_server.endpoint,
        "--s3-region",
        bad,
    )
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert f"invalid S3 region {bad!r}" in ran.stderr and "Traceback" not in ran.stderr
    with running_api("inprocess", tmp_path / "service", None) as api:
        answer = api.post(
            "/api/v1/repositories",
            json={
                "name": "bad-region",
                "localPath": str(api.root / "bad-region"),
                "remote": f"s3://{s3_server.bucket}/{_prefix()}",
                "remoteCredentials": {"endpoint": s3_server.endpoint, "region": bad},
            },
        )
        assert answer.status_code == 400, answer.text
        assert f"invalid S3 region {bad!r}" in answer.json()["error"]["message"]


@pytest.mark.usefixtures("no_aws")
def test_an_aws_profile_no_config_file_has_is_named(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(UsageError) as raised:
        S3Storage(S3Settings(bucket=s3_server.bucket, endpoint=s3_server.endpoint))
    assert raised.value.message == (
        "the AWS profile 'no-such-profile' (AWS_PROFILE) is in no AWS config file"
    )


# -- the endpoint and region shown back, the keys never ----------------------------------


def test_repositories_show_the_endpoint_and_region_never_the_keys(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with running_api("inprocess", tmp_path, None) as api:
        s3 = api.new_repository(
            remote="s3://some-bucket/p",
            remoteCredentials={
                "accessKeyId": KEY,
                "secretAccessKey": SECRET,
                "endpoint": endpoint,
                "region": "eu-west-3",
            },
        )
        folder = api.new_repository()
        shown = {"remoteEndpoint": endpoint, "remoteRegion": "eu-west-3", "hasCredentials": True}
        none = {"remoteEndpoint": None, "remoteRegion": None, "hasCredentials": False}
        for repository, expected in ((s3, shown), (folder, none)):
            rid = repository["id"]
            for path in (f"/api/v1/repositories/{rid}", f"/v6/BackupRepositories/{rid}"):
                answer = api.get(path)
                assert answer.status_code == 200, answer.text
                assert {k: answer.json()[k] for k in expected} == expected, path
                assert SECRET not in answer.text and KEY not in answer.text
    schema = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
    out = schema["components"]["schemas"]["RepositoryOut"]
    assert {"remoteEndpoint", "remoteRegion", "hasCredentials"} <= set(out["required"])
    written = schema["components"]["schemas"]["Credentials"]["properties"]
    assert {"accessKeyId", "secretAccessKey", "endpoint", "region"} == set(written)


# -- storsync repo-add ------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, no_aws: None) -> Iterator[dict[str, str]]:
    """`storsync serve` without AWS credentials of its own (nor its workers), logged in
    to: the variables of a client command."""
    process = ServerProcess(service_env(tmp_path / "data", tmp_path, None), tmp_path / "log")
    process.start()
    try:
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "STORSYNC_PASSWORD": ADMIN_PASSWORD,
            "STORSYNC_SERVER": process.url,
        }
        logged = run_cli("login", env=env)
        assert logged.returncode == 0, logged.stderr
        yield env
    finally:
        process.stop()
    log = (tmp_path / "log").read_text()
    assert SECRET not in log and KEY not in log


def _client(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    ran = run_cli(*args, env=env)
    text = ran.stdout + ran.stderr
    assert "Traceback" not in text, text
    assert SECRET not in text and KEY not in text, f"{args}: the keys were printed"
    return ran


def _last_session(env: dict[str, str], name: str) -> dict[str, object]:
    listed = _client(env, "sessions", "--repository", name, "--json")
    assert listed.returncode == 0, listed.stderr
    last: dict[str, object] = json.loads(listed.stdout)[0]
    return last


def test_repo_add_help_says_where_the_keys_come_from() -> None:
    out = run_cli("repo-add", "--help").stdout
    for option in ("--s3-endpoint", "--s3-region", "--access-key-id", "--secret-access-key"):
        assert option in out
    assert "AWS_ACCESS_KEY_ID" in out and "AWS_SECRET_ACCESS_KEY" in out


def test_repo_add_takes_an_s3_remote(
    server: dict[str, str], s3_server: SeaweedS3, tmp_path: Path
) -> None:
    endpoint, bucket = s3_server.endpoint, s3_server.bucket
    shell_keys = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}

    # The keys from this shell's AWS variables; the endpoint and region given.
    prefix = _prefix()
    added = _client(
        {**server, **shell_keys},
        "repo-add",
        "from-shell",
        str(tmp_path / "from-shell"),
        f"s3://{bucket}/{prefix}",
        "--s3-endpoint",
        endpoint,
        "--s3-region",
        "eu-west-3",
    )
    assert added.returncode == 0, added.stderr
    write(tmp_path / "from-shell", "hello.txt", "hello")
    done = _client(server, "trigger", "from-shell", "--wait", "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert _last_session(server, "from-shell")["state"] == "completed"
    assert list(s3_server.objects(prefix=f"{prefix}/hello.txt")) == [f"{prefix}/hello.txt"]

    # The keys as options; the endpoint from AWS_ENDPOINT_URL, as `storsync sync` takes it.
    added = _client(
        {**server, "AWS_ENDPOINT_URL": endpoint},
        "repo-add",
        "by-options",
        str(tmp_path / "by-options"),
        f"s3://{bucket}/{_prefix()}",
        "--access-key-id",
        KEY,
        "--secret-access-key",
        SECRET,
    )
    assert added.returncode == 0, added.stderr
    done = _client(server, "trigger", "by-options", "--wait", "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)

    # No keys at all: the session says where to give them.
    added = _client(
        server,
        "repo-add",
        "no-keys",
        str(tmp_path / "no-keys"),
        f"s3://{bucket}/{_prefix()}",
        "--endpoint",
        endpoint,
    )
    assert added.returncode == 0, added.stderr
    failed = _client(server, "trigger", "no-keys", "--wait", "--json")
    assert failed.returncode != 0, (failed.stdout, failed.stderr)
    last = _last_session(server, "no-keys")
    assert last["state"] == "failed"
    assert "no S3 credentials were found" in str(last["error"])
    assert "remoteCredentials accessKeyId and secretAccessKey" in str(last["error"])

    # A directory remote takes none of them, whatever the shell holds.
    added = _client(
        {**server, **shell_keys, "AWS_ENDPOINT_URL": endpoint},
        "repo-add",
        "folder",
        str(tmp_path / "folder" / "l"),
        str(tmp_path / "folder" / "r"),
    )
    assert added.returncode == 0, added.stderr

    listed = _client(server, "repos", "--json")
    by_name = {r["name"]: r for r in json.loads(listed.stdout)}
    assert {
        name: (r["remoteEndpoint"], r["remoteRegion"], r["hasCredentials"])
        for name, r in by_name.items()
        if name != "default"
    } == {
        "from-shell": (endpoint, "eu-west-3", True),
        "by-options": (endpoint, None, True),
        "no-keys": (endpoint, None, False),
        "folder": (None, None, False),
    }
    lines = _client(server, "repos").stdout
    assert f"s3://{bucket}/{prefix} (endpoint {endpoint}, region eu-west-3)" in lines
    assert f"<-> {tmp_path / 'folder' / 'r'}  two-way" in lines
