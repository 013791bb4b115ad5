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
import itertools
import queue
import re
import threading
from collections.abc import Iterator, Sequence
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


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Sequence[str]  # "Name: value" lines
    body: bytes | None  # None: none sent (a HEAD sends none either)
    limit: int = ANSWER_LIMIT  # the most the answer's body may hold: else ``Oversized``
    waits: bool = False  # whether the body waits for the server's "100 Continue"


class _Exchange:
    """One request set on a handle, and what its answer has brought so far."""

    def __init__(self, handle: pycurl.Curl, request: Request) -> None:
        self.handle = handle
        self._sent_body = bool(request.body)
        self._lines: list[bytes] = []
        self._received = io.BytesIO()
        # Options stay on a handle from one request to the next: each request sets all
        # those a request of another verb may have set, rather than a reset and the
        # connection's options again (16 calls a request).
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.MAXFILESIZE, request.limit)
        # libcurl would add a form's content type to a body, and its own Expect header
        # from 1 MiB: the request says whether it waits for "100 Continue".
        expect = "Expect: 100-continue" if request.waits else "Expect:"
        handle.setopt(pycurl.HTTPHEADER, [*request.headers, "Content-Type:", expect])
        if request.body is None:
            handle.setopt(pycurl.HTTPGET, 1)  # the last request's body, forgotten
        handle.setopt(pycurl.NOBODY, 1 if request.method == "HEAD" else 0)
        if request.body is not None:
            handle.setopt(pycurl.POSTFIELDS, request.body)
        handle.setopt(pycurl.CUSTOMREQUEST, request.method)
        handle.setopt(pycurl.HEADERFUNCTION, self._lines.append)
        handle.setopt(pycurl.WRITEDATA, self._received)

    def answer(self) -> Answer:
        status = self.handle.getinfo(pycurl.RESPONSE_CODE)
        return Answer(status, _head(self._lines), self._received.getvalue())

    def release(self) -> pycurl.Curl:
        """The handle, its request over."""
        if self._sent_body:
            # The handle holds the body it sent till it is given another: an idle
            # handle would keep up to 64 MiB alive, outside what staging counts.
            self.handle.setopt(pycurl.POSTFIELDS, b"")
        return self.handle


class CurlPool:
    """Handles for requests from any number of threads, one thread to a handle at once."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._idle: queue.SimpleQueue[pycurl.Curl] = queue.SimpleQueue()
        self._made: list[pycurl.Curl] = []
        self._lock = threading.Lock()
        # Requests sent at once go through one multi handle, which keeps their
        # connections alive from one batch to the next: one batch at a time.
        self._multi = pycurl.CurlMulti()
        self._batch = threading.Lock()

    def send(self, request: Request) -> Answer:
        """The answer to ``request``, its body read whole: ``Oversized`` past its limit,
        ``Unanswered`` without an answer."""
        handle = self._take()
        exchange = _Exchange(handle, request)
        try:
            handle.perform()
        except pycurl.error as exc:
            raise self._failed(exc.args) from None
        finally:
            self._idle.put(exchange.release())
        return exchange.answer()

    def send_all(self, requests: Sequence[Request], width: int) -> list[Answer | Exception]:
        """The answers to ``requests`` in their order, sent from this thread at most
        ``width`` at once (libcurl's multi interface), each an ``Answer``, ``Oversized``
        or ``Unanswered``: a thread a request would cost two switches of threads each."""
        with self._batch:
            outcomes = self._run(enumerate(requests), width)
        return [outcomes[at] for at in range(len(requests))]

    def _run(
        self, waiting: Iterator[tuple[int, Request]], width: int
    ) -> dict[int, Answer | Exception]:
        multi = self._multi
        outcomes: dict[int, Answer | Exception] = {}
        running: dict[int, tuple[int, _Exchange]] = {}  # by the handle's id

        def fill() -> None:
            for at, request in itertools.islice(waiting, width - len(running)):
                exchange = _Exchange(self._take(), request)
                running[id(exchange.handle)] = (at, exchange)
                multi.add_handle(exchange.handle)

        def end(handle: pycurl.Curl, failure: tuple[int, str] | None) -> None:
            at, exchange = running.pop(id(handle))
            multi.remove_handle(handle)
            outcomes[at] = exchange.answer() if failure is None else self._failed(failure)
            self._idle.put(exchange.release())

        try:
            fill()
            while running:
                while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                queued = 1
                while queued:
                    queued, done, failed = multi.info_read()
                    for handle in done:
                        end(handle, None)
                    for handle, code, message in failed:
                        end(handle, (code, message))
                fill()
                if running:
                    multi.select(1.0)
        finally:  # an exception of this thread's: no request left half sent
            for _, exchange in running.values():
                multi.remove_handle(exchange.handle)
                self._idle.put(exchange.release())
        return outcomes

    def close(self) -> None:
        with self._batch, self._lock:
            made, self._made = self._made, []
            self._multi.close()
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

    def _failed(self, args: tuple[object, ...]) -> Exception:
        if args and args[0] == pycurl.E_FILESIZE_EXCEEDED:
            return Oversized()
        return _unanswered(args, self._connection.proxy is not None)

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
    and a proxy's answer to CONNECT before that. A status line is the only line that
    starts with "HTTP/" (a header's name has no "/")."""
    received = b"".join(lines)
    last = received.rfind(b"\nHTTP/") + 1  # 0: the first line, or no status line
    if not received.startswith(b"HTTP/", last):
        return received
    end = received.find(b"\n", last)
    return b"" if end < 0 else received[end + 1 :]


def _unanswered(args: tuple[object, ...], proxied: bool) -> Unanswered:
    if len(args) != 2:  # an option refused, not a transfer's failure
        return Unanswered(NoAnswer.OTHER, " ".join(map(str, args)))
    code, detail = args[0], str(args[1])
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
