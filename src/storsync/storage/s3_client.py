"""The boto3 side of an S3 storage: its settings, the client made from them, and what the
errors of its calls become (retryable or not, naming the endpoint, never the credentials).

boto3 and botocore are imported where they are used: the command line starts without them.
"""

from __future__ import annotations

import contextlib
import enum
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

# Where each face takes S3 credentials: the storage does not know which face opened it.
CREDENTIALS_GO = (
    "to the service as the repository's remoteCredentials accessKeyId and secretAccessKey "
    "(or its s3_access_key_id and s3_secret_access_key settings, for the default "
    "repository), to the command line in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
    "an AWS config file"
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


DEFAULT_REGION = "us-east-1"


def make_client(settings: S3Settings) -> Any:
    # botocore's own session, not boto3's: the client is the same, and a worker that
    # starts for one small session saves boto3's import (a quarter of the client's).
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, InvalidRegionError, ProfileNotFound

    botocore_session = botocore.session.get_session()
    # A session of its own for each client (a session keeps the credentials and the AWS
    # config it first resolved), but one loader for the process: it keeps the S3 model
    # it read, so that a client after the first costs 10 ms instead of 100 (warm()).
    botocore_session.register_component("data_loader", _loader(botocore_session))
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
            region_name=settings.region or DEFAULT_REGION,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=config,
        )
    except InvalidRegionError:
        raise UsageError(f"invalid S3 region {settings.region!r}") from None
    except ProfileNotFound as exc:
        raise UsageError(
            f"the AWS profile {exc.kwargs.get('profile')!r} (AWS_PROFILE) is in no AWS config file"
        ) from None
    except ValueError as exc:
        raise UsageError(f"invalid S3 endpoint {settings.endpoint!r}: {exc}") from None
    except BotoCoreError as exc:  # a config file that cannot be read, say
        raise UsageError(f"the AWS configuration cannot be used: {exc}") from None
    from storsync.storage import s3_listing

    s3_listing.install(client)
    return client


_loaders: list[Any] = []  # the process's one botocore data loader, once made


def _loader(botocore_session: Any) -> Any:
    if not _loaders:  # two threads may both make one: the second is merely unused
        _loaders.append(botocore_session.get_component("data_loader"))
    return _loaders[0]


def warm() -> None:
    """Import botocore and read the S3 model ahead, as a spare worker process does while
    it waits for a job (a third of a small session's start): a client made for nowhere,
    which makes no request."""
    make_client(
        S3Settings(
            bucket="warm",
            endpoint="http://127.0.0.1:9",
            access_key_id="warm",
            secret_access_key="warm",
        )
    )


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


class NoAnswer(enum.Enum):
    """Why a request got no answer, whichever HTTP client sent it."""

    UNREACHABLE = "unreachable"  # refused, unknown host, connect timed out
    PROXY = "proxy"
    TLS = "tls"
    TIMEOUT = "timeout"  # connected, then no byte for the read timeout
    CLOSED = "closed"  # the connection broke before an answer
    OTHER = "other"


