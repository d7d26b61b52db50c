"""One pass over a data source: per-response behaviour and per-task data quality, for the aggregate
views (attention, features, quality) and the report.

The per-response behaviour is the feature pipeline's (:func:`gazepref.signals.features.build`:
its ``responses`` table, cleaned samples and the region rule, and its ``sentences`` table for the
sentence bins), so the views show the measures the models read. Only data quality (sample rate,
gaps, face share) is computed here, from the raw streams: it describes the recording, not a
response.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ... import UserError, schema
from ...datasets.sources import describe
from ._data import _np, open_data, outcome, task_streams, turns_by_task

N_BINS = 10  # relative sentence position bins
N_SENT = 16  # absolute sentence index bins (the last one: this one and later)
GAP_MS = 250.0

#: the responses table's columns a summary keeps (the behaviour of both sources, text size, labels)
RESPONSE_COLUMNS = ("task_id", "participant_id", "turn_id", "turn", "kind", "position", "model", "n_chars",
                    "n_words", "n_sentences", "label_likert", "label_better_than_previous")
BEHAVIOUR = ("dwell_ms", "text_ms", "depth", "visits", "first_entry_ms")


@dataclass
class Summary:
    responses: pd.DataFrame
    tasks: pd.DataFrame
    participants: pd.DataFrame
    counts: dict = field(default_factory=dict)
    source: str = ""


def _responses(rec, task_ids: list[str], by_task: dict[str, list[schema.Turn]], progress: bool) -> pd.DataFrame:
    """Per-response rows from the feature tables: keys, text size, labels, the outcome, gaze and
    pointer behaviour (``g_`` / ``m_``: dwell, dwell on the text, depth, visits, first entry) and the
    gaze dwell per sentence, by relative position (``g_sentpos_<bin>``, NaN for bins no sentence
    falls into) and by index (``g_sent_<i>``, the last bin pooling the rest)."""
    from .. import features

    res = features.build(rec, task_ids=task_ids, sentences=True, progress=progress)
    r = res.responses
    if r.empty:
        return pd.DataFrame()
    keep = [c for c in RESPONSE_COLUMNS if c in r] + [f"{p}_{m}" for p in ("g", "m") for m in BEHAVIOUR]
    out = r[keep].copy()
    turns = {(tid, k): tr for tid, trs in by_task.items() for k, tr in enumerate(trs)}
    out["outcome"] = [outcome(turns[(t, int(k))], int(p)) if (t, int(k)) in turns else None
                      for t, k, p in zip(out["task_id"], out["turn"], out["position"])]
    out["turn"] = [turns[(t, int(k))].index if (t, int(k)) in turns else int(k) for t, k in zip(out["task_id"], out["turn"])]
    out.loc[out["kind"] == "pairwise", "label_better_than_previous"] = None
    rel = np.full((len(out), N_BINS), np.nan)
    ab = np.zeros((len(out), N_SENT))
    s = res.sentences
    if len(s) and "g_dwell_ms" in s:
        row = pd.Series(np.arange(len(out)), index=pd.MultiIndex.from_arrays(
            [r["task_id"], r["turn"], r["position"]]))
        i = row.reindex(pd.MultiIndex.from_arrays([s["task_id"], s["turn"], s["position"]])).to_numpy()
        ok = ~np.isnan(i)
        i = i[ok].astype(np.int64)
        sent = s["sentence"].to_numpy(np.int64)[ok]
        dwell = np.nan_to_num(s["g_dwell_ms"].to_numpy(float)[ok])
        ns = np.maximum(out["n_sentences"].to_numpy(np.int64)[i], 1)
        b = np.minimum(((sent + 0.5) * N_BINS / ns).astype(np.int64), N_BINS - 1)
        rel_sum = np.zeros((len(out), N_BINS))
        np.add.at(rel_sum, (i, b), dwell)
        has = np.zeros((len(out), N_BINS), dtype=bool)
        has[i, b] = True
        rel[has] = rel_sum[has]
        np.add.at(ab, (i, np.minimum(sent, N_SENT - 1)), dwell)
    for k in range(N_BINS):
        out[f"g_sentpos_{k}"] = rel[:, k]
    for k in range(N_SENT):
        out[f"g_sent_{k}"] = ab[:, k]
    return out.reset_index(drop=True)


def _task_quality(tid: str, pid: str, task: schema.Task | None, s: dict[str, pa.Table], n_turns: int) -> dict:
    g, m = s.get("gaze"), s.get("mouse")
    row = dict(task_id=tid, participant_id=pid, turns=n_turns, gaze_samples=0, mouse_samples=0, duration_s=np.nan,
               sample_rate_hz=np.nan, gap_share=np.nan, gaps_2s=0, face_ratio=np.nan,
               calibration=task.calibration_accuracy if task else None,
               calibration_unit=(task.answers.get("calibration_unit") if task and task.answers else None)
               or ("%" if task and task.study_id == "ifllm" else "px"))
    if m is not None:
        row["mouse_samples"] = m.num_rows
    if g is not None and g.num_rows:
        # the gaze there is: rows without a position (no face, a failed calibration's) are none, as
        # in the feature table (their share shows in face_ratio and the calibration column)
        t = _np(g, "t")
        if {"x", "y"} <= set(g.column_names):
            t = t[np.isfinite(_np(g, "x")) & np.isfinite(_np(g, "y"))]
        t = np.unique(t)
        row["gaze_samples"] = len(t)
        if len(t) > 1:
            dt = np.diff(t)
            span = t[-1] - t[0]
            row["duration_s"] = span / 1000
            ok = dt[(dt > 0) & (dt <= GAP_MS)]
            row["sample_rate_hz"] = 1000 / float(np.median(ok)) if len(ok) else np.nan
            row["gap_share"] = float(dt[dt > GAP_MS].sum() / span) if span > 0 else np.nan
            row["gaps_2s"] = int((dt > 2000).sum())
        if "flags" in g.column_names and g.column("flags").null_count < g.num_rows:
            f = np.nan_to_num(_np(g, "flags"), nan=0).astype(np.int64)
            row["face_ratio"] = float(np.mean((f & schema.GazeFlag.NO_FACE) == 0))
        elif "confidence" in g.column_names and g.column("confidence").null_count < g.num_rows:
            c = _np(g, "confidence")
            row["face_ratio"] = float(np.nanmean(c > 0.5))
    h = s.get("hits")
    if np.isnan(row["face_ratio"]) and h is not None and h.num_rows and "camera_ok" in h.column_names:
        hg = h.filter(pc.equal(h.column("source"), "gaze"))
        cam = _np(hg, "camera_ok", np.int64)
        t = _np(hg, "t")
        if len(cam):
            d = pd.DataFrame({"t": t, "c": cam}).groupby("t")["c"].max()
            d = d[d >= 0]
            if len(d):
                row["face_ratio"] = float((d == 1).mean())
    return row


def _participant(tid: str, turns: list[schema.Turn], task: schema.Task | None) -> str:
    return turns[0].participant_id if turns else (task.participant_id if task else tid)


def _one_task(rec, tid: str, turns: list[schema.Turn], task: schema.Task | None) -> dict:
    try:
        s = task_streams(rec, tid, turns)
    except UserError:
        s = {}
    return _task_quality(tid, _participant(tid, turns, task), task, s, len(turns))


def collect(data, participant: str | None = None, task: str | None = None, jobs: int | None = None,
            progress: bool = False) -> Summary:
    """Per-response behaviour and per-task quality over ``data`` (or one participant / task)."""
    rec = open_data(data)
    by_task = turns_by_task(rec)
    tasks = {t.task_id: t for t in rec.tasks()}
    ids = list(tasks)
    if participant is not None:
        parts = sorted({t.participant_id for t in tasks.values()})
        if participant not in parts:
            shown = ", ".join(parts[:5]) + (", ..." if len(parts) > 5 else "")
            raise UserError(f"no participant {participant!r} in the data ({len(parts)} participants, e.g. {shown})")
        ids = [i for i in ids if tasks[i].participant_id == participant]
    if task is not None:
        from ._data import resolve_task

        ids = [resolve_task(rec, participant, task, need_turns=False)]
    behaviour = getattr(rec, "behavior_dirs", None)
    if behaviour is not None:
        ids_streams = [i for i in ids if i in behaviour]
    else:
        ids_streams = ids

    def work(tid: str):
        return _one_task(rec, tid, by_task.get(tid, []), tasks.get(tid))

    with ThreadPoolExecutor(max_workers=jobs or 4) as ex:
        it = ex.map(work, ids_streams)
        if progress:
            from ...progress import progress as bar

            it = bar(it, total=len(ids_streams), desc="reading tasks")
        qrows = list(it)
    responses = _responses(rec, ids_streams, by_task, progress)
    tq = pd.DataFrame(qrows)
    # every participant and task in scope, also those without samples (IFLLM: tasks without a
    # trajectory folder), so the per-participant table counts what the Data table counts
    everyone = participant is None and task is None
    scope = pd.DataFrame({"task_id": ids, "participant_id": [_participant(i, by_task.get(i, []), tasks.get(i)) for i in ids],
                          "turns": [len(by_task.get(i, [])) for i in ids]}, columns=["task_id", "participant_id", "turns"])
    pids = ([p.participant_id for p in rec.participants()] if everyone else []) + scope["participant_id"].tolist()
    parts = _participants(tq, responses, scope, list(dict.fromkeys(pids)))
    counts = {
        # as `gazepref data summary` counts them (workers), also those without samples
        "participants": len(parts),
        "tasks": len(ids),
        # a task "with samples" has gaze or mouse samples, as in `gazepref data summary`
        "tasks_with_samples": int(parts["tasks_with_samples"].sum()),
        # every turn of the tasks, as `gazepref data summary` counts them (queries), also those
        # without samples; the turns with per-response rows are "turns_with_samples"
        "turns": int(scope["turns"].sum()),
        "turns_with_samples": int(parts["turns_with_samples"].sum()),
        "pairwise_turns_labelled": sum(t.pairwise and t.choice is not None for i in ids for t in by_task.get(i, [])),
        "gaze_samples": int(tq["gaze_samples"].sum()) if len(tq) else 0,
    }
    return Summary(responses, tq, parts, counts, describe(rec))


#: the per-participant table's counts (the Data table's names: docs/DEVELOPING.md)
COUNT_COLUMNS = ("tasks", "tasks_with_samples", "turns", "turns_with_samples")
QUALITY_COLUMNS = ("gaze_samples", "duration_s", "sample_rate_hz", "gap_share", "gaps_2s", "face_ratio", "calibration",
                   "calibration_unit")


def _participants(tq: pd.DataFrame, responses: pd.DataFrame, scope: pd.DataFrame, pids: list[str]) -> pd.DataFrame:
    """One row per participant of ``pids``: the counts of :data:`COUNT_COLUMNS` and data quality.

    ``tasks`` and ``turns`` count every task and turn in ``scope`` (also those without samples),
    ``tasks_with_samples`` the tasks of ``tq`` with gaze or mouse samples, ``turns_with_samples``
    the turns with per-response rows in ``responses``: what the report's Data table counts, per
    participant. Quality comes from ``tq`` (the tasks with streams); NaN where there is none."""
    idx = pd.Index(pids, name="participant_id", dtype=object)
    out = pd.DataFrame(index=idx)
    by = scope.groupby("participant_id")
    out["tasks"] = by.size().reindex(idx, fill_value=0)
    sampled = tq[(tq["gaze_samples"] > 0) | (tq["mouse_samples"] > 0)] if len(tq) else tq
    out["tasks_with_samples"] = (sampled.groupby("participant_id").size() if len(sampled) else pd.Series(dtype=int)
                                 ).reindex(idx, fill_value=0)
    out["turns"] = by["turns"].sum().reindex(idx, fill_value=0)
    rt = responses[["participant_id", "task_id", "turn"]].drop_duplicates() if len(responses) else None
    out["turns_with_samples"] = (rt.groupby("participant_id").size() if rt is not None else pd.Series(dtype=int)
                                 ).reindex(idx, fill_value=0)
    out = out.astype(int)
    if tq.empty:
        for c in QUALITY_COLUMNS:
            out[c] = 0 if c in ("gaze_samples", "gaps_2s") else None if c == "calibration_unit" else np.nan
        return out.reset_index()
    g = tq.groupby("participant_id")

    def wmean(col: str) -> pd.Series:
        def f(d: pd.DataFrame) -> float:
            v = d[col].astype(float)
            w = d["duration_s"].fillna(0).astype(float)
            ok = v.notna() & (w > 0)
            return float(np.average(v[ok], weights=w[ok])) if ok.any() else np.nan
        return g[[col, "duration_s"]].apply(f)

    q = pd.DataFrame({
        "gaze_samples": g["gaze_samples"].sum(),
        "duration_s": g["duration_s"].sum(min_count=1),
        "sample_rate_hz": wmean("sample_rate_hz"),
        "gap_share": wmean("gap_share"),
        "gaps_2s": g["gaps_2s"].sum(),
        "face_ratio": wmean("face_ratio"),
        "calibration": g["calibration"].apply(lambda v: float(pd.to_numeric(v, errors="coerce").mean())),
        "calibration_unit": g["calibration_unit"].first(),
    }).reindex(idx)
    q["gaze_samples"] = q["gaze_samples"].fillna(0).astype(int)
    q["gaps_2s"] = q["gaps_2s"].fillna(0).astype(int)
    return out.join(q).reset_index()
