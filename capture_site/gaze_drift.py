"""Drift correction and continuous calibration from clicks during tasks (study settings ``[gaze]
drift_correction = true``: an offset; ``interaction_calibration = true``: a recency- and
quality-weighted affine correction refitted with each click,
:class:`~gazepref.signals.calibration.InteractionRecalibrator`).

The page's telemetry stores each click in the task's ``events`` stream (``type = "click"``,
viewport ``x``/``y``, page clock ``t``; while typing also the caret, ``type = "caret"``, at most
once a second) through ``POST /api/ingest``; both count as clicks here. Before a gaze batch of a
task is processed, :func:`update` reads the task's click events stored since its last call and
pairs each click with the participant's stored gaze estimates of the ``CLICK_WINDOW_MS`` before
it (usable samples only; their *uncorrected* values, ``x - drift_x``): a click is taken to land
where the participant looks, so ``click - median(gaze)`` feeds the participant's
:class:`~gazepref.signals.calibration.DriftCorrector` (median of the last five; a difference over
250 px from the correction ignored unless three in a row agree: the participant moved), or the
InteractionRecalibrator (weighted by the gaze samples' median confidence
and by recency). Clicks on the rating and choice controls (``EXCLUDED_CLICK_TARGETS``) are never
used. :func:`apply` corrects the new rows and records the correction in the columns
``drift_x``/``drift_y`` and the number of clicks it rests on in ``drift_clicks``, so the
uncorrected estimate stays ``x - drift_x`` (``gazepref gaze recalibrate`` re-maps the features
without any correction, or replays the clicks with ``--interactions``).

Everything is read from the database (events and gaze chunks), so each server process reaches
the same correction whichever process stored the clicks and the gaze; for that, each task starts
without a correction (one carried over from the previous task would be in the memory of the
process that saw it only). Clocks: a sample's epoch
time is its chunk's ``clock_origin_epoch_ms + t`` (page reloads restart ``t``).
"""
from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from .. import store
from ..signals.calibration import CLICK_UNUSABLE as UNUSABLE
from ..signals.calibration import CLICK_WINDOW_MS, click_sample, is_calibration_event

MAX_PENDING = 20  # clicks waiting for their gaze samples to be stored

C = store.StreamChunk.__table__


class ParticipantDrift:
    """One participant's drift state in one server process: an offset (:class:`DriftCorrector`)
    or, with ``interactions``, continuous calibration (:class:`InteractionRecalibrator`)."""

    def __init__(self, interactions: bool = False) -> None:
        from ..signals.calibration import DriftCorrector, InteractionRecalibrator

        self.interactions = interactions
        self.corrector = InteractionRecalibrator() if interactions else DriftCorrector()
        self.task: int | None = None
        self.seen_chunks: set[int] = set()  # ids of the events chunks of ``task`` already read
        self.pending: list[tuple[float, float, float]] = []  # (epoch ms, x, y) of unpaired clicks
        self.clicks_used = 0

    def reset(self) -> None:
        """A new task (:func:`update`): offsets measured before no longer apply."""
        from ..signals.calibration import DriftCorrector, InteractionRecalibrator

        self.corrector = InteractionRecalibrator() if self.interactions else DriftCorrector(
            self.corrector.window, self.corrector.max_offset_px)
        self.pending.clear()
        self.clicks_used = 0

    def successor(self) -> ParticipantDrift:
        """The drift state of a new calibration: no correction (offsets measured under another
        calibration do not apply), the clicks of the task read so far stay read. This one is left
        as it is: its calibration may still score late batches
        (:meth:`.gaze_trackers.TrackerEntry.set_latest`)."""
        new = ParticipantDrift(self.interactions)
        new.task, new.seen_chunks = self.task, set(self.seen_chunks)
        return new

    @property
    def offset(self) -> tuple[float, float]:
        return self.corrector.offset


def update(conn: Any, drift: ParticipantDrift, task_id: int) -> None:
    """Feed the clicks of ``task_id`` stored since the last call (and earlier clicks still
    waiting for their gaze samples) into ``drift``. Another task than the last call's starts
    afresh: a correction carried over from the task before would exist only in the process that
    saw it (another host, which gets some of the batches, would not apply it), would count that
    task's clicks again when a late batch of it comes between two of the next task, and is not
    what ``gazepref gaze recalibrate --interactions`` replays (task by task)."""
    if drift.task != task_id:  # each task's correction rests on its own clicks, on every host
        drift.reset()
        drift.task = task_id
        drift.seen_chunks.clear()
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
        for t, kind, target, x, y in zip(events["t"], events["type"], targets, events["x"], events["y"]):
            if is_calibration_event(kind, target, x, y):
                drift.pending.append(((origin or 0.0) + t, float(x), float(y)))
    del drift.pending[:-MAX_PENDING]
    if drift.pending:
        _pair(conn, drift, task_id)


def _pair(conn: Any, drift: ParticipantDrift, task_id: int) -> None:
    lo = min(p[0] for p in drift.pending) - CLICK_WINDOW_MS
    origin = C.c.clock_origin_epoch_ms
    chunks = conn.execute(
        select(C.c.columns, C.c.raw_size, C.c.data, origin)
        .where(C.c.task_id == task_id, C.c.stream == "gaze", C.c.t_end + origin >= lo).order_by(C.c.seq)
    ).all()
    samples: list[tuple[float, float, float, float]] = []  # (epoch ms, raw x, raw y, confidence), usable only
    latest = -math.inf  # the latest stored sample, usable or not
    for columns, raw_size, data, chunk_origin in chunks:
        g = store.decode_chunk("gaze", columns, raw_size, data).to_pydict()
        none = [None] * len(g["t"])
        dx, dy = g.get("drift_x", none), g.get("drift_y", none)
        conf = g.get("confidence", none)
        for t, x, y, flags, ddx, ddy, c in zip(g["t"], g["x"], g["y"], g.get("flags", none), dx, dy, conf):
            epoch = (chunk_origin or 0.0) + t
            latest = max(latest, epoch)
            if x is None or y is None or (flags or 0) & UNUSABLE:
                continue
            samples.append((epoch, x - (ddx or 0.0), y - (ddy or 0.0), 1.0 if c is None else c))
    waiting = []
    for when, cx, cy in drift.pending:
        found = click_sample(samples, when, CLICK_WINDOW_MS)
        if found is not None:
            drift.clicks_used += drift.corrector.add_click(found[0], (cx, cy), when, found[1])
        elif latest < when:  # its gaze samples are not stored yet
            waiting.append((when, cx, cy))
    drift.pending = waiting


def apply(rows: list[dict[str, float]], drift: ParticipantDrift) -> None:
    """Correct the rows' ``x``/``y`` (in place) and record the correction in ``drift_x``/``drift_y``
    (0 before the first usable click) and the clicks it rests on in ``drift_clicks``."""
    import numpy as np

    if not rows:
        return
    xy = np.array([[row["x"], row["y"]] for row in rows], dtype=np.float64)
    corrected = drift.corrector.apply(xy)
    n = float(drift.clicks_used)
    for row, (x, y), (cx, cy) in zip(rows, xy, corrected):
        dx, dy = (cx - x, cy - y) if math.isfinite(x) and math.isfinite(y) else drift.offset
        row["x"], row["y"] = x + dx, y + dy
        row["drift_x"], row["drift_y"], row["drift_clicks"] = float(dx), float(dy), n
