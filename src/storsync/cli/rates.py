"""``--bwlimit 2M``: bytes per second, with K, M or G for 1024, 1024² or 1024³ (as rclone
reads its ``--bwlimit``), at least 1 KiB/s."""

from __future__ import annotations

import re

import click

from storsync.model import MIN_BWLIMIT

_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?(?:/s)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


class ByteRate(click.ParamType[int, object]):
    name = "RATE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        found = _RATE.fullmatch(str(value).strip())
        if found is None:
            self.fail(
                f"{value!r} is not a rate such as 512K, 2M or 1G (bytes per second)", param, ctx
            )
        rate = int(float(found.group(1)) * _UNITS[found.group(2).upper()])
        if rate < MIN_BWLIMIT:
            self.fail(
                f"{value!r} is less than the lowest limit, 1K (1024 bytes per second)", param, ctx
            )
        return rate
