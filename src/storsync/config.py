"""The service's settings, read once at the edge: flags, then STORSYNC_* variables, then an
optional TOML file, then defaults (CLI.md). Everything below receives plain values."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from storsync.errors import UsageError
from storsync.model import MIN_BWLIMIT

DEFAULT_PORT = 4443


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    database_url: str | None = None  # default: SQLite in the data directory
    admin_user: str = "admin"
    admin_password: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_self_signed: bool = False
    local: Path | None = None  # the default repository, with remote
    remote: str | None = None
    # The default repository's S3 settings, else the usual AWS variables (as the
    # command line takes them).
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    allowed_roots: tuple[Path, ...] = ()  # default: the data directory
    allow_private_endpoints: bool = False
    plm_anonymous_loopback: bool = False
    retention_days: float = 30.0
    quiet_retention_days: float = 1.0
    token_ttl_s: int = 3600
    refresh_ttl_s: int = 14 * 86_400
    transfers: int = 16
    # The total bandwidth of all running sessions, bytes per second (None: no limit);
    # PATCH /api/v1/settings changes it for good.
    bwlimit_bytes_per_second: int | None = None
    # Sessions are background work: their worker processes run this much nicer than the
    # service, so that a large sync does not slow the answers (docs/benchmarks.md).
    worker_niceness: int = 10
    # One worker process kept started ahead, so that a session does not wait for one to
    # start (a third of a small session's start); off saves its memory while idle.
    spare_worker: bool = True
    log_level: str = "info"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'storsync.db'}"

    @property
    def roots(self) -> tuple[Path, ...]:
        return self.allowed_roots or (self.data_dir,)


# Settings that fall back on a variable of another tool when not set as storsync's.
_FALLBACKS = {
    "s3_endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "s3_region": ("AWS_REGION",),
    "s3_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "s3_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
}

_BOOLEAN = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _convert(name: str, kind: str, raw: Any) -> Any:
    """One setting from a flag, a variable (a string) or TOML (typed) to its field's type."""
    try:
        if raw is None:
            return None
        if "Path" in kind and "tuple" in kind:
            items = raw.split(os.pathsep) if isinstance(raw, str) else list(raw)
            return tuple(Path(str(p)).expanduser().absolute() for p in items if str(p))
        if "Path" in kind:
            return Path(str(raw)).expanduser().absolute()
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            return _BOOLEAN[str(raw).strip().lower()]
        if kind.startswith("int"):
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (KeyError, ValueError, TypeError):
        raise UsageError(f"setting {name!r} has an invalid value {raw!r}") from None


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    config_file: Path | None = None,
) -> Settings:
    """Flags given (not None) win over STORSYNC_<NAME> variables, which win over the file."""
    kinds = {f.name: str(f.type) for f in fields(Settings)}
    config_file = config_file or (
        Path(environ["STORSYNC_CONFIG"]) if environ.get("STORSYNC_CONFIG") else None
    )
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            from_file = tomllib.loads(config_file.read_text())
        except OSError as exc:
            raise UsageError(
                f"cannot read the settings file {str(config_file)!r}: {exc.strerror}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(
                f"the settings file {str(config_file)!r} is not valid TOML: {exc}"
            ) from None
        unknown = sorted(set(from_file) - set(kinds))
        if unknown:
            raise UsageError(f"unknown setting {unknown[0]!r} in {str(config_file)!r}")
    values: dict[str, Any] = {}
    for name, kind in kinds.items():
        raw = flags.get(name)
        if raw is None:
            raw = environ.get(f"STORSYNC_{name.upper()}") or None
        if raw is None:
            raw = from_file.get(name)
        for variable in _FALLBACKS.get(name, ()):
            raw = raw or environ.get(variable) or None
        if raw is not None:
            values[name] = _convert(name, kind, raw)
    if "data_dir" not in values:
        import platformdirs

        values["data_dir"] = Path(platformdirs.user_data_dir("storsync"))
    settings = Settings(**values)
    if (settings.local is None) != (settings.remote is None):
        raise UsageError("give both --local and --remote for the default repository, or neither")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    if not 0 < settings.port < 65536:
        raise UsageError(f"port {settings.port} is not between 1 and 65535")
    if settings.retention_days <= 0 or settings.quiet_retention_days <= 0:
        raise UsageError("retention_days and quiet_retention_days must be more than 0")
    limit = settings.bwlimit_bytes_per_second
    if limit is not None and limit < MIN_BWLIMIT:
        raise UsageError(f"bwlimit_bytes_per_second {limit} is less than {MIN_BWLIMIT} (1 KiB/s)")
    if not 0 <= settings.worker_niceness <= 19:
        raise UsageError(f"worker_niceness {settings.worker_niceness} is not between 0 and 19")
    return settings
