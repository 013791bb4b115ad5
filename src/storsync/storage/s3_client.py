"""The boto3 side of an S3 storage: its settings, the client made from them, and what the
errors of its calls become (retryable or not, naming the endpoint, never the credentials).

boto3 and botocore are imported where they are used: the command line starts without them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storsync.errors import (
    PermanentStorageError,
    PreconditionFailed,
    StorageUnavailable,
    StorsyncError,
    UsageError,
)


@dataclass(frozen=True)
class S3Settings:
    """Where the bucket is; credentials come from the usual AWS variables or arguments."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    max_connections: int = 32
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


def make_client(settings: S3Settings) -> Any:
    # botocore's own session, not boto3's: the client is the same, and a worker that
    # starts for one small session saves boto3's import (a quarter of the client's).
    import botocore.session
    from botocore.config import Config

    botocore_session = botocore.session.get_session()
    # A listing has one timestamp per key, which botocore parses with dateutil: 60% of
    # the client CPU of listing 10,000 keys here (1.3 s), more than the XML itself.
    parsers = botocore_session.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=timestamp)

    config = Config(
        # Every object body sent (a PUT, a part) carries Content-MD5, a signed header the
        # server checks the bytes against; signing the payload too, which botocore does
        # on http endpoints only (on https it already does not), is one more SHA-256
        # pass over every byte (0.7 s of CPU per GiB here) for the same guarantee.
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=settings.max_connections,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    try:
        client = botocore_session.create_client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region or "us-east-1",
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=config,
        )
    except ValueError as exc:
        raise UsageError(f"invalid S3 endpoint {settings.endpoint!r}: {exc}") from None
    from storsync.storage import s3_listing

    s3_listing.install(client)
    return client


def timestamp(value: str) -> datetime:
    """A timestamp of an S3 answer: ISO 8601 in XML bodies, parsed without dateutil."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp

        parsed: datetime = parse_timestamp(value)  # the HTTP dates of headers, and the rest
        return parsed
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def unquote_etag(raw: str) -> str:
    return raw.strip('"')


@dataclass(frozen=True)
class S3Bucket:
    """The bucket of a storage, as calls address it and as their errors name it."""

    name: str
    endpoint: str  # as messages name it
    url: str  # the storage's

    def error(self, exc: Exception, path: str) -> StorsyncError:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return PreconditionFailed(f"{path} changed on the remote since the scan")
            if status == 404 and code == "NoSuchBucket":
                return PermanentStorageError(f"bucket {self.name!r} does not exist")
            if status == 404:
                return PreconditionFailed(f"{path} is no longer on the remote")
            if status in (401, 403):
                return PermanentStorageError(
                    f"{self.endpoint} refused access to {self.url} ({code or status}); "
                    "check the credentials"
                )
            if status >= 500 or code in ("SlowDown", "RequestTimeout"):
                return StorageUnavailable(f"S3 endpoint {self.endpoint} failed: {code or status}")
            return PermanentStorageError(f"{path}: the S3 endpoint answered {code or status}")
        if isinstance(exc, BotoCoreError):
            return StorageUnavailable(
                f"cannot reach S3 endpoint {self.endpoint}: {type(exc).__name__}"
            )
        raise exc

    @contextlib.contextmanager
    def calling(self, path: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self.error(exc, path) from exc
