"""A session's progress on stderr while it runs, the same for `storsync sync` (told by its
observer) and for the client commands that follow a session (told by its events): what
it is doing, its percent as a bar, files and bytes done of planned, its rate, time left."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from storsync.model import PhaseCounters
from storsync.units import duration, size

if TYPE_CHECKING:
    from rich.progress import Progress


def figures(
    push: PhaseCounters, pull: PhaseCounters, *, rate_bps: float, eta_s: float | None
) -> str:
    """``3/10 files  1.2 MiB/4.0 MiB  512.0 KiB/s  ETA 6.0 s``, both directions together;
    the rate once bytes moved, the time left once it is known."""
    files_done = push.files_done + pull.files_done
    files_planned = push.files_planned + pull.files_planned
    bytes_done = push.bytes_done + pull.bytes_done
    bytes_planned = push.bytes_planned + pull.bytes_planned
    shown = f"{files_done}/{files_planned} files  {size(bytes_done)}/{size(bytes_planned)}"
    if rate_bps > 0:
        shown += f"  {size(rate_bps)}/s"
    if eta_s is not None:
        shown += f"  ETA {duration(eta_s)}"
    return shown


class Bar:
    """One session's line on a rich progress display."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("starting", total=100, figures="")

    def show(
        self,
        stage: str,
        percent: int,
        push: PhaseCounters,
        pull: PhaseCounters,
        *,
        rate_bps: float,
        eta_s: float | None,
    ) -> None:
        """``stage``: what the session does now (scanning, push, ...); ``percent`` as the
        session counts it (files and bytes, API.md's ``progressPercent``)."""
        self._progress.update(
            self._task,
            description=stage,
            completed=percent,
            figures=figures(push, pull, rate_bps=rate_bps, eta_s=eta_s),
        )


@contextmanager
def progress_bar(*, enabled: bool) -> Iterator[Bar | None]:
    """The display on stderr while the block runs, gone at its end (a summary follows);
    None when not ``enabled`` (stderr is no terminal, or the output is JSON)."""
    if not enabled:
        yield None
        return
    # Imported here: a run without a terminal does not pay rich's import time.
    from rich.console import Console
    from rich.progress import BarColumn, Progress

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.percentage:>3.0f}%",
        "{task.fields[figures]}",
        transient=True,
        console=Console(stderr=True),
    ) as progress:
        yield Bar(progress)
