"""One pass over a data source: per-response behaviour and per-task data quality, for the aggregate
views (attention, features, quality) and the report.

The columns follow the names of :mod:`gazepref.signals.features` where they mean the same
(``g_text_ms``, ``g_depth``, ``g_visits``, ``m_text_ms`` ...), but are computed here directly from the
samples (no cleaning, no region rule): these are descriptive views, not model inputs.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ... import UserError, schema
from .. import gaze_events
from ...datasets.text_mapping import anchor_positions, text_units
from ...datasets.sources import describe
from ._data import TurnView, _np, open_data, outcome, task_streams, turns_by_task

N_BINS = 10  # relative sentence position bins
N_SENT = 16  # absolute sentence index bins (the last one: this one and later)
GAP_MS = 250.0


@dataclass
class Summary:
    responses: pd.DataFrame
    tasks: pd.DataFrame
    participants: pd.DataFrame
    counts: dict = field(default_factory=dict)
    source: str = ""


def _dur(t: np.ndarray) -> np.ndarray:
    return gaze_events.sample_durations(t, gaze_events.segments(t, max_gap_ms=GAP_MS), GAP_MS)


def _runs(mask: np.ndarray) -> int:
    m = mask.astype(np.int8)
    return int(np.sum(np.diff(np.r_[0, m]) == 1))


def _response_rows(tid: str, tr: schema.Turn, t: dict[str, np.ndarray], hits: dict[str, pd.DataFrame],
                   view_points=None) -> list[dict]:
    rows = []
    t_start = min((float(v.min()) for v in t.values() if len(v)), default=np.nan)
    for r in tr.responses:
        p = r.position
        u = text_units(r.text)
        n = max(len(r.text), 1)
        row = dict(task_id=tid, participant_id=tr.participant_id, turn_id=tr.turn_id, turn=tr.index,
                   kind=tr.kind, position=p, model=r.model, n_chars=len(r.text), n_words=u.n_words,
                   n_sentences=u.n_sentences, label_likert=r.likert, outcome=outcome(tr, p),
                   label_better_than_previous=tr.better_than_previous if not tr.pairwise else None)
        sent_rel = np.zeros(N_BINS)
        sent_abs = np.zeros(N_SENT)
        for src, pre in (("gaze", "g"), ("mouse", "m")):
            if view_points is not None:
                tp = view_points(p, src)
                keep = tp.char < len(r.text)
                ht, hc, hd = tp.t[keep], tp.char[keep], tp.weight[keep]
                inbox_t = ht
            else:
                h = hits.get(src)
                if h is None or not len(h["t"]):
                    ht = hc = hd = inbox_t = np.zeros(0)
                    box_ms = 0.0
                else:
                    mp = h["position"] == p
                    inbox_t = h["t"][mp]
                    box_ms = float(h["dur"][mp].sum())
                    # a char_index past the text belongs to another text (mis-assigned sample): off text
                    on = mp & (h["char_index"] >= 0) & (h["char_index"] < len(r.text))
                    ht, hc, hd = h["t"][on], h["char_index"][on], h["dur"][on]
            row[f"{pre}_box_ms"] = float(hd.sum()) if view_points is not None else box_ms
            row[f"{pre}_text_ms"] = float(hd.sum())
            row[f"{pre}_samples_text"] = int(len(ht))
            row[f"{pre}_depth"] = float((hc.max() + 1) / n) if len(hc) else np.nan
            tt = t.get(src, np.zeros(0))
            if len(tt):
                row[f"{pre}_visits"] = _runs(np.isin(tt, inbox_t))
            else:
                row[f"{pre}_visits"] = 0
            row[f"{pre}_first_entry_ms"] = float(inbox_t.min() - t_start) if len(inbox_t) else np.nan
            if src == "gaze" and len(hc) and u.n_words:
                w = u.word_at(hc)
                ok = w >= 0
                s = u.word_sentence[w[ok]]
                ns = max(u.n_sentences, 1)
                np.add.at(sent_rel, np.minimum(((s + 0.5) * N_BINS / ns).astype(np.int64), N_BINS - 1), hd[ok])
                np.add.at(sent_abs, np.minimum(s, N_SENT - 1), hd[ok])
        # bins no sentence falls into (short responses) are unknown, not zero
        ns = max(u.n_sentences, 1)
        has = np.zeros(N_BINS, dtype=bool)
        has[np.minimum(((np.arange(ns) + 0.5) * N_BINS / ns).astype(np.int64), N_BINS - 1)] = True
        for i in range(N_BINS):
            row[f"g_sentpos_{i}"] = sent_rel[i] if has[i] else np.nan
        for i in range(N_SENT):
            row[f"g_sent_{i}"] = sent_abs[i]
        rows.append(row)
    return rows


def _task_quality(tid: str, pid: str, task: schema.Task | None, s: dict[str, pa.Table], n_turns: int) -> dict:
    g = s.get("gaze")
    row = dict(task_id=tid, participant_id=pid, turns=n_turns, gaze_samples=0, duration_s=np.nan,
               sample_rate_hz=np.nan, gap_share=np.nan, gaps_2s=0, face_ratio=np.nan,
               calibration=task.calibration_accuracy if task else None,
               calibration_unit=(task.answers.get("calibration_unit") if task and task.answers else None)
               or ("%" if task and task.study_id == "ifllm" else "px"))
    if g is not None and g.num_rows:
        t = np.unique(_np(g, "t"))
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


def _one_task(rec, tid: str, turns: list[schema.Turn], task: schema.Task | None) -> tuple[list[dict], dict]:
    try:
        s = task_streams(rec, tid, turns)
    except UserError:
        s = {}
    pid = turns[0].participant_id if turns else (task.participant_id if task else tid)
    q = _task_quality(tid, pid, task, s, len(turns))
    rows: list[dict] = []
    if not turns:
        return rows, q
    turn_col = {k: _np(tb, "turn", np.int64) for k, tb in s.items() if "turn" in tb.column_names}
    has_words = "layout" in s and bool(pc.any(pc.equal(s["layout"].column("kind"), "word")).as_py())
    hits_np = None
    if "hits" in s and not has_words:
        hb = s["hits"]
        hx = _np(hb, "x")
        keep = hx >= 0
        hits_np = {"t": _np(hb, "t")[keep], "source": hb.column("source").to_numpy(zero_copy_only=False)[keep],
                    "position": _np(hb, "position", np.int64)[keep], "char_index": _np(hb, "char_index", np.int64)[keep],
                    "turn": _np(hb, "turn", np.int64)[keep]}
        if "window" in hb.column_names:
            hits_np["window"] = hb.column("window").to_numpy(zero_copy_only=False)[keep]
    dur_by_src = {}
    for src in ("gaze", "mouse"):
        if src in s:
            tt = _np(s[src], "t")
            if src == "mouse":
                tt = tt[_np(s[src], "x") >= 0]
            tt = np.unique(tt)
            dur_by_src[src] = (tt, _dur(tt))
    for tr in turns:
        t = {}
        for src in ("gaze", "mouse"):
            if src in s:
                m = turn_col[src] == tr.index
                tt = _np(s[src], "t")[m]
                if src == "mouse":
                    tt = tt[_np(s[src], "x")[m] >= 0]
                t[src] = np.unique(tt)
        if has_words:
            own = {k: tb.filter(pa.array(turn_col[k] == tr.index)) if k in turn_col else tb for k, tb in s.items()}
            v = TurnView(rec, tid, tr, own)
            rows += _response_rows(tid, tr, t, {}, view_points=v.points)
            continue
        hits = {}
        if hits_np is not None:
            mt = hits_np["turn"] == tr.index
            for src in ("gaze", "mouse"):
                ms = mt & (hits_np["source"] == src)
                hs = {k: v[ms] for k, v in hits_np.items() if k in ("t", "position", "char_index")}
                if "window" in hits_np:  # a char_index counted from a paragraph: put back
                    hs["char_index"] = anchor_positions({r.position: r.text for r in tr.responses}, hs["position"],
                                                        hs["char_index"], hits_np["window"][ms])
                if src in dur_by_src and len(hs["t"]):
                    st, sd = dur_by_src[src]
                    j = np.clip(np.searchsorted(st, hs["t"]), 0, len(st) - 1)
                    hs["dur"] = sd[j]
                else:
                    hs["dur"] = np.zeros(len(hs["t"]))
                hits[src] = hs
        rows += _response_rows(tid, tr, t, hits)
    return rows, q


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
        results = list(it)
    rows = [r for rr, _ in results for r in rr]
    qrows = [q for _, q in results]
    responses = pd.DataFrame(rows)
    tq = pd.DataFrame(qrows)
    parts = _participants(tq, responses)
    counts = {
        # as `gazepref data summary` counts them (workers), also those without samples
        "participants": (len(rec.participants()) if participant is None and task is None
                         else len({tasks[i].participant_id for i in ids if i in tasks})),
        "tasks": len(ids),
        "tasks_with_samples": int((tq["gaze_samples"] > 0).sum()) if len(tq) else 0,
        # every turn of the tasks, as `gazepref data summary` counts them (queries), also those
        # without samples; the turns with per-response rows are "turns_with_samples"
        "turns": sum(len(by_task.get(i, [])) for i in ids),
        "turns_with_samples": int(responses[["task_id", "turn"]].drop_duplicates().shape[0]) if len(responses) else 0,
        "pairwise_labelled": sum(t.pairwise and t.choice is not None for i in ids for t in by_task.get(i, [])),
        "gaze_samples": int(tq["gaze_samples"].sum()) if len(tq) else 0,
    }
    return Summary(responses, tq, parts, counts, describe(rec))


def _participants(tq: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    if tq.empty:
        return pd.DataFrame(columns=["participant_id", "tasks", "turns", "gaze_samples", "sample_rate_hz",
                                     "gap_share", "gaps_2s", "face_ratio", "calibration", "calibration_unit"])
    g = tq.groupby("participant_id")

    def wmean(col: str) -> pd.Series:
        def f(d: pd.DataFrame) -> float:
            v = d[col].astype(float)
            w = d["duration_s"].fillna(0).astype(float)
            ok = v.notna() & (w > 0)
            return float(np.average(v[ok], weights=w[ok])) if ok.any() else np.nan
        return g[[col, "duration_s"]].apply(f)

    out = pd.DataFrame({
        "tasks": g.size(),
        "turns": g["turns"].sum(),
        "gaze_samples": g["gaze_samples"].sum(),
        "duration_s": g["duration_s"].sum(min_count=1),
        "sample_rate_hz": wmean("sample_rate_hz"),
        "gap_share": wmean("gap_share"),
        "gaps_2s": g["gaps_2s"].sum(),
        "face_ratio": wmean("face_ratio"),
        "calibration": g["calibration"].apply(lambda v: float(pd.to_numeric(v, errors="coerce").mean())),
        "calibration_unit": g["calibration_unit"].first(),
    }).reset_index()
    return out
