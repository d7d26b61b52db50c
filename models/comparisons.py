"""Pairwise comparisons (and rated responses) from a recording, as flat tables for the reward models.

Label orientation, used by every model in :mod:`gazepref.models`: ``y = 1`` when the **left**
response (``responses[0]``, ``choice == schema.LEFT``) was preferred, ``y = 0`` when the right one
was. Models return ``P(left preferred)``; pairwise features are written *left minus right*.

:func:`comparison_frame` has one row per pairwise turn: keys (``turn_id``, ``task_id``, ``worker``,
``index``, ``seq`` = the turn's order within the worker's whole session), the inputs a text model
may read (``prompt``, ``text_0``/``text_1``, ``model_0``/``model_1``, ``bullets``), ``next_query``
(the user's next message in the same task — post-decision, only for the text-feedback ablation) and
``y``. Likert ratings are never columns here; :func:`rated_responses` gives them separately, as
*training targets* of the pointwise ordinal model.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema

KEY_COLUMNS = ("turn_id", "task_id", "worker", "index", "seq", "epoch_ms")


def session_time(df: pd.DataFrame) -> pd.Series:
    """The turns' epoch times with a missing one taken from the previous (else the next) turn of the
    same task; NaN where the task has no time at all."""
    e = df["epoch_ms"].astype(float)
    if not len(df):
        return e
    return e.groupby(df["task_id"]).transform(lambda s: s.ffill().bfill())


def _session_order(df: pd.DataFrame) -> pd.Series:
    """Rank of each turn within its worker's session: by epoch time (a missing time takes the
    previous turn's of the same task), then task, then index."""
    e = session_time(df)
    key = pd.DataFrame({"w": df["worker"], "e": e.fillna(np.inf), "t": df["task_id"], "i": df["index"]})
    order = key.sort_values(["w", "e", "t", "i"], kind="stable").groupby("w").cumcount()
    return order.reindex(df.index).astype(int)


def comparison_frame(rec: Any, labelled_only: bool = True) -> pd.DataFrame:
    """One row per pairwise turn of ``rec`` (a :class:`gazepref.datasets.recording.Recording` or a
    list of :class:`gazepref.schema.Turn`)."""
    turns = rec if isinstance(rec, list) else rec.turns()
    by_task: dict[str, list[schema.Turn]] = {}
    for t in turns:
        by_task.setdefault(t.task_id, []).append(t)
    rows = []
    for tid, ts in by_task.items():
        ts = sorted(ts, key=lambda t: t.index)
        for k, t in enumerate(ts):
            if not t.pairwise or len(t.responses) < 2:
                continue
            if labelled_only and t.choice is None:
                continue
            nxt = ts[k + 1].prompt if k + 1 < len(ts) else ""
            rows.append({
                "turn_id": str(t.turn_id), "task_id": t.task_id, "worker": t.participant_id,
                "index": int(t.index), "epoch_ms": np.nan if t.epoch_ms is None else float(t.epoch_ms),
                "prompt": t.prompt or "", "text_0": t.responses[0].text or "", "text_1": t.responses[1].text or "",
                "model_0": t.responses[0].model or "", "model_1": t.responses[1].model or "",
                "bullets": float(bool(t.modifiers)), "next_query": nxt or "",
                "y": np.nan if t.choice is None else float(t.choice == schema.LEFT),
            })
    cols = ["turn_id", "task_id", "worker", "index", "epoch_ms", "prompt", "text_0", "text_1", "model_0",
            "model_1", "bullets", "next_query", "y"]
    df = pd.DataFrame(rows, columns=cols)
    df["seq"] = _session_order(df) if len(df) else pd.Series(dtype=int)
    return df.sort_values(["worker", "seq"], kind="stable").reset_index(drop=True)


RATING_COLUMNS = ("turn_id", "task_id", "worker", "index", "epoch_ms", "model", "prompt", "text", "likert")


def rated_responses(rec: Any) -> pd.DataFrame:
    """Every response with a Likert rating, pointwise and pairwise turns alike: ``turn_id, task_id,
    worker, index, epoch_ms`` (session time, filled within the task as for :func:`comparison_frame`),
    ``model, prompt, text, likert``. Targets of the pointwise model; the personalised track also
    reads a person's *earlier* ratings (:func:`gazepref.models.personalized.history_features`)."""
    turns = rec if isinstance(rec, list) else rec.turns()
    rows = [{"turn_id": str(t.turn_id), "task_id": t.task_id, "worker": t.participant_id, "index": int(t.index),
             "epoch_ms": np.nan if t.epoch_ms is None else float(t.epoch_ms), "model": r.model or "",
             "prompt": t.prompt or "", "text": r.text or "", "likert": int(r.likert)}
            for t in turns for r in t.responses if r.likert is not None]
    df = pd.DataFrame(rows, columns=list(RATING_COLUMNS))
    # fill times from every turn of the task (rated or not)
    times = pd.DataFrame([{"task_id": t.task_id, "index": int(t.index),
                           "epoch_ms": np.nan if t.epoch_ms is None else float(t.epoch_ms)} for t in turns],
                         columns=["task_id", "index", "epoch_ms"])
    if len(times) and len(df):
        times = times.drop_duplicates(["task_id", "index"]).sort_values(["task_id", "index"], kind="stable")
        times["epoch_ms"] = session_time(times)
        filled = times.set_index(["task_id", "index"])["epoch_ms"]
        df["epoch_ms"] = filled.reindex(pd.MultiIndex.from_frame(df[["task_id", "index"]])).to_numpy()
    return df


def swap(df: pd.DataFrame) -> pd.DataFrame:
    """The same comparisons with left and right exchanged (text, model and ``y``)."""
    out = df.copy()
    for a, b in (("text_0", "text_1"), ("model_0", "model_1")):
        if a in out and b in out:
            out[a], out[b] = df[b].values, df[a].values
    if "y" in out:
        out["y"] = 1.0 - df["y"]
    return out
