"""The data the reward models read: :class:`RewardData` from a recording (:func:`load_data`).

Labels: ``y = 1`` when the left response was preferred (see :mod:`gazepref.models.comparisons`).
Implicit features come from the signal processor's comparison table only
(:mod:`gazepref.models.implicit_features`), cached per recording (:mod:`gazepref.models.feature_cache`).
"""
from __future__ import annotations

from typing import Any
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import comparisons as comp
from .personalized import history_features


@dataclass
class RewardData:
    """Everything the models read: ``X`` (comparison frame + implicit + ``hist_*`` + optional ``tf_*``
    columns), ``y`` (1 = left preferred) and ``ratings`` (Likert targets with ``worker``)."""

    X: pd.DataFrame
    y: np.ndarray
    ratings: pd.DataFrame

    @property
    def groups(self) -> np.ndarray:
        return self.X["worker"].to_numpy()

    def subset(self, idx: np.ndarray) -> "RewardData":
        X = self.X.iloc[idx].reset_index(drop=True)
        return RewardData(X, self.y[idx], self.ratings[self.ratings["worker"].isin(set(X["worker"]))])


def text_feedback_features(X: pd.DataFrame) -> pd.DataFrame:
    """``tf_*`` columns from the user's *next* message (post-decision; ablation only): its feedback
    ordinal (:mod:`gazepref.signals.text_feedback`, 3 = neutral / none), and how much more it builds
    on the left than the right answer (cosine of MiniLM embeddings, left minus right)."""
    from .text_features import embed

    n = len(X)
    nxt = X["next_query"].fillna("").tolist()
    has = np.array([bool(s.strip()) for s in nxt])
    E = embed(nxt + X["text_0"].tolist() + X["text_1"].tolist())
    q, a, b = E[:n], E[n:2 * n], E[2 * n:]
    d = np.where(has, (q * a).sum(1) - (q * b).sum(1), 0.0).astype(np.float64)
    out = pd.DataFrame({"tf_d_next_builds_on": d}, index=X.index)
    from gazepref.signals.text_feedback import classify_feedback

    recs = [{"prev_query": p, "prev_response": t0, "next_query": s}
            for p, t0, s in zip(X["prompt"], X["text_0"], nxt)]
    res = iter(classify_feedback([r for r, h in zip(recs, has) if h]))
    out["tf_s_next_ordinal"] = np.array([(next(res)["ordinal"] - 3.0) if h else 0.0 for h in has])
    return out


def load_data(source: Any, implicit: bool = True, text_feedback: bool = False,
              progress: bool = False, labelled_only: bool = True, cache: bool = True,
              features: str = "inbox") -> RewardData:
    """Read a recording into :class:`RewardData`.

    ``source``: a Recording, or what :func:`gazepref.datasets.sources.open_source` opens (a folder,
    a Parquet export or a study slug in the located database).

    ``features``: the families of the signal processor's comparison table the implicit columns
    come from, ``"inbox"`` (the in-box family, default; ``"hits"`` is its old name), ``"signals"``
    (the table's other pairwise measures) or ``"both"`` (:mod:`gazepref.models.implicit_features`).
    The table is cached on disk per recording (:func:`gazepref.models.feature_cache.comparison_table`)."""
    from gazepref.datasets.sources import open_source

    from .feature_cache import comparison_table
    from .implicit_features import family, implicit_table

    features = family(features)
    rec = open_source(source)
    X = comp.comparison_frame(rec, labelled_only=labelled_only)
    ratings = comp.rated_responses(rec)
    if implicit and len(X):
        table = comparison_table(rec, progress=progress, cache=cache)
        X = pd.concat([X, implicit_table(rec, X, features, table=table)], axis=1)
    X = pd.concat([X, history_features(X, ratings=ratings)], axis=1)
    if text_feedback and len(X):
        X = pd.concat([X, text_feedback_features(X)], axis=1)
    y = X["y"].to_numpy(dtype=float)
    return RewardData(X, np.nan_to_num(y).astype(int), ratings)
