"""The clock a scheduler needs: waiting until an instant, woken early on request; and the
manual clock that lets a test move time instead of waiting for it."""

from __future__ import annotations

import threading
import time

from storsync.clock import ManualClock, SystemClock


def test_the_system_clock_waits_until_an_instant_or_a_wake() -> None:
    clock = SystemClock()
    began = time.monotonic()
    assert clock.wait_until(clock.now_ns() + 50_000_000, threading.Event()) is False
    assert time.monotonic() - began >= 0.045
    wake = threading.Event()
    threading.Timer(0.05, wake.set).start()
    began = time.monotonic()
    assert clock.wait_until(clock.now_ns() + 60 * 10**9, wake) is True
    assert time.monotonic() - began < 5
    assert clock.wait_until(clock.now_ns() - 1, threading.Event()) is False  # already past


def test_a_manual_clock_moves_only_when_told_and_wakes_its_waiters() -> None:
    clock = ManualClock()
    start, mono = clock.now_ns(), clock.monotonic()
    time.sleep(0.02)
    assert (clock.now_ns(), clock.monotonic()) == (start, mono)
    outcomes: list[bool] = []
    waiter = threading.Thread(
        target=lambda: outcomes.append(clock.wait_until(start + 60 * 10**9, threading.Event()))
    )
    sleeper = threading.Thread(target=clock.sleep, args=(30.0,))
    waiter.start()
    sleeper.start()
    clock.advance(29)
    time.sleep(0.05)
    assert waiter.is_alive() and sleeper.is_alive()
    clock.advance(1)
    sleeper.join(5)
    assert not sleeper.is_alive() and waiter.is_alive()
    clock.advance(30)
    waiter.join(5)
    assert outcomes == [False]
    assert clock.now_ns() == start + 60 * 10**9 and clock.monotonic() == mono + 60


def test_a_manual_clock_waiter_is_woken_by_its_event() -> None:
    clock = ManualClock()
    wake = threading.Event()
    threading.Timer(0.05, wake.set).start()
    assert clock.wait_until(clock.now_ns() + 10**12, wake) is True
