"""The dashboard's plots (storsync.api.plots): bars scaled to the peak, stacked by
direction, every session visible; and on the pages, from the store's sums, on each
backend."""

from __future__ import annotations

import re
from pathlib import Path

from storsync.api import plots
from storsync.model import LogKind, PhaseCounters, SessionState, Trigger
from storsync.state.records import Session
from tests.api_support import Api
from tests.conftest import write
from tests.test_dashboard_security import as_person, cookie_of, sign_in


def test_throughput_bars_stack_by_direction_and_scale_to_the_peak() -> None:
    moved = [
        (100, LogKind.PUSHED, 1000),
        (100, LogKind.PULLED, 1000),
        (102, LogKind.PUSHED, 500),
    ]
    plot = plots.throughput(moved)
    assert plot is not None and plots.throughput([]) is None
    pushed, pulled, later = plot.bars
    assert (pushed.height, pulled.height) == (plot.height / 2, plot.height / 2)
    assert pulled.y + pulled.height == pushed.y  # stacked: pulled above pushed
    assert later.height == plot.height / 4 and later.x == 2 * plot.width / 3
    assert "2.4 KiB in 3 s" in plot.caption and "peak 2.0 KiB/s" in plot.caption


def test_history_shows_every_session_oldest_first() -> None:
    sessions = [_session(i, files) for i, files in enumerate([0, 10, 5])]
    plot = plots.history(list(reversed(sessions)))
    assert plot is not None and plots.history([]) is None
    heights = [b.height for b in plot.bars]
    assert heights == [plots.MIN_HEIGHT, plot.height, plot.height / 2]
    assert [b.kind for b in plot.bars] == ["completed"] * 3


def test_the_pages_plot_what_the_store_holds(api: Api) -> None:
    repository = api.new_repository()
    for i in range(12):
        write(Path(repository["localPath"]), f"f{i}.bin", b"x" * 1000)
    session = api.sync(repository["id"])
    secret = cookie_of(sign_in(api))
    page = as_person(api, secret, "GET", f"/sessions/{session['id']}").text
    assert "Throughput:" in page and "11.7 KiB in" in page
    assert len(re.findall(r'<rect class="bar pushed"', page)) >= 1
    history = as_person(api, secret, "GET", f"/sessions?repository={repository['id']}").text
    assert "Recent sessions:" in history and 'class="bar completed"' in history


def _session(i: int, files: int) -> Session:
    zero = PhaseCounters()
    return Session(
        f"{i:08d}-0000-4000-8000-000000000000",
        "r",
        "p",
        "q",
        SessionState.COMPLETED,
        None,
        None,
        i,
        None,
        None,
        None,
        False,
        Trigger.API,
        100,
        zero,
        zero,
        files,
        0,
        0,
        0,
        0,
        0,
    )
