"""An S3 endpoint on a loopback, private or link-local address needs
``allow_private_endpoints``, at sync time as well as when the repository is made (issue 4):

- the check refuses a name by what it resolves to now, and ``pin`` holds a process to
  the answer checked, whatever the DNS says after (rebinding);
- a name that resolved to a public address when the repository was created and resolves
  to a loopback one when it syncs fails the session with a clear error, through the real
  worker process, and nothing connects to the endpoint;
- a repository made while the setting allowed its loopback endpoint fails the same way
  once the service runs without the setting; with it, the worker does connect (so the
  listener would have seen a connection);
- the endpoint the operator gave for the default repository stays trusted.

Every endpoint a test connects to is a listener on 127.0.0.1; public addresses only
appear in faked DNS answers, and nothing connects to them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storsync.config import load_settings
from storsync.errors import Forbidden, InvalidRequest
from storsync.model import SessionState, Trigger
from storsync.service.core import Service
from storsync.service.repositories import RepositorySpec
from storsync.state.records import Session
from storsync.storage import endpoints
from tests.api_support import service_env
from tests.session_support import wait_for

PUBLIC = "8.8.8.8"  # only ever a faked DNS answer
KEYS = {"access_key_id": "test-key", "secret_access_key": "test-secret"}


class Responder:
    """A loopback HTTP listener that counts the connections it gets and answers every
    request 403, so that a worker that reaches it fails at once."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.port = int(self._server.getsockname()[1])
        self.connections = 0
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def endpoint(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with connection, contextlib.suppress(OSError):
                connection.settimeout(5)
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )

    def close(self) -> None:
        self._closing.set()
        self._thread.join()
        self._server.close()


@pytest.fixture
def responder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Responder]:
    # The operator's endpoint is trusted; these tests give none unless they say so.
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    listener = Responder()
    try:
        yield listener
    finally:
        listener.close()


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, str]) -> None:
    """Resolve the names in ``answers`` (changed in place later) to their address."""
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return real(answers.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@contextlib.contextmanager
def _service(tmp: Path, *, allow: bool, **variables: str) -> Iterator[Service]:
    """The service in this process on ``tmp/data``: the same database on each use."""
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    env = {**service_env(tmp / "data", root, None), **variables}
    if not allow:
        del env["STORSYNC_ALLOW_PRIVATE_ENDPOINTS"]
    service = Service.open(load_settings({}, env))
    service.start()
    try:
        yield service
    finally:
        service.close()


def _s3_repository(service: Service, endpoint: str) -> str:
    folder = service.settings.roots[0] / uuid.uuid4().hex[:12]
    spec = RepositorySpec(
        name=folder.name,
        local_path=str(folder),
        remote="s3://bucket/prefix",
        remote_fields={**KEYS, "endpoint": endpoint},
    )
    return service.repositories.create(spec).repository.id


def _synced(service: Service, repository_id: str) -> Session:
    """Trigger a session and wait for its end."""
    session_id = service.sessions.trigger(repository_id, trigger=Trigger.API).id

    def ended() -> Session | None:
        found = service.catalog.sessions.get(session_id)
        assert found is not None
        return None if found.state in (SessionState.QUEUED, SessionState.RUNNING) else found

    return wait_for(ended, "the session to end", timeout=120, every=0.05)


def _refused(session: Session, host: str) -> None:
    assert session.state is SessionState.FAILED, session
    assert session.error is not None
    assert host in session.error, session.error
    assert "set allow_private_endpoints to use it" in session.error, session.error


# -- the check and the pin ------------------------------------------------------------


def test_the_check_judges_a_name_by_what_it_resolves_to_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"rebind.test": PUBLIC}
    _fake_dns(monkeypatch, answers)
    assert set(endpoints.check("http://rebind.test:9000")) == {PUBLIC}
    answers["rebind.test"] = "127.0.0.1"
    with pytest.raises(Forbidden, match=r"resolves to 127\.0\.0\.1, a loopback"):
        endpoints.check("http://rebind.test:9000")
    for private in ("http://[::1]:9000", "http://169.254.169.254", "http://10.0.0.1"):
        with pytest.raises(Forbidden):
            endpoints.check(private)
    with pytest.raises(InvalidRequest, match="cannot be resolved"):
        endpoints.check("http://no-such-host.invalid")


def test_a_pinned_name_keeps_the_checked_answer_whatever_the_dns_says_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"rebind.test": PUBLIC, "other.test": PUBLIC}
    _fake_dns(monkeypatch, answers)
    endpoints.pin("http://Rebind.test:9000", endpoints.check("http://rebind.test:9000"))
    answers["rebind.test"] = answers["other.test"] = "127.0.0.1"
    for name in ("rebind.test", "REBIND.test", b"rebind.test"):
        found = socket.getaddrinfo(name, 9000, socket.AF_INET, socket.SOCK_STREAM)
        assert {info[4] for info in found} == {(PUBLIC, 9000)}
    # Only that name: others resolve as the DNS says.
    assert {i[4][0] for i in socket.getaddrinfo("other.test", 80)} == {"127.0.0.1"}
    # No checked address of the family asked for: no address at all, not a fresh lookup.
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("rebind.test", 9000, socket.AF_INET6)


# -- through the service and its worker -------------------------------------------------


def test_a_name_public_at_creation_and_loopback_at_sync_fails_the_session(
    tmp_path: Path, responder: Responder, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = responder.endpoint("localhost")
    with _service(tmp_path, allow=False) as service:
        # Created while "localhost" (faked, in this process only) resolves publicly...
        with monkeypatch.context() as dns:
            _fake_dns(dns, {"localhost": PUBLIC})
            repository_id = _s3_repository(service, endpoint)
        # ...and synced by a worker whose resolver says what /etc/hosts says: loopback.
        session = _synced(service, repository_id)
    _refused(session, endpoint)
    assert session.started_ns is not None
    assert responder.connections == 0


def test_an_endpoint_allowed_at_creation_is_refused_once_the_setting_is_off(
    tmp_path: Path, responder: Responder
) -> None:
    with _service(tmp_path, allow=True) as service:
        repository_id = _s3_repository(service, responder.endpoint())
        allowed = _synced(service, repository_id)
    # With the setting, the worker reached the listener (which refused it).
    assert allowed.state is SessionState.FAILED
    assert allowed.error is not None
    assert "allow_private_endpoints" not in allowed.error, allowed.error
    assert responder.connections > 0
    before = responder.connections
    with _service(tmp_path, allow=False) as service:
        refused = _synced(service, repository_id)
    _refused(refused, "127.0.0.1")
    assert responder.connections == before


def test_the_endpoint_the_operator_gave_for_the_default_repository_stays_trusted(
    tmp_path: Path, responder: Responder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default repository takes its keys from the environment, as `storsync serve` does.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEYS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEYS["secret_access_key"])
    folder = tmp_path / "default"
    variables = {
        "STORSYNC_LOCAL": str(folder),
        "STORSYNC_REMOTE": "s3://bucket/prefix",
        "STORSYNC_S3_ENDPOINT": responder.endpoint(),
    }
    with _service(tmp_path, allow=False, **variables) as service:
        default = service.repositories.default()
        session = _synced(service, default.id)
    assert session.state is SessionState.FAILED
    assert session.error is not None
    assert "allow_private_endpoints" not in session.error, session.error
    assert responder.connections > 0
