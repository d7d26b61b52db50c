"""Personalised track: this person's taste from their own *earlier* choices in the session.

:func:`history_features` adds ``hist_*`` columns to a comparison frame; each row's values are
computed from the same worker's labelled rows that come **strictly earlier** in the session
(``seq``, the order of the turns by time across the worker's tasks) — never from the turn itself or
later ones:

* ``hist_d_model`` — how much this person preferred the left response's model over the right one's
  in earlier comparisons (smoothed win rate, left minus right);
* ``hist_rule_model`` — "the model this person preferred earlier": +1 when the left response's model
  won the person's most recent earlier comparison of the same two models, −1 when it lost, 0 when
  they never compared them;
* ``hist_d_task_side`` — earlier choices of the left minus the right side within the same task
  (the same two models sit on the same sides throughout an IFLLM task), smoothed;
* ``hist_d_longer`` — the person's earlier tendency to choose the longer answer (centred rate)
  times the sign of this pair's length difference;
* ``hist_side_bias`` — their earlier share of *left* choices, centred (a position habit);
* ``hist_s_n`` — log number of earlier labelled comparisons (context for the head);
* ``hist_d_rating_model`` — how this person *rated* the left response's model minus the right one's
  in earlier turns of any kind (pointwise tasks included): per model, the sum of their earlier
  Likert ratings centred on their own earlier mean, shrunk by ``/(count + prior)``. Needs the
  ``ratings`` table (:func:`gazepref.models.comparisons.rated_responses`); 0 without it. A rating
  counts as earlier when it belongs to an earlier turn of the same task, or to a turn of another
  task with an earlier session time; ratings of the turn itself never count.

:class:`PersonalizedModel` stacks the text score (the length rule by default) with the antisymmetric
``hist_d_*`` columns (and optionally implicit features) in a Bradley–Terry logistic head.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .fusion import LateFusion
from .implicit_features import implicit_columns
from .text_models import DEFAULT_CS, LengthRule

HIST_COLUMNS = ("hist_d_model", "hist_rule_model", "hist_d_task_side", "hist_d_longer", "hist_side_bias", "hist_s_n",
                "hist_d_rating_model")
#: the antisymmetric ones (swap sides → negated): a personalised Bradley–Terry head may read these
PAIR_HIST_COLUMNS = ("hist_d_model", "hist_rule_model", "hist_d_task_side", "hist_d_longer", "hist_d_rating_model")
#: what :class:`PersonalizedModel` reads by default: the fewest that carry the signal (dev archive,
#: worker-grouped CV: each further ``hist_*`` column cost 0.5-1.5 points; docs/reward_models.md)
DEFAULT_HISTORY = ("hist_d_task_side", "hist_d_rating_model")


def history_features(X: pd.DataFrame, y: Any = None, prior: float = 1.0,
                     ratings: pd.DataFrame | None = None) -> pd.DataFrame:
    """``hist_*`` columns for the rows of ``X`` (``worker``, ``seq``, ``task_id``, ``model_0/1``,
    ``text_0/1``), from the labels ``y`` (default ``X["y"]``) of each worker's earlier rows only.
    Unlabelled rows (NaN) contribute nothing. ``ratings`` (optional, :func:`~gazepref.models.
    comparisons.rated_responses`) adds the person's earlier Likert ratings (``hist_d_rating_model``)."""
    yy = (X["y"] if y is None else pd.Series(np.asarray(y, dtype=float), index=X.index)).to_numpy(dtype=float)
    out = np.zeros((len(X), len(HIST_COLUMNS)))
    order = np.lexsort((X["seq"].to_numpy(), X["worker"].astype(str).to_numpy()))
    w = X["worker"].astype(str).to_numpy()
    task = X["task_id"].astype(str).to_numpy()
    m0, m1 = X["model_0"].astype(str).to_numpy(), X["model_1"].astype(str).to_numpy()
    l0 = X["text_0"].str.len().to_numpy()
    l1 = X["text_1"].str.len().to_numpy()
    cur = None
    for i in order:
        if w[i] != cur:
            cur = w[i]
            wins: dict[str, float] = defaultdict(float)
            games: dict[str, float] = defaultdict(float)
            side: dict[str, float] = defaultdict(float)
            nside: dict[str, float] = defaultdict(float)
            n = left = longer = n_len = 0.0
            last_pair: dict[frozenset, str] = {}  # the two models → the winner of their latest comparison
        # features from the past only
        r0 = (wins[m0[i]] + prior * 0.5) / (games[m0[i]] + prior)
        r1 = (wins[m1[i]] + prior * 0.5) / (games[m1[i]] + prior)
        dm = r0 - r1 if m0[i] != m1[i] else 0.0
        ls = np.sign(l0[i] - l1[i])
        out[i] = [
            dm,
            _rule(last_pair.get(frozenset((m0[i], m1[i]))), m0[i], m1[i]),
            side[task[i]] / (nside[task[i]] + prior),
            ((longer + prior * 0.5) / (n_len + prior) - 0.5) * ls,
            (left + prior * 0.5) / (n + prior) - 0.5,
            np.log1p(n),
            0.0,
        ]
        # then learn from this row, if labelled
        if not np.isnan(yy[i]):
            lw = yy[i] == 1.0
            winner, loser = (m0[i], m1[i]) if lw else (m1[i], m0[i])
            if m0[i] != m1[i]:
                last_pair[frozenset((m0[i], m1[i]))] = winner
                wins[winner] += 1
                games[winner] += 1
                games[loser] += 1
            side[task[i]] += 1.0 if lw else -1.0
            nside[task[i]] += 1
            n += 1
            left += lw
            if ls != 0:
                n_len += 1
                longer += (ls > 0) == lw
    if ratings is not None and len(ratings) and len(X):
        out[:, HIST_COLUMNS.index("hist_d_rating_model")] = _rating_model_preference(X, ratings, prior)
    return pd.DataFrame(out, columns=list(HIST_COLUMNS), index=X.index)


