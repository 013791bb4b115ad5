"""Listing pages parsed once (storsync.storage.s3_listing): the same objects as botocore's
own parser gives, hostile keys included, on a real server; and botocore's check of a 200
answer that is an error, kept."""

from __future__ import annotations

import os
from typing import Any

import pytest

from storsync.storage import s3_listing
from storsync.storage.s3_client import S3Settings, make_client
from tests.s3_server import SeaweedS3

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
    ours = make_client(
        S3Settings(
            bucket=s3_server.bucket,
            endpoint=s3_server.endpoint,
            region=s3_server.region,
            access_key_id=s3_server.access_key,
            secret_access_key=s3_server.secret_key,
        )
    )
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
