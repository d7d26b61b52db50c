"""Re-estimate stored gaze from its eye features with another calibration.

Gaze samples keep the features they were estimated from (``eye_*``, ``head_*``, ``sight_*``,
``face_*`` columns of the ``gaze`` stream), so a finished study can be re-mapped with a better model or a
different calibration set. Nothing stored is changed: the functions return new tables.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import UserError, store
from ..datasets.store_recording import RECALIBRATED_MANIFEST
from ..schema import GazeFlag
from .calibration import GazeCalibration

#: the file ``gaze recalibrate`` writes beside the gaze files: the summary and one row per file
#: (``data export --gaze`` reads it: :meth:`gazepref.datasets.store_recording.StoreRecording.use_gaze`)
MANIFEST = RECALIBRATED_MANIFEST
#: what its ids are (said in the manifest itself)
MANIFEST_IDS = ("participant_id is the participant's pseudonym and task_id the exported task id "
                "(<pseudonym>/<task number>), as in gazepref data export and gazepref features: "
                "join the exported gaze stream on task_id and t")


def reestimate(table: pa.Table, model: GazeCalibration) -> pa.Table:
    """``table`` (a gaze stream) with ``x``/``y`` recomputed by ``model`` from its features.

    Samples whose features are missing get null, confidence 0 and the UNCALIBRATED flag; the flag
    is cleared on the others, whose ``confidence`` is that of the picture
    (:func:`~.webcam.sample_confidence` of its flags and head turn, as the tracker gives it: rows
    stored without an estimate, e.g. after a failed calibration, had 0). The study site's click
    drift correction (``drift_x``/``drift_y``) is not carried over: those columns are left out, so
    the result is the model's uncorrected estimate.
    """
    from .webcam import sample_confidence

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
    turn = np.full(table.num_rows, np.nan)
    if "head_yaw" in table.column_names and "head_pitch" in table.column_names:
        yaw, pitch = (pc.fill_null(table.column(c), np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
                      for c in ("head_yaw", "head_pitch"))
        turn = np.fmax(np.abs(yaw), np.abs(pitch))
    confidence = [sample_confidence(f, v) if o else 0.0 for f, v, o in zip(flags.tolist(), turn.tolist(), ok.tolist())]
    for name, col in (("x", pred[:, 0]), ("y", pred[:, 1]), ("confidence", confidence), ("flags", flags)):
        arr = pa.array(col, pa.int32() if name == "flags" else pa.float32(), from_pandas=True)
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, arr) if i >= 0 else table.append_column(name, arr)
    return table


def replay_interactions(gaze: pa.Table, events: pa.Table | None, corrector: Any = None,
                        log: list[dict[str, Any]] | None = None) -> pa.Table:
    """``gaze`` (uncorrected estimates, e.g. from :func:`reestimate`) corrected by replaying the
    task's clicks (and caret positions) in time order, as the site's continuous calibration does
    (:class:`~.calibration.ClickCalibration`, the one implementation both use): each click (not on
    the rating/choice controls) pairs with the usable samples of the 400 ms before it and refits
    ``corrector`` (default an :class:`~.calibration.InteractionRecalibrator`; a study with
    ``drift_correction`` only: :class:`~.calibration.DriftCorrector`, :func:`study_corrector`);
    each row gets the correction of the clicks at or before its time, recorded in
    ``drift_x``/``drift_y``/``drift_clicks``. Without clicks (or ``events``) the rows are unchanged
    apart from zero corrections. ``log``: a list that gets, in time order, what became of each
    click and caret row (:meth:`~.calibration.ClickCalibration.log_rows`: used, ignored, excluded
    and why; the gaze it paired with and its quality)."""
    from .calibration import CLICK_UNUSABLE, ClickCalibration, InteractionRecalibrator

    replay = ClickCalibration(corrector if corrector is not None else InteractionRecalibrator(), log=log is not None)
    t = gaze.column("t").to_numpy(zero_copy_only=False).astype(np.float64)
    x = pc.fill_null(gaze.column("x"), np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    y = pc.fill_null(gaze.column("y"), np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
    flags = (pc.fill_null(gaze.column("flags"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
             if "flags" in gaze.column_names else np.zeros(len(t), np.int64))
    conf = (pc.fill_null(gaze.column("confidence"), 1.0).to_numpy(zero_copy_only=False).astype(np.float64)
            if "confidence" in gaze.column_names else np.ones(len(t)))
    if events is not None and events.num_rows:
        ev = events.to_pydict()
        replay.add_events(ev["t"], ev["type"], ev.get("target") or [None] * len(ev["t"]), ev["x"], ev["y"])
    xy = np.c_[x, y]
    drift = replay.correct(t, xy, conf, (flags & CLICK_UNUSABLE) == 0)
    finite = np.isfinite(xy).all(axis=1)
    out = np.where(finite[:, None], xy + drift[:, :2], xy)
    table = gaze
    for name, col in (("x", out[:, 0]), ("y", out[:, 1])):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(col, pa.float32(), from_pandas=True))
    for name, col in (("drift_x", drift[:, 0]), ("drift_y", drift[:, 1]), ("drift_clicks", drift[:, 2])):
        i = table.schema.get_field_index(name)
        arr = pa.array(col, pa.float32())
        table = table.set_column(i, name, arr) if i >= 0 else table.append_column(name, arr)
    if log is not None:
        log.extend(replay.log_rows())
    return table


def corrector_name(corrector: Any) -> str:
    """What the manifests call a click corrector: ``interaction-calibration`` (continuous
    calibration) or ``drift-correction`` (the offset)."""
    from .calibration import DriftCorrector

    return "drift-correction" if isinstance(corrector, DriftCorrector) else "interaction-calibration"


def study_corrector(config: Mapping[str, Any] | None) -> Any:
    """The click corrector a study's site used (its TOML, ``store.Study.config``): continuous
    calibration with ``[gaze] interaction_calibration = true`` or without either setting (what
    ``--interactions`` asks for), an offset (:class:`~.calibration.DriftCorrector`) with
    ``drift_correction = true`` alone, as the site does."""
    from .calibration import click_corrector

    gaze = (config or {}).get("gaze") or {}
    return click_corrector(not (gaze.get("drift_correction") is True and gaze.get("interaction_calibration") is not True))


def study_corrected(config: Mapping[str, Any] | None) -> bool:
    """Whether a study's site corrected the gaze with its clicks at all (``[gaze]
    interaction_calibration``, on unless set false, or ``drift_correction``): ``--interactions``
    replays a study whose site corrected nothing with continuous calibration (what the site
    would have done by default), and its manifest says so (``site_corrected``)."""
    gaze = (config or {}).get("gaze") or {}
    return gaze.get("drift_correction") is True or gaze.get("interaction_calibration") is not False


def _rows(db: Session, participant: store.Participant) -> list[store.Calibration]:
    C = store.Calibration
    return list(db.execute(select(C).where(C.participant_id == participant.id, C.kind.in_(("calibration", "outcome")))
                           .order_by(C.id.desc())).scalars().all())


def _outcome_model(outcome: store.Calibration, rows: list[store.Calibration]) -> store.Calibration | None:
    """The row whose model an outcome stands for: itself, or for a failed calibration (no model)
    its best attempt (``selected``), which the site did not use."""
    if outcome.model is not None:
        return outcome
    selected = (outcome.result or {}).get("selected")
    return next((r for r in rows if r.id == selected and r.model is not None), None)


@dataclass(frozen=True)
class TaskModel:
    """The calibration a task's gaze was recorded under, as :func:`task_calibrations` finds it."""

    #: the ``store.Calibration`` row whose model re-maps the task (an outcome, or a failed step's
    #: best attempt); None: no model (a failed step none of whose attempts could be fitted)
    calibration_id: int | None
    model: GazeCalibration | None
    #: recorded under a calibration step that failed validation (the site stored no estimate)
    failed: bool = False


