"""The small PUTs, GETs and DELETEs signed outside botocore's pipeline (storage/s3_signed.py),
on the real SeaweedFS: every name a user may give is written as exactly the key asked for
and read back byte for byte, and every refusal says what botocore's calls said."""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from botocore.httpsession import get_cert_path

from storsync.api.serve import self_signed
from storsync.errors import (
    ChangedError,
    PermanentStorageError,
    PreconditionFailed,
    StorageUnavailable,
)
from storsync.model import Entry
from storsync.storage import endpoints
from storsync.storage.s3 import S3Storage
from storsync.storage.s3_client import S3Bucket, S3Settings, make_client
from storsync.storage.s3_signed import EXPECT_CONTINUE, WHOLE_GET, Put, SignedRequests
from tests.conftest import Pair, tree, write
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import free_port, objects, settings_for, sync_s3


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedS3) -> Any:
    """A plain boto3 client: what the server holds, read as another tool reads it."""
    return s3_server.boto3_client()


# Valid names a percent-encoding, a URL parser or a signature could get wrong: every
# printable ASCII character a file name may hold, spaces where they are easy to lose,
# encodings that look already encoded, and names outside ASCII (NFC, as storsync keys).
AWKWARD = [
    "sp ace.txt",
    " leading and trailing ",
    "per%cent.txt",
    "per%20cent already.txt",
    "%2F not a slash",
    "hash#tag.txt",
    "ques?tion=1&and=2.txt",
    "plus+sign.txt",
    "semi;colon:at@.txt",
    "quote'bang!dollar$.txt",
    "paren(star*)comma,.txt",
    "tilde~caret^pipe|back`tick.txt",
    'dq"uote<less>greater.txt',
    "bracket[brace]{}.txt",
    "café.txt",
    "日本語/ファイル.txt",
    "emoji 😀.txt",
    "dir with space/inner + file.txt",
    "a/b%2Fc/d.txt",
]


def test_awkward_names_are_the_keys_asked_for_both_ways(
    s3_server: SeaweedS3, s3: Any, pair: Pair
) -> None:
    prefix = f"signed/{uuid.uuid4().hex[:12]}"
    contents = {name: f"bytes of {name}".encode() for name in AWKWARD}
    # A body from 1 MiB on is sent after the server's 100 Continue, as botocore sends it.
    contents["big/over the continue threshold.bin"] = os.urandom(EXPECT_CONTINUE + 1)
    for name, data in contents.items():
        write(pair.local, name, data)

    pushed = sync_s3(pair, s3_server, prefix)
    assert pushed.errors == [] and pushed.pushed == len(contents)
    listed = {k for k in objects(s3, s3_server.bucket, prefix) if not k.startswith(".storsync/")}
    assert listed == set(contents)  # no key re-encoded, decoded or lost
    for name, data in contents.items():
        got = s3.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/{name}")
        assert got["Body"].read() == data, name
        assert got["Metadata"]["storsync-mtime-ns"].isdigit()  # the metadata headers landed

    fresh, state = pair.local.parent / "fresh", pair.state.parent / "fresh-state"
    fresh.mkdir()
    state.mkdir()
    pulled = Pair(fresh, pair.remote, state)
    report = sync_s3(pulled, s3_server, prefix)
    assert report.errors == [] and report.pulled == len(contents)
    assert tree(fresh) == contents

    gone = sorted(contents)[:3]
    for name in gone:
        (fresh / name).unlink()
    deleted = sync_s3(pulled, s3_server, prefix)
    assert deleted.errors == [] and deleted.deleted_remote == len(gone)
    left = {k for k in objects(s3, s3_server.bucket, prefix) if not k.startswith(".storsync/")}
    assert left == set(contents) - set(gone)


