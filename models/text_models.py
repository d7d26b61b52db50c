"""Text reward models: query + response text only.

All pairwise models follow one convention (see :mod:`gazepref.models.comparisons`): ``fit(X, y)``
with ``X`` a comparison frame (``prompt``, ``text_0``, ``text_1``, ``worker``, ...) and ``y = 1``
when the left response was preferred; ``predict_proba(X)[:, 1] = P(left preferred)``;
``decision_function(X)`` its log-odds.

* :class:`LengthRule` — the longer response wins (log length difference, scale fitted).
* :class:`StructureBT` — Bradley–Terry on length/structure features.
* :class:`TfidfBT` — TF-IDF of the responses (+ structure) in a Bradley–Terry model.
* :class:`EmbeddingBT` — MiniLM sentence embeddings (+ prompt similarity, structure) with a trained
  logistic head.
* :class:`OrdinalLikert` — pointwise: cumulative binary heads ``P(likert > k)``, k = 1..4, on the
  response's embedding and structure (as WildReward does), trained on Likert *targets*; its expected
  rating is the response's reward, and a pair is scored by the difference.

**Bradley–Terry** here means a linear utility ``u(response) = w·f(prompt, response)`` and
``P(left) = σ(u(left) − u(right))``: a logistic regression without intercept on left-minus-right
features, trained on each pair and its mirror image, so the model is exactly antisymmetric (no
position bias). The L2 strength ``C`` is chosen by inner cross-validation grouped by worker (nested
CV: the outer evaluation never sees it), from a small grid.

The fits are exact Newton solves of that objective: in feature space for few features, and for
many (TF-IDF, embeddings) in the space of the training pairs (the weights are a combination of
the rows, so an n×n system replaces a d×d one), with the pairs' Gram matrix computed once per
inner split for the whole grid (:func:`choose_c`). sklearn's L-BFGS fits it instead when there are
more than 64 features and at least as many pairs as features, or more than 2,000 pairs (``minilm_bt``'s
398 features on 537 training pairs: its C search's inner splits are Newton solves in the pairs' span,
its final fit L-BFGS).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.preprocessing import StandardScaler

from . import text_features as tf

DEFAULT_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # L2 grid of the nested CV


def _groups(X: pd.DataFrame) -> np.ndarray | None:
    return X["worker"].to_numpy() if isinstance(X, pd.DataFrame) and "worker" in X else None


def inner_splits(n: int, groups: np.ndarray | None, folds: int = 3, seed: int = 0):
    """Inner CV splits: grouped by worker when there are enough workers."""
    if groups is not None and len(np.unique(groups)) >= folds:
        return list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(n), groups=groups))
    return list(KFold(n_splits=min(folds, max(2, n // 2)), shuffle=True, random_state=seed).split(np.zeros(n)))


class _NewtonLR:
    """L2-regularised logistic regression (sklearn's objective: C·Σ log-loss + ½‖w‖², the
    intercept, with ``fit_intercept``, unpenalised), solved by Newton's method — fast for the
    feature counts here (up to a few hundred); a step that would go uphill is halved."""

    def __init__(self, C: float, fit_intercept: bool = False):
        self.C = C
        self.fit_intercept = fit_intercept

    def fit(self, A: np.ndarray, y: np.ndarray) -> "_NewtonLR":
        if self.fit_intercept:
            A = np.hstack([A, np.ones((len(A), 1))])
        pen = np.ones(A.shape[1])
        pen[-1] = 0.0 if self.fit_intercept else 1.0
        w = np.zeros(A.shape[1])
        yf = y.astype(float)

        def objective(z: np.ndarray, w: np.ndarray) -> float:
            return float(self.C * np.sum(np.logaddexp(0.0, z) - yf * z) + 0.5 * (pen * w) @ w)

        z = A @ w
        f = objective(z, w)
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-z))
            g = self.C * (A.T @ (p - yf)) + pen * w
            H = self.C * (A.T * (p * (1 - p))) @ A + np.diag(pen)
            step = np.linalg.solve(H, g)
            for _ in range(30):
                z_new = A @ (w - step)
                f_new = objective(z_new, w - step)
                if f_new <= f + 1e-12 * abs(f) or np.max(np.abs(step)) < 1e-8:
                    break
                step = step / 2
            w, z, f = w - step, z_new, f_new
            if np.max(np.abs(step)) < 1e-8:
                break
        self.coef_ = w[None, :-1] if self.fit_intercept else w[None, :]
        self.intercept_ = np.array([w[-1] if self.fit_intercept else 0.0])
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, A: np.ndarray) -> np.ndarray:
        z = A @ self.coef_[0]
        return z + self.intercept_[0] if getattr(self, "fit_intercept", False) else z  # (older pickles: none)

    def predict_proba(self, A: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(A)))
        return np.column_stack([1 - p, p])


class _PairSpanLR(_NewtonLR):
    """The objective of :class:`_NewtonLR` on the pairs and their mirror images, solved by Newton's
    method in the span of the pairs' scaled rows ``B`` (n pairs × d features, d > n): ``w = Bᵀα``.

    A mirror image (−b, 1 − y) has the log-loss of (b, y), so the objective is
    2C·Σ_pairs log-loss + ½‖w‖²; with the Gram matrix ``K = BBᵀ`` the Newton step of ``w`` is
    ``Bᵀ`` times ``(I + 2C·W K)⁻¹ (2C(p − y) + α)`` (W: the logistic variances), the same step
    as in feature space (so the same optimum), at O(n³) instead of O(d³); step halving keeps
    each step downhill. ``K`` does not depend on C: :meth:`fit_gram` reuses it along a grid."""

    def fit(self, B: np.ndarray, y: np.ndarray) -> "_PairSpanLR":
        return self.fit_gram(B, B @ B.T, y)

    def fit_gram(self, B: np.ndarray, K: np.ndarray, y: np.ndarray, alpha: np.ndarray | None = None) -> "_PairSpanLR":
        c, yf, n = 2.0 * self.C, np.asarray(y, dtype=float), len(y)
        a = np.zeros(n) if alpha is None else alpha.copy()

        def objective(z: np.ndarray, a: np.ndarray) -> float:
            return float(c * np.sum(np.logaddexp(0.0, z) - yf * z) + 0.5 * a @ z)

        z = K @ a
        f = objective(z, a)
        for _ in range(100):
            p = 1.0 / (1.0 + np.exp(-z))
            step = np.linalg.solve(np.eye(n) + (c * p * (1 - p))[:, None] * K, c * (p - yf) + a)
            dz, t = K @ step, 1.0
            for _ in range(30):
                f_new = objective(z - t * dz, a - t * step)
                if f_new <= f + 1e-12 * abs(f):
                    break
                t /= 2
            a, z, f = a - t * step, z - t * dz, f_new
            if t * np.max(np.abs(B.T @ step)) < 1e-8:
                break
        self.alpha_ = a
        self.coef_ = (B.T @ a)[None, :]
        self.classes_ = np.array([0, 1])
        return self


#: the Likert heads of :class:`OrdinalLikert` (with an intercept) are Newton solves up to this many
#: features (the embedding and structure features: ~400), sklearn's L-BFGS beyond
NEWTON_MAX_FEATURES = 1024

#: a fit of more features than pairs solves in the pairs' span (:class:`_PairSpanLR`) up to this
#: many pairs; beyond (and more features than this too) sklearn's L-BFGS fits it
PAIR_SPAN_MAX = 2000


def _bt_scaled(D: np.ndarray) -> tuple[StandardScaler, np.ndarray]:
    """The scaler of the pairs and their mirror images (unit RMS per feature) and the scaled pairs."""
    sc = StandardScaler(with_mean=False).fit(np.vstack([D, -D]))
    return sc, sc.transform(D)


def _bt_solver(n: int, d: int) -> str:
    return "newton" if d <= 64 else "pair_span" if n < d and n <= PAIR_SPAN_MAX else "lbfgs"


def fit_bt(D: np.ndarray, y: np.ndarray, C: float) -> tuple[StandardScaler, Any]:
    """Antisymmetric logistic regression on left-minus-right features ``D``."""
    return bt_path(D, y, (C,))[0]


def bt_path(D: np.ndarray, y: np.ndarray, Cs: Sequence[float]) -> list[tuple[StandardScaler, Any]]:
    """:func:`fit_bt` for each C of ``Cs`` (one scaler; with many features one Gram matrix, each
    solve starting from the previous C's). On one BLAS thread: the solves are small (up to a few
    hundred rows), where threads only contend (2-3x the time on a busy 2-core machine)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _bt_path(D, y, Cs)


