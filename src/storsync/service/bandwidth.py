"""The service's bandwidth (API.md section 7): a total for all running sessions together
(``bwlimit_bytes_per_second``, changed by ``PATCH /api/v1/settings``), and each
repository's own limit (``bwlimitBytesPerSecond``).

Each running session gets a share, sent to its worker as it changes (a session starting
or ending, either limit changed): the total is divided equally, except that a session
whose own limit is lower keeps to it and leaves the rest to the others (water-filling).
Shares are only ever what the limits allow, never more: a session that moves nothing for
a while leaves its share unused rather than lend it.
"""

from __future__ import annotations

from collections.abc import Mapping

from storsync.state.service_settings_store import ServiceSettingsStore

SETTING = "bwlimit_bytes_per_second"


class Bandwidth:
    def __init__(self, store: ServiceSettingsStore, configured: int | None) -> None:
        self.store = store
        self.configured = configured

    @property
    def total(self) -> int | None:
        """The service's total (None: no total), as last set through the API, else as
        configured."""
        was_set, value = self.store.get(SETTING)
        if not was_set:
            return self.configured
        return None if value is None else int(value)

    def set_total(self, bytes_per_second: int | None) -> None:
        self.store.set(SETTING, bytes_per_second)


def shares(total: int | None, own: Mapping[str, int | None]) -> dict[str, int | None]:
    """Each running session's limit, by repository: its own limit, within an equal share of
    the total (what one with a lower limit leaves goes to the others)."""
    if total is None:
        return dict(own)
    result: dict[str, int | None] = {}
    left, waiting = total, sorted(own, key=lambda r: (own[r] is None, own[r] or 0))
    for i, repository_id in enumerate(waiting):
        fair = left // (len(waiting) - i)
        limit = own[repository_id]
        result[repository_id] = max(1, fair if limit is None else min(limit, fair))
        left -= result[repository_id] or 0
    return result