def test_a_name_with_a_backslash_is_refused_not_rewritten(
    s3_server: SeaweedS3, s3: Any, pair: Pair
) -> None:
    """SeaweedFS stores ``a\\b`` as ``a/b`` (test_s3_server): written, the next session
    would find the file it pushed gone from the remote and delete it locally."""
    prefix = f"signed/{uuid.uuid4().hex[:12]}"
    write(pair.local, "back\\slash.txt", b"a name with a backslash")
    write(pair.local, "plain.txt", b"plain")
    for _ in range(2):
        report = sync_s3(pair, s3_server, prefix)
        assert [e["path"] for e in report.errors] == ["back\\slash.txt"]
        assert "backslash" in report.errors[0]["message"]
    assert tree(pair.local) == {
        "back\\slash.txt": b"a name with a backslash",
        "plain.txt": b"plain",
    }
    assert [k for k in objects(s3, s3_server.bucket, prefix) if not k.startswith(".storsync/")] == [
        "plain.txt"
    ]


@pytest.fixture
def signed(s3_server: SeaweedS3) -> SignedRequests:
    settings = settings_for(s3_server, "")
    return SignedRequests(make_client(settings), S3Bucket.of(settings, "s3://test"))


def test_conditions_refused_by_the_server_are_precondition_failures(
    s3: Any, s3_server: SeaweedS3, signed: SignedRequests
) -> None:
    key = f"signed/{uuid.uuid4().hex[:12]}/file.txt"
    etag = signed.put("file.txt", key, b"first", {"If-None-Match": "*"})
    assert etag == s3.head_object(Bucket=s3_server.bucket, Key=key)["ETag"].strip('"')

    with pytest.raises(PreconditionFailed, match="changed on the remote since the scan"):
        signed.put("file.txt", key, b"second", {"If-None-Match": "*"})
    with pytest.raises(PreconditionFailed):
        signed.put("file.txt", key, b"second", {"If-Match": '"0123"'})
    with pytest.raises(PreconditionFailed):
        signed.get("file.txt", key, {"If-Match": '"0123"'}, 5)
    with pytest.raises(PreconditionFailed):
        signed.delete("file.txt", key, {"If-Match": '"0123"'})
    with pytest.raises(PreconditionFailed, match="no longer on the remote"):
        signed.get("gone.txt", f"{key}.gone", {"If-Match": "*"}, 5)
    assert s3.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == b"first"

    meta, body = signed.get("file.txt", key, {"If-Match": etag}, 5)
    assert body.read() == b"first" and meta == {}
    body.close()
    with pytest.raises(PreconditionFailed):  # the source changed since the scan
        signed.copy("file.txt", f"{key}.copy", key, {"x-amz-copy-source-if-match": '"0123"'})
    assert signed.copy("file.txt", f"{key}.copy", key, {"If-None-Match": "*"}) == etag
    with pytest.raises(PreconditionFailed):  # the destination was taken meanwhile
        signed.copy("file.txt", f"{key}.copy", key, {"If-None-Match": "*"})
    signed.delete("file.txt", f"{key}.copy", {"If-Match": etag})
    signed.delete("file.txt", key, {"If-Match": etag})
    assert "Contents" not in s3.list_objects_v2(Bucket=s3_server.bucket, Prefix=key)


def test_puts_sent_at_once_each_get_their_own_answer_in_their_place(
    s3: Any, s3_server: SeaweedS3, signed: SignedRequests
) -> None:
    """Many PUTs from one thread (libcurl's multi interface), more than go at once: each
    written as asked or refused alone, the outcomes in the order of the PUTs."""
    prefix = f"signed/{uuid.uuid4().hex[:12]}"
    taken = signed.put("taken", f"{prefix}/taken", b"there first", {"If-None-Match": "*"})
    puts = [Put(f"f{i}", f"{prefix}/f{i}", f"body {i}".encode() * i, {}) for i in range(40)]
    puts[7] = Put("taken", f"{prefix}/taken", b"mine", {"If-None-Match": "*"})
    puts[23] = Put("taken", f"{prefix}/taken", b"mine", {"If-Match": '"0123"'})
    puts[31] = Put("taken", f"{prefix}/taken", b"overwritten", {"If-Match": taken})

    outcomes = signed.put_all(puts, 8)

    assert len(outcomes) == len(puts)
    for at, (put, outcome) in enumerate(zip(puts, outcomes, strict=True)):
        if at in (7, 23):
            assert isinstance(outcome, PreconditionFailed), (at, outcome)
            continue
        got = s3.get_object(Bucket=s3_server.bucket, Key=put.key)
        assert outcome == got["ETag"].strip('"'), at
        assert got["Body"].read() == put.data, at


