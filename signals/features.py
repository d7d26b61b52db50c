"""Feature tables (Parquet): one row per response, per pairwise comparison, per sentence, and per
sequential (pointwise) comparison.

``compute_task(TaskData)`` turns one task into rows; :func:`build` runs it over a data source in
``jobs`` processes and writes ``responses.parquet``, ``comparisons.parquet``,
``sentences.parquet`` and ``sequential.parquet`` (a pointwise turn against the previous turn's
answer, IFLLM's "better than the previous answer" label). Every column is documented in :mod:`gazepref.signals.feature_reference`
(``docs/features.md``).

Column families (see :func:`default_feature_columns` for what feeds a model by default):

* keys / metadata (``task_id``, ``participant_id``, ``turn_id``, ``turn``, ``kind``, ``position``,
  ``model_*``) — never features;
* ``label_*`` — the participant's explicit ratings (Likert, choice, better-than-previous): targets
  only, never features;
* ``task_*`` — task-level aggregates (constant over a task's turns, or using later turns): named
  so and left out of the default feature set;
* ``post_*`` — data from after the decision (the text feedback in the *next* message): left out
  of the default feature set;
* the side looked at / pointed at *last* before the choice (``*_last_side``, ``*_last_visit_ms``,
  ``*_last_share_l``): the pointer's way down to the *Left | Right* buttons would give the click
  away, so they are left out too;
* the in-box family ``gaze_*`` / ``mouse_*`` of the comparisons table
  (:mod:`gazepref.signals.inbox`): the reward models' default implicit features;
* everything else is a feature computed from the turn's own samples, before its decision, in the
  allowed screen regions only (:mod:`gazepref.signals.regions`).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from . import mouse as mouse_mod
from .. import schema
from . import inbox, pairwise, reading, regions
from .task_data import SampleFrame, TaskData

NAN = float("nan")

META_COLUMNS = ("task_id", "participant_id", "turn_id", "turn", "kind", "position", "model", "model_l", "model_r",
                "model_p", "sentence")
EXCLUDED_PREFIXES = ("label_", "task_", "post_")
#: pairwise measures of the side looked at / pointed at last before the choice
EXCLUDED_MEASURES = ("last_side", "last_visit_ms", "last_share_l")


def off_limits(column: str) -> bool:
    """Whether ``column`` may never feed a model: the one list of the leakage rules (keys and
    metadata; the participant's ratings, ``label_*``; task-level aggregates, ``task_*``, constant
    over a task or using later turns; post-decision data, ``post_*``; the side looked at / pointed
    at last before the choice, :data:`EXCLUDED_MEASURES`). Positions outside the response boxes and
    samples at or after a decision never reach any measure (:mod:`gazepref.signals.regions`)."""
    return (column in META_COLUMNS or column.startswith(EXCLUDED_PREFIXES)
            or any(column.endswith("_" + m) for m in EXCLUDED_MEASURES))


def default_feature_columns(df: pd.DataFrame) -> list[str]:
    """The columns that may feed a reward model: every column not :func:`off_limits`."""
    return [c for c in df.columns if not off_limits(c)]


def _cut(frame: SampleFrame, lo: int, hi: int) -> SampleFrame:
    return frame.subset(slice(lo, hi))


def _turn_bounds(turn: np.ndarray, k: int) -> tuple[int, int]:
    return int(np.searchsorted(turn, k, side="left")), int(np.searchsorted(turn, k, side="right"))


def text_measures(units) -> dict[str, float]:
    return {"n_chars": float(units.n_chars), "n_words": float(units.n_words), "n_sentences": float(units.n_sentences),
            "n_lines": float(units.text.count("\n") + 1 if units.text else 0)}


def compute_task(td: TaskData, sentences: bool = True) -> tuple[list[dict], list[dict], list[pd.DataFrame]]:
    """Rows of the three tables for one task."""
    g, m = td.gaze, td.mouse
    fix = reading.fixations(g)
    vis = reading.visit_ids(fix.region, fix.turn)
    n_turns = len(td.turns)
    resp_rows, comp_rows, sent_frames, seq_rows = [], [], [], []
    prev: tuple[schema.Turn, dict[str, float]] | None = None
    bo = td.box_obs
    for k, tr in enumerate(td.turns):
        glo, ghi = _turn_bounds(g.turn, k)
        mlo, mhi = _turn_bounds(m.turn, k)
        flo, fhi = _turn_bounds(fix.turn, k)
        gt, mt = _cut(g, glo, ghi), _cut(m, mlo, mhi)
        ft = fix.subset(slice(flo, fhi))
        vt = vis[flo:fhi]
        starts = [a[0] for a in (gt.t, mt.t) if len(a)]
        ends = [a[-1] for a in (gt.t, mt.t) if len(a)]
        t0 = min(starts) if starts else NAN
        span = (max(ends) - t0) if starts else 0.0
        turn_feats: dict[str, float] = {
            "turn_ms": float(span),
            "g_samples": float(len(gt)),
            "g_hz": float(len(gt) / (span / 1000.0)) if span > 0 else NAN,
            "g_prompt_ms": float(gt.dur[gt.region == regions.PROMPT].sum()),
            "g_resp_ms": float(gt.dur[gt.region <= regions.RESP_1].sum()),
            "g_fix_all_n": float(len(ft)),
            "g_fix_all_mean_ms": float(ft.dur.mean()) if len(ft) else NAN,
        }
        # over the turn's raw gaze rows before its decision (TaskData.box_samples): a picture
        # without a face has no position, so the cleaned samples never hold one
        raw = td.box_samples.get("gaze") or {}
        cam = raw["camera_ok"][raw["turn"] == k] if "camera_ok" in raw else None
        known = cam >= 0 if cam is not None else None
        turn_feats["g_camera_ok_share"] = (float((cam[known] == 1).mean()) if known is not None and known.any()
                                           else NAN)
        # saccades: movements between consecutive fixations of the same segment
        same = ft.segment[1:] == ft.segment[:-1]
        amp = np.hypot(np.diff(ft.x), np.diff(ft.y))[same]
        turn_feats["g_sacc_n"] = float(len(amp))
        turn_feats["g_sacc_amp_mean_px"] = float(amp.mean()) if len(amp) else NAN
        tot = turn_feats["g_prompt_ms"] + turn_feats["g_resp_ms"]
        turn_feats["g_prompt_share"] = turn_feats["g_prompt_ms"] / tot if tot > 0 else NAN
        turn_feats.update(mouse_mod.trajectory_measures(mt))
        if bo and len(bo.get("t", ())):
            ob = bo["turn"] == k
            if tr.t_decided is not None:
                ob &= bo["t"] < tr.t_decided
        else:
            ob = None
        meta = {"task_id": td.task_id, "participant_id": td.participant_id, "turn_id": tr.turn_id,
                "turn": k, "kind": tr.kind}
        per_pos: list[dict[str, float]] = []
        for p, resp in enumerate(tr.responses):
            u = td.units[(k, p)]
            row: dict[str, Any] = dict(meta, position=p, model=resp.model)
            f: dict[str, float] = {}
            f.update(text_measures(u))
            f.update(reading.dwell_measures(gt, p, u, t0, "g_"))
            f.update(reading.response_gaze_measures(ft, vt, p, u))
            f.update(reading.dwell_measures(mt, p, u, t0, "m_"))
            sc = mouse_mod.scroll_from_stream(td.scroll, f"response:{p}", t0, t0 + span)
            if sc is None:
                if ob is not None:
                    op = ob & (bo["pos"] == p)
                    sc = mouse_mod.scroll_measures(bo["t"][op], bo["top"][op], span)
                else:
                    sc = mouse_mod.scroll_measures(np.zeros(0), np.zeros(0), span)
            f.update(sc)
            f.update(mouse_mod.selection_counts(td.events, k, p, tr.t_decided))
            row.update(f)
            row.update(turn_feats)
            row.update(_task_cols(td, n_turns))
            row["label_likert"] = resp.likert
            row["label_choice_this"] = (NAN if tr.choice is None else float(tr.choice == p)) if tr.pairwise else NAN
            row["label_better_than_previous"] = NAN if tr.better_than_previous is None else float(tr.better_than_previous)
            resp_rows.append(row)
            per_pos.append(f)
            if sentences and u.n_sentences:
                cols = reading.sentence_measures(ft, vt, gt, p, u)
                ns = u.n_sentences
                sdf = {c: [v] * ns for c, v in meta.items()}
                sdf["position"] = [p] * ns
                sdf.update(cols)
                sent_frames.append(sdf)
        if tr.pairwise and len(per_pos) == 2:
            comp: dict[str, Any] = dict(meta, model_l=tr.responses[0].model, model_r=tr.responses[1].model)
            comp.update(turn_feats)
            comp.update(pairwise.side_sequence_measures(ft.region, ft.dur, "g_"))
            comp.update(pairwise.side_sequence_measures(mt.region, mt.dur, "m_"))
            for name in per_pos[0]:
                a, b = per_pos[0][name], per_pos[1][name]
                comp[f"l_{name}"] = a
                comp[f"r_{name}"] = b
                comp[f"d_{name}"] = a - b if a is not None and b is not None else NAN
            comp.update(inbox.turn_measures(td.box_samples, k, (tr.responses[0].text, tr.responses[1].text)))
            comp.update(_task_cols(td, n_turns))
            comp["label_choice"] = NAN if tr.choice is None else float(tr.choice)
            comp["label_likert_l"] = tr.responses[0].likert
            comp["label_likert_r"] = tr.responses[1].likert
            comp_rows.append(comp)
        if not tr.pairwise and per_pos:
            if prev is not None and prev[0].index == tr.index - 1:
                seq: dict[str, Any] = dict(meta, model_p=prev[0].responses[0].model, model=tr.responses[0].model)
                seq.update(turn_feats)
                for name, c in per_pos[0].items():
                    pv = prev[1][name]
                    seq[f"p_{name}"] = pv
                    seq[f"c_{name}"] = c
                    seq[f"d_{name}"] = c - pv
                seq.update(_task_cols(td, n_turns))
                seq["label_better_than_previous"] = (NAN if tr.better_than_previous is None
                                                     else float(tr.better_than_previous))
                seq["label_likert_p"] = prev[0].responses[0].likert
                seq["label_likert_c"] = tr.responses[0].likert
                seq_rows.append(seq)
            prev = (tr, per_pos[0])
        else:
            prev = None
    # a task without any samples of a source has *missing* measures of it, not zeros; gaze rows
    # without a position (a failed calibration's, x/y NaN) are no gaze samples either
    missing = ([] if td.n_gaze_positions else ["g_"]) + ([] if td.n_mouse_raw else ["m_", "sc_"])
    if missing:
        for rows in (resp_rows, comp_rows, seq_rows, sent_frames):
            _blank(rows, tuple(missing))
    return resp_rows, comp_rows, sent_frames, seq_rows


#: measures of the gaze rows whatever their position (the camera's state): kept where the task
#: has no gaze position (a failed calibration: the camera may have been fine)
ROW_MEASURES = ("g_camera_ok_share",)


def _blank(rows: list[dict], prefixes: tuple[str, ...]) -> None:
    """Set the measures of a source with no samples (``g_``, ``l_g_``, ``d_g_``, ...) to NaN
    (a sentence table's columns: lists of them), :data:`ROW_MEASURES` aside."""
    sided = tuple(s + p for s in ("l_", "r_", "d_", "p_", "c_") for p in prefixes)
    for row in rows:
        for k, v in row.items():
            if (k.startswith(prefixes) or k.startswith(sided)) and not k.endswith(ROW_MEASURES):
                row[k] = np.full(len(v), NAN) if isinstance(v, (list, np.ndarray)) else NAN


def _task_cols(td: TaskData, n_turns: int) -> dict[str, float]:
    info = td.task_info
    cal = info.get("calibration") or {}
    acc, px_unit = info.get("calibration_accuracy"), info.get("calibration_unit") == "px"
    # one unit a column: a site study's calibration has both figures, an IFLLM task WebGazer's % only
    px = cal.get("accuracy_px") if cal else (acc if px_unit else None)
    pct = cal.get("webgazer_score_pct") if cal else (None if px_unit else acc)
    passed = cal.get("passed")

    def num(v) -> float:
        return NAN if v is None else float(v)

    return {
        "task_n_turns": float(n_turns),
        "task_calibration_accuracy_px": num(px),
        "task_calibration_accuracy_pct": num(pct),
        "task_calibration_passed": num(passed),
        # of all the task's gaze rows (a picture without a face is one lost); NaN without an estimate at all
        "task_gaze_kept_share": (td.clean_counts.get("gaze_kept", 0) / td.n_gaze_raw
                                 if td.n_gaze_positions else NAN),
    }


# --------------------------------------------------------------------------- sources


@dataclass
class Result:
    responses: pd.DataFrame
    comparisons: pd.DataFrame
    sentences: pd.DataFrame
    stats: dict[str, Any]
    sequential: pd.DataFrame | None = None


_REC = None  # the recording being processed (forked workers inherit it)
_TASKS: dict[str, Any] = {}


def _use_recording(rec) -> None:
    global _REC, _TASKS
    _REC = rec
    _TASKS = {t.task_id: t for t in rec.tasks()}


def _worker_context():
    """The workers' start method: ``fork`` (they inherit the parsed recording) only while this
    process runs no other Python thread; else ``spawn`` (they open the recording by its key). A
    thread holding a lock at the fork leaves the forked worker waiting for it for ever: seen with a
    study served in the same process, whose thread held SQLite's allocator mutex when the worker
    was forked, so the worker hung opening its database connection and ``build`` never returned."""
    import multiprocessing
    import threading

    forkable = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if forkable else "spawn")