def _bt_path(D: np.ndarray, y: np.ndarray, Cs: Sequence[float]) -> list[tuple[StandardScaler, Any]]:
    y = np.asarray(y, dtype=int)
    solver = _bt_solver(*D.shape)
    if solver == "pair_span":
        sc, B = _bt_scaled(D)
        K, out, alpha = B @ B.T, [], None
        for C in Cs:
            lr = _PairSpanLR(C).fit_gram(B, K, y, alpha)
            out.append((sc, lr))
            alpha = lr.alpha_
        return out
    A = np.vstack([D, -D])
    ya = np.r_[y, 1 - y]
    sc = StandardScaler(with_mean=False).fit(A)
    As = sc.transform(A)
    if solver == "newton":
        return [(sc, _NewtonLR(C).fit(As, ya)) for C in Cs]
    return [(sc, LogisticRegression(C=C, fit_intercept=False, max_iter=2000).fit(As, ya)) for C in Cs]


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def choose_c(D: np.ndarray, y: np.ndarray, groups: np.ndarray | None, Cs: Sequence[float],
             folds: int = 3, seed: int = 0) -> float:
    """The C of ``Cs`` with the best inner-CV log-loss (grouped by worker)."""
    if len(Cs) == 1 or len(y) < 20:
        return float(Cs[len(Cs) // 2])
    y = np.asarray(y, dtype=int)
    splits = [(tr, te) for tr, te in inner_splits(len(y), groups, folds, seed) if len(np.unique(y[tr])) == 2]
    losses = np.array([[_log_loss(y[te], lr.predict_proba(sc.transform(D[te]))[:, 1])
                        for sc, lr in bt_path(D[tr], y[tr], Cs)] for tr, te in splits]).reshape(len(splits), len(Cs))
    best, best_loss = Cs[0], np.inf
    for C, loss in zip(Cs, losses.mean(0) if len(splits) else np.full(len(Cs), np.inf)):
        if loss < best_loss - 1e-9:
            best, best_loss = C, loss
    return float(best)


class PairwiseBT(ClassifierMixin, BaseEstimator):
    """Base: Bradley–Terry logistic head on the left-minus-right features of ``_features``."""

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS):
        self.C = C
        self.Cs = Cs

    # subclasses: learn transforms in _fit_features (training data only), apply in _features
    def _fit_features(self, X: pd.DataFrame) -> np.ndarray:
        return self._features(X)

    def _features(self, X: pd.DataFrame) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y: Any, **_: Any) -> "PairwiseBT":
        y = np.asarray(y, dtype=int)
        D = np.nan_to_num(self._fit_features(X))
        self.C_ = float(self.C) if self.C is not None else choose_c(D, y, _groups(X), tuple(self.Cs))
        self.scaler_, self.lr_ = fit_bt(D, y, self.C_)
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        D = np.nan_to_num(self._features(X))
        return self.lr_.decision_function(self.scaler_.transform(D))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)


