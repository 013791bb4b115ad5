"""storsync's SigV4 signature (storage/s3_sigv4.py) is botocore's, request for request:
random keys, header values, session tokens, regions and endpoints signed both ways at the
instant botocore chose must give the same ``Authorization``."""

from __future__ import annotations

from datetime import datetime

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode
from hypothesis import example, given, settings
from hypothesis import strategies as st

from storsync.storage.s3_sigv4 import SigV4, host_of

# The client's configuration that matters to a signature (storage/s3_client.py).
CONFIG = Config(s3={"addressing_style": "path", "payload_signing_enabled": False})

ENDPOINTS = [
    "http://127.0.0.1:8333",
    "http://127.0.0.1:80",
    "https://s3.eu-west-1.amazonaws.com",
    "https://S3.Example.COM:443",
    "https://minio.example.com:9000",
    "http://[::1]:9000",
    "http://[::1]",
]
HEADER_NAMES = [
    "Content-MD5",
    "If-None-Match",
    "If-Match",
    "Range",
    "x-amz-meta-storsync-mtime-ns",
    "x-amz-meta-storsync-blake3",
    "Expect",
    "User-Agent",
    "Content-Type",
]
# Header values as they may come: printable ASCII, runs of spaces inside and around.
VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
KEYS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@example(
    endpoint="http://127.0.0.1:80",
    method="PUT",
    key="a b/c+d%e",
    headers={"Content-Type": "  text/plain;   charset=x  ", "Expect": "100-continue"},
    token="FwoGZXIvYXdzE//token==",
    region="eu-west-1",
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    method=st.sampled_from(["PUT", "GET", "HEAD", "DELETE"]),
    key=KEYS,
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), VALUES, max_size=6),
    token=st.one_of(st.none(), st.text(st.characters(min_codepoint=33, max_codepoint=126))),
    region=st.sampled_from(["us-east-1", "eu-west-1", "garage", "ap-southeast-2"]),
)
def test_a_signature_is_botocores(
    endpoint: str,
    method: str,
    key: str,
    headers: dict[str, str],
    token: str | None,
    region: str,
) -> None:
    path = f"/bucket/{percent_encode(key, safe='/~')}"
    url = endpoint + path
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)

    theirs = AWSRequest(
        method, url, headers=dict(headers), data=b"body" if method == "PUT" else None
    )
    theirs.context["client_config"] = CONFIG
    S3SigV4Auth(credentials, "s3", region).add_auth(theirs)
    when = datetime.strptime(theirs.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")

    ours = SigV4(host_of(url), region).sign(
        method, path, headers, ("AKIDEXAMPLE", credentials.secret_key, token), when
    )
    assert ours["Authorization"] == theirs.headers["Authorization"]
    for name in ("X-Amz-Date", "X-Amz-Content-SHA256", "X-Amz-Security-Token"):
        assert ours.get(name) == theirs.headers.get(name)


def test_the_signing_key_follows_the_day_and_the_secret() -> None:
    signer = SigV4("127.0.0.1:8333", "us-east-1")
    day = datetime(2026, 12, 5, 23, 59, 59)
    first = signer.sign("GET", "/b/k", {}, ("A", "secret", None), day)
    later = signer.sign("GET", "/b/k", {}, ("A", "secret", None), day.replace(day=6, hour=0))
    other = signer.sign("GET", "/b/k", {}, ("A", "another", None), day)
    signatures = {s["Authorization"].rsplit("=", 1)[1] for s in (first, later, other)}
    assert len(signatures) == 3
    again = signer.sign("GET", "/b/k", {}, ("A", "secret", None), day)
    assert again == first
