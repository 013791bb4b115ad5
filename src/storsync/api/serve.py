"""Running the application on uvicorn: TLS, logging with tokens redacted."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import re
from pathlib import Path
from types import FrameType

from storsync.clock import SystemClock, utc_datetime
from storsync.config import Settings
from storsync.service.auth import TOKEN_PREFIX

# The key as sent, percent-encoded or not (the server decodes ``access%5Ftoken`` too).
_TOKEN_IN_QUERY = re.compile(r"(access(?:_|%5f)token(?:=|%3d))[^&\s\"]*", re.IGNORECASE)
# Our tokens and API keys wherever a client put them (another parameter, the path).
_TOKEN_ANYWHERE = re.compile(rf"(?<![\w-]){TOKEN_PREFIX}[\w-]{{20,}}")


def _redact(text: str) -> str:
    return _TOKEN_ANYWHERE.sub("[redacted]", _TOKEN_IN_QUERY.sub(r"\1[redacted]", text))


class RedactTokens(logging.Filter):
    """Tokens never reach a log: ``?access_token=`` (the WebSocket's) is blanked out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def self_signed(data_dir: Path, host: str) -> tuple[Path, Path]:
    """A certificate for localhost and the listening address, made once and kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = data_dir / "tls"
    cert_path, key_path = folder / "self-signed.crt", folder / "self-signed.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for address in {"127.0.0.1", "::1", host}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    now = utc_datetime(SystemClock().now_ns())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "storsync")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _log_to_stderr(level: str) -> None:
    """storsync's own lines (sessions started and ended, the start-up summary) beside
    uvicorn's, which configures only its own loggers."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokens())
    logger = logging.getLogger("storsync")
    logger.addHandler(handler)
    found = logging.getLevelName(level.upper())  # "trace", uvicorn's own, is DEBUG here
    logger.setLevel(found if isinstance(found, int) else logging.DEBUG)
    logger.propagate = False


def serve(settings: Settings) -> None:
    import uvicorn

    from storsync.api.app import create_app

    cert, key = settings.tls_cert, settings.tls_key
    if cert is None and settings.tls_self_signed:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed(settings.data_dir, settings.host)
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    _log_to_stderr(settings.log_level)
    app = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Event streams never end by themselves; uvicorn would wait for them up to
            # its graceful timeout before stopping the sessions. End them first.
            hub = getattr(app.state, "hub", None)
            if hub is not None:
                hub.close_threadsafe()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=None if cert is None else str(cert),
        ssl_keyfile=None if key is None else str(key),
        log_level=settings.log_level,
        # The Veeam paths are rewritten before routing, so no proxy header is trusted.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    Server(config).run()