def test_a_missing_bucket_and_an_absent_server_say_what_botocore_calls_say(
    s3_server: SeaweedS3,
) -> None:
    settings = replace(settings_for(s3_server, ""), bucket="absent-bucket")
    client = make_client(settings)
    bucket = S3Bucket.of(settings, "s3://absent-bucket")
    with pytest.raises(PermanentStorageError) as by_botocore, bucket.calling("f"):
        client.put_object(Bucket="absent-bucket", Key="f", Body=b"x")
    with pytest.raises(PermanentStorageError) as signed:
        SignedRequests(client, bucket).put("f", "f", b"x", {})
    assert signed.value.message == by_botocore.value.message

    nowhere = replace(settings, endpoint=f"http://127.0.0.1:{free_port()}", connect_timeout=2)
    signed_nowhere = SignedRequests(make_client(nowhere), S3Bucket.of(nowhere, "s3://x"))
    at_once = signed_nowhere.put_all([Put("f", "f", b"x", {}), Put("g", "g", b"y", {})], 2)
    assert [type(outcome) for outcome in at_once] == [StorageUnavailable] * 2
    assert all(str(outcome).startswith("cannot reach S3 endpoint http") for outcome in at_once)
    for call in (
        lambda: signed_nowhere.put("f", "f", b"x", {}),
        lambda: signed_nowhere.get("f", "f", {}, 1),
        lambda: signed_nowhere.get("f", "f", {}, WHOLE_GET + 1),
        lambda: signed_nowhere.delete("f", "f", {}),
    ):
        with pytest.raises(StorageUnavailable, match=r"^cannot reach S3 endpoint http"):
            call()


