"""Remotes by the scheme of their URL: the one place that knows which kinds exist.

Each kind (``RemoteKind``) declares the options it takes (not secret: stored and shown
back), its credential fields (secret: the service seals them, nobody shows them), the
network endpoint a client could point it at (checked against private addresses), the
local directory it is (for the service's allowed roots and overlaps), what it can keep
(its capabilities) and how to open it. Nothing above ``storage/`` tests a scheme: callers
hand a ``RemoteSpec`` around and ask this module. A new kind (SFTP, WebDAV) is one more
entry in ``KINDS``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storsync.clock import Clock
from storsync.errors import UsageError
from storsync.model import Capabilities
from storsync.paths import refusal
from storsync.storage import endpoints
from storsync.storage.base import Storage

Fields = Mapping[str, str]


@dataclass(frozen=True)
class RemoteSpec:
    """A remote as a job carries it: the canonical URL, the options that are not secret
    (an S3 endpoint and region) and the credentials sealed by whoever stores them (None:
    the usual environment of the process, as for the command line).

    ``private_endpoint_allowed``: whether the endpoint may resolve to a loopback or
    private address; when not, it is resolved and checked again when the remote is opened,
    and the process is held to the addresses checked (DNS rebinding).
    """

    url: str
    options: Fields = field(default_factory=dict)
    sealed_credentials: str | None = field(default=None, repr=False)
    private_endpoint_allowed: bool = True


class RemoteKind(ABC):
    scheme: str
    option_fields: frozenset[str] = frozenset()
    credential_fields: frozenset[str] = frozenset()
    capabilities: Capabilities

    @property
    def fields(self) -> frozenset[str]:
        return self.option_fields | self.credential_fields

    @abstractmethod
    def canonical(self, remote: str) -> str:
        """The remote argument as a canonical URL without credentials; UsageError if bad."""

    def shown(self, url: str) -> str:
        """The remote as people see it."""
        return url

    def location(self, spec: RemoteSpec) -> str:
        """The URL plus whatever else names the place (an endpoint): keys the pair's state."""
        return spec.url

    def endpoint(self, options: Fields) -> str | None:
        """The network endpoint the options point at, if a client chose one."""
        return None

    def directory(self, url: str) -> Path | None:
        """The local directory the remote is, if it is one."""
        return None

    def warm(self) -> None:
        """Make ahead what opening a remote of this kind would (its client library read
        and ready), as a spare worker does while it waits for a session."""

    def check_fields(self, options: Fields, credentials: Fields) -> None:
        """Refuse values of this kind's fields that are wrong alone or together (UsageError);
        fields it does not take are not looked at."""

    @abstractmethod
    def open(self, spec: RemoteSpec, credentials: Fields | None, clock: Clock) -> Storage:
        """The storage, ready for a session."""


class FileKind(RemoteKind):
    """A directory on a local file system: a path or ``file:///abs/path``."""

    scheme = "file"
    capabilities = Capabilities(inodes=True, executable_bit=True)

    def canonical(self, remote: str) -> str:
        return _directory(remote).as_uri()

    def directory(self, url: str) -> Path | None:
        return _directory(url)

    def shown(self, url: str) -> str:
        return str(_directory(url))

    def open(self, spec: RemoteSpec, credentials: Fields | None, clock: Clock) -> Storage:
        from storsync.storage.local import LocalStorage

        root = _directory(spec.url)
        if root.exists() and not root.is_dir():
            raise UsageError(f"remote {spec.url!r} is not a directory")
        root.mkdir(parents=True, exist_ok=True)
        return LocalStorage(root, clock=clock)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# botocore's rule for a region name: a host label, not all digits.
_REGION = re.compile(r"^(?![0-9]+$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_NOT_IN_URL = (
    "put S3 credentials in the repository's remoteCredentials (on the service) or in "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on the command line), not the"
)


