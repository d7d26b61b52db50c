"""How often browser-mode pages post their task samples (``[gaze] compute = "browser"``): the
server's answer to each task batch says (``batch_ms``), and the page's next batch waits that long.

A batch's request costs the server a fixed part (HTTP, the lookup, the chunk's transaction:
~5-8 ms on a 2-core VM, docs/gaze.md "Scale") besides its samples' share, so fewer, larger batches
carry more participants on the same cores. The page starts at the study's ``task_batch_ms``; while
the server is short of CPU, its answers ask for longer intervals, up to ``task_batch_max_ms`` (at
most 60 samples a batch), and for shorter ones again once it is not. Only *when* rows reach the
server changes: every sample is still sent (the outbox keeps each batch until stored), and what
an unexpected browser crash can lose grows with the interval (the samples not yet batched).

Short of CPU is read from the sample requests themselves (:class:`BatchPacer`): a request's wall
time less its thread's CPU time is time it waited (for the interpreter lock held by the worker's
other threads, for a core, for the database's write lock). Its moving average above ``busy_ms``
lengthens the interval by ``step`` at most every ``raise_every_s``; below ``idle_ms`` shortens it
by ``step`` at most every ``lower_every_s`` (the gap between the two thresholds and the slower
way down keep it from swinging). One pacer per app and worker process: each sees the same machine.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["BatchPacer", "pacer"]


class BatchPacer:
    """The factor (>= 1) by which this worker lengthens the pages' task batch interval.

    Parameters
    ----------
    busy_ms, idle_ms : float
        Moving average of the requests' waiting time (ms) above which the interval grows, below
        which it shrinks.
    step : float
        Factor of one change.
    alpha : float
        Weight of the newest request in the moving average.
    raise_every_s, lower_every_s : float
        Least time between two changes up, and before a change down.
    max_factor : float
        Largest factor (the study's ``task_batch_max_ms`` bounds the interval anyway).
    clock : callable
        Seconds, monotonic (tests pass their own).
    """

    def __init__(self, busy_ms: float = 20.0, idle_ms: float = 5.0, step: float = 1.5, alpha: float = 0.1,
                 raise_every_s: float = 2.0, lower_every_s: float = 10.0, max_factor: float = 16.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (0 <= idle_ms < busy_ms and step > 1 and 0 < alpha <= 1 and max_factor >= 1):
            raise ValueError("BatchPacer needs 0 <= idle_ms < busy_ms, step > 1, 0 < alpha <= 1, max_factor >= 1")
        self.busy_ms, self.idle_ms, self.step, self.alpha = busy_ms, idle_ms, step, alpha
        self.raise_every_s, self.lower_every_s, self.max_factor = raise_every_s, lower_every_s, max_factor
        self._clock = clock
        self._lock = threading.Lock()
        self.wait_ms_ = 0.0  # moving average of the requests' waiting time
        self.factor_ = 1.0
        self._changed = -float("inf")

    def observe(self, wall_s: float, cpu_s: float) -> None:
        """One sample request took ``wall_s`` seconds, ``cpu_s`` of them on its thread's CPU."""
        wait = max(0.0, wall_s - cpu_s) * 1000.0
        now = self._clock()
        with self._lock:
            self.wait_ms_ += self.alpha * (wait - self.wait_ms_)
            if self.wait_ms_ > self.busy_ms and self.factor_ < self.max_factor \
                    and now - self._changed >= self.raise_every_s:
                self.factor_, self._changed = min(self.max_factor, self.factor_ * self.step), now
            elif self.wait_ms_ < self.idle_ms and self.factor_ > 1.0 and now - self._changed >= self.lower_every_s:
                self.factor_, self._changed = max(1.0, self.factor_ / self.step), now

    def interval_ms(self, base_ms: int, max_ms: int) -> int:
        """The interval to ask of a page: ``base_ms`` (the study's ``task_batch_ms``) lengthened
        by the current factor, at most ``max_ms`` (``task_batch_max_ms``), never below ``base_ms``."""
        return int(max(base_ms, min(max_ms, round(base_ms * self.factor_))))


def pacer() -> BatchPacer:
    """The app's pacer in this process (made on first use)."""
    from .runtime import app_extension

    return app_extension("gazepref_pacer", BatchPacer)