class LengthRule(PairwiseBT):
    """The longer response (in characters) wins; only the logistic scale is fitted, and it is kept
    positive: where the training pairs favour the shorter response, the rule still picks the longer
    one, with a probability near 0.5 (the scale at :data:`MIN_SCALE`), instead of turning into
    "shorter wins" (a fitted slope of free sign scored 27.8 % where the rule scores 72.2 %, trained
    on a simulated study and tested on the IFLLM sample): it is the untrained baseline that the
    reports and the gain over the best text model compare against."""

    #: the least scale (of the standardised log-length difference) a fit keeps
    MIN_SCALE = 1e-6

    def __init__(self, C: float | None = 1.0, Cs: Sequence[float] = (1.0,)):
        super().__init__(C=C, Cs=Cs)

    def fit(self, X: pd.DataFrame, y: Any, **kw: Any) -> "LengthRule":
        super().fit(X, y, **kw)
        self.lr_.coef_ = np.maximum(self.lr_.coef_, self.MIN_SCALE)
        return self

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        a = np.log1p(X["text_0"].str.len().to_numpy(dtype=float))
        b = np.log1p(X["text_1"].str.len().to_numpy(dtype=float))
        return (a - b)[:, None]


class StructureBT(PairwiseBT):
    """Length and markdown-structure features (:data:`text_features.STRUCTURE_FEATURES`)."""

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        return tf.pair_structure(X)


