"""Remote credentials encrypted with a key kept outside the database (API.md section 5)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from storsync.errors import UsageError

KEY_FILE = "secret.key"


class Vault:
    def __init__(self, key: bytes) -> None:
        self._key = key
        self._fernet = Fernet(key)

    def export_key(self) -> str:
        """The key, for a session's worker process to unseal its job's credentials with
        (handed over its standard input, never stored)."""
        return self._key.decode()

    @classmethod
    def open(cls, secret: str | None, data_dir: Path) -> Vault:
        """From STORSYNC_SECRET_KEY (any passphrase), else a 0600 key file, made once."""
        if secret:
            digest = hashlib.sha256(secret.encode()).digest()
            return cls(base64.urlsafe_b64encode(digest))
        path = data_dir / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if path.stat().st_mode & 0o077:
                raise UsageError(
                    f"{path} is readable by other users; run chmod 600 on it"
                ) from None
            return cls(path.read_bytes().strip())
        key = Fernet.generate_key()
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        return cls(key)

    def seal(self, credentials: dict[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(credentials).encode()).decode()

    def unseal(self, sealed: str) -> dict[str, str]:
        try:
            value: dict[str, str] = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken:
            raise UsageError(
                "stored remote credentials cannot be decrypted: the secret key changed; "
                "give the repository its credentials again"
            ) from None
        return value