def _open(key: tuple | None) -> None:
    """Worker initializer: forked workers inherit the parent's parsed recording (a study's without
    its database connections: the parent gives them back first); others open it by its key
    (None: in the parent process, the recording in use)."""
    from ..datasets.sources import open_key, source_key

    if key is None or (_REC is not None and source_key(_REC) == key):
        return
    _use_recording(open_key(key))


def _run_chunk(args: tuple[tuple | None, list[str], bool]) -> tuple[list, list, list, list, dict]:
    key, task_ids, sentences = args
    from .task_data import from_recording

    _open(key)
    rr, cr, sf, sq = [], [], [], []
    n_gaze = n_kept = n_mouse = 0
    for tid in task_ids:
        td = from_recording(_REC, _TASKS[tid])
        a, b, c, d = compute_task(td, sentences)
        rr += a
        cr += b
        sf += c
        sq += d
        n_gaze += td.n_gaze_raw
        n_kept += len(td.gaze)
        n_mouse += len(td.mouse)
    report = getattr(_REC, "report", None)
    skipped = dict(report.skipped) if report is not None else {}
    if report is not None:
        report.skipped.clear()
    return rr, cr, sf, sq, {"gaze_samples": n_gaze, "gaze_kept": n_kept, "mouse_kept": n_mouse, "skipped": skipped,
                        "tasks": len(task_ids)}


