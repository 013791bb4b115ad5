"""One pair, one process: an advisory lock under the local root's ``.storsync/``."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from storsync.errors import LockedError
from storsync.paths import OWN_DIR


class PairLock:
    """Held for a whole session; released by the kernel if the process dies."""

    def __init__(self, local_root: Path) -> None:
        self.path = local_root / OWN_DIR / "lock"
        self._fd: int | None = None

    def __enter__(self) -> PairLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"another storsync process (pid {holder}) is synchronizing "
                f"{self.path.parent.parent}; try again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
