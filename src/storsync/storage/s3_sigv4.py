"""AWS Signature Version 4 of an S3 request signed in its headers, as botocore's
``S3SigV4Auth`` signs it for storsync's client, without botocore's request and header
classes: 8 µs a request against 60 here (docs/decisions.md, "Small objects without
botocore's pipeline").

The client's configuration leaves payloads unsigned (every body carries ``Content-MD5``,
which is signed), so the payload hash is always ``UNSIGNED-PAYLOAD``. A test signs the
same requests here and with botocore and compares; another has a SeaweedFS that checks
signatures accept them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
ALGORITHM = "AWS4-HMAC-SHA256"
# Headers botocore leaves out of a signature: a proxy or the HTTP client may change them.
_NOT_SIGNED = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_of(url: str) -> str:
    """The ``host`` a signature covers: the URL's host, its port unless the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class SigV4:
    """Signs requests to one host in one region (its signing key kept for the day)."""

    def __init__(self, host: str, region: str) -> None:
        self._host = host
        self._region = region
        self._key: tuple[str, str, bytes] = ("", "", b"")  # (secret, date, key)
        self._stamped: tuple[datetime | None, str] = (None, "")  # the last ``now``'s

    def _stamp(self, now: datetime) -> str:
        kept, stamp = self._stamped
        if kept != now:
            stamp = now.strftime("%Y%m%dT%H%M%SZ")
            self._stamped = (now, stamp)  # one assignment: safe across threads
        return stamp

    def sign(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        credentials: tuple[str, str, str | None],
        now: datetime,
    ) -> dict[str, str]:
        """``headers`` with the date, payload hash, token and ``Authorization`` added;
        ``path`` as sent (percent-encoded: S3 signs it unnormalized), no query string;
        ``credentials`` the access key, the secret key and the session token."""
        access_key, secret_key, token = credentials
        stamp = self._stamp(now)
        signed = {**headers, "X-Amz-Date": stamp, "X-Amz-Content-SHA256": UNSIGNED_PAYLOAD}
        if token:
            signed["X-Amz-Security-Token"] = token
        canonical = {"host": self._host}
        for name, value in signed.items():
            lowered = name.lower()
            if lowered not in _NOT_SIGNED:
                canonical[lowered] = " ".join(value.split())
        names = sorted(canonical)
        signed_names = ";".join(names)
        request = "\n".join(
            (
                method,
                path,
                "",
                "".join([f"{name}:{canonical[name]}\n" for name in names]),
                signed_names,
                UNSIGNED_PAYLOAD,
            )
        )
        scope = f"{stamp[:8]}/{self._region}/s3/aws4_request"
        digest = hashlib.sha256(request.encode()).hexdigest()
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{digest}".encode()
        signature = hmac.digest(self._signing_key(secret_key, stamp[:8]), to_sign, "sha256")
        signed["Authorization"] = (
            f"{ALGORITHM} Credential={access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature.hex()}"
        )
        return signed

    def _signing_key(self, secret_key: str, date: str) -> bytes:
        kept_secret, kept_date, key = self._key
        if kept_secret != secret_key or kept_date != date:
            key = hmac.digest(f"AWS4{secret_key}".encode(), date.encode(), "sha256")
            for part in (self._region, "s3", "aws4_request"):
                key = hmac.digest(key, part.encode(), "sha256")
            self._key = (secret_key, date, key)  # one assignment: safe across threads
        return key
