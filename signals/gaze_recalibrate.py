"""Re-estimate stored gaze from its eye features with another calibration.

Gaze samples keep the features they were estimated from (``eye_*``, ``head_*``, ``face_*``
columns of the ``gaze`` stream), so a finished study can be re-mapped with a better model or a
different calibration set. Nothing stored is changed: the functions return new tables.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import store
from ..schema import GazeFlag
from .calibration import GazeCalibration


def reestimate(table: pa.Table, model: GazeCalibration) -> pa.Table:
    """``table`` (a gaze stream) with ``x``/``y`` recomputed by ``model`` from its features.

    Samples whose features are missing get null and the UNCALIBRATED flag; the flag is cleared on
    the others. The study site's click drift correction (``drift_x``/``drift_y``) is not carried
    over: those columns are left out, so the result is the model's uncorrected estimate.
    """
    drift = [c for c in table.column_names if c.startswith("drift_")]
    if drift:
        table = table.drop_columns(drift)
    names = [str(c) for c in model.feature_names_in_]
    missing = [c for c in names if c not in table.column_names]
    if missing:
        raise ValueError(f"the gaze stream lacks the model's feature columns: {missing[:5]}")
    values = np.empty((table.num_rows, len(names)))
    for j, c in enumerate(names):  # nulls become NaN
        values[:, j] = table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
    pred = model.predict_array(values)
    ok = np.isfinite(pred).all(axis=1)
    if "flags" in table.column_names:
        flags = pc.fill_null(table.column("flags"), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    else:
        flags = np.zeros(table.num_rows, np.int32)
    flags = np.where(ok, flags & ~GazeFlag.UNCALIBRATED, flags | GazeFlag.UNCALIBRATED).astype(np.int32)
    for name, col in (("x", pred[:, 0]), ("y", pred[:, 1])):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(col, pa.float32(), from_pandas=True))
    i = table.schema.get_field_index("flags")
    arr = pa.array(flags, pa.int32())
    return table.set_column(i, "flags", arr) if i >= 0 else table.append_column("flags", arr)


def latest_calibration(db: Session, participant: store.Participant) -> GazeCalibration | None:
    """The participant's calibration model in force at the end: the last calibration step's
    outcome (the kept attempt; for a failed calibration the best attempt, which the site did not
    use), else (databases without outcomes) the most recent fitted attempt; None without any."""
    C = store.Calibration
    rows = db.execute(select(C).where(C.participant_id == participant.id, C.kind.in_(("calibration", "outcome")))
                      .order_by(C.id.desc())).scalars().all()
    outcome = next((r for r in rows if r.kind == "outcome"), None)
    if outcome is not None:
        selected = (outcome.result or {}).get("selected")
        row = outcome if outcome.model is not None else next(
            (r for r in rows if r.id == selected and r.model is not None), None)
    else:
        row = next((r for r in rows if r.model is not None), None)
    return None if row is None else GazeCalibration.from_bytes(row.model)


def reestimate_participant(db: Session, participant: store.Participant,
                           model: GazeCalibration | None = None) -> Iterator[tuple[store.Task, pa.Table]]:
    """(task, re-estimated gaze table) for each of the participant's tasks with gaze samples.

    ``model`` defaults to the participant's latest stored calibration; raises ValueError when
    there is none.
    """
    model = model or latest_calibration(db, participant)
    if model is None:
        raise ValueError(f"participant {participant.id} has no stored calibration model")
    for task in participant.tasks:
        table = store.read_stream(db, task, "gaze")
        if table.num_rows:
            yield task, reestimate(table, model)


def recalibrate_study(db: Session, slug: str, out: str | Path, model: GazeCalibration | None = None) -> dict[str, Any]:
    """Re-estimate the gaze of every participant of study ``slug`` and write one Parquet file per
    task to ``out`` (``p<participant id>_t<task id>_gaze.parquet``; database ids, no pseudonyms).

    Each participant's latest stored calibration is used unless ``model`` is given; participants
    without one are counted as skipped. The database is not changed.
    """
    import pyarrow.parquet as pq

    study = db.execute(select(store.Study).where(store.Study.slug == slug)).scalars().first()
    if study is None:
        raise LookupError(f"no study {slug!r} in the database")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"study": slug, "participants": 0, "skipped_uncalibrated": 0, "tasks": 0, "samples": 0,
               "out": str(out)}
    for participant in study.participants:
        chosen = model or latest_calibration(db, participant)
        if chosen is None:
            summary["skipped_uncalibrated"] += 1
            continue
        summary["participants"] += 1
        for task, table in reestimate_participant(db, participant, chosen):
            pq.write_table(table, out / f"p{participant.id}_t{task.id}_gaze.parquet")
            summary["tasks"] += 1
            summary["samples"] += table.num_rows
    return summary
