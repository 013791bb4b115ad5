"""Each side's marks under its ``.storsync/``: the layout format, and the repository's
marker that proves the root is the one synchronized before (SYNC.md promise 5)."""

from __future__ import annotations

import json

from storsync.errors import SafetyError, UsageError
from storsync.model import Side
from storsync.runner.context import SessionContext
from storsync.storage.base import OWN_FORMAT


def check_markers(ctx: SessionContext, *, established: bool) -> None:
    """Refuse a side of a newer layout, and a side without the repository's marker on a
    repository synchronized before (unless forced): it may be unmounted or another one."""
    for side in Side:
        storage = ctx.storage(side)
        raw = ctx.retry(storage.read_own, "format")
        if raw is not None and raw.strip().isdigit() and int(raw) > OWN_FORMAT:
            raise UsageError(
                f"the {side.value} side was written by a newer storsync "
                f"(layout format {int(raw)}); upgrade storsync to synchronize it"
            )
        if not established or ctx.settings.force:
            continue
        if ctx.retry(storage.read_own, f"repositories/{ctx.repository_id}") is None:
            raise SafetyError(
                f"the {side.value} root {storage.url} does not carry this "
                "repository's marker although it was synchronized before: it may be "
                "empty, unmounted or a different one; use --force if it is right"
            )


def write_markers(ctx: SessionContext) -> None:
    marker = json.dumps({"repository": ctx.repository_id}).encode()
    name = f"repositories/{ctx.repository_id}"
    for side in Side:
        storage = ctx.storage(side)
        if ctx.retry(storage.read_own, "format") is None:
            ctx.retry(storage.write_own, "format", str(OWN_FORMAT).encode())
        if ctx.retry(storage.read_own, name) is None:
            ctx.retry(storage.write_own, name, marker)