class S3Kind(RemoteKind):
    """A prefix of a bucket on any S3-compatible store: ``s3://bucket/prefix``."""

    scheme = "s3"
    option_fields = frozenset({"endpoint", "region"})
    credential_fields = frozenset({"access_key_id", "secret_access_key"})
    capabilities = Capabilities(
        etags=True, executable_bit=True, listing_metadata=False, network=True
    )

    def warm(self) -> None:
        # The storage's modules too: libcurl and its libraries load in 50 ms.
        from storsync.storage import s3, s3_client  # noqa: F401

        s3_client.warm()

    def canonical(self, remote: str) -> str:
        bucket, prefix = _bucket_and_prefix(remote)
        return f"s3://{bucket}/{prefix}".rstrip("/")

    def location(self, spec: RemoteSpec) -> str:
        endpoint = self.endpoint(spec.options)
        return f"{spec.url}?endpoint={endpoint}" if endpoint else spec.url

    def endpoint(self, options: Fields) -> str | None:
        return options.get("endpoint") or None

    def check_fields(self, options: Fields, credentials: Fields) -> None:
        if ("access_key_id" in credentials) != ("secret_access_key" in credentials):
            raise UsageError("give both the access key id and the secret access key, or neither")
        endpoint = options.get("endpoint")
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UsageError(f"endpoint {endpoint!r} must be an http:// or https:// URL")
            # '@' anywhere: a secret may hold a '/', which ends urlsplit's host part.
            if "@" in endpoint:
                raise UsageError(f"{_NOT_IN_URL} endpoint URL")
        region = options.get("region")
        if region and not _REGION.match(region):
            raise UsageError(
                f"invalid S3 region {region!r}: a name such as us-east-1, of letters, digits "
                "and '-'"
            )

    def open(self, spec: RemoteSpec, credentials: Fields | None, clock: Clock) -> Storage:
        from storsync.storage.s3 import S3Settings, S3Storage

        self.check_fields(spec.options, credentials or {})
        endpoint = self.endpoint(spec.options)
        if endpoint and not spec.private_endpoint_allowed:
            # Resolved again now, and held to that answer: the name may have been made to
            # point at a private address since the repository was checked.
            endpoints.pin(endpoint, endpoints.check(endpoint))
        bucket, prefix = _bucket_and_prefix(spec.url)
        given = credentials or {}
        settings = S3Settings(
            bucket=bucket,
            prefix=prefix,
            endpoint=endpoint,
            region=spec.options.get("region") or None,
            access_key_id=given.get("access_key_id"),
            secret_access_key=given.get("secret_access_key"),
        )
        return S3Storage(settings, clock=clock)


KINDS: dict[str, RemoteKind] = {kind.scheme: kind for kind in (FileKind(), S3Kind())}
OPTION_FIELDS = frozenset().union(*(kind.option_fields for kind in KINDS.values()))
CREDENTIAL_FIELDS = frozenset().union(*(kind.credential_fields for kind in KINDS.values()))


def kind_of(remote: str) -> RemoteKind:
    """The kind of a remote argument or URL; a plain path is a directory."""
    scheme = urlsplit(remote).scheme
    found = KINDS.get(scheme or "file")
    if found is None:
        raise UsageError(
            f"unsupported remote {remote!r}: give a directory path, a file:// or an s3:// URL"
        )
    return found


def split_fields(fields: Fields) -> tuple[dict[str, str], dict[str, str]]:
    """A remote's fields as (options, credentials) by what every kind declares; UsageError
    for a field no kind takes. Empty values are dropped."""
    options = {k: v for k, v in fields.items() if k in OPTION_FIELDS and v}
    credentials = {k: v for k, v in fields.items() if k in CREDENTIAL_FIELDS and v}
    unknown = sorted(set(fields) - OPTION_FIELDS - CREDENTIAL_FIELDS)
    if unknown:
        known = ", ".join(sorted(OPTION_FIELDS | CREDENTIAL_FIELDS))
        raise UsageError(f"unknown remote field {unknown[0]!r}; expected {known}")
    return options, credentials


def remote_spec(remote: str, options: Fields | None = None) -> RemoteSpec:
    """A remote argument and options as a spec: the canonical URL, and of the options only
    those its kind takes (the command line passes an S3 endpoint whatever the remote)."""
    kind = kind_of(remote)
    url = kind.canonical(remote)
    taken = {k: v for k, v in (options or {}).items() if k in kind.option_fields and v}
    kind.check_fields(taken, {})
    return RemoteSpec(url, taken)


def location(spec: RemoteSpec) -> str:
    return kind_of(spec.url).location(spec)


def open_remote(spec: RemoteSpec, credentials: Fields | None = None, *, clock: Clock) -> Storage:
    return kind_of(spec.url).open(spec, credentials, clock)


def _directory(remote: str) -> Path:
    parts = urlsplit(remote)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file:// URL {remote!r} names a host; only local paths work")
        path = Path(unquote(parts.path))
    else:
        path = Path(remote)
    return path.expanduser().absolute()


def _bucket_and_prefix(remote: str) -> tuple[str, str]:
    parts = urlsplit(remote)
    # A ':' has no place in a bucket name: it is a KEY:SECRET whose secret holds a '/'.
    if parts.username or parts.password or ":" in parts.netloc:
        raise UsageError(f"{_NOT_IN_URL} URL")
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not _BUCKET.match(bucket):
        raise UsageError(
            f"invalid bucket name {bucket!r}: 3 to 63 lower-case letters, digits, '.' or '-'"
        )
    if prefix and (reason := refusal(prefix)):
        raise UsageError(f"invalid S3 prefix {prefix!r}: {reason}")
    return bucket, prefix


def overlapping(a: Path, b: Path) -> bool:
    """Whether two absolute folders (a local root, a directory remote, another local root)
    are the same or one lies inside the other: such a pair would copy its tree into itself
    one level deeper at every session."""
    return a == b or a in b.parents or b in a.parents
