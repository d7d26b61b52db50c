"""Drift correction and continuous calibration from clicks during tasks (study settings ``[gaze]
drift_correction = true``: an offset; ``interaction_calibration = true``: a recency- and
quality-weighted affine correction refitted with each click,
:class:`~gazepref.signals.calibration.InteractionRecalibrator`).

The page's telemetry stores each click in the task's ``events`` stream (``type = "click"``,
viewport ``x``/``y``, page clock ``t``; while typing also the caret, ``type = "caret"``, at most
once a second) through ``POST /api/ingest``; both count as clicks here. Before a gaze batch of a
task is processed, :func:`update` reads the task's click events stored since its last call and,
while some wait, the participant's stored gaze of their windows; :func:`apply` then corrects the
batch's rows with :class:`~gazepref.signals.calibration.ClickCalibration`, the implementation
``gazepref gaze recalibrate --interactions`` replays: a click is taken at the first sample at or
after it and pairs with the usable gaze estimates of the ``CLICK_WINDOW_MS`` before it (their
*uncorrected* values, ``x - drift_x``, stored or in this batch): a click is taken to land where the
participant looks, so ``click - median(gaze)`` feeds the participant's
:class:`~gazepref.signals.calibration.DriftCorrector` (median of the last 20, shrunk by its
standard error; a difference over
250 px from the correction ignored unless three clicks in a row agree: the participant moved), or
the InteractionRecalibrator (weighted by the gaze samples' median confidence and by recency). A
row gets the correction of the clicks at or before its time. Clicks on the rating and choice
controls (``EXCLUDED_CLICK_TARGETS``) are never used. The correction goes into the columns
``drift_x``/``drift_y`` and the number of clicks it rests on into ``drift_clicks``, so the
uncorrected estimate stays ``x - drift_x`` (``gazepref gaze recalibrate`` re-maps the features
without any correction, or replays the clicks with ``--interactions``). The live rows and the
replay differ only where a click reached the server after the gaze batch that follows it (the
live rows of that batch could not know it) or batches came out of time order (a late batch gets
the correction in force when it comes).

Everything is read from the database (events and gaze chunks), so each server process reaches
the same correction whichever process stored the clicks and the gaze; for that, each task starts
without a correction (one carried over from the previous task would be in the memory of the
process that saw it only). Clocks: a sample's epoch
time is its chunk's ``clock_origin_epoch_ms + t`` (page reloads restart ``t``).
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from sqlalchemy import select

from .. import store
from ..signals.calibration import CLICK_UNUSABLE as UNUSABLE
from ..signals.calibration import (CALIBRATION_EVENTS, CLICK_WINDOW_MS, NOT_RECORDING_TARGETS, ClickCalibration,
                                   click_corrector)

MAX_PENDING = 20  # clicks waiting for their gaze samples to be stored

C = store.StreamChunk.__table__


class ParticipantDrift:
    """One participant's drift state in one server process: an offset (:class:`DriftCorrector`)
    or, with ``interactions``, continuous calibration (:class:`InteractionRecalibrator`)."""

    def __init__(self, interactions: bool = False) -> None:
        self.interactions = interactions
        self.clicks = ClickCalibration(click_corrector(interactions))
        self.task: int | None = None
        self.seen_chunks: set[int] = set()  # ids of the events chunks of ``task`` already read
        # of those, per page load (clock origin): the click and caret rows with a point made while
        # recording, what the page counts in its batches' ``clicks`` (:func:`needs_update`)
        self.clicks_read: dict[float, int] = {}
        # the page loads whose batches a read was made for, and when the last read was (monotonic s)
        self.served: set[float] = set()
        self.read_at = -math.inf
        # the stored usable gaze the waiting clicks' windows reach (epoch ms -> raw x, y, confidence)
        self.earlier: dict[float, tuple[float, float, float]] = {}
        # usable rows this process corrected lately (epoch ms -> raw x, y, confidence): they may not
        # be stored yet (a WebSocket commits its rows every GAZE_WS_COMMIT_MS), and the clicks'
        # windows need them
        self.recent: dict[float, tuple[float, float, float]] = {}

    def reset(self) -> None:
        """A new task (:func:`update`): offsets measured before no longer apply."""
        self.clicks = ClickCalibration(click_corrector(self.interactions))
        self.earlier = {}
        self.recent = {}

    def successor(self) -> ParticipantDrift:
        """The drift state of a new calibration: no correction (offsets measured under another
        calibration do not apply), the clicks of the task read so far stay read. This one is left
        as it is: its calibration may still score late batches
        (:meth:`.gaze_trackers.TrackerEntry.set_latest`)."""
        new = ParticipantDrift(self.interactions)
        new.task, new.seen_chunks, new.clicks_read = self.task, set(self.seen_chunks), dict(self.clicks_read)
        new.served, new.read_at = set(self.served), self.read_at
        return new

    @property
    def pending(self) -> list[tuple[float, float, float, str]]:
        """Clicks (epoch ms, x, y, kind) no gaze sample has reached yet."""
        return self.clicks.pending

    @property
    def clicks_used(self) -> int:
        return self.clicks.used

    @property
    def offset(self) -> tuple[float, float]:
        return self.clicks.corrector.offset


def update(conn: Any, drift: ParticipantDrift, task_id: int, origin: float | None = None) -> None:
    """Queue the clicks of ``task_id`` stored since the last call in ``drift`` and, while clicks
    wait, read the stored gaze their windows reach (for :func:`apply`). Another task than the last
    call's starts afresh: a correction carried over from the task before would exist only in the
    process that saw it (another host, which gets some of the batches, would not apply it), would
    count that task's clicks again when a late batch of it comes between two of the next task, and
    is not what ``gazepref gaze recalibrate --interactions`` replays (task by task). ``origin``:
    the batch's page load, which :func:`needs_update` then counts as served."""
    if drift.task != task_id:  # each task's correction rests on its own clicks, on every host
        drift.reset()
        drift.task = task_id
        drift.seen_chunks.clear()
        drift.clicks_read.clear()
        drift.served.clear()
    drift.served.add(origin or 0.0)  # (the batch's page load: ``needs_update``)
    drift.read_at = time.monotonic()
    # Which chunks are new is decided by id membership, not by "id above the last one read": under
    # concurrent writers (PostgreSQL) a chunk with a lower id can become visible after a higher one.
    ids = conn.execute(select(C.c.id).where(C.c.task_id == task_id, C.c.stream == "events")).scalars().all()
    new = sorted(set(ids) - drift.seen_chunks)
    chunks = conn.execute(
        select(C.c.id, C.c.columns, C.c.raw_size, C.c.data, C.c.clock_origin_epoch_ms)
        .where(C.c.id.in_(new)).order_by(C.c.id)
    ).all() if new else []
    for chunk_id, columns, raw_size, data, origin in chunks:
        drift.seen_chunks.add(chunk_id)
        events = store.decode_chunk("events", columns, raw_size, data).to_pydict()
        targets = events.get("target") or [None] * len(events["t"])
        drift.clicks.add_events([(origin or 0.0) + t for t in events["t"]], events["type"], targets,
                                events["x"], events["y"])
        made = sum(k in CALIBRATION_EVENTS and x is not None and tg not in NOT_RECORDING_TARGETS
                   for k, x, tg in zip(events["type"], events["x"], targets))
        drift.clicks_read[origin or 0.0] = drift.clicks_read.get(origin or 0.0, 0) + made
    del drift.pending[:-MAX_PENDING]
    drift.earlier = _stored_gaze(conn, task_id, drift.pending[0][0] - CLICK_WINDOW_MS) if drift.pending else {}