def task_calibrations(db: Session, participant: store.Participant) -> dict[int, TaskModel]:
    """Task id -> the calibration each of the participant's tasks was recorded under: the
    calibration step outcome in force when it started
    (:func:`gazepref.datasets.store_recording.outcome_in_force`, the tasks' ``calibration`` of the
    exports; with ``recalibrate_every`` a participant has several), its model or for a failed
    calibration its best attempt's (``failed``; none when no attempt was fitted: never a
    calibration made later); databases without outcomes: the most recent fitted attempt."""
    from ..datasets.store_recording import outcome_in_force

    rows = _rows(db, participant)
    models: dict[int, GazeCalibration] = {}  # calibration row id -> model, read once

    def model_of(row: store.Calibration | None) -> GazeCalibration | None:
        if row is None:
            return None
        if row.id not in models:
            models[row.id] = GazeCalibration.from_bytes(row.model)
        return models[row.id]

    if not any(r.kind == "outcome" for r in rows):
        latest = next((r for r in rows if r.model is not None), None)
        return {task.id: TaskModel(latest and latest.id, model_of(latest)) for task in participant.tasks}
    out: dict[int, TaskModel] = {}
    for task in participant.tasks:
        outcome = outcome_in_force(rows, task)
        row = _outcome_model(outcome, rows) if outcome is not None else None
        failed = outcome is not None and not (outcome.result or {}).get("passed", outcome.model is not None)
        out[task.id] = TaskModel(row and row.id, model_of(row), failed)
    return out


