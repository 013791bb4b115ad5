"""Plots of the dashboard, as bars the page draws in inline SVG (no script, nothing
fetched): a session's throughput second by second, and a repository's recent sessions.

Each bar carries a label (its SVG ``<title>``: a tooltip, and text for assistive tools)
and a kind its colour comes from (the stylesheet's ``.bar.<kind>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storsync.model import LogKind
from storsync.state.records import Session
from storsync.units import size

WIDTH, HEIGHT = 640, 120
MIN_HEIGHT = 2.0  # a session that moved nothing still shows, as a sliver


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str
    label: str


@dataclass(frozen=True)
class Plot:
    width: int
    height: int
    bars: list[Bar]
    caption: str


def throughput(moved: Sequence[tuple[int, LogKind, int]]) -> Plot | None:
    """Bytes per second, pushed below pulled, from the first second with a transfer to
    the last (None: nothing moved)."""
    if not moved:
        return None
    first, last = moved[0][0], moved[-1][0]
    per_second: dict[int, dict[LogKind, int]] = {}
    for second, kind, count in moved:
        per_second.setdefault(second, {})[kind] = count
    peak = max(sum(by_kind.values()) for by_kind in per_second.values()) or 1
    step = WIDTH / (last - first + 1)
    bars: list[Bar] = []
    for second, by_kind in per_second.items():
        x, bottom = (second - first) * step, float(HEIGHT)
        for kind in (LogKind.PUSHED, LogKind.PULLED):
            count = by_kind.get(kind, 0)
            if not count:
                continue
            height = HEIGHT * count / peak
            bottom -= height
            label = f"second {second - first + 1}: {kind.value} {size(count)}"
            bars.append(Bar(x, bottom, max(step - 1, 1), height, kind.value, label))
    total = sum(count for _, _, count in moved)
    caption = (
        f"{size(total)} in {last - first + 1} s; peak {size(peak)}/s "
        f"(pushed: lower part, pulled: upper part of a bar)"
    )
    return Plot(WIDTH, HEIGHT, bars, caption)


def history(sessions: Sequence[Session]) -> Plot | None:
    """The sessions oldest first, each a bar as high as the files it moved, coloured by
    how it ended (None: no session)."""
    if not sessions:
        return None
    ordered = sorted(sessions, key=lambda s: s.created_ns)
    moved = [s.pushed + s.pulled + s.deleted_local + s.deleted_remote for s in ordered]
    peak = max(moved) or 1
    step = WIDTH / len(ordered)
    bars = []
    for i, (session, files) in enumerate(zip(ordered, moved, strict=True)):
        height = max(HEIGHT * files / peak, MIN_HEIGHT)
        label = f"{session.id[:8]} {session.state.value}: {files} files"
        bars.append(
            Bar(i * step, HEIGHT - height, max(step - 2, 1), height, session.state.value, label)
        )
    caption = f"the last {len(ordered)} sessions, oldest first: files moved, by outcome"
    return Plot(WIDTH, HEIGHT, bars, caption)
