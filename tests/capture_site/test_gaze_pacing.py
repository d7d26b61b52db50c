"""The task batch interval browser-mode pages are asked for (:mod:`gazepref.capture_site.gaze_pacing`):
longer while the sample requests wait, back once they do not, within the study's bounds; and the
answer of a task batch carries it."""
from __future__ import annotations

import pytest

from gazepref.capture_site.gaze_pacing import BatchPacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def requests(pacer: BatchPacer, clock: Clock, n: int, wait_ms: float, every_s: float = 0.1) -> None:
    """``n`` requests of 5 ms CPU that waited ``wait_ms`` each, one every ``every_s``."""
    for _ in range(n):
        clock.now += every_s
        pacer.observe((5.0 + wait_ms) / 1000.0, 0.005)


def test_waiting_requests_lengthen_the_interval_step_by_step_up_to_the_longest():
    clock = Clock()
    pacer = BatchPacer(clock=clock)
    assert pacer.interval_ms(1000, 4000) == 1000
    requests(pacer, clock, 10, 50.0)  # 1 s of requests waiting 50 ms each: the average passes busy_ms
    assert pacer.wait_ms_ > pacer.busy_ms
    assert pacer.interval_ms(1000, 4000) == 1500  # one step
    requests(pacer, clock, 10, 50.0)
    assert pacer.interval_ms(1000, 4000) == 1500  # at most one change in raise_every_s (2 s)
    requests(pacer, clock, 10, 50.0)
    assert pacer.interval_ms(1000, 4000) == 2250
    requests(pacer, clock, 200, 50.0)
    assert pacer.interval_ms(1000, 4000) == 4000  # the study's longest
    assert pacer.interval_ms(1000, 1000) == 1000  # a study without pacing
    assert pacer.interval_ms(2000, 60_000) == round(2000 * pacer.factor_) <= 2000 * pacer.max_factor


def test_the_interval_comes_back_slowly_once_requests_stop_waiting():
    clock = Clock()
    pacer = BatchPacer(clock=clock)
    requests(pacer, clock, 100, 50.0)  # 10 s busy: a step at ~0.6 s and every 2 s after
    busy = pacer.interval_ms(1000, 60_000)
    assert busy == round(1000 * 1.5 ** 5)
    requests(pacer, clock, 50, 0.0)  # 5 s quiet: below idle_ms, but not lower_every_s since the last change
    assert pacer.wait_ms_ < pacer.idle_ms and pacer.interval_ms(1000, 60_000) == busy
    requests(pacer, clock, 50, 0.0)  # 10 s quiet: one step down
    assert pacer.interval_ms(1000, 60_000) == round(1000 * 1.5 ** 4)
    requests(pacer, clock, 1000, 0.0)  # 110 s quiet
    assert pacer.interval_ms(1000, 60_000) == 1000


def test_a_moderate_wait_changes_nothing():
    """Between idle_ms and busy_ms the interval stays where it is (no swinging)."""
    clock = Clock()
    pacer = BatchPacer(clock=clock)
    requests(pacer, clock, 100, 50.0)
    requests(pacer, clock, 30, 10.0)  # the average settles at 10 ms
    held = pacer.interval_ms(1000, 60_000)
    assert held > 1000
    requests(pacer, clock, 1000, 10.0)
    assert pacer.interval_ms(1000, 60_000) == held
    assert pacer.idle_ms < pacer.wait_ms_ < pacer.busy_ms


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        BatchPacer(busy_ms=5.0, idle_ms=10.0)
    with pytest.raises(ValueError):
        BatchPacer(step=1.0)