def uncalibrated(table: pa.Table) -> pa.Table:
    """``table`` (a gaze stream) as a failed calibration leaves it: no estimate (x/y null),
    confidence 0, the UNCALIBRATED flag; the site's click corrections (``drift_*``) left out."""
    table = _drop(table, tuple(c for c in table.column_names if c.startswith("drift_")))
    flags = (pc.fill_null(table.column("flags"), 0).to_numpy(zero_copy_only=False).astype(np.int32)
             if "flags" in table.column_names else np.zeros(table.num_rows, np.int32))
    n = table.num_rows
    for name, arr in (("x", pa.nulls(n, pa.float32())), ("y", pa.nulls(n, pa.float32())),
                      ("confidence", pa.array(np.zeros(n, np.float32))),
                      ("flags", pa.array(flags | np.int32(GazeFlag.UNCALIBRATED)))):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, arr) if i >= 0 else table.append_column(name, arr)
    return table


def reestimate_participant(db: Session, participant: store.Participant, model: GazeCalibration | None = None,
                           interactions: bool = False, include_failed: bool = False,
                           logs: dict[int, list[dict[str, Any]]] | None = None,
                           ) -> Iterator[tuple[store.Task, pa.Table, TaskModel]]:
    """(task, re-estimated gaze table, the calibration used) for each of the participant's tasks
    with gaze samples.

    ``model`` defaults to, per task, the calibration it was recorded under
    (:func:`task_calibrations`). A task recorded under a failed calibration (the site stored its
    rows without an estimate: the ``record-uncalibrated`` fallback) stays so (:func:`uncalibrated`)
    unless ``include_failed``: then it is re-mapped with that step's best attempt (with ``model``:
    that one), its rows keep the CALIBRATION_FAILED flag; without ``model``, a step none of whose
    attempts was fitted leaves them uncalibrated (no later calibration stands in for it), as does
    a task without any calibration of its own. ``interactions``: replay the task's clicks as the
    site corrected the gaze with them (:func:`replay_interactions` with the study's corrector,
    :func:`study_corrector`), also on rows left without an estimate (they record the correction
    in force, as the site's do), so every table has the same columns; by default the clicks are
    left out; ``logs`` (with ``interactions``) gets, by task id, what became of each click and
    caret row (:func:`replay_interactions`' ``log``).
    """
    per_task = task_calibrations(db, participant)
    for task in participant.tasks:
        table = store.read_stream(db, task, "gaze")
        if not table.num_rows:
            continue
        found = per_task.get(task.id, TaskModel(None, None))
        used = found if model is None else TaskModel(None, model, found.failed)
        if used.model is None or (used.failed and not include_failed):
            table, used = uncalibrated(table), TaskModel(used.calibration_id, None, used.failed)
        else:
            table = reestimate(table, used.model)
        if interactions:
            log = logs.setdefault(task.id, []) if logs is not None else None
            table = replay_interactions(table, store.read_stream(db, task, "events"), study_corrector(participant.study.config),
                                        log)
        yield task, table, used


