"""Per-participant webcam trackers in the site: the registry (one
:class:`~gazepref.signals.webcam.GazeTracker` and one lock per participant, idle ones closed), the
face indicator and running a request's frames through the tracker (:func:`process_frames`) with
the calibration they were taken under (:class:`Scoring`)."""
from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterator, NamedTuple

from flask import current_app

from . import gaze_drift
from .api import UNKNOWN_PARTICIPANT, ApiError
from .gaze_limits import pipeline_slots
from .gaze_settings import MAX_FRAME_BYTES, GazeSettings
from .runtime import app_extension

__all__ = ["MAX_OLDER", "Scoring", "TrackerEntry", "TrackerRegistry", "decode_frames", "drop_tracker", "dropped_row",
           "face_status",
           "process_frames", "registry", "usable_times"]

#: older calibrations a tracker keeps at hand for late batches (:attr:`TrackerEntry.older`)
MAX_OLDER = 4


class Scoring(NamedTuple):
    """The calibration a batch is scored with: its ``store.Calibration`` row id (None: no
    calibration yet), its model (None: none, or a failed calibration's outcome, ``failed``) and
    its own drift state (:class:`.gaze_drift.ParticipantDrift`, corrections from clicks made under it)."""
    id: int | None
    model: Any
    failed: bool
    drift: gaze_drift.ParticipantDrift


class TrackerEntry:
    """One participant's tracker, its lock, its latest calibration (the tracker's model, its id,
    whether it failed, its drift state), face status, and the older calibrations seen lately
    (``older``: id -> :class:`Scoring`, at most :data:`MAX_OLDER`, the least recently used
    dropped) for batches that reach the server after a newer calibration (:meth:`kept_older`)."""

    def __init__(self, tracker: Any, interactions: bool = False, idle_s: float | None = None):
        self.tracker = tracker
        self.lock = threading.Lock()
        self.closed = False  # dropped (a withdrawal, a deletion) or swept: a holder's next frame is refused
        self.last_used = time.monotonic()
        self.idle_s = idle_s  # closed when unused this long (the study's [gaze] idle_s; None: the registry's)
        self.calibration_id: int | None = None
        self.face: dict[str, Any] = {"found": False, "ok": False, "code": "no-frame", "message": "no frame yet"}
        self.failed = False  # the calibration in force is a failed one's outcome (no model)
        self.drift = gaze_drift.ParticipantDrift(interactions)
        self.older: OrderedDict[int, Scoring] = OrderedDict()

    def latest(self) -> Scoring:
        """The latest calibration (what batches of the current page are scored with)."""
        return Scoring(self.calibration_id, self.tracker.calibration, self.failed, self.drift)

    def set_latest(self, calibration_id: int, model: Any, failed: bool) -> None:
        """Make ``calibration_id`` the latest (call with ``lock`` held): a new drift state (offsets
        measured under another calibration do not apply; the clicks of the task read before stay
        read: :meth:`.gaze_drift.ParticipantDrift.successor`); the one it replaces joins ``older``
        with its drift state, for its late batches."""
        if self.calibration_id is not None and self.calibration_id != calibration_id:
            self._keep_older(self.latest())
        self.older.pop(calibration_id, None)
        self.tracker.calibration, self.calibration_id, self.failed = model, calibration_id, failed
        self.drift = self.drift.successor()

    def kept_older(self, calibration_id: int) -> Scoring | None:
        """The kept older calibration ``calibration_id`` (None: not kept; call with ``lock`` held)."""
        found = self.older.get(calibration_id)
        if found is not None:
            self.older.move_to_end(calibration_id)
        return found

    def add_older(self, calibration_id: int, model: Any, failed: bool) -> Scoring:
        """Keep an older calibration loaded from the database (call with ``lock`` held)."""
        drift = gaze_drift.ParticipantDrift(self.drift.interactions)
        return self._keep_older(Scoring(calibration_id, model, failed, drift))

    def _keep_older(self, scoring: Scoring) -> Scoring:
        self.older[scoring.id] = scoring
        self.older.move_to_end(scoring.id)
        while len(self.older) > MAX_OLDER:
            self.older.popitem(last=False)
        return scoring

    @contextlib.contextmanager
    def scoring_with(self, scoring: Scoring | None) -> Iterator[None]:
        """Within the block (``lock`` held) the tracker predicts with ``scoring``'s model (None:
        the latest); the latest is put back after it. Only the model changes: the tracker's state
        of the stream (head pose, blink baseline, face count) is the participant's camera's,
        whichever calibration scores the pictures."""
        latest = self.tracker.calibration
        if scoring is None or scoring.model is latest:
            yield
            return
        self.tracker.calibration = scoring.model
        try:
            yield
        finally:
            self.tracker.calibration = latest


