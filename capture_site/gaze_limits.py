"""How much webcam work the server takes on: the per-participant rate limit of frame batches, the
frames in the tracking pipeline at once (:class:`PipelineSlots`) and load shedding (frames reached
too late are stored unprocessed).

App config ``GAZE_RATE_PER_S`` / ``GAZE_BURST`` (rate limit), ``GAZE_CONCURRENCY`` (pipeline slots) and ``GAZE_SHED_MS`` (shedding budget), set by
``create_app`` from :mod:`gazepref.settings`. Each is built once per app (``app.extensions``). Size limits of requests and
frames are in :mod:`.gaze_settings`.
"""
from __future__ import annotations

import os
import threading

from flask import current_app

from .ratelimit import DbRateLimiter

__all__ = ["PipelineSlots", "frame_key", "frame_limiter", "pipeline_slots", "shed_ms"]


class PipelineSlots:
    """At most ``n`` frames in the pipeline at once (0: no limit), and how many threads wait."""

    def __init__(self, n: int) -> None:
        self._free = threading.Semaphore(n) if n > 0 else None
        self._lock = threading.Lock()
        self.waiting = 0  # threads waiting for a slot now

    def __enter__(self) -> PipelineSlots:
        if self._free is not None and not self._free.acquire(blocking=False):
            with self._lock:
                self.waiting += 1
            try:
                self._free.acquire()
            finally:
                with self._lock:
                    self.waiting -= 1
        return self

    def __exit__(self, *exc: object) -> None:
        if self._free is not None:
            self._free.release()


def pipeline_slots() -> PipelineSlots:
    """At most GAZE_CONCURRENCY (app config, from $GAZEPREF_GAZE_CONCURRENCY at ``create_app``; default: the CPU count;
    0: no limit) frames in the pipeline at once in this process; the other threads wait their turn
    (with one socket per participant, 30 pipelines would otherwise compete for the cores)."""
    from .runtime import app_extension

    n = current_app.config.get("GAZE_CONCURRENCY")
    return app_extension("gazepref_gaze_slots", lambda: PipelineSlots(int(os.cpu_count() or 0 if n is None else n)))


def frame_key(participant_id: int) -> str:
    """A participant's bucket of :func:`frame_limiter`."""
    return f"g{participant_id}"


def frame_limiter() -> DbRateLimiter:
    """Frame batches have their own per-participant limit (GAZE_RATE_PER_S, GAZE_BURST), in the
    database like the ingest limit (shared by every process and host)."""
    from .runtime import app_extension, site

    config = current_app.config
    return app_extension("gazepref_gaze_limiter", lambda: DbRateLimiter(
        site().statements, float(config.get("GAZE_RATE_PER_S", 15.0)), float(config.get("GAZE_BURST", 30))))


def shed_ms() -> float:
    """Load shedding budget in ms (app config GAZE_SHED_MS, from $GAZEPREF_GAZE_SHED_MS at ``create_app``; 0: off)."""
    return float(current_app.config.get("GAZE_SHED_MS") or 0)