#: a drift state reads the task's stored clicks at least this often (s) while batches come: clicks
#: of another page load (a reload, a window that recorded before) stored late, or read by another
#: process, are taken within this time
REREAD_S = 5.0


def needs_update(drift: ParticipantDrift, task_id: int, origin: float | None, clicks: int | None,
                 now: float | None = None) -> bool:
    """Whether a batch of ``task_id`` from the page load ``origin`` that says it has made ``clicks``
    click and caret rows (its meta; None: not said, an older page) needs :func:`update` first: a
    new task, the first batch of a page load (a reload or another window: the clicks of the one
    before may be stored since), clicks waiting for their gaze, fewer of that page's clicks read
    than it made (one is stored, or on its way), or :data:`REREAD_S` since the last read.
    Otherwise the batch is corrected without a query (the default study's batches save one each,
    but the one in every :data:`REREAD_S`)."""
    now = time.monotonic() if now is None else now
    return (clicks is None or drift.task != task_id or bool(drift.pending)
            or (origin or 0.0) not in drift.served or now - drift.read_at >= REREAD_S
            or drift.clicks_read.get(origin or 0.0, 0) < clicks)


def _stored_gaze(conn: Any, task_id: int, since: float) -> dict[float, tuple[float, float, float]]:
    """The task's stored usable gaze samples from epoch ``since`` on: epoch ms -> uncorrected x,
    y, confidence."""
    origin = C.c.clock_origin_epoch_ms
    chunks = conn.execute(
        select(C.c.columns, C.c.raw_size, C.c.data, origin)
        .where(C.c.task_id == task_id, C.c.stream == "gaze", C.c.t_end + origin >= since).order_by(C.c.seq)
    ).all()
    samples: dict[float, tuple[float, float, float]] = {}
    for columns, raw_size, data, chunk_origin in chunks:
        g = store.decode_chunk("gaze", columns, raw_size, data).to_pydict()
        none = [None] * len(g["t"])
        dx, dy = g.get("drift_x", none), g.get("drift_y", none)
        conf = g.get("confidence", none)
        for t, x, y, flags, ddx, ddy, c in zip(g["t"], g["x"], g["y"], g.get("flags", none), dx, dy, conf):
            if x is None or y is None or (flags or 0) & UNUSABLE or not (math.isfinite(x) and math.isfinite(y)):
                continue
            samples[(chunk_origin or 0.0) + t] = (x - (ddx or 0.0), y - (ddy or 0.0), 1.0 if c is None else c)
    return samples


