"""Fusion of text and implicit feedback.

* :class:`LateFusion` — stacking: the text model's log-odds (out-of-fold on the training set, by
  inner cross-validation grouped by worker, so the head sees honest text scores) next to the
  implicit features, into a Bradley–Terry logistic head (antisymmetric, nested-CV C) or a small
  gradient-boosting head. Pairwise.
* :class:`EarlyFusion` — one Bradley–Terry model on MiniLM embeddings ⊕ structure ⊕ implicit
  features (a single regularised head).
* :class:`PointwiseFusion` — pointwise: the ordinal Likert model's reward difference stacked with
  the implicit features.
* ``per_worker=True`` (any of them) — per-worker calibration of the implicit features: each value is
  divided by that worker's running RMS of the feature over their *earlier* turns only (people differ
  in how they read and move the pointer; causal, so no later turns leak in). ``per_worker="centre"``
  first subtracts the worker's running mean over earlier turns (shrunk towards 0): a person who
  always dwells more on one *side* (a reading habit, or a webcam calibration that is off to one
  side) no longer reads as preferring that side. See :func:`causal_worker_scale`. Centring makes
  the model position-aware: swapping one comparison's sides no longer gives exactly ``1 - p``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from .implicit_features import implicit_columns, swap_implicit
from .text_models import DEFAULT_CS, EmbeddingBT, OrdinalLikert, _groups, choose_c, fit_bt, inner_splits


def population_rms(X: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """RMS of each column over ``X`` (the training set's population scale)."""
    return np.sqrt(np.mean(np.nan_to_num(X.reindex(columns=list(columns)).to_numpy(dtype=float)) ** 2, axis=0)) + 1e-9


def causal_worker_scale(X: pd.DataFrame, columns: Sequence[str], glob: np.ndarray | None = None,
                        prior: float = 3.0, centre: bool = False) -> pd.DataFrame:
    """Divide each column by the worker's RMS over their *earlier* rows (order ``seq``), shrunk
    towards the population scale ``glob`` (fitted on the training set; default: :func:`population_rms`
    of ``X``) with ``prior`` pseudo-observations. ``centre``: subtract the worker's mean over their
    earlier rows first (``sum / (n + prior)``, i.e. shrunk towards 0)."""
    out = X.copy()
    if not columns or "worker" not in X or "seq" not in X:
        return out
    order = X.sort_values(["worker", "seq"], kind="stable").index
    V = np.nan_to_num(X.loc[order, list(columns)].to_numpy(dtype=float))
    w = X.loc[order, "worker"].to_numpy()
    glob = population_rms(X, columns) if glob is None else np.asarray(glob, dtype=float)
    S = np.empty_like(V)
    start = 0
    for i in range(1, len(w) + 1):
        if i == len(w) or w[i] != w[start]:
            n = np.arange(i - start)[:, None]
            if centre:
                before = np.vstack([np.zeros((1, V.shape[1])), np.cumsum(V[start:i], axis=0)[:-1]])
                V[start:i] -= before / (n + prior)
            blk = V[start:i] ** 2
            csum = np.vstack([np.zeros((1, V.shape[1])), np.cumsum(blk, axis=0)[:-1]])
            S[start:i] = np.sqrt((csum + prior * glob ** 2) / (n + prior))
            start = i
    scaled = pd.DataFrame(V / S, index=order, columns=list(columns)).reindex(out.index)
    for c in columns:
        out[c] = scaled[c].to_numpy(dtype=np.float64)
    return out


def restrict_fit_params(fit_params: dict, X_train: pd.DataFrame) -> dict:
    """Fit parameters for a model trained on ``X_train`` only: the Likert ``ratings`` are cut to the
    workers of ``X_train``."""
    out = dict(fit_params)
    r = out.get("ratings")
    if r is not None and "worker" in X_train:
        out["ratings"] = r[r["worker"].isin(set(X_train["worker"]))]
    return out


def _oof_text(model: Any, X: pd.DataFrame, y: np.ndarray, folds: int, fit_params: dict) -> np.ndarray:
    z = np.zeros(len(y))
    for tr, te in inner_splits(len(y), _groups(X), folds):
        m = clone(model).fit(X.iloc[tr], y[tr], **restrict_fit_params(fit_params, X.iloc[tr]))
        z[te] = m.decision_function(X.iloc[te])
    return z


class LateFusion(ClassifierMixin, BaseEstimator):
    """Stack the text score with implicit features."""

    def __init__(self, text_model: Any = None, columns: Sequence[str] | None = None,
                 sources: Sequence[str] = ("gaze", "mouse"), head: str = "logistic", C: float | None = None,
                 Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3, per_worker: bool | str = False):
        self.text_model = text_model
        self.columns = columns
        self.sources = sources
        self.head = head
        self.C = C
        self.Cs = Cs
        self.inner_folds = inner_folds
        self.per_worker = per_worker

    def _default_text_model(self) -> Any:
        return EmbeddingBT()

    def _select_columns(self, X: pd.DataFrame) -> list[str]:
        return list(self.columns) if self.columns is not None else implicit_columns(X, tuple(self.sources))

    def _implicit(self, X: pd.DataFrame) -> np.ndarray:
        if self.per_worker:
            X = causal_worker_scale(X, self.columns_, self.rms_, centre=self.per_worker == "centre")
        return np.nan_to_num(X.reindex(columns=self.columns_).to_numpy(dtype=float))

    def fit(self, X: pd.DataFrame, y: Any, **fit_params: Any) -> "LateFusion":
        y = np.asarray(y, dtype=int)
        self.columns_ = self._select_columns(X)
        self.rms_ = population_rms(X, self.columns_)
        tm = self.text_model if self.text_model is not None else self._default_text_model()
        z = _oof_text(tm, X, y, self.inner_folds, fit_params)
        self.text_ = clone(tm).fit(X, y, **fit_params)
        Z = np.column_stack([z, self._implicit(X)])
        if self.head == "logistic":
            self.C_ = float(self.C) if self.C is not None else choose_c(Z, y, _groups(X), tuple(self.Cs))
            self.scaler_, self.lr_ = fit_bt(Z, y, self.C_)
        elif self.head == "gbm":
            from sklearn.ensemble import HistGradientBoostingClassifier

            Zs = np.column_stack([-z, self._implicit(swap_implicit(X[self.columns_].assign(
                worker=X.get("worker"), seq=X.get("seq"))))[:, :len(self.columns_)]])
            self.est_ = HistGradientBoostingClassifier(max_depth=2, learning_rate=0.05, max_iter=150,
                                                       min_samples_leaf=40, l2_regularization=1.0,
                                                       random_state=0).fit(np.vstack([Z, Zs]), np.r_[y, 1 - y])
        else:
            raise ValueError(f"unknown head {self.head!r}")
        self.classes_ = np.array([0, 1])
        return self

    def text_score(self, X: pd.DataFrame) -> np.ndarray:
        return self.text_.decision_function(X)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        Z = np.column_stack([self.text_.decision_function(X), self._implicit(X)])
        if self.head == "logistic":
            return self.lr_.decision_function(self.scaler_.transform(Z))
        p = np.clip(self.est_.predict_proba(Z)[:, 1], 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)


class EarlyFusion(EmbeddingBT):
    """MiniLM embeddings ⊕ structure ⊕ implicit features, one Bradley–Terry head."""

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, structure: bool = True,
                 columns: Sequence[str] | None = None, sources: Sequence[str] = ("gaze", "mouse"),
                 per_worker: bool | str = False):
        super().__init__(C=C, Cs=Cs, structure=structure)
        self.columns = columns
        self.sources = sources
        self.per_worker = per_worker

    def _fit_features(self, X: pd.DataFrame) -> np.ndarray:
        self.columns_ = list(self.columns) if self.columns is not None else implicit_columns(X, tuple(self.sources))
        self.rms_ = population_rms(X, self.columns_)
        return self._features(X)

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        Xi = (causal_worker_scale(X, self.columns_, self.rms_, centre=self.per_worker == "centre")
              if self.per_worker else X)
        imp = np.nan_to_num(Xi.reindex(columns=self.columns_).to_numpy(dtype=float))
        return np.hstack([super()._features(X), imp])


class PointwiseFusion(LateFusion):
    """Late fusion around the pointwise ordinal Likert model."""

    def __init__(self, text_model: Any = None, columns: Sequence[str] | None = None,
                 sources: Sequence[str] = ("gaze", "mouse"), head: str = "logistic", C: float | None = None,
                 Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3, per_worker: bool | str = False):
        super().__init__(text_model=text_model, columns=columns, sources=sources, head=head, C=C, Cs=Cs,
                         inner_folds=inner_folds, per_worker=per_worker)

    def _default_text_model(self) -> Any:
        return OrdinalLikert()