def recalibrate_study(db: Session, slug: str, out: str | Path, model: GazeCalibration | None = None,
                      interactions: bool = False, include_failed: bool = False, overwrite: bool = False,
                      model_source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Re-estimate the gaze of the consenting participants of study ``slug``
    (:func:`gazepref.store.consenting`, the exports' filter: those who declined, withdrew or whose
    data was deleted are left out and counted as ``participants_without_consent``, never named)
    and write one Parquet file per
    task to ``out``, keyed as ``data export`` and the feature tables are: each file is
    ``<task_id>_gaze.parquet`` (``<pseudonym>/<task number>_gaze.parquet``) and has the columns
    ``participant_id`` (the pseudonym) and ``task_id`` (the exported task id,
    :func:`gazepref.datasets.store_recording.exported_task_id`), so it joins the exported gaze
    stream on ``task_id`` and ``t``; ``manifest.json`` lists the files (``participant_id``,
    ``task_id``, ``gaze_samples``, ``estimated`` rows, ``calibration_id``, ``calibration_failed``,
    ``file``) and says how they were made (``model``, ``interactions``, ``corrector``,
    ``include_failed``) beside the returned summary.

    Each task is re-mapped with the calibration it was recorded under
    (:func:`reestimate_participant`; tasks of a failed calibration only with ``include_failed``)
    unless ``model`` is given (``model_source``: what the manifest says of it, e.g. its file and
    sha256); participants without a stored model are counted as
    ``participants_without_calibration`` and their tasks written without an estimate (so the
    folder holds every task with gaze, and ``data export --gaze`` never mixes in the database's
    rows). ``interactions``: replay the clicks as continuous calibration. The database is not
    changed. ``out`` must be new or empty, or with ``overwrite`` a folder this function wrote
    (its manifest and files only); it is written whole (:func:`gazepref.files.whole_folder`: an
    interrupted run leaves it as it was). A study without consenting participants, or (without ``model``)
    without any participant's calibration — its webcam was off, or nobody calibrated — has nothing
    to re-estimate: :class:`gazepref.UserError`, and ``out`` is not made.
    """
    import pyarrow.parquet as pq

    from ..datasets.store_recording import exported_task_id
    from ..files import check_out_folder, whole_folder

    out = Path(out).expanduser().resolve()
    if out.is_dir() and any(out.iterdir()):
        _earlier_run(out)  # --overwrite replaces only a folder this command wrote (said first: it would not help)
    out = check_out_folder(out, overwrite)
    study = db.execute(select(store.Study).where(store.Study.slug == slug)).scalars().first()
    if study is None:
        if Path(slug).expanduser().exists():  # a folder or file given where the slug goes
            raise UserError(f"{slug} is a path: gaze recalibrate takes the slug of a study in the site's database "
                            "(its stored eye features; an export or IFLLM folder has none to re-map)")
        raise UserError(f"no study {slug!r} in the database")
    participants = list(db.scalars(select(store.Participant).where(store.consenting(study.id))
                                   .order_by(store.Participant.id)))
    left_out = store.participants_left_out(db, study.id)
    # a participant with any calibration model (a task of theirs may have none: it is written
    # without an estimate, so the folder holds every task with gaze)
    chosen = {p.id: model is not None or any(r.model is not None for r in _rows(db, p)) for p in participants}
    if not chosen:
        others = f" ({left_out} left out: declined, withdrew or data deleted)" if left_out else ""
        raise UserError(f"study {slug!r} has no consenting participants{others}: no gaze to re-estimate")
    if not any(chosen.values()):
        webcam = (study.config or {}).get("study", {}).get("webcam", "off")
        raise UserError(f"study {slug!r}: no webcam calibration stored for any of its {len(chosen)} participants "
                        f"([study] webcam = {webcam!r}): no gaze to re-estimate (or give --model FILE)")
    corrector = corrector_name(study_corrector(study.config)) if interactions else None
    summary: dict[str, Any] = {"study": slug, "participants": 0, "participants_without_consent": left_out,
                               "participants_without_calibration": 0, "tasks": 0,
                               "tasks_under_failed_calibration": 0, "tasks_left_uncalibrated": 0,
                               "gaze_samples": 0, "estimated": 0,
                               "model": dict(model_source or {"file": None}) if model is not None else "per task",
                               "include_failed": include_failed, "interactions": interactions,
                               "corrector": corrector, "out": str(out), "manifest": str(out / MANIFEST)}
    if interactions:
        summary["site_corrected"] = study_corrected(study.config)
        summary["interactions_used"] = 0  # click and caret rows the corrections rest on (each file's log)
    files = []
    with whole_folder(out, overwrite) as tmp:
        for participant in participants:
            if not chosen[participant.id]:
                summary["participants_without_calibration"] += 1
            else:
                summary["participants"] += 1
            logs: dict[int, list[dict[str, Any]]] = {}
            for task, table, used in reestimate_participant(db, participant, model, interactions, include_failed, logs):
                task_id = exported_task_id(participant.pseudonym, task.id)
                n = table.num_rows
                estimated = int(np.isfinite(pc.fill_null(table.column("x"), np.nan)
                                            .to_numpy(zero_copy_only=False).astype(np.float64)).sum())
                table = _drop(table, ("participant_id", "task_id"))
                table = table.append_column("participant_id", pa.array([participant.pseudonym] * n, pa.string()))
                table = table.append_column("task_id", pa.array([task_id] * n, pa.string()))
                rel = f"{task_id}_gaze.parquet"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, tmp / rel)
                entry = {"participant_id": participant.pseudonym, "task_id": task_id, "gaze_samples": n,
                         "estimated": estimated, "calibration_id": used.calibration_id,
                         "calibration_failed": used.failed, "file": rel}
                if interactions:  # the provenance of the correction: each click and caret row, what became of it
                    log = logs.get(task.id, [])
                    rel_log = f"{task_id}_interactions.parquet"
                    pq.write_table(_interactions_table(log, participant.pseudonym, task_id), tmp / rel_log)
                    used_n = sum(r["outcome"].startswith(("used", "restart")) for r in log)  # = its last drift_clicks
                    entry |= {"interactions": len(log), "interactions_used": used_n, "interactions_file": rel_log}
                    summary["interactions_used"] += used_n
                files.append(entry)
                summary["tasks"] += 1
                summary["tasks_under_failed_calibration"] += used.failed
                summary["tasks_left_uncalibrated"] += used.model is None
                summary["gaze_samples"] += n
                summary["estimated"] += estimated
        manifest = {"ids": MANIFEST_IDS, **{k: v for k, v in summary.items() if k not in ("out", "manifest")},
                    "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary


def _interactions_table(log: list[dict[str, Any]], pseudonym: str, task_id: str) -> pa.Table:
    """One task's click and caret rows as the replay took them (:meth:`ClickCalibration.log_rows`),
    keyed like the gaze files (``participant_id``, ``task_id``; ``t`` on the task clock)."""
    n = len(log)
    columns = {"t": pa.float64(), "type": pa.string(), "x": pa.float64(), "y": pa.float64(),
               "gaze_x": pa.float64(), "gaze_y": pa.float64(), "quality": pa.float64(), "outcome": pa.string()}
    arrays = {name: pa.array([r[name] for r in log], kind) for name, kind in columns.items()}
    arrays["participant_id"] = pa.array([pseudonym] * n, pa.string())
    arrays["task_id"] = pa.array([task_id] * n, pa.string())
    return pa.table(arrays)


def _earlier_run(folder: Path) -> None:
    """Refuse (:class:`gazepref.UserError`) to replace ``folder`` unless it is one this command
    wrote: its manifest, and nothing but the files it lists (a study's database, an export, a
    working folder are never taken for one)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        listed = {MANIFEST} | {Path(str(f["file"])).parts[0] for f in manifest["files"]}
        ours = manifest.get("ids") == MANIFEST_IDS
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        ours, listed = False, set()
    others = sorted(p.name for p in folder.iterdir() if p.name not in listed)
    if not ours or others:
        what = f" (it holds {others[0]!r}{', ...' if len(others) > 1 else ''})" if others else ""
        raise UserError(f"{folder} is not a folder gaze recalibrate wrote{what}: --overwrite replaces only "
                        "those; choose a new or empty --out")


def _drop(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """``table`` without those of the columns ``names`` it has."""
    return table.drop_columns([n for n in names if n in table.column_names])
