"""One HTTP/1.1 exchange with an S3 endpoint through libcurl (pycurl): the small object
requests of a session (``s3_signed``) without Python's ``http.client`` and urllib3.

A 4 KiB PUT cost 0.64 ms of client CPU through botocore's connection pool, most of it
Python building the request and parsing the answer's headers (``http.client`` through
the ``email`` package), and 0.21 ms here: libcurl does both in C with the interpreter's
lock released (docs/decisions.md, "Small objects through libcurl").

Each thread takes an idle handle (and its kept-alive connection) and gives it back; the
connection settings are botocore's client's, read once: its CA bundle or no verification,
the proxy it would use for the endpoint, its connect and read timeouts. Nothing here
knows S3: the answer's status, headers and body go back to ``s3_signed``, which reads them.
"""

from __future__ import annotations

import io
import queue
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pycurl

from storsync.storage.s3_client import NoAnswer

# The most an answer's body may hold unless the request says: an error's XML, a copy's
# result.
ANSWER_LIMIT = 1 << 20
_LINES = re.IGNORECASE | re.MULTILINE
_ETAG = re.compile(rb"^etag:[ \t]*(.*?)[ \t]*\r?$", _LINES)
_META = re.compile(rb"^x-amz-meta-([^:]*):[ \t]*(.*?)[ \t]*\r?$", _LINES)
_CONNECT_FAILED = frozenset({pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_CONNECT})
_TLS_FAILED = frozenset(
    {
        pycurl.E_SSL_CONNECT_ERROR,
        pycurl.E_SSL_ENGINE_NOTFOUND,
        pycurl.E_SSL_ENGINE_SETFAILED,
        pycurl.E_SSL_CERTPROBLEM,
        pycurl.E_SSL_CIPHER,
        pycurl.E_PEER_FAILED_VERIFICATION,
        pycurl.E_SSL_CACERT_BADFILE,
        pycurl.E_SSL_SHUTDOWN_FAILED,
        pycurl.E_SSL_CRL_BADFILE,
        pycurl.E_SSL_ISSUER_ERROR,
    }
)
_CUT_OFF = frozenset(
    {
        pycurl.E_GOT_NOTHING,
        pycurl.E_SEND_ERROR,
        pycurl.E_RECV_ERROR,
        pycurl.E_PARTIAL_FILE,
    }
)


class Oversized(Exception):
    """An answer whose body was longer than the request allowed (cut off, not kept)."""


