"""What happened at a participant's webcam set-up, kept for the dashboard's "why they stopped".

The flow records consent, steps, tasks, turns and calibration rounds; what the set-up page saw
before any round (the face status of each frame: no face / black picture, too far, too dark, ...)
and a camera that could not be opened (denied, not found) left no trace. Both are summarised in
``Participant.state["setup"]``::

    {"frames": int, "face_found": int, "dim": int (frames "dark" with a face found: a dim face, not
     a black picture), "codes": {face status code: frames}, "last_code": str,
     "camera_error": "denied" | "not-found" | "unsupported" | "failed" | None,
     "camera_error_at": ISO time of that error, "camera_started_at": ISO time the camera last opened,
     "updated_at": ISO time of the latest frames or camera error counted (not of the write)}

The camera state is the latest one: set-up frames that came after a camera error, or the page's
report that the camera opened (:func:`note_camera_started`: a participant who denied the camera
and allowed it on "Try the camera again"), clear ``camera_error``; frames that came before it
(counts written late, by the shutdown) leave it.

Frame counts are gathered in memory per participant and written at most every
:data:`WRITE_EVERY_S` seconds (and when the face status changes; codes of :func:`gazepref.signals.framing.framing_advice`), so set-up frames cost no
database write each. What a process writes is what it counted since its last write, *added* to
the stored summary under a row lock: several processes or hosts serving one participant's frames
each add their share, and none overwrites another's counts. A process that stops on SIGTERM
writes what it still holds (:func:`flush_pending`, called by the shutdown); one that is killed
loses at most :data:`WRITE_EVERY_S` seconds of set-up frames (a display figure).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .. import store

log = logging.getLogger(__name__)

WRITE_EVERY_S = 5.0
CAMERA_ERRORS = ("denied", "not-found", "unsupported", "failed")

MAX_TRACKED = 10_000
_lock = threading.Lock()


def _pending() -> dict[tuple[int, str], dict[str, Any]]:
    """This process's set-up counters: (row id, pseudonym) -> counts not yet written, last face
    status code, when written (keyed by both: a deleted participant's id may be reused)."""
    from flask import current_app

    return current_app.extensions.setdefault("gazepref_setup_log", {})


def _write(participant: tuple[int, str], changes: dict[str, Any], added: dict[str, Any] | None = None,
           at: str | None = None) -> None:
    """Set ``changes`` in the set-up summary of ``participant`` = (row id, pseudonym) and add the
    counts of ``added`` (``frames``, ``face_found``, ``codes``) to the stored ones, under the
    row's lock; nothing when the row is gone or is now someone else's. ``updated_at`` becomes
    ``at`` (ISO time the counted frames came; default now) unless a later one is stored: counts
    written late (the shutdown's :func:`flush_pending`, minutes after the participant went on or
    finished) must not make them look active at the time of the write (the dashboard's last
    activity: their duration, "in progress")."""
    from .chunks import write_lock
    from .runtime import site

    with write_lock(site().engine), site().sessions() as s:
        p = s.get(store.Participant, participant[0], with_for_update=True)
        if p is None or p.pseudonym != participant[1] or not p.consent:  # (gone, another's, withdrawn)
            return
        state = dict(p.state or {})
        setup = dict(state.get("setup", {}))
        _add_counts(setup, added or {})
        at = at or store.utcnow().isoformat()
        error_at = setup.get("camera_error_at")
        if added and setup.get("camera_error") and (not isinstance(error_at, str) or at >= error_at):
            setup["camera_error"] = None  # frames came after the error: the camera works now
        stored = setup.get("updated_at")
        state["setup"] = {**setup, **changes, "updated_at": max(stored, at) if isinstance(stored, str) else at}
        p.state = state
        s.commit()


def note_setup_frames(participant: tuple[int, str], rows: list[dict[str, float]]) -> None:
    """Count set-up frames (tracker ``rows``) with their face status for ``participant`` = (row
    id, pseudonym)."""
    from .gaze_trackers import face_status

    if not rows:
        return
    pending = _pending()
    with _lock:
        if participant not in pending and len(pending) >= MAX_TRACKED:
            pending.pop(next(iter(pending)))
        cur = pending.setdefault(participant, {**_zero(), "last_code": "", "written_at": 0.0})
        cur["seen_at"] = store.utcnow().isoformat()  # when these frames came (a later write keeps it)
        changed = False
        for r in rows:
            face = face_status(r)
            cur["frames"] += 1
            cur["face_found"] += bool(face["found"])
            code = face["code"]
            cur["dim"] += code == "dark" and bool(face["found"])  # (a face found but dim; else a black picture)
            cur["codes"][code] = cur["codes"].get(code, 0) + 1
            changed |= code != cur["last_code"]
            cur["last_code"] = code
        now = time.monotonic()
        if not changed and now - cur["written_at"] < WRITE_EVERY_S:
            return
        added = _taken(cur, now)  # what is written is no longer pending
        last, seen = cur["last_code"], cur["seen_at"]
    _write_or_keep(participant, last, added, seen)


def _zero() -> dict[str, Any]:
    """Counts of no frames: ``frames``, ``face_found``, ``dim`` (frames "dark" with a face found),
    ``codes`` (frames per face status)."""
    return {"frames": 0, "face_found": 0, "dim": 0, "codes": {}}


def _taken(cur: dict[str, Any], now: float) -> dict[str, Any]:
    """The pending counts of ``cur``, taken (``cur`` counts from zero again, written ``now``)."""
    added = {key: cur[key] for key in _zero()}
    cur.update(_zero(), written_at=now)
    return added


def _give_back(participant: tuple[int, str], last: str, added: dict[str, Any], seen: str | None) -> None:
    """Add counts taken for a write that did not happen back to the pending ones (due at once)."""
    with _lock:
        cur = _pending().setdefault(participant, {**_zero(), "last_code": last, "written_at": 0.0, "seen_at": seen})
        _add_counts(cur, added)
        cur["written_at"] = 0.0


def _add_counts(into: dict[str, Any], added: dict[str, Any]) -> None:
    """Add the counts ``added`` (numbers, and ``codes``: a count per face status) to ``into``'s."""
    for key, value in added.items():
        if isinstance(value, dict):
            merged = dict(into.get(key) or {})
            for k, n in value.items():
                merged[k] = int(merged.get(k, 0)) + n
            into[key] = merged
        else:
            into[key] = int(into.get(key) or 0) + value


def _write_or_keep(participant: tuple[int, str], last: str, added: dict[str, Any], seen: str | None) -> bool:
    """Write the counts ``added`` (taken from the pending ones), or give them back to the pending
    counts when the database cannot take them now (an outage: they go with the next write
    instead of being lost); whether they were written."""
    from sqlalchemy.exc import DBAPIError

    try:
        _write(participant, {"last_code": last}, added, seen)
        return True
    except DBAPIError as e:
        _give_back(participant, last, added, seen)
        log.warning("set-up counts kept for a later write: %s", " ".join(str(getattr(e, "orig", None) or e).split())[:200])
        return False


def flush_pending(older_than_s: float = 0.0) -> int:
    """Write every participant's counts not yet written (the shutdown calls this, in an app
    context), or with ``older_than_s`` those last written at least that long ago (:func:`install`);
    returns how many participants' counts were written (those the database could not take stay
    pending)."""
    pending = _pending()
    now = time.monotonic()
    with _lock:
        todo = [(key, cur["last_code"], _taken(cur, time.monotonic()), cur.get("seen_at"))
                for key, cur in pending.items() if cur["frames"] and now - cur["written_at"] >= older_than_s]
    written = 0
    for i, (key, last, added, seen) in enumerate(todo):
        if not _write_or_keep(key, last, added, seen):  # the database is away: the others wait too
            for later in todo[i + 1:]:  # (not each its own failed write, in a request's teardown)
                _give_back(*later)
            break
        written += 1
    return written


def note_camera_error(participant: tuple[int, str], reason: str) -> None:
    """Record that the camera of ``participant`` = (row id, pseudonym) could not be opened
    (``reason``: :data:`CAMERA_ERRORS`)."""
    now = store.utcnow().isoformat()
    _write(participant, {"camera_error": reason if reason in CAMERA_ERRORS else "failed", "camera_error_at": now},
           at=now)


def note_camera_started(participant: tuple[int, str]) -> None:
    """Record that the set-up page opened the camera of ``participant`` = (row id, pseudonym): an
    earlier camera error (denied, then allowed on retry) no longer says why they stopped."""
    now = store.utcnow().isoformat()
    _write(participant, {"camera_error": None, "camera_started_at": now}, at=now)


def install(app) -> None:
    """At the end of ``app``'s requests, at most every :data:`WRITE_EVERY_S`, write the counts
    held longer than that: a participant's last set-up frames (they stopped there, or went on to
    a round another process took) reach the dashboard within seconds, not at this process's
    shutdown."""
    from flask import has_app_context

    from .runtime import close_db

    due = [0.0]
    busy = threading.Lock()

    def flush_stale(_exc: BaseException | None = None) -> None:
        if time.monotonic() < due[0] or not busy.acquire(blocking=False):
            return
        try:
            due[0] = time.monotonic() + WRITE_EVERY_S
            if has_app_context() and _pending():
                close_db()  # the request's session first (an open write transaction would hold SQLite's lock)
                flush_pending(older_than_s=WRITE_EVERY_S)
        except Exception:  # noqa: BLE001 - a display figure: never into the request
            log.warning("writing set-up counts failed", exc_info=True)
        finally:
            busy.release()

    app.teardown_request(flush_stale)