class TrackerRegistry:
    """One GazeTracker per participant (one lock each); a tracker unused for its study's ``[gaze]
    idle_s`` (``idle_s`` here where no settings were given) is closed at the next :meth:`get`.

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
                    interactions=settings is not None and settings.interaction_calibration,
                    idle_s=_idle_s(settings))
            entry.last_used = now
            return entry

    def drop(self, participant: tuple[int, str]) -> bool:
        """Forget ``participant``'s tracker now (their withdrawal or deletion; without it the
        idle sweep would keep their camera's state, calibration and drift for ``idle_s``): closed
        at once, or when a request still running frames through it lets go of its lock. Returns
        whether there was one. A frame request of theirs that was already past its checks may make
        a new one; it is refused from then on (401) and the sweep closes it."""
        with self._lock:
            entry = self._entries.pop(participant, None)
        if entry is None:
            return False
        entry.closed = True  # (a WebSocket holding the entry: its next frame is refused, not run)
        if entry.lock.acquire(blocking=False):
            try:
                entry.tracker.close()
            finally:
                entry.lock.release()
        else:  # a request holds it: close it after that request, never under it
            threading.Thread(target=_close_when_free, args=(entry,), daemon=True,
                             name="gazepref-tracker-close").start()
        return True

    def _sweep(self, now: float) -> None:
        for key, e in list(self._entries.items()):
            if now - e.last_used > (self.idle_s if e.idle_s is None else e.idle_s) and not e.lock.locked():
                del self._entries[key]
                e.closed = True
                e.tracker.close()

    def __len__(self) -> int:
        return len(self._entries)


def _idle_s(settings: GazeSettings | None) -> float | None:
    """The study's ``idle_s`` where it is a time (finite, > 0: a stored config read without the
    strict checks may hold 0, a negative number or NaN, which would close a tracker at every
    request or never); else None, the registry's own."""
    idle = None if settings is None else settings.idle_s
    return idle if idle is not None and math.isfinite(idle) and idle > 0 else None


def _close_when_free(entry: TrackerEntry) -> None:
    with entry.lock:
        entry.tracker.close()


def refuse_closed(entry: TrackerEntry) -> None:
    """ApiError 401 for a tracker dropped or swept while a holder kept it (a WebSocket keeps its
    participant's entry between frames): the participant withdrew or was deleted meanwhile, and a
    closed tracker cannot run (it raised AttributeError: the socket failed with 1011, the page
    kept sending). Call with ``entry.lock`` held."""
    if entry.closed:
        raise ApiError(401, UNKNOWN_PARTICIPANT)


def drop_tracker(participant: tuple[int, str]) -> bool:
    """Forget the tracker of ``participant`` = (row id, pseudonym) in this process's registry
    (:meth:`TrackerRegistry.drop`; call in the app's context): the withdrawal or data deletion
    handled here. Other processes and hosts hold their own trackers, which their idle sweep
    closes (their frames are refused already). No registry yet: nothing to forget."""
    reg = current_app.extensions.get("gazepref_trackers")
    return reg.drop(participant) if reg is not None else False


def registry() -> TrackerRegistry:
    """The app's tracker registry (created on first use)."""
    return app_extension("gazepref_trackers", TrackerRegistry)


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
                   shed_ms: float = 0.0, stale: Callable[[], bool] | None = None, scoring: Scoring | None = None
                   ) -> tuple[list[dict[str, float]], int]:
    """Tracker rows of ``images``, gaze predicted with ``scoring``'s model (default: the latest
    calibration's); frames the server is too far behind for are not processed but
    kept as rows without features, confidence 0 and the DROPPED flag (no estimate): with
    ``shed_ms`` > 0, frames reached later than ``shed_ms`` after the request ``arrived``; with
    ``stale``, frames for which ``stale()`` says so once they get a pipeline slot (the WebSocket:
    a newer frame of the participant is already waiting while other frames queue for the slots)."""
    rows, dropped, last = [], 0, None
    slots = pipeline_slots()
    with entry.lock, entry.scoring_with(scoring):
        refuse_closed(entry)
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