@pytest.fixture(scope="module")
def verifying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A server that checks every signature (the session's accepts any)."""
    with SeaweedS3(
        tmp_path_factory.mktemp("verifying"), buckets=["signed"], verify_signatures=True
    ) as server:
        yield server


def test_a_server_that_checks_signatures_accepts_each_request_for_any_name(
    verifying: SeaweedS3,
) -> None:
    settings = settings_for(verifying, "")
    signed = SignedRequests(make_client(settings), S3Bucket.of(settings, "s3://signed"))
    for name in AWKWARD:
        data = name.encode()
        etag = signed.put(name, name, data, {"If-None-Match": "*", "x-amz-meta-storsync-exec": "1"})
        assert signed.head(name, name, {"If-Match": etag}) == {"storsync-exec": "1"}
        meta, body = signed.get(name, name, {"If-Match": etag}, len(data))
        assert body.read() == data and meta == {"storsync-exec": "1"}
        body.close()
        copied = signed.copy(name, f"copies/{name}", name, {"x-amz-copy-source-if-match": etag})
        assert copied == etag  # the same bytes: the same MD5
        assert signed.head(name, f"copies/{name}", {}) == {"storsync-exec": "1"}
        signed.delete(name, name, {"If-Match": etag})

    wrong = replace(settings, secret_access_key="not-the-secret")
    client = make_client(wrong)
    bucket = S3Bucket.of(wrong, "s3://signed")
    with pytest.raises(PermanentStorageError) as by_botocore, bucket.calling("f"):
        client.put_object(Bucket="signed", Key="f", Body=b"x")
    for call in (
        lambda: SignedRequests(client, bucket).put("f", "f", b"x", {}),
        lambda: SignedRequests(client, bucket).get("f", "f", {}, 1),
        lambda: SignedRequests(client, bucket).get("f", "f", {}, WHOLE_GET + 1),
    ):
        with pytest.raises(PermanentStorageError) as refused:
            call()
        assert refused.value.message == by_botocore.value.message
        assert "SignatureDoesNotMatch" in refused.value.message


def test_without_credentials_the_message_says_where_they_go(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no lookup off this machine
    settings = settings_for(s3_server, "")
    anonymous = replace(settings, access_key_id=None, secret_access_key=None)
    storage = S3Storage(anonymous)
    with pytest.raises(PermanentStorageError, match="no S3 credentials were found"):
        storage.remove("f", Entry(1, 0, False, None, "e"), trash=None)


def test_a_copy_answered_200_with_an_error_is_a_failure_to_try_again(
    signed: SignedRequests,
) -> None:
    failed = b"<Error><Code>InternalError</Code><Message>We encountered</Message></Error>"
    for body in (failed, b"", b"<CopyObjectRes"):
        with pytest.raises(StorageUnavailable):
            signed._copied("f", body)
    done = (
        b'<?xml version="1.0" encoding="UTF-8"?><CopyObjectResult '
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LastModified>2026-12-05T00:00:00Z'
        b"</LastModified><ETag>&quot;9a0364b9e99bb480dd25e1f0284c8555&quot;</ETag>"
        b"</CopyObjectResult>"
    )
    assert signed._copied("f", done) == "9a0364b9e99bb480dd25e1f0284c8555"


class _Scripted(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that answers as the test says: a body sent in chunks without a
    length (as some gateways send one), a body longer than the object listed, no answer
    at all, a connection closed unanswered; and that keeps the headers it was sent."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, str]]] = []

    def _keep(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.seen.append({"method": self.command, "path": self.path, **headers})

    def do_HEAD(self) -> None:
        self._keep()
        self.send_response(200)
        self.send_header("x-amz-meta-storsync-exec", "1")
        self.send_header("Content-Length", "12")
        self.end_headers()

    def do_DELETE(self) -> None:
        self._keep()
        self.send_response(204)
        self.end_headers()

    def do_GET(self) -> None:
        self._keep()
        if self.path.endswith("/silent"):
            time.sleep(5)  # past the client's read timeout
            return
        if self.path.endswith("/hang-up"):
            self.close_connection = True
            return
        if self.path.endswith("/long"):
            body = bytes(100 << 10)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-amz-meta-storsync-exec", "1")
        self.end_headers()
        for part in (b"chunked ", b"body"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def do_PUT(self) -> None:
        self._keep()
        if self.path.endswith("/silent"):
            time.sleep(5)  # past the client's read timeout
            return
        # A refused condition, answered before the body: the client that waits for
        # "100 Continue" never sends it.
        self.send_response(412)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted_settings(s3_server: SeaweedS3) -> Iterator[S3Settings]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Scripted.seen = []
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        yield replace(
            settings_for(s3_server, ""), endpoint=endpoint, bucket="scripted", read_timeout=1
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def scripted(scripted_settings: S3Settings) -> SignedRequests:
    return SignedRequests(
        make_client(scripted_settings), S3Bucket.of(scripted_settings, "s3://scripted")
    )


def test_a_body_sent_in_chunks_without_a_length_is_read_whole(
    scripted: SignedRequests,
) -> None:
    for size in (len(b"chunked body"), WHOLE_GET + 1):  # read whole, and streamed
        meta, body = scripted.get("f", "f", {"If-Match": "*"}, size)
        assert body.read() == b"chunked body" and meta == {"storsync-exec": "1"}
        body.close()


def test_a_body_longer_than_the_object_listed_is_a_changed_object(
    scripted: SignedRequests, scripted_settings: S3Settings
) -> None:
    # Past the room kept for an error's XML: cut off, not held.
    with pytest.raises(ChangedError, match="more than the 7 bytes expected"):
        scripted.get("f", "long", {"If-Match": "*"}, 7)
    # Within it: the source's count finds it.
    storage = S3Storage(scripted_settings)
    with storage.open("f", Entry(7, 0, False, None, "e")) as source:
        while source.read(4):
            pass
        with pytest.raises(ChangedError, match="sent 12 bytes where 7 were expected"):
            source.finish()
    storage.close()


def test_a_body_from_the_threshold_waits_for_100_continue(scripted: SignedRequests) -> None:
    for size in (EXPECT_CONTINUE - 1, EXPECT_CONTINUE):
        with pytest.raises(PreconditionFailed):
            scripted.put("f", "f", bytes(size), {"If-None-Match": "*"})
    small, large = _Scripted.seen
    assert "expect" not in small and large["expect"] == "100-continue"
    assert "content-type" not in small  # no form's type added to a body


def test_one_handle_sends_each_verb_as_itself_whatever_came_before(
    scripted: SignedRequests,
) -> None:
    """libcurl's options outlive a request: a GET after a PUT must not carry its body, a
    DELETE after a HEAD must not be a HEAD."""
    with pytest.raises(PreconditionFailed):
        scripted.put("f", "f", b"body", {})
    assert scripted.get("f", "f", {}, 12)[1].read() == b"chunked body"
    assert scripted.head("f", "f", {}) == {"storsync-exec": "1"}
    scripted.delete("f", "f", {})
    with pytest.raises(PreconditionFailed):
        scripted.put("f", "f", b"again", {})
    sent = [(seen["method"], seen.get("content-length")) for seen in _Scripted.seen]
    assert sent == [("PUT", "4"), ("GET", None), ("HEAD", None), ("DELETE", None), ("PUT", "5")]


def test_a_handle_keeps_no_body_it_sent(scripted: SignedRequests) -> None:
    """An idle handle holding the last body it sent would keep up to 64 MiB alive per
    handle, outside what staging counts."""
    data = bytes(EXPECT_CONTINUE - 1)
    held = sys.getrefcount(data)
    with pytest.raises(PreconditionFailed):
        scripted.put("f", "f", data, {})
    assert sys.getrefcount(data) == held
    (refused,) = scripted.put_all([Put("f", "f", data, {})], 4)
    assert isinstance(refused, PreconditionFailed)
    assert sys.getrefcount(data) == held


def test_puts_at_once_after_single_requests_and_before_them_are_themselves(
    scripted: SignedRequests,
) -> None:
    """A handle goes from a request of its own to a batch and back: each request as
    itself, a large body waiting for "100 Continue" in a batch as alone."""
    assert scripted.head("f", "f", {}) == {"storsync-exec": "1"}
    puts = [Put("f", "f", b"a", {}), Put("g", "g", bytes(EXPECT_CONTINUE), {})]
    assert all(isinstance(o, PreconditionFailed) for o in scripted.put_all(puts, 2))
    assert scripted.get("f", "f", {}, 12)[1].read() == b"chunked body"
    scripted.delete("f", "f", {})
    sent = [(seen["method"], seen.get("content-length")) for seen in _Scripted.seen]
    assert sent[0] == ("HEAD", None) and sent[-2:] == [("GET", None), ("DELETE", None)]
    assert sorted(sent[1:3]) == [("PUT", "1"), ("PUT", str(EXPECT_CONTINUE))]
    waited = {seen["content-length"]: seen.get("expect") for seen in _Scripted.seen[1:3]}
    assert waited == {"1": None, str(EXPECT_CONTINUE): "100-continue"}


def test_a_put_left_unanswered_in_a_batch_holds_up_none_of_the_others(
    scripted: SignedRequests,
) -> None:
    began = time.monotonic()
    silent, refused = scripted.put_all([Put("s", "silent", b"x", {}), Put("f", "f", b"y", {})], 2)
    assert isinstance(silent, StorageUnavailable)
    assert str(silent).endswith("did not answer in time")
    assert isinstance(refused, PreconditionFailed)
    assert time.monotonic() - began < 4  # the read timeout (1 s) and its slack, not 5 s


def test_an_endpoint_behind_a_path_keeps_it_once(scripted_settings: S3Settings) -> None:
    settings = replace(scripted_settings, endpoint=f"{scripted_settings.endpoint}/gateway")
    signed = SignedRequests(make_client(settings), S3Bucket.of(settings, "s3://scripted"))
    signed.delete("f", "dir/f", {})
    assert signed.get("f", "dir/f", {}, WHOLE_GET + 1)[1].read() == b"chunked body"
    assert [seen["path"] for seen in _Scripted.seen] == ["/gateway/scripted/dir/f"] * 2


def test_an_endpoint_that_does_not_answer_says_so(scripted: SignedRequests) -> None:
    with pytest.raises(StorageUnavailable, match=r"^S3 endpoint .* did not answer in time$"):
        scripted.get("f", "silent", {}, 5)
    with pytest.raises(
        StorageUnavailable, match=r"^S3 endpoint .* closed the connection before answering$"
    ):
        scripted.get("f", "hang-up", {}, 5)


def test_over_tls_the_clients_ca_bundle_is_trusted_and_no_other(
    s3_server: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libcurl verifies as the botocore client would: with its CA bundle (here
    AWS_CA_BUNDLE), never with one of its own; a certificate outside it is refused in the
    words botocore's calls use, and without verification it is not checked."""
    cert, key = self_signed(tmp_path, "127.0.0.1")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"https://127.0.0.1:{server.server_address[1]}"
        settings = replace(settings_for(s3_server, ""), endpoint=endpoint, bucket="tls")
        bucket = S3Bucket.of(settings, "s3://tls")
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        _, body = SignedRequests(make_client(settings), bucket).get("f", "f", {}, 12)
        assert body.read() == b"chunked body"

        monkeypatch.setenv("AWS_CA_BUNDLE", get_cert_path(True))  # botocore's own
        untrusted = SignedRequests(make_client(settings), bucket)
        with pytest.raises(StorageUnavailable, match=r"over TLS \(.*\): is its certificate"):
            untrusted.get("f", "f", {}, 12)
        with pytest.raises(StorageUnavailable, match=r"over TLS \(.*\): is its certificate"):
            untrusted.put("f", "f", b"x", {})

        client = make_client(settings)
        client._endpoint.http_session._verify = False  # as `verify=False` leaves it
        _, body = SignedRequests(client, bucket).get("f", "f", {}, 12)
        assert body.read() == b"chunked body"
    finally:
        server.shutdown()
        server.server_close()


def test_the_proxy_is_the_one_botocore_would_take(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libcurl goes through the proxy botocore's client chose for the endpoint (its
    NO_PROXY applied), not through its own reading of the environment; a proxy that cannot
    be reached is named as such, without its URL (it may hold a password)."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    settings = settings_for(s3_server, "")
    bucket = S3Bucket.of(settings, "s3://test")
    dead = f"http://user:secret@127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)  # upper case: libcurl alone would ignore it
    with pytest.raises(StorageUnavailable) as refused:
        SignedRequests(make_client(settings), bucket).put("f", "proxied/f", b"x", {})
    assert refused.value.message == (
        f"cannot reach S3 endpoint {settings.endpoint} through the proxy of HTTPS_PROXY "
        "or HTTP_PROXY"
    )
    assert "secret" not in refused.value.message

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    signed = SignedRequests(make_client(settings), bucket)
    signed.put("f", "proxied/f", b"x", {"If-None-Match": "*"})
    signed.delete("f", "proxied/f", {})


def test_a_pinned_host_is_reached_at_its_checked_address(
    scripted_settings: S3Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libcurl resolves by itself, past the pin on ``socket.getaddrinfo`` a worker holds
    against DNS rebinding: it is given the checked addresses. Here a name no DNS knows,
    pinned to the loopback listener, is reached there and nowhere else."""
    monkeypatch.setattr(socket, "getaddrinfo", socket.getaddrinfo)  # undone after
    monkeypatch.setattr(endpoints, "_pinned", {})
    port = urlsplit(scripted_settings.endpoint or "").port
    endpoint = f"http://Pinned-Host.invalid:{port}"
    endpoints.pin(endpoint, ["127.0.0.1"])
    settings = replace(scripted_settings, endpoint=endpoint)
    signed = SignedRequests(make_client(settings), S3Bucket.of(settings, "s3://scripted"))
    signed.delete("f", "f", {})
    assert [seen["host"] for seen in _Scripted.seen] == [f"Pinned-Host.invalid:{port}"]
