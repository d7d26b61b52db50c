"""Per-participant webcam trackers in the site: the registry (one
:class:`~gazepref.signals.webcam.GazeTracker` and one lock per participant, idle ones closed), the
face indicator and running a request's frames through the tracker (:func:`process_frames`)."""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

from flask import current_app

from . import gaze_drift
from .api import ApiError
from .gaze_limits import pipeline_slots
from .gaze_settings import MAX_FRAME_BYTES, GazeSettings
from .runtime import site

__all__ = ["TrackerEntry", "TrackerRegistry", "decode_frames", "dropped_row", "face_status", "process_frames",
           "registry", "usable_times"]


class TrackerEntry:
    """One participant's tracker, its lock, its calibration's id, face status and drift state."""

    def __init__(self, tracker: Any, interactions: bool = False):
        self.tracker = tracker
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.calibration_id: int | None = None
        self.face: dict[str, Any] = {"found": False, "ok": False, "code": "no-frame", "message": "no frame yet"}
        self.failed = False  # the calibration in force is a failed one's outcome (no model)
        self.drift = gaze_drift.ParticipantDrift(interactions)


class TrackerRegistry:
    """One GazeTracker per participant (one lock each); trackers idle for ``idle_s`` are closed.

    A participant is keyed by (row id, pseudonym): on a database that reuses a deleted row's id
    (SQLite tables made before ``participants`` was AUTOINCREMENT), the next participant with
    that id gets a tracker of their own, not the deleted one's (its face state, drift, and a
    calibration whose id may have been reused too)."""

    def __init__(self, idle_s: float = 300.0, max_side: int = 640):
        self.idle_s, self.max_side = idle_s, max_side
        self._entries: dict[tuple[int, str], TrackerEntry] = {}
        self._lock = threading.Lock()

    def get(self, participant: tuple[int, str], settings: GazeSettings | None = None) -> TrackerEntry:
        """The tracker of ``participant`` = (row id, pseudonym), made on first use."""
        from gazepref.signals.webcam import GazeTracker

        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            entry = self._entries.get(participant)
            if entry is None:
                check_ms = float(settings.face_check_ms if settings is not None else 1000)
                entry = self._entries[participant] = TrackerEntry(
                    GazeTracker(max_side=self.max_side, face_check_ms=check_ms),
                    interactions=settings is not None and settings.interaction_calibration)
            entry.last_used = now
            return entry

    def _sweep(self, now: float) -> None:
        for key, e in list(self._entries.items()):
            if now - e.last_used > self.idle_s and not e.lock.locked():
                del self._entries[key]
                e.tracker.close()

    def __len__(self) -> int:
        return len(self._entries)


def registry() -> TrackerRegistry:
    """The app's tracker registry (created on first use)."""
    reg = current_app.extensions.get("gazepref_trackers")
    if reg is None:
        with site()._lock:
            reg = current_app.extensions.setdefault("gazepref_trackers", TrackerRegistry())
    return reg


def face_status(row: dict[str, float] | None) -> dict[str, Any]:
    """Whether the last frame shows one face, well placed (what the page shows green/red), with
    the advice of :func:`gazepref.signals.framing.framing_advice` (``code``, ``message``)."""
    from gazepref.signals.framing import framing_advice

    code, message = framing_advice(row)
    found = code not in ("no-frame", "no-face") and not (code == "dark" and row is not None
                                                         and int(row.get("flags", 0)) & 1)
    return {"found": found, "ok": code == "ok", "code": code, "message": message}


def usable_times(rows: list[dict[str, float]]) -> list[float]:
    """Times of the rows a calibration can use (a face, eyes open: what the page counts per dot)."""
    from gazepref.signals.gaze_session import usable

    return [r["t"] for r, ok in zip(rows, usable(rows)) if ok and not int(r["flags"]) & 128]


def decode_frames(frames: list[bytes], max_side: int) -> list[Any]:
    """Decode every frame before any is processed: one bad frame rejects the whole batch."""
    from gazepref.signals.frame_decode import FrameError, decode_jpeg

    images = []
    for i, data in enumerate(frames):
        try:
            images.append(decode_jpeg(data, max_side=max_side, max_bytes=MAX_FRAME_BYTES))
        except FrameError as e:
            raise ApiError(400, f"frame {i}: {e}") from None
    return images


def dropped_row(t: float) -> dict[str, float]:
    """The row of a frame stored without processing: its time, no estimate, the DROPPED flag."""
    from gazepref.schema import GazeFlag

    return {"t": t, "x": math.nan, "y": math.nan, "confidence": 0.0, "flags": int(GazeFlag.DROPPED)}


def process_frames(entry: TrackerEntry, images: list[Any], times: list[float], arrived: float | None = None,
                   shed_ms: float = 0.0, stale: Callable[[], bool] | None = None
                   ) -> tuple[list[dict[str, float]], int]:
    """Tracker rows of ``images``; frames the server is too far behind for are not processed but
    kept as rows without features, confidence 0 and the DROPPED flag (no estimate): with
    ``shed_ms`` > 0, frames reached later than ``shed_ms`` after the request ``arrived``; with
    ``stale``, frames for which ``stale()`` says so once they get a pipeline slot (the WebSocket:
    a newer frame of the participant is already waiting while other frames queue for the slots)."""
    rows, dropped, last = [], 0, None
    slots = pipeline_slots()
    with entry.lock:
        for img, t in zip(images, times):
            with slots:
                late = shed_ms > 0 and arrived is not None and (time.monotonic() - arrived) * 1000.0 > shed_ms
                if not (late or (stale is not None and stale())):
                    last = entry.tracker.process_image(img, t)
                    rows.append(last)
                    continue
            rows.append(dropped_row(t))
            dropped += 1
        entry.last_used = time.monotonic()
    if last is not None:
        entry.face = face_status(last)
    return rows, dropped
