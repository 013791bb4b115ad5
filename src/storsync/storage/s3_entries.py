"""What each object of an S3 listing is to storsync: a file, or nothing (storsync's own,
a folder marker another tool made, a name refused, with a log item)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storsync.model import Entry
from storsync.paths import is_own, normalize, refusal
from storsync.storage.base import SkipReport
from storsync.storage.s3_client import unquote_etag


def listed_entry(rel: str, obj: dict[str, Any], skip: SkipReport) -> Entry | None:
    """The file a listed object is, or None: storsync's own, a folder marker, or a name
    refused (with a log item)."""
    if is_own(rel):
        return None
    if rel.endswith("/"):
        if obj["Size"]:
            skip(rel, "an object whose name ends with '/' is not a file")
        return None  # a folder marker made by another tool
    reason = refusal(rel)
    if reason is None and normalize(rel) != rel:
        reason = "name is not in Unicode NFC"
    if reason:
        skip(rel, reason)
        return None
    mtime = nanoseconds(obj["LastModified"])
    return Entry(obj["Size"], mtime, False, None, unquote_etag(obj["ETag"]))


def no_skips(path: str, reason: str) -> None:
    """A probe's keys are not read: it skips none."""


def nanoseconds(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000
