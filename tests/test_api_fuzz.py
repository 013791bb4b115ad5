"""Schemathesis against a real `storsync serve`: every operation of the schema the server
publishes at /openapi.json, with data that fits the schema and data that does not, sent
with an admin token so that the routes past authentication get exercised. No answer may
be a 500, and every answer must be documented (status, content type, body schema).

The server's allowed root and data directory are this module's temporary directories, so
whatever the fuzzer creates stays there (checked at the end). The backend cannot matter
to what is checked here (the HTTP surface), so this runs on SQLite only; strings that only
PostgreSQL refuses are in test_api_errors.py, on every backend.

STORSYNC_FUZZ_EXAMPLES sets the examples per operation and mode (default 10, about a
minute); 100 makes a deeper run of a few minutes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core import NOT_SET
from schemathesis.core.parameters import ParameterLocation

from storsync.api.app import create_app
from storsync.api.schemas import has_nul
from storsync.config import Settings
from tests.api_support import ADMIN_PASSWORD, ServerProcess, service_env

# Examples per operation and mode: ~35 operations x 2 modes stay within about a minute.
EXAMPLES = int(os.environ.get("STORSYNC_FUZZ_EXAMPLES", "10"))
# Operations that hash or verify a password (Argon2, deliberately slow) get fewer.
SLOW = {
    "POST /api/v1/auth/token",
    "POST /v6/token",
    "POST /api/v1/users",
    "PATCH /api/v1/users/{user_id}",
}

# The operations as the application declares them (the test loads the served schema and
# checks it lists the same ones).
LABELS = sorted(
    result.ok().label
    for result in schemathesis.openapi.from_dict(
        create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
    ).get_all_operations()
)
# Bodies valid for the schema that the service may still refuse with a 400, for reasons
# a JSON schema cannot say: paths that must be absolute and exist as directories, remote
# URLs, bucket names, a user name and password that must match an account, and integers
# written as floats (`4096.0` is an integer to JSON Schema; the strict settings refuse it).
SEMANTIC_400 = {
    "PATCH /api/v1/settings",
    "POST /api/v1/repositories",
    "PATCH /api/v1/repositories/{repository_id}",
    "POST /v6/BackupRepositories",
    "PUT /v6/BackupRepositories/{repository_id}",
    "POST /api/v1/auth/token",
    "POST /api/v1/auth/refresh",
    "POST /v6/token",
}

# Known bugs outside the HTTP layer, each tested strictly (xfail) elsewhere: the fuzzer's
# check that would find them again at random is left out for that operation only.
KNOWN: dict[str, object] = {}  # operation -> a check skipped there because of a known bug


class Fuzzed:
    def __init__(self, server: ServerProcess, root: Path, data: Path, token: str) -> None:
        self.server = server
        self.root = root
        self.data = data
        self.token = token
        # The schema as served, without its security requirements: every request carries
        # the admin token (authentication has its own tests, test_api_auth.py), so the
        # fuzzer must not count a header it made invalid, and that we replace, as invalid
        # data that was accepted.
        raw = httpx.get(f"{server.url}/openapi.json").json()
        raw.get("components", {}).pop("securitySchemes", None)
        for item in raw["paths"].values():
            for operation in item.values():
                operation.pop("security", None)
        self.schema = schemathesis.openapi.from_dict(raw)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    root, data = tmp / "root", tmp / "data"
    root.mkdir()
    server = ServerProcess(service_env(data, root, None), tmp / "server.log")
    server.start()
    try:
        answer = httpx.post(
            f"{server.url}/v6/token", data={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        fuzzed = Fuzzed(server, root, data, answer.json()["access_token"])
        yield fuzzed
        _assert_confined(fuzzed)  # after every test that used it, whatever their order
    finally:
        server.stop()
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]


def test_served_schema_lists_every_operation(fuzzed: Fuzzed) -> None:
    served = sorted(r.ok().label for r in fuzzed.schema.get_all_operations())
    assert served == LABELS
    raw = httpx.get(f"{fuzzed.server.url}/openapi.json").json()
    # Errors are documented as answered (400 in the face's shape), never FastAPI's 422.
    assert "HTTPValidationError" not in json.dumps(raw)
    for path, item in raw["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], (method, path)
            assert "400" in operation["responses"], (method, path)
            if operation.get("security"):
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def _tame(case: Any) -> None:
    """What the schema allows but a fuzzer should not do: a long poll of up to five
    minutes, an endless event stream."""
    query = case.query or {}
    if isinstance(query.get("timeout"), int | float) and query["timeout"] > 0.2:
        query["timeout"] = 0.2


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("label", LABELS)
def test_operation(fuzzed: Fuzzed, label: str, mode: GenerationMode) -> None:
    operation = fuzzed.schema.find_operation_by_label(label)
    assert operation is not None
    excluded = [positive_data_acceptance] if label in SEMANTIC_400 else []
    if label in KNOWN:
        excluded.append(KNOWN[label])
    headers = {"Authorization": f"Bearer {fuzzed.token}", "Accept": "application/json"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max(2, EXAMPLES // 3) if label in SLOW else EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        _tame(case)
        skipped = list(excluded)
        if has_nul([case.path_parameters, case.query, None if case.body is NOT_SET else case.body]):
            # NUL is refused anywhere by design (a 400; test_api_errors.py), which the
            # schema's string types do not say.
            skipped.append(positive_data_acceptance)
        if case.meta is not None and case.meta.is_negative_at(ParameterLocation.QUERY):
            # In a query string every value is a string: an "invalid" object or number is
            # sent as a valid string (``?repositoryId=null``), and an unknown parameter is
            # ignored, as HTTP services do. The answer must still be a documented one.
            skipped.append(negative_data_rejection)
        case.call_and_validate(
            base_url=fuzzed.server.url, headers=headers, excluded_checks=skipped, timeout=30
        )

    try:
        run()
    except Unsatisfiable:
        # Nothing of this operation can be made invalid (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE, label


def test_fuzzing_stays_in_the_allowed_root(fuzzed: Fuzzed) -> None:
    _assert_confined(fuzzed)


def _assert_confined(fuzzed: Fuzzed) -> None:
    """Whatever the fuzzer made, every repository lies in the test's directories."""
    answer = httpx.get(
        f"{fuzzed.server.url}/api/v1/repositories",
        headers={"Authorization": f"Bearer {fuzzed.token}"},
    )
    assert answer.status_code == 200, answer.text
    allowed = (fuzzed.root.resolve(), fuzzed.data.resolve())
    for repository in answer.json():
        places = [repository["localPath"]]
        if not repository["remote"].startswith("s3://"):
            places.append(unquote(urlsplit(repository["remote"]).path))
        for place in places:
            real = Path(os.path.realpath(place))
            assert any(real == a or a in real.parents for a in allowed), repository
