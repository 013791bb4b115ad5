"""The small object requests of a session, signed and sent without botocore's per-call
pipeline.

A PUT or GET of a small object through a botocore client cost 1.1 ms of client CPU here,
half of it around the request rather than in it: parameters validated against the model,
serialized, a dozen event hooks, the user agent string rebuilt, the answer parsed through
the shape model. On two cores shared with the server that CPU is the wall time of a push
of many small files. These requests are signed with the client's credentials as botocore
signs them (``s3_sigv4``) and sent through libcurl (``s3_curl``) with the client's
connection settings (its proxy, TLS settings and timeouts), 0.2 ms a PUT; the GET of an
object above 1 MiB streamed on the client's own connection pool (docs/decisions.md,
"Small objects without botocore's pipeline", "Small objects through libcurl"). Their
answers become the same errors as botocore's calls.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit
from xml.etree import ElementTree

from storsync.clock import SystemClock, utc_datetime
from storsync.errors import ChangedError, StorsyncError
from storsync.storage import endpoints
from storsync.storage.s3_client import NoAnswer, S3Bucket, unquote_etag
from storsync.storage.s3_curl import (
    ANSWER_LIMIT,
    Answer,
    Connection,
    CurlPool,
    Oversized,
    Request,
    Unanswered,
)
from storsync.storage.s3_sigv4 import SigV4, host_of

# botocore asks the server before sending a body of this size (Expect: 100-continue).
EXPECT_CONTINUE = 1 << 20
# An object up to this size is read whole in one exchange; a larger one streamed.
WHOLE_GET = 1 << 20
_ERROR_ROOM = 64 << 10
_META = "x-amz-meta-"
_CODE = re.compile(rb"<Code>([^<]*)</Code>")


@dataclass(frozen=True)
class Put:
    """A PUT of ``data`` as ``key`` (``path``'s) with ``headers``."""

    path: str
    key: str
    data: bytes
    headers: Mapping[str, str]

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Get:
    """A GET of ``key`` (``path``'s, ``size`` bytes as listed) with ``headers``."""

    path: str
    key: str
    size: int
    headers: Mapping[str, str]


class _Sent(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def size(self) -> int: ...


_S = TypeVar("_S", bound=_Sent)


class SignedRequests:
    """PUT, GET, HEAD, DELETE and the server-side copy of one object of ``bucket`` through
    ``client``'s pool."""

    def __init__(self, client: Any, bucket: S3Bucket) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        from botocore.utils import percent_encode

        meta = client.meta
        self._bucket = bucket
        self._encode = percent_encode
        endpoint = meta.endpoint_url.rstrip("/")
        parts = urlsplit(endpoint)
        # An endpoint behind a path (a gateway's "https://host/s3") keeps it in front of
        # every request's path, which is what is signed: the origin is without it.
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._path = f"{parts.path}/{percent_encode(bucket.name)}/"
        self._signer = SigV4(host_of(endpoint), meta.region_name)
        self._wall = SystemClock()
        self._second = (0, utc_datetime(0))  # the last second a request was signed in
        self._no_credentials = NoCredentialsError
        self._botocore_errors = (BotoCoreError, ClientError)
        # Two attributes botocore keeps to itself: the pool its own calls go through and
        # the credentials it signs them with (refreshed as its own calls refresh them).
        self._http = client._endpoint.http_session
        self._credentials = client._request_signer._credentials
        self._curl = CurlPool(_connection(client, endpoint))

    def put(self, path: str, key: str, data: bytes, headers: Mapping[str, str]) -> str:
        """Write ``data`` as ``key``; the ETag of the object written."""
        answer = self._exchange(path, self._request(path, "PUT", key, dict(headers), data))
        return unquote_etag(answer.etag() or "")

    def put_all(self, puts: Sequence[Put], width: int) -> list[str | StorsyncError]:
        """Each of ``puts`` sent once, up to ``width`` at once from this thread: in their
        order, the ETag of each object written or the error ``put`` would raise."""
        answers = self._send_all(
            puts,
            lambda put: self._request(put.path, "PUT", put.key, dict(put.headers), put.data),
            width,
        )
        return [
            a if isinstance(a, StorsyncError) else unquote_etag(a.etag() or "") for a in answers
        ]

    def get_all(
        self, gets: Sequence[Get], width: int
    ) -> list[tuple[dict[str, str], bytes] | StorsyncError]:
        """Each of ``gets`` (objects of up to ``WHOLE_GET`` bytes) sent once, up to ``width``
        at once from this thread: in their order, the user metadata and the body of each,
        or the error ``get`` would raise."""
        answers = self._send_all(
            gets,
            lambda get: self._request(
                get.path, "GET", get.key, dict(get.headers), None, max(get.size, _ERROR_ROOM)
            ),
            width,
        )
        return [a if isinstance(a, StorsyncError) else (a.user_metadata(), a.body) for a in answers]

    def _send_all(
        self, items: Sequence[_S], request_of: Callable[[_S], Request], width: int
    ) -> list[Answer | StorsyncError]:
        """The request of each of ``items`` sent once, up to ``width`` at once from this
        thread: in their order, each answer if a success, else the error it means."""
        requests: dict[int, Request] = {}
        outcomes: dict[int, Answer | StorsyncError] = {}
        for at, item in enumerate(items):
            try:
                requests[at] = request_of(item)
            except StorsyncError as exc:  # no credentials to sign it with
                outcomes[at] = exc.with_traceback(None)  # its frames hold the batch
        answers = self._curl.send_all(list(requests.values()), width)
        for (at, request), answer in zip(requests.items(), answers, strict=True):
            try:
                outcomes[at] = self._answered(items[at].path, request, answer)
            except Oversized:  # only a GET's (a PUT's long answer is no answer)
                outcomes[at] = _oversized(items[at].path, items[at].size)
            except StorsyncError as exc:
                outcomes[at] = exc.with_traceback(None)
        return [outcomes[at] for at in range(len(items))]

    def get(
        self, path: str, key: str, headers: Mapping[str, str], size: int
    ) -> tuple[dict[str, str], Any]:
        """The user metadata of ``key`` and its body, a stream to read and close; ``size``
        the object's as listed: a body longer than that is a changed object."""
        from botocore.response import StreamingBody

        if size <= WHOLE_GET:
            try:
                # Room for an error's XML, which comes through the same limit; a body
                # longer than expected but within it is caught by the source's count.
                limit = max(size, _ERROR_ROOM)
                whole = self._exchange(
                    path, self._request(path, "GET", key, dict(headers), None, limit)
                )
            except Oversized:
                raise _oversized(path, size) from None
            return whole.user_metadata(), io.BytesIO(whole.body)
        answer = self._streamed(path, key, dict(headers))
        # Without a length (a body sent in chunks) nothing is checked here; the source
        # checks the bytes against the size the listing gave.
        length = answer.headers.get("Content-Length")
        sent = int(length) if length is not None else None
        return _user_metadata(answer.headers), StreamingBody(answer.raw, sent)

    def head(self, path: str, key: str, headers: Mapping[str, str]) -> dict[str, str]:
        """The user metadata of ``key``."""
        answer = self._exchange(path, self._request(path, "HEAD", key, dict(headers), None))
        return answer.user_metadata()

    def delete(self, path: str, key: str, headers: Mapping[str, str]) -> None:
        self._exchange(path, self._request(path, "DELETE", key, dict(headers), None))

    def copy(self, path: str, key: str, source_key: str, headers: Mapping[str, str]) -> str:
        """Copy the object ``source_key`` to ``key``, its metadata with it; the ETag of the
        copy. The source as botocore names it: bucket and key, percent-encoded."""
        source = self._encode(f"{self._bucket.name}/{source_key}", safe="-._~/")
        sent = {**headers, "x-amz-copy-source": source}
        return self._copied(
            path, self._exchange(path, self._request(path, "PUT", key, sent, b"")).body
        )

    def close(self) -> None:
        self._curl.close()

    def _copied(self, path: str, answer: bytes) -> str:
        """The ETag of a copy's answer. S3 may answer a copy 200 and fail it in the body
        (botocore then takes it for a 500, as here: a failure to try again)."""
        try:
            result = ElementTree.fromstring(answer)
        except ElementTree.ParseError:  # cut short, or not S3's: no copy to count on
            result = ElementTree.Element("Error")
        if result.tag.endswith("Error"):
            code = result.findtext("Code") or ""
            raise self._bucket.answered(
                {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 500}}, path
            )
        etags = [e.text or "" for e in result.iter() if e.tag.endswith("ETag")]
        return unquote_etag(etags[0] if etags else "")

    def _exchange(self, path: str, request: Request) -> Answer:
        """The answer to ``request`` through libcurl if a success, its body read whole
        (``Oversized`` past its limit); else what it means, raised."""
        try:
            answer: Answer | Exception = self._curl.send(request)
        except (Unanswered, Oversized) as exc:
            answer = exc
        return self._answered(path, request, answer)

    def _request(
        self,
        path: str,
        method: str,
        key: str,
        headers: dict[str, str],
        data: bytes | None,
        limit: int = ANSWER_LIMIT,
    ) -> Request:
        path_sent, signed = self._signed(path, method, key, headers)
        lines = [f"{name}: {value}" for name, value in signed.items()]
        # botocore asks before sending a large body, so that a refused condition does
        # not cost its upload.
        waits = data is not None and len(data) >= EXPECT_CONTINUE
        return Request(method, self._origin + path_sent, lines, data, limit, waits)

    def _answered(self, path: str, request: Request, answer: Answer | Exception) -> Answer:
        """``answer`` if a success; else what it means, raised: a refusal or no answer as
        botocore's calls say them, ``Oversized`` for a GET's body past its limit."""
        if isinstance(answer, Unanswered):
            raise self._bucket.unanswered(answer.kind, answer.detail)
        if isinstance(answer, Oversized):
            if request.method == "GET":
                raise answer
            raise self._bucket.unanswered(
                NoAnswer.OTHER,
                f"an answer to a {request.method} longer than {request.limit} bytes",
            )
        if isinstance(answer, Exception):
            raise answer
        if answer.status >= 300:
            raise self._refused(path, answer.status, answer.body)
        return answer

    def _streamed(self, path: str, key: str, headers: dict[str, str]) -> Any:
        """The answer of a successful GET on botocore's pool, its body to stream."""
        from botocore.awsrequest import AWSPreparedRequest

        path_sent, signed = self._signed(path, "GET", key, headers)
        with self._bucket.calling(path):
            # As botocore's endpoint sends them: values as bytes.
            wire = {name: value.encode() for name, value in signed.items()}
            request = AWSPreparedRequest("GET", self._origin + path_sent, wire, None, True)
            answer = self._http.send(request)
        if answer.status_code >= 300:
            raise self._refused(path, answer.status_code, answer.content or b"")
        return answer

    def _signed(
        self, path: str, method: str, key: str, headers: dict[str, str]
    ) -> tuple[str, dict[str, str]]:
        """The path of ``key`` as sent, and ``headers`` with the signature's."""
        path_sent = self._path + self._encode(key, safe="/~")
        # Not in ``calling``: its context manager cost as much as the rest of a request's
        # Python here; refreshed credentials may fail as botocore's calls fail.
        try:
            if self._credentials is None:
                raise self._no_credentials()
            frozen = self._credentials.get_frozen_credentials()
        except self._botocore_errors as exc:
            raise self._bucket.error(exc, path) from exc
        credentials = (frozen.access_key, frozen.secret_key, frozen.token)
        # The machine's time, whatever clock a session runs on: a server refuses a
        # request dated 15 minutes away from its own. Signatures count whole seconds.
        second = self._wall.now_ns() // 1_000_000_000
        kept_second, now = self._second
        if second != kept_second:
            now = utc_datetime(second * 1_000_000_000)
            self._second = (second, now)  # one assignment: safe across threads
        return path_sent, self._signer.sign(method, path_sent, headers, credentials, now)

    def _refused(self, path: str, status: int, body: bytes) -> Exception:
        """What an answer that is not a success means, as botocore's calls say it;
        ``body`` an error's XML, or nothing (a HEAD, a 304)."""
        found = _CODE.search(body)
        code = found.group(1).decode(errors="replace") if found else ""
        return self._bucket.answered(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, path
        )


def _connection(client: Any, endpoint: str) -> Connection:
    """How botocore's ``client`` reaches ``endpoint``: its resolved TLS verification (a CA
    bundle, AWS_CA_BUNDLE or the one botocore carries; or none), the proxy it would take
    for the endpoint, its client certificate and its timeouts. Read from its connection
    pool's attributes, which botocore keeps to itself, as the pool itself is."""
    from botocore.httpsession import get_cert_path

    http = client._endpoint.http_session
    config = client.meta.config
    verify = http._verify
    parts = urlsplit(endpoint)
    held = endpoints.pinned(endpoint)
    resolve: tuple[str, ...] = ()
    if held and parts.hostname:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        listed = ",".join(f"[{a}]" if ":" in a else a for a in held)
        resolve = (f"{parts.hostname}:{port}:{listed}",)
    return Connection(
        connect_timeout=float(config.connect_timeout),
        read_timeout=float(config.read_timeout),
        verify=get_cert_path(verify) if verify else False,
        proxy=http._proxy_config.proxy_url_for(endpoint),
        proxy_ca=http._proxy_config.settings.get("proxy_ca_bundle"),
        client_cert=http._cert_file,
        client_key=http._key_file,
        resolve=resolve,
    )


def _oversized(path: str, size: int) -> ChangedError:
    return ChangedError(f"{path}: the remote sent more than the {size} bytes expected")


def _user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """The user metadata an answer's headers carry, by name as stored (lower case)."""
    return {
        name[len(_META) :].lower(): value
        for name, value in headers.items()
        if name.lower().startswith(_META)
    }