@dataclass(frozen=True)
class S3Bucket:
    """The bucket of a storage, as calls address it and as their errors name it."""

    name: str
    url: str  # the storage's
    endpoint: str | None  # as given; None: AWS's for the region
    region: str | None

    @classmethod
    def of(cls, settings: S3Settings, url: str) -> S3Bucket:
        return cls(settings.bucket, url, settings.endpoint, settings.region)

    @property
    def where(self) -> str:
        """The endpoint as messages name it: "cannot reach <it>", "<it> refused access"."""
        if self.endpoint:
            return f"S3 endpoint {self.endpoint}"
        return f"AWS S3 (no endpoint given, region {self.region or DEFAULT_REGION})"

    def error(self, exc: Exception, path: str) -> StorsyncError:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            return self.answered(exc.response, path)
        if isinstance(exc, BotoCoreError):
            return self._not_answered(exc)
        raise exc

    def answered(self, response: dict[str, Any], path: str) -> StorsyncError:
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return PreconditionFailed(f"{path} changed on the remote since the scan")
        if status == 404 and code == "NoSuchBucket":
            return PermanentStorageError(self._no_bucket())
        if status == 404:
            return PreconditionFailed(f"{path} is no longer on the remote")
        if status in (401, 403):
            return PermanentStorageError(
                f"{self.where} refused access to {self.url} ({code or status}); "
                "check the credentials"
            )
        if status >= 500 or code in ("SlowDown", "RequestTimeout"):
            return StorageUnavailable(f"{self.where} failed: {code or status}")
        return PermanentStorageError(f"{path}: {self.where} answered {code or status}")

    def _no_bucket(self) -> str:
        where = (
            f"--endpoint-url {self.endpoint}"
            if self.endpoint
            else f"--region {self.region or DEFAULT_REGION}"
        )
        return (
            f"bucket {self.name!r} does not exist on {self.where}; storsync does not create "
            f"buckets: create it with the store's own tool, such as "
            f"`aws s3 mb s3://{self.name} {where}`"
        )

    def _not_answered(self, exc: Exception) -> StorsyncError:
        """A call that got no answer to translate: no credentials to sign it with, no
        connection, or a connection that broke (botocore's own words last)."""
        from botocore import exceptions as boto

        where = self.where
        if isinstance(exc, boto.NoCredentialsError):
            return PermanentStorageError(
                f"no S3 credentials were found for {self.url} on {where}: give an access "
                f"key id and a secret access key {CREDENTIALS_GO}"
            )
        if isinstance(exc, boto.PartialCredentialsError):
            found = exc.kwargs.get("provider")
            return PermanentStorageError(
                f"the S3 credentials found in {'the environment' if found == 'env' else found} "
                f"lack {exc.kwargs.get('cred_var')}: give the access key id and the secret "
                "access key together"
            )
        if isinstance(exc, boto.CredentialRetrievalError):
            return PermanentStorageError(f"cannot get S3 credentials for {self.url}: {exc}")
        if isinstance(exc, boto.SSLError):
            return self.unanswered(NoAnswer.TLS, str(exc.kwargs.get("error")))
        if isinstance(exc, boto.ProxyConnectionError):
            return self.unanswered(NoAnswer.PROXY, str(exc))
        if isinstance(exc, boto.ConnectionError):  # refused, unknown host, timed out
            return self.unanswered(NoAnswer.UNREACHABLE, str(exc))
        if isinstance(exc, boto.ReadTimeoutError):
            return self.unanswered(NoAnswer.TIMEOUT, str(exc))
        if isinstance(exc, boto.ConnectionClosedError):
            return self.unanswered(NoAnswer.CLOSED, str(exc))
        return self.unanswered(NoAnswer.OTHER, str(exc))

    def unanswered(self, kind: NoAnswer, detail: str) -> StorsyncError:
        """A request that got no answer, in the same words whichever client sent it;
        ``detail`` the client's own words, said where nothing more precise is."""
        where = self.where
        if kind is NoAnswer.TLS:
            return StorageUnavailable(
                f"cannot reach {where} over TLS ({detail}): is its "
                "certificate one this machine trusts?"
            )
        if kind is NoAnswer.PROXY:
            # Not the proxy's URL: it may hold a user name and password.
            return StorageUnavailable(
                f"cannot reach {where} through the proxy of HTTPS_PROXY or HTTP_PROXY"
            )
        if kind is NoAnswer.UNREACHABLE:
            hint = (
                "is it running, and is that the right address?"
                if self.endpoint
                else "is the network up, and is the region right?"
            )
            return StorageUnavailable(f"cannot reach {where}: {hint}")
        if kind is NoAnswer.TIMEOUT:
            return StorageUnavailable(f"{where} did not answer in time")
        if kind is NoAnswer.CLOSED:
            return StorageUnavailable(f"{where} closed the connection before answering")
        return StorageUnavailable(f"the S3 client failed talking to {where}: {detail}")

    @contextlib.contextmanager
    def calling(self, path: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self.error(exc, path) from exc