def _task_sizes(rec, task_ids: list[str]) -> list[tuple[str, int]]:
    """Work per task, to balance the chunks: bytes of its files (IFLLM) or its turn count."""
    dirs = getattr(rec, "behavior_dirs", None)
    if dirs is not None:
        return [(t, sum(f.stat().st_size for f in dirs[t].iterdir()) if t in dirs else 0) for t in task_ids]
    by = rec.turns_by_task()
    return [(t, len(by.get(t, []))) for t in task_ids]


def _chunks(items: list[tuple[str, int]], n: int) -> list[list[str]]:
    """Split (task, size) items into ~n·8 chunks of similar total size, biggest first."""
    items = sorted(items, key=lambda kv: -kv[1])
    k = max(1, min(len(items), n * 8))
    bins: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for tid, size in items:
        i = load.index(min(load))
        bins[i].append(tid)
        load[i] += size
    return [b for b in bins if b]


def build(data: Any, jobs: int = 1, sentences: bool = True, progress: bool = False,
          task_ids: Iterable[str] | None = None, text_feedback: bool = False) -> Result:
    """Compute the feature tables of a recording: a Recording object or what
    :func:`gazepref.datasets.sources.open_source` opens (a folder or a study slug)."""
    from ..datasets.sources import open_source, source_key

    t_start = time.perf_counter()
    rec = open_source(data)
    fmt = ("ifllm" if hasattr(rec, "behavior_dirs") else "gazepref-db" if hasattr(rec, "study")
           else "gazepref-parquet")
    key = source_key(rec) if jobs > 1 else None  # an in-memory recording has none: one process
    _use_recording(rec)  # parse the tables once; forked workers inherit them
    with_turns = rec.turns_by_task()
    # every task with turns: one without trajectories still gives text measures and labels
    candidates = task_ids if task_ids is not None else with_turns
    todo = [t for t in candidates if t in with_turns and t in _TASKS]
    chunks = _chunks(_task_sizes(rec, todo), max(1, jobs))
    args = [(key, c, sentences) for c in chunks]
    if jobs <= 1:
        it = map(_run_chunk, args)
        if progress:
            from ..progress import progress as bar

            it = bar(it, total=len(args), desc="features")
        results = list(it)
    else:
        if hasattr(rec, "close"):  # a study: workers must not share the parent's database connections
            rec.close()
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_worker_context(), initializer=_open,
                                 initargs=(key,)) as ex:
            it = ex.map(_run_chunk, args)
            if progress:
                from ..progress import progress as bar

                it = bar(it, total=len(args), desc="features")
            results = list(it)
    rr = [r for res in results for r in res[0]]
    cr = [r for res in results for r in res[1]]
    sf = [r for res in results for r in res[2]]
    sq = [r for res in results for r in res[3]]
    order = ["task_id", "turn", "position"]
    responses = pd.DataFrame(rr)
    comparisons = pd.DataFrame(cr)
    sents = _concat_columns(sf)
    if len(responses):
        responses = responses.sort_values(order, kind="stable").reset_index(drop=True)
    if len(comparisons):
        comparisons = comparisons.sort_values(order[:2], kind="stable").reset_index(drop=True)
    if len(sents):
        sents = sents.sort_values(order + ["sentence"], kind="stable").reset_index(drop=True)
    sequential = pd.DataFrame(sq)
    if len(sequential):
        sequential = sequential.sort_values(order[:2], kind="stable").reset_index(drop=True)
    if text_feedback:
        responses = add_text_feedback(responses, rec)
    skipped: dict[str, int] = {}
    for res in results:
        for k, v in res[4]["skipped"].items():
            skipped[k] = skipped.get(k, 0) + v
    stats = {
        "format": fmt,
        "tasks_with_turns": len(todo),  # as `data summary` counts them
        "responses": len(responses),
        "comparisons": len(comparisons),
        "comparisons_labelled": int(comparisons["label_choice"].notna().sum()) if len(comparisons) else 0,
        "sentences": len(sents),
        "sequential": len(sequential),
        "gaze_samples": sum(r[4]["gaze_samples"] for r in results),
        "gaze_samples_used": sum(r[4]["gaze_kept"] for r in results),
        "mouse_samples_used": sum(r[4]["mouse_kept"] for r in results),
        "malformed_rows_skipped": sum(skipped.values()),
        "jobs": jobs,
        "elapsed_s": round(time.perf_counter() - t_start, 3),
    }
    return Result(responses, comparisons, sents, stats, sequential)


