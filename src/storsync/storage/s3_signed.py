"""The small object requests of a session, signed and sent without botocore's per-call
pipeline.

A PUT or GET of a small object through a botocore client cost 1.1 ms of client CPU here,
half of it around the request rather than in it: parameters validated against the model,
serialized, a dozen event hooks, the user agent string rebuilt, the answer parsed through
the shape model. On two cores shared with the server that CPU is the wall time of a push
of many small files. These requests are signed by botocore's own SigV4 signer, with the
client's credentials and configuration, and sent on the client's own connection pool (its
proxies, TLS settings and timeouts): 0.5 ms each (docs/decisions.md, "Small objects
without botocore's pipeline"). Their answers become the same errors as botocore's calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from storsync.storage.s3_client import S3Bucket, unquote_etag

# botocore asks the server before sending a body of this size (Expect: 100-continue),
# so a refused condition does not cost the upload of the bytes.
EXPECT_CONTINUE = 1 << 20
_META = "x-amz-meta-"
_CODE = re.compile(rb"<Code>([^<]*)</Code>")


class SignedRequests:
    """PUT, GET, HEAD and DELETE of one object of ``bucket`` through ``client``'s pool and
    signer."""

    def __init__(self, client: Any, bucket: S3Bucket) -> None:
        from botocore.utils import percent_encode

        meta = client.meta
        self._bucket = bucket
        self._config = meta.config
        self._region = meta.region_name
        self._encode = percent_encode
        self._base = f"{meta.endpoint_url.rstrip('/')}/{percent_encode(bucket.name)}/"
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
        size = int(answer.headers.get("Content-Length", "0"))
        return _metadata(answer.headers), StreamingBody(answer.raw, size)

    def head(self, path: str, key: str, headers: Mapping[str, str]) -> dict[str, str]:
        """The user metadata of ``key``."""
        return _metadata(self._send(path, "HEAD", key, dict(headers), None, stream=False).headers)

    def delete(self, path: str, key: str, headers: Mapping[str, str]) -> None:
        self._send(path, "DELETE", key, dict(headers), None, stream=False)

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
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = self._base + self._encode(key, safe="/~")
        request = AWSRequest(method, url, headers=headers, data=data, stream_output=stream)
        request.context["client_config"] = self._config  # payload signing as the client's
        with self._bucket.calling(path):
            credentials = self._credentials and self._credentials.get_frozen_credentials()
            S3SigV4Auth(credentials, "s3", self._region).add_auth(request)
            answer = self._http.send(request.prepare())
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


def _metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """The user metadata an answer's headers carry, by name as stored (lower case)."""
    return {
        name[len(_META) :].lower(): value
        for name, value in headers.items()
        if name.lower().startswith(_META)
    }
