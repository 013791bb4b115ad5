"""What a direction's staging may hold at once (runner/transfers.py): a batch of files, of
them a window staged outside memory, and, past the first file, a budget of bytes, since an
S3 destination stages a file of up to 64 MiB in memory."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from storsync.engine.reconcile import Transfer
from storsync.model import Entry
from storsync.runner.staging import GROUP_FILES, SMALL_BYTES, Together
from storsync.runner.transfers import BATCH_FILES, Budget, _bounded_map

MiB = 1 << 20


class _Recording(ThreadPoolExecutor):
    """Runs each task at once, and records the bytes submitted and not yet handed back:
    those in flight, and the one on its way out (the next are submitted before it is
    handed over, so staging goes on while a batch is published)."""

    def __init__(self) -> None:
        super().__init__(1)
        self.held = 0
        self.peak = 0
        self.peak_files = 0
        self.files = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        (transfer,) = args
        self.held += transfer.source.size
        self.files += 1
        self.peak, self.peak_files = max(self.peak, self.held), max(self.peak_files, self.files)
        done: Future[Any] = Future()
        done.set_result(fn(transfer))
        return done

    def handed_back(self, transfer: Transfer) -> None:
        self.held -= transfer.source.size
        self.files -= 1


def _in_memory(size: int) -> int:
    return size  # as S3 holds a small file it staged


def _run(sizes: list[int], window: int, budget: int, held: Any = _in_memory) -> _Recording:
    pool = _Recording()
    transfers = [
        Transfer(f"f{i}", Entry(size, 0, False, None, None), None) for i, size in enumerate(sizes)
    ]
    got = []

    def stage(transfer: Transfer) -> Future[Any]:
        return pool.submit(lambda t: (t, t.source, None), transfer)

    for transfer, _outcome in _bounded_map(
        stage, transfers, window, Budget(budget, held), lambda _: None
    ):
        pool.handed_back(transfer)
        got.append(transfer.path)
    assert got == [t.path for t in transfers]  # every one, in order
    return pool


def test_large_files_in_flight_stay_within_the_byte_budget() -> None:
    pool = _run([60 * MiB] * 20, window=64, budget=256 * MiB)
    # 4 in flight (240 MiB) and the one handed over, not 20 (the window alone allowed all)
    assert pool.peak == 5 * 60 * MiB
    assert pool.peak_files == 5


def test_small_files_in_memory_fill_a_batch_and_a_file_over_the_budget_still_goes() -> None:
    # The next batch staged while one is published: the window counts no file in memory.
    assert _run([4096] * 3000, window=64, budget=256 * MiB).peak_files == BATCH_FILES + 1
    over = _run([10, 300 * MiB, 10, 10], window=64, budget=256 * MiB)
    # Alone in flight (the one before it handed over), then handed over while the two
    # small ones after it are staged.
    assert over.peak == 300 * MiB + 20


def test_files_staged_where_they_are_written_are_counted_by_the_window_alone() -> None:
    # A local destination's partial file, an S3 multipart upload: nothing held in memory.
    assert _run([60 * MiB] * 20, window=8, budget=256 * MiB, held=lambda _: 0).peak_files == 9
    # Empty ones hold nothing anywhere; small ones are staged sooner than a worker takes them.
    empty = _run([0] * 3000, window=8, budget=256 * MiB, held=lambda _: 0)
    assert empty.peak_files == BATCH_FILES + 1
    small = _run([SMALL_BYTES] * 3000, window=8, budget=256 * MiB, held=lambda _: 0)
    assert small.peak_files == BATCH_FILES + 1
    larger = _run([SMALL_BYTES + 1] * 3000, window=8, budget=256 * MiB, held=lambda _: 0)
    assert larger.peak_files == 9


def test_files_gathered_into_groups_are_sent_when_full_or_when_waited_for() -> None:
    """A group is read when full; the last, partial, one when its first file is waited for
    (never before: it would cut every group short); every file comes back, in order."""
    sent: list[list[str]] = []

    def start(group: list[Any]) -> None:
        sent.append([transfer.path for transfer, _ in group])
        for transfer, future in group:
            future.set_result((transfer, transfer.source, None))

    together = Together(start)
    transfers = [
        Transfer(f"f{i:04d}", Entry(1, 0, False, None, None), None)
        for i in range(GROUP_FILES * 2 + 5)
    ]
    got = [
        transfer.path
        for transfer, _ in _bounded_map(
            together.add, transfers, 8, Budget(MiB, lambda _: 0), together.send_for
        )
    ]
    assert got == [t.path for t in transfers]
    assert [len(group) for group in sent] == [GROUP_FILES, GROUP_FILES, 5]