def comparison_table(recording, jobs: int = 1, progress: bool = False,
                     task_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The comparisons table of a recording (an open one or a path): one row per pairwise turn,
    every family (``comparisons.parquet`` of ``gazepref features``). The reward models read their
    implicit features from this table only (:mod:`gazepref.models.implicit_features`), the columns
    :func:`off_limits` excepted. ``task_ids``: only these tasks."""
    return build(recording, jobs=jobs, sentences=False, progress=progress, task_ids=task_ids).comparisons


def _concat_columns(parts: list[dict]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame()
    cols = parts[0].keys()
    return pd.DataFrame({c: np.concatenate([np.asarray(p[c]) for p in parts]) for c in cols})


def add_text_feedback(responses: pd.DataFrame, rel) -> pd.DataFrame:
    """``post_fb_*`` columns: the *next* message of the task classified as feedback on this
    response (:func:`gazepref.signals.text_feedback.classify_feedback`). Post-decision data: not in
    the default feature set."""
    from .text_feedback import classify_feedback

    by_task = rel.turns_by_task()
    recs, keys = [], []
    for tid, turns in by_task.items():
        for a, b in zip(turns, turns[1:]):
            for p, r in enumerate(a.responses):
                recs.append({"prev_query": a.prompt, "prev_response": r.text, "next_query": b.prompt})
                keys.append((tid, a.index, p))
    if not recs:
        return responses
    res = classify_feedback(recs)
    fb = pd.DataFrame([{"task_id": k[0], "turn": k[1], "position": k[2],
                        "post_fb_nof": r["nof"], "post_fb_sat": r["sat"], "post_fb_ordinal": float(r["ordinal"]),
                        "post_fb_confidence": float(r["confidence"])} for k, r in zip(keys, res)])
    return responses.merge(fb, on=["task_id", "turn", "position"], how="left")


#: the tables :func:`write` writes (and nothing else: ``gazepref features --overwrite`` replaces
#: only a folder holding these)
TABLES = ("responses", "comparisons", "sentences", "sequential")
TABLE_FILES = tuple(f"{name}.parquet" for name in TABLES)


def write(result: Result, out: str | os.PathLike) -> dict[str, str]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in TABLES:
        df = getattr(result, name)
        p = out / f"{name}.parquet"
        if df is None or (name in ("sentences", "sequential") and not len(df.columns)):
            p.unlink(missing_ok=True)  # a table of an earlier run must not pass for this one's
            continue
        df.to_parquet(p, index=False)
        paths[name] = str(p)
    return paths
