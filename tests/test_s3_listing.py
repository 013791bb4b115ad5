"""Listing pages parsed once (storsync.storage.s3_listing): the same objects as botocore's
own parser gives, hostile keys included, on a real server; and botocore's check of a 200
answer that is an error, kept."""

from __future__ import annotations

import os
from typing import Any

import pytest

from storsync.model import StopSignal
from storsync.storage import s3_listing
from storsync.storage.s3 import S3Storage
from storsync.storage.s3_client import make_client
from tests.s3_server import SeaweedS3
from tests.test_s3_sync import settings_for

HOSTILE = [
    "a&b",
    "<tag>",
    'quote"s',
    "apos'",
    "%41%2F",
    "caf\u00e9/cafe\u0301",
    "sp ace/ trailing ",
    "emoji-\U0001f600",
    "semi;colon",
    "amp&amp;",
    "tab\there",
    "nested/deep/dir/file",
]


def listing(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 5}
    )
    return [
        {k: obj[k] for k in ("Key", "Size", "ETag", "LastModified")}
        for page in pages
        for obj in page.get("Contents", ())
    ]


def test_a_listing_parsed_once_is_botocores(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    take = s3_listing._take
    monkeypatch.setattr(s3_listing, "_take", lambda *a: taken.append(1) or take(*a))
    prefix = f"listing-{os.getpid()}/"
    plain = s3_server.boto3_client()
    for i, key in enumerate(HOSTILE):
        plain.put_object(Bucket=s3_server.bucket, Key=prefix + key, Body=b"x" * i)
    ours = make_client(settings_for(s3_server, ""))
    got = listing(ours, s3_server.bucket, prefix)
    assert got == listing(plain, s3_server.bucket, prefix)
    assert sorted(o["Key"][len(prefix) :] for o in got) == sorted(HOSTILE)
    # Over several pages (5 keys each): the paging is botocore's, and lost nothing.
    assert len(got) == len(HOSTILE) and len(taken) == 3


class Operation:
    def __init__(self, name: str) -> None:
        self.name = name


def before_parse(name: str, status: int, body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    response = {"status_code": status, "body": body, "headers": {}}
    customized: dict[str, Any] = {}
    checked: list[str] = []
    s3_listing._before_parse(
        lambda **kw: checked.append(kw["operation_model"].name),
        Operation(name),
        response,
        customized,
    )
    response["checked"] = checked
    return response, customized


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"<Error><Code>InternalError</Code><Message>x</Message></Error>", 500),
        (b"<ListBucketResult><Contents><Key>cut short", 500),  # a body the network cut
        (b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>", 200),
    ],
)
def test_an_error_in_a_200_answer_is_still_told_apart(body: bytes, status: int) -> None:
    response, customized = before_parse("ListObjectsV2", 200, body)
    assert response["status_code"] == status
    assert customized == {}


def test_a_page_loses_its_contents_to_the_fast_parse() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Name>b</Name><IsTruncated>true</IsTruncated>"
        b"<Contents><Key>a&amp;b&#34;</Key><LastModified>2024-01-01T00:00:00.000Z"
        b"</LastModified><ETag>&quot;e1&quot;</ETag><Size>12</Size>"
        b"<Owner><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>"
        b"<NextContinuationToken>t</NextContinuationToken></ListBucketResult>"
    )
    response, customized = before_parse("ListObjectsV2", 200, body)
    [obj] = customized["Contents"]
    assert (obj["Key"], obj["ETag"], obj["Size"], obj["StorageClass"]) == (
        'a&b"',
        '"e1"',
        12,
        "STANDARD",
    )
    assert obj["LastModified"].timestamp() == 1_704_067_200
    assert b"Contents" not in response["body"] and b"NextContinuationToken" in response["body"]


def test_other_operations_keep_botocores_check() -> None:
    response, customized = before_parse("CompleteMultipartUpload", 200, b"<Error/>")
    assert response["checked"] == ["CompleteMultipartUpload"]
    assert response["status_code"] == 200 and customized == {}  # botocore's to change


# -- digests ----------------------------------------------------------------------------

PAGE = (
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<IsTruncated>true</IsTruncated><ContinuationToken>%s</ContinuationToken>"
    b"<Contents><Key>k</Key><Size>1</Size></Contents>"
    b"<Contents><Key>l</Key><Size>2</Size></Contents>"
    b"<NextContinuationToken>%s</NextContinuationToken></ListBucketResult>"
)


def digest_of(*pages: bytes, keys: bool = True) -> tuple[str, list[bytes]]:
    with s3_listing.digesting(keys=keys) as digest:
        parsed = [before_parse("ListObjectsV2", 200, page)[0]["body"] for page in pages]
    return digest.hexdigest(), parsed


def test_a_digest_is_the_pages_less_their_opaque_tokens() -> None:
    """AWS's continuation tokens differ from one listing of the same keys to the next:
    they are no part of the digest; every other byte is, page by page."""
    one, parsed = digest_of(PAGE % (b"t1", b"t2"), PAGE % (b"t2", b"t3"))
    assert [b"NextContinuationToken>t2<" in parsed[0], b"t3" in parsed[1]] == [True, True]
    other_tokens, _ = digest_of(PAGE % (b"x1", b"x2"), PAGE % (b"x2", b"x3"))
    assert other_tokens == one
    size_changed, _ = digest_of(PAGE % (b"t1", b"t2"), PAGE.replace(b">2<", b">3<") % (b"", b""))
    assert size_changed != one
    assert digest_of(PAGE % (b"t1", b"t2"))[0] != one  # a page fewer
    assert digest_of(PAGE % (b"t1", b"t2"), PAGE % (b"t2", b"t3"), keys=False)[0] == one


def test_a_probe_hands_botocore_no_keys_but_its_paging_and_its_last() -> None:
    with s3_listing.digesting(keys=False):
        response, customized = before_parse("ListObjectsV2", 200, PAGE % (b"t1", b"t2"))
    assert [c["Key"] for c in customized["Contents"]] == ["l"]
    assert b"NextContinuationToken>t2<" in response["body"]
    _, customized = before_parse("ListObjectsV2", 200, PAGE % (b"t1", b"t2"))
    assert len(customized["Contents"]) == 2  # outside a digesting block: the keys parsed


def test_a_listing_digest_changes_with_any_object_and_only_then(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"digest-{os.getpid()}"
    plain = s3_server.boto3_client()
    for key in HOSTILE:
        plain.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{key}", Body=b"same")
    storage = S3Storage(settings_for(s3_server, prefix))
    found, digest = storage.scan_digested(lambda p, r: None, StopSignal())
    assert found == storage.scan(lambda p, r: None, StopSignal()) and len(found) > 5
    parsed: list[int] = []
    obj = s3_listing._object
    monkeypatch.setattr(s3_listing, "_object", lambda *a: parsed.append(1) or obj(*a))
    assert storage.listing_digest(StopSignal()) == digest
    assert len(parsed) == 1  # the probe parsed the page's last key alone
    # Rewritten with the same size: a new ETag and time, a new digest.
    plain.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/a&b", Body=b"SAME")
    changed = storage.listing_digest(StopSignal())
    assert changed != digest
    assert storage.scan_digested(lambda p, r: None, StopSignal())[1] == changed