#: how long (ms) :attr:`ParticipantDrift.recent` keeps a row
RECENT_MS = 10_000.0


def apply(rows: list[dict[str, float]], drift: ParticipantDrift, origin: float, task_id: int | None = None) -> None:
    """Correct the rows' ``x``/``y`` (in place; their ``t`` on the page clock of ``origin``, the
    batch's ``clock_origin_epoch_ms``) with the clicks at or before each row's time, and record
    the correction in ``drift_x``/``drift_y`` (0 before the first usable click) and the clicks it
    rests on in ``drift_clicks``. The clicks' windows reach the stored gaze (:func:`update`) and the
    rows this process corrected lately, stored or not. ``task_id``: the rows' task; another task's
    drift state (a late batch of another task read its clicks meanwhile) leaves them uncorrected."""
    if not rows:
        return
    t = np.array([origin + row["t"] for row in rows], dtype=np.float64)
    xy = np.array([[row["x"], row["y"]] for row in rows], dtype=np.float64)
    if task_id is not None and drift.task != task_id:
        for row in rows:
            row["drift_x"], row["drift_y"], row["drift_clicks"] = 0.0, 0.0, 0.0
        return
    quality = np.array([row.get("confidence", 1.0) for row in rows], dtype=np.float64)
    usable = np.array([not int(row.get("flags", 0)) & UNUSABLE for row in rows], dtype=bool)
    earlier = None
    if drift.pending:  # the clicks' windows: stored rows (as another host reads them) and recent ones
        pool = {**drift.recent, **drift.earlier}
        if pool:
            a = np.array([(k, *v) for k, v in pool.items()], dtype=np.float64)
            earlier = (a[:, 0], a[:, 1:3], a[:, 3])
    drift_xy = drift.clicks.correct(t, xy, quality, usable, earlier)
    ok = usable & np.isfinite(xy).all(axis=1)
    drift.recent.update(zip(t[ok].tolist(), map(tuple, np.c_[xy[ok], quality[ok]].tolist())))
    newest = float(t.max())
    drift.recent = {k: v for k, v in drift.recent.items() if k >= newest - RECENT_MS}
    for row, (x, y), (dx, dy, n) in zip(rows, xy, drift_xy):
        if math.isfinite(x) and math.isfinite(y):
            row["x"], row["y"] = x + dx, y + dy
        row["drift_x"], row["drift_y"], row["drift_clicks"] = float(dx), float(dy), float(n)