def _rating_model_preference(X: pd.DataFrame, ratings: pd.DataFrame, prior: float) -> np.ndarray:
    """``hist_d_rating_model`` for every row of ``X`` from the same worker's earlier ratings."""
    from .comparisons import session_time

    out = np.zeros(len(X))
    t_row = session_time(X).to_numpy(dtype=float)
    cols = ratings.assign(task_id=ratings["task_id"].astype(str), model=ratings["model"].astype(str))
    by_worker = {w: (g["task_id"].to_numpy(), g["index"].to_numpy(), g["epoch_ms"].to_numpy(dtype=float),
                     g["likert"].to_numpy(dtype=float), g["model"].to_numpy())
                 for w, g in cols.groupby(cols["worker"].astype(str))}
    for pos, (w, task, idx, m0, m1) in enumerate(zip(X["worker"].astype(str), X["task_id"].astype(str),
                                                     X["index"].to_numpy(), X["model_0"].astype(str),
                                                     X["model_1"].astype(str))):
        if w not in by_worker or m0 == m1:
            continue
        r_task, r_index, r_time, likert, models = by_worker[w]
        earlier = np.where(r_task == task, r_index < idx, r_time < t_row[pos])  # NaN time: never earlier
        if not earlier.any():
            continue
        centred = likert[earlier] - likert[earlier].mean()
        models = models[earlier]
        pref = [centred[models == m].sum() / ((models == m).sum() + prior) for m in (m0, m1)]
        out[pos] = pref[0] - pref[1]
    return out


def _rule(winner: str | None, m0: str, m1: str) -> float:
    if winner is None or m0 == m1:
        return 0.0
    return 1.0 if winner == m0 else -1.0


def model_rule_accuracy(X: pd.DataFrame) -> dict[str, float]:
    """"The model this person preferred earlier" alone, where it applies."""
    h = history_features(X)
    m = h["hist_rule_model"].to_numpy() != 0
    y = X["y"].to_numpy()
    ok = m & ~np.isnan(y)
    acc = float(((h["hist_rule_model"].to_numpy()[ok] > 0) == (y[ok] == 1)).mean()) if ok.any() else float("nan")
    return {"accuracy": acc, "n": int(ok.sum())}


class PersonalizedModel(LateFusion):
    """Late fusion of the text score with the person's history: a Bradley–Terry head on the text
    log-odds (out-of-fold inside training), the antisymmetric ``hist_d_*`` columns and, when
    ``implicit``, the implicit features (per-worker calibrated when ``per_worker``).

    ``X`` must carry the ``hist_*`` columns (:func:`history_features` over the whole session, which
    only ever looks backwards); they are computed from ``X`` itself when missing.
    """

    def __init__(self, text_model: Any = None, implicit: bool = False, sources: Sequence[str] = ("gaze", "mouse"),
                 C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3,
                 per_worker: bool | str = False, history: Sequence[str] = DEFAULT_HISTORY):
        self.implicit = implicit
        self.history = history
        super().__init__(text_model=text_model, columns=None, sources=sources, head="logistic", C=C, Cs=Cs,
                         inner_folds=inner_folds, per_worker=per_worker)

    def _default_text_model(self) -> Any:
        return LengthRule()

    def _select_columns(self, X: pd.DataFrame) -> list[str]:
        unknown = set(self.history) - set(PAIR_HIST_COLUMNS)
        if unknown:
            raise ValueError(f"history columns must be among {PAIR_HIST_COLUMNS}, got {sorted(unknown)}")
        return list(self.history) + (implicit_columns(X, tuple(self.sources)) if self.implicit else [])

    def _with_hist(self, X: pd.DataFrame) -> pd.DataFrame:
        if all(c in X for c in HIST_COLUMNS):
            return X
        return pd.concat([X, history_features(X)], axis=1)

    def fit(self, X: pd.DataFrame, y: Any, **fit_params: Any) -> "PersonalizedModel":
        return super().fit(self._with_hist(X), y, **fit_params)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return super().decision_function(self._with_hist(X))
