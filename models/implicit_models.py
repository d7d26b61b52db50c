"""Implicit-feedback reward models on signal features (gaze / pointer behaviour of the turn).

``ImplicitModel(kind=...)`` with ``kind`` one of ``"logistic"`` (Bradley–Terry logistic on the
antisymmetric left-minus-right columns, nested-CV C), ``"gbm"`` (histogram gradient boosting, shallow
and regularised) or ``"forest"`` (random forest, the IFLLM anchor's model). The tree models are
trained on every pair and its mirror image (antisymmetric columns negated) and average the two
orientations at prediction time, so they have no position bias either.
Same interface as the text models: ``fit(X, y)``, ``predict_proba(X)[:, 1] = P(left preferred)``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from .. import UserError
from .implicit_features import implicit_columns, is_pairwise, swap_implicit
from .text_models import DEFAULT_CS, _groups, choose_c, fit_bt


def _cols(X: pd.DataFrame, columns: Sequence[str] | None, sources: Sequence[str], symmetric: bool) -> list[str]:
    return list(columns) if columns is not None else implicit_columns(X, tuple(sources), symmetric=symmetric)


def _any_pairwise(columns: Sequence[str]) -> bool:
    """Whether ``columns`` hold a left-minus-right measure (the symmetric context columns alone
    cannot tell the sides apart)."""
    return any(is_pairwise(c) for c in columns)


def has_features(model: Any, X: pd.DataFrame) -> bool:
    """Whether ``X`` has a left-minus-right column an (unfitted) implicit model would read."""
    return _any_pairwise(_cols(X, model.columns, model.sources, symmetric=model.kind != "logistic"))


class ImplicitModel(ClassifierMixin, BaseEstimator):
    def __init__(self, kind: str = "logistic", columns: Sequence[str] | None = None,
                 sources: Sequence[str] = ("gaze", "mouse"), C: float | None = None, Cs: Sequence[float] = DEFAULT_CS,
                 random_state: int = 0):
        self.kind = kind
        self.columns = columns
        self.sources = sources
        self.C = C
        self.Cs = Cs
        self.random_state = random_state

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return np.nan_to_num(X.reindex(columns=self.columns_).to_numpy(dtype=float))

    def fit(self, X: pd.DataFrame, y: Any, **_: Any) -> "ImplicitModel":
        y = np.asarray(y, dtype=int)
        self.columns_ = _cols(X, self.columns, self.sources, symmetric=self.kind != "logistic")
        if not _any_pairwise(self.columns_):
            raise UserError(f"no implicit feature columns of {'/'.join(self.sources)} in the data "
                            "(a recording without gaze or pointer trajectories?)")
        self.classes_ = np.array([0, 1])
        if self.kind == "logistic":
            D = self._matrix(X)
            self.C_ = float(self.C) if self.C is not None else choose_c(D, y, _groups(X), tuple(self.Cs))
            self.scaler_, self.lr_ = fit_bt(D, y, self.C_)
            return self
        A = np.vstack([self._matrix(X), self._matrix(swap_implicit(X[self.columns_]))])
        ya = np.r_[y, 1 - y]
        if self.kind == "gbm":
            from sklearn.ensemble import HistGradientBoostingClassifier

            self.est_ = HistGradientBoostingClassifier(max_depth=2, learning_rate=0.05, max_iter=150,
                                                       min_samples_leaf=40, l2_regularization=1.0,
                                                       random_state=self.random_state).fit(A, ya)
        elif self.kind == "forest":
            from sklearn.ensemble import RandomForestClassifier

            self.est_ = RandomForestClassifier(n_estimators=300, min_samples_leaf=10, max_features="sqrt",
                                               n_jobs=1, random_state=self.random_state).fit(A, ya)
        else:
            raise ValueError(f"unknown kind {self.kind!r}; expected logistic, gbm or forest")
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.kind == "logistic":
            p = 1.0 / (1.0 + np.exp(-self.lr_.decision_function(self.scaler_.transform(self._matrix(X)))))
        else:
            p1 = self.est_.predict_proba(self._matrix(X))[:, 1]
            p2 = self.est_.predict_proba(self._matrix(swap_implicit(X[self.columns_])))[:, 1]
            p = 0.5 * (p1 + 1 - p2)
        return np.column_stack([1 - p, p])

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        p = np.clip(self.predict_proba(X)[:, 1], 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)