class Unanswered(Exception):
    """A request that got no answer: what kind of failure, and libcurl's words."""

    def __init__(self, kind: NoAnswer, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Answer:
    status: int
    head: bytes  # the final answer's header lines, as received
    body: bytes

    def etag(self) -> str | None:
        """The ETag header's value, as sent (quoted)."""
        found = _ETAG.search(self.head)
        return found.group(1).decode("latin-1") if found else None

    def user_metadata(self) -> dict[str, str]:
        """The user metadata the headers carry, by name as stored (lower case)."""
        return {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in _META.findall(self.head)
        }


@dataclass(frozen=True)
class Connection:
    """How requests reach the endpoint, as botocore's client would send them."""

    connect_timeout: float
    read_timeout: float
    verify: bool | str  # False: no verification; a path: that CA bundle
    proxy: str | None = None
    proxy_ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    # libcurl's "host:port:address,..." entries: the addresses a host was checked at
    # (storage.endpoints.pin), which libcurl, resolving by itself, would not know of.
    resolve: tuple[str, ...] = ()


class CurlPool:
    """Handles for requests from any number of threads, one thread to a handle at once."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._idle: queue.SimpleQueue[pycurl.Curl] = queue.SimpleQueue()
        self._made: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def send(
        self,
        method: str,
        url: str,
        headers: Sequence[str],
        body: bytes | None,
        limit: int = ANSWER_LIMIT,
    ) -> Answer:
        """The answer to one request, its body read whole: ``Oversized`` past ``limit``
        bytes. ``body`` None sends none (a HEAD sends none either)."""
        handle = self._take()
        try:
            return self._exchange(handle, method, url, headers, body, limit)
        finally:
            self._idle.put(handle)

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for handle in made:
            handle.close()

    def _take(self) -> pycurl.Curl:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            handle = pycurl.Curl()
            self._connect(handle)
            with self._lock:
                self._made.append(handle)
            return handle

    def _exchange(
        self,
        handle: pycurl.Curl,
        method: str,
        url: str,
        headers: Sequence[str],
        body: bytes | None,
        limit: int,
    ) -> Answer:
        # Options stay on a handle from one request to the next: each request sets all
        # those a request of another verb may have set, rather than a reset and the
        # connection's options again (16 calls a request).
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.MAXFILESIZE, limit)
        # libcurl would add a form's content type to a body, and its own Expect header
        # from 1 MiB: the request says whether it waits for "100 Continue".
        sent = [*headers, "Content-Type:"]
        if not any(line[:7].lower() == "expect:" for line in headers):
            sent.append("Expect:")
        handle.setopt(pycurl.HTTPHEADER, sent)
        if body is None:
            handle.setopt(pycurl.HTTPGET, 1)  # the last request's body, forgotten
        handle.setopt(pycurl.NOBODY, 1 if method == "HEAD" else 0)
        if body is not None:
            handle.setopt(pycurl.POSTFIELDS, body)
        handle.setopt(pycurl.CUSTOMREQUEST, method)
        lines: list[bytes] = []
        handle.setopt(pycurl.HEADERFUNCTION, lines.append)
        received = io.BytesIO()
        handle.setopt(pycurl.WRITEDATA, received)
        try:
            handle.perform()
        except pycurl.error as exc:
            if exc.args[0] == pycurl.E_FILESIZE_EXCEEDED:
                raise Oversized() from None
            raise _unanswered(exc, self._connection.proxy is not None) from None
        finally:
            if body:
                # The handle holds the body it sent till it is given another: an idle
                # handle would keep up to 64 MiB alive, outside what staging counts.
                handle.setopt(pycurl.POSTFIELDS, b"")
        return Answer(handle.getinfo(pycurl.RESPONSE_CODE), _head(lines), received.getvalue())

    def _connect(self, handle: pycurl.Curl) -> None:
        at = self._connection
        handle.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: any thread may call
        handle.setopt(pycurl.PATH_AS_IS, 1)  # a key's "/../" is a key, not a way up
        handle.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        handle.setopt(pycurl.USERAGENT, "storsync")
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, int(at.connect_timeout * 1000))
        # A read timeout as botocore's: no byte for that long. libcurl counts whole seconds.
        handle.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        handle.setopt(pycurl.LOW_SPEED_TIME, max(1, round(at.read_timeout)))
        # The proxy botocore chose for the endpoint (its NO_PROXY applied), or none: not
        # libcurl's own reading of the environment, which differs.
        handle.setopt(pycurl.PROXY, at.proxy or "")
        if at.proxy_ca:
            handle.setopt(pycurl.PROXY_CAINFO, at.proxy_ca)
        if at.verify is False:
            handle.setopt(pycurl.SSL_VERIFYPEER, 0)
            handle.setopt(pycurl.SSL_VERIFYHOST, 0)
        elif isinstance(at.verify, str):
            handle.setopt(pycurl.CAINFO, at.verify)
        if at.client_cert:
            handle.setopt(pycurl.SSLCERT, at.client_cert)
        if at.client_key:
            handle.setopt(pycurl.SSLKEY, at.client_key)
        if at.resolve:
            handle.setopt(pycurl.RESOLVE, list(at.resolve))


def _head(lines: list[bytes]) -> bytes:
    """The header lines of the last answer received: a "100 Continue" comes before it,
    and a proxy's answer to CONNECT before that."""
    for at in range(len(lines) - 1, -1, -1):
        if lines[at].startswith(b"HTTP/"):
            return b"".join(lines[at + 1 :])
    return b"".join(lines)


def _unanswered(exc: pycurl.error, proxied: bool) -> Unanswered:
    if len(exc.args) != 2:  # an option refused, not a transfer's failure
        return Unanswered(NoAnswer.OTHER, str(exc))
    code, detail = exc.args
    if code == pycurl.E_COULDNT_RESOLVE_PROXY or (proxied and code in _CONNECT_FAILED):
        return Unanswered(NoAnswer.PROXY, detail)
    if code in _CONNECT_FAILED:
        return Unanswered(NoAnswer.UNREACHABLE, detail)
    if code == pycurl.E_OPERATION_TIMEDOUT:
        # Only two limits are set: the connect timeout, and the low speed limit once
        # connected ("Operation too slow"), which is botocore's read timeout.
        slow = "too slow" in detail
        return Unanswered(NoAnswer.TIMEOUT if slow else NoAnswer.UNREACHABLE, detail)
    if code in _TLS_FAILED:
        return Unanswered(NoAnswer.TLS, detail)
    if code in _CUT_OFF:
        return Unanswered(NoAnswer.CLOSED, detail)
    return Unanswered(NoAnswer.OTHER, detail)