class TfidfBT(PairwiseBT):
    """TF-IDF of each response (fitted on the training responses), left minus right, with the
    structure features."""

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, max_features: int = 5000,
                 structure: bool = True):
        super().__init__(C=C, Cs=Cs)
        self.max_features = max_features
        self.structure = structure

    def _fit_features(self, X: pd.DataFrame) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vec_ = TfidfVectorizer(max_features=self.max_features, sublinear_tf=True, min_df=2,
                                    ngram_range=(1, 2), dtype=np.float64)
        self.vec_.fit(pd.concat([X["text_0"], X["text_1"]]).tolist())
        return self._features(X)

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        d = (self.vec_.transform(X["text_0"].tolist()) - self.vec_.transform(X["text_1"].tolist())).toarray()
        return np.hstack([d, tf.pair_structure(X)]) if self.structure else d


class EmbeddingBT(PairwiseBT):
    """MiniLM response embeddings (+ cosine to the prompt, + structure) → logistic head."""

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, structure: bool = True):
        super().__init__(C=C, Cs=Cs)
        self.structure = structure

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        e = tf.pair_embedding_features(X)
        return np.hstack([e, tf.pair_structure(X)]) if self.structure else e


class OrdinalLikert(ClassifierMixin, BaseEstimator):
    """Pointwise ordinal regression on Likert ratings with cumulative binary heads.

    ``fit(X, y, ratings=R)``: ``R`` has ``prompt``, ``text``, ``likert`` (1–5) — the rated responses
    of the *training* workers (Likert is a target here, never an input). Head k estimates
    ``P(likert > k)``; the reward of a response is ``1 + Σ_k P(likert > k)`` (expected rating, made
    monotone). Pairs: ``P(left) = σ(a · (r_left − r_right))`` with ``a`` fitted on the training pairs.
    """

    def __init__(self, C: float = 0.1, embedding: bool = True):
        self.C = C
        self.embedding = embedding

    def _resp(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        s = tf.structure_features(prompts, texts)
        return np.hstack([tf.response_embedding_features(prompts, texts), s]) if self.embedding else s

    def fit(self, X: pd.DataFrame, y: Any, ratings: pd.DataFrame | None = None, **_: Any) -> "OrdinalLikert":
        if ratings is None or len(ratings) == 0:
            raise ValueError("OrdinalLikert needs the training responses' Likert ratings (ratings=...)")
        F = self._resp(ratings["prompt"].tolist(), ratings["text"].tolist())
        self.scaler_ = StandardScaler().fit(F)
        Fs = self.scaler_.transform(F)
        lik = ratings["likert"].to_numpy(dtype=int)
        self.heads_ = []
        from threadpoolctl import threadpool_limits

        for k in (1, 2, 3, 4):
            t = (lik > k).astype(int)
            if t.min() == t.max():
                self.heads_.append(float(t[0]))
                continue
            with threadpool_limits(1):  # small Newton solves: BLAS threads only contend (as bt_path)
                self.heads_.append(_NewtonLR(self.C, fit_intercept=True).fit(Fs, t) if Fs.shape[1] <= NEWTON_MAX_FEATURES
                                   else LogisticRegression(C=self.C, max_iter=2000).fit(Fs, t))
        d = self.reward_pairs(X)
        y = np.asarray(y, dtype=int)
        self.a_ = float(LogisticRegression(C=10.0, fit_intercept=False).fit(np.r_[d, -d][:, None], np.r_[y, 1 - y]).coef_[0, 0]) \
            if len(np.unique(y)) == 2 else 1.0
        self.classes_ = np.array([0, 1])
        return self

    def reward(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        Fs = self.scaler_.transform(self._resp(prompts, texts))
        ps = np.column_stack([np.full(len(Fs), h) if isinstance(h, float) else h.predict_proba(Fs)[:, 1]
                              for h in self.heads_])
        ps = np.minimum.accumulate(ps, axis=1)  # P(>k) non-increasing in k
        return 1.0 + ps.sum(1)

    def reward_pairs(self, X: pd.DataFrame) -> np.ndarray:
        p = X["prompt"].tolist()
        return self.reward(p, X["text_0"].tolist()) - self.reward(p, X["text_1"].tolist())

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.a_ * self.reward_pairs(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)


TEXT_MODELS = {
    "length_rule": LengthRule,
    "structure_bt": StructureBT,
    "tfidf_bt": TfidfBT,
    "minilm_bt": EmbeddingBT,
    "ordinal_likert": OrdinalLikert,
}
