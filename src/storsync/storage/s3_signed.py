"""The small object requests of a session, signed and sent without botocore's per-call
pipeline.

A PUT or GET of a small object through a botocore client cost 1.1 ms of client CPU here,
half of it around the request rather than in it: parameters validated against the model,
serialized, a dozen event hooks, the user agent string rebuilt, the answer parsed through
the shape model. On two cores shared with the server that CPU is the wall time of a push
of many small files. These requests are signed with the client's credentials as botocore
signs them (``s3_sigv4``) and sent on the client's own connection pool (its proxies, TLS
settings and timeouts): about 0.5 ms each (docs/decisions.md, "Small objects without
botocore's pipeline"). Their answers become the same errors as botocore's calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from storsync.clock import SystemClock, utc_datetime
from storsync.storage.s3_client import S3Bucket, unquote_etag
from storsync.storage.s3_sigv4 import SigV4, host_of

# botocore asks the server before sending a body of this size (Expect: 100-continue),
# so a refused condition does not cost the upload of the bytes.
EXPECT_CONTINUE = 1 << 20
_META = "x-amz-meta-"
_CODE = re.compile(rb"<Code>([^<]*)</Code>")


class SignedRequests:
    """PUT, GET, HEAD, DELETE and the server-side copy of one object of ``bucket`` through
    ``client``'s pool."""

    def __init__(self, client: Any, bucket: S3Bucket) -> None:
        from botocore.utils import percent_encode

        meta = client.meta
        self._bucket = bucket
        self._encode = percent_encode
        endpoint = meta.endpoint_url.rstrip("/")
        self._origin = endpoint
        self._path = f"{urlsplit(endpoint).path}/{percent_encode(bucket.name)}/"
        self._signer = SigV4(host_of(endpoint), meta.region_name)
        self._wall = SystemClock()
        # Two attributes botocore keeps to itself: the pool its own calls go through and
        # the credentials it signs them with (refreshed as its own calls refresh them).
        self._http = client._endpoint.http_session
        self._credentials = client._request_signer._credentials

    def put(self, path: str, key: str, data: bytes, headers: Mapping[str, str]) -> str:
        """Write ``data`` as ``key``; the ETag of the object written."""
        sent = dict(headers)
        if len(data) >= EXPECT_CONTINUE:
            sent["Expect"] = "100-continue"
        answer = self._send(path, "PUT", key, sent, data, stream=False)
        return unquote_etag(answer.headers.get("ETag", ""))

    def get(self, path: str, key: str, headers: Mapping[str, str]) -> tuple[dict[str, str], Any]:
        """The user metadata of ``key`` and its body, a stream to read and close."""
        from botocore.response import StreamingBody

        answer = self._send(path, "GET", key, dict(headers), None, stream=True)
        # Without a length (a body sent in chunks) nothing is checked here; the source
        # checks the bytes against the size the listing gave.
        length = answer.headers.get("Content-Length")
        size = int(length) if length is not None else None
        return _user_metadata(answer.headers), StreamingBody(answer.raw, size)

    def head(self, path: str, key: str, headers: Mapping[str, str]) -> dict[str, str]:
        """The user metadata of ``key``."""
        return _user_metadata(
            self._send(path, "HEAD", key, dict(headers), None, stream=False).headers
        )

    def delete(self, path: str, key: str, headers: Mapping[str, str]) -> None:
        self._send(path, "DELETE", key, dict(headers), None, stream=False)

    def copy(self, path: str, key: str, source_key: str, headers: Mapping[str, str]) -> str:
        """Copy the object ``source_key`` to ``key``, its metadata with it; the ETag of the
        copy. The source as botocore names it: bucket and key, percent-encoded."""
        source = self._encode(f"{self._bucket.name}/{source_key}", safe="-._~/")
        sent = {**headers, "x-amz-copy-source": source}
        return self._copied(path, self._send(path, "PUT", key, sent, b"", stream=False))

    def _copied(self, path: str, answer: Any) -> str:
        """The ETag of a copy's answer. S3 may answer a copy 200 and fail it in the body
        (botocore then takes it for a 500, as here: a failure to try again)."""
        try:
            result = ElementTree.fromstring(answer.content)
        except ElementTree.ParseError:  # cut short, or not S3's: no copy to count on
            result = ElementTree.Element("Error")
        if result.tag.endswith("Error"):
            code = result.findtext("Code") or ""
            raise self._bucket.answered(
                {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 500}}, path
            )
        etags = [e.text or "" for e in result.iter() if e.tag.endswith("ETag")]
        return unquote_etag(etags[0] if etags else "")

    def _send(
        self,
        path: str,
        method: str,
        key: str,
        headers: dict[str, str],
        data: bytes | None,
        *,
        stream: bool,
    ) -> Any:
        """The answer of a success; a body not ``stream``ed is read whole, which gives the
        connection back to the pool."""
        from botocore.awsrequest import AWSPreparedRequest
        from botocore.exceptions import NoCredentialsError

        path_sent = self._path + self._encode(key, safe="/~")
        with self._bucket.calling(path):
            if self._credentials is None:
                raise NoCredentialsError()
            frozen = self._credentials.get_frozen_credentials()
            credentials = (frozen.access_key, frozen.secret_key, frozen.token)
            # The machine's time, whatever clock a session runs on: a server refuses a
            # request dated 15 minutes away from its own.
            now = utc_datetime(self._wall.now_ns())
            signed = self._signer.sign(method, path_sent, headers, credentials, now)
            if data is not None:
                signed["Content-Length"] = str(len(data))
            # As botocore's endpoint sends them: values as bytes (its connection class
            # waits for "100 Continue" only when the Expect header is the bytes).
            wire = {name: value.encode() for name, value in signed.items()}
            request = AWSPreparedRequest(method, self._origin + path_sent, wire, data, stream)
            answer = self._http.send(request)
        if answer.status_code >= 300:
            raise self._refused(path, answer)
        return answer

    def _refused(self, path: str, answer: Any) -> Exception:
        """What an answer that is not a success means, as botocore's calls say it."""
        body = answer.content or b""  # an error's XML, or nothing (a HEAD, a 304)
        found = _CODE.search(body)
        code = found.group(1).decode(errors="replace") if found else ""
        return self._bucket.answered(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": answer.status_code}},
            path,
        )


def _user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """The user metadata an answer's headers carry, by name as stored (lower case)."""
    return {
        name[len(_META) :].lower(): value
        for name, value in headers.items()
        if name.lower().startswith(_META)
    }
