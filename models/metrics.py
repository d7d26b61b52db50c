"""Metrics of pairwise predictions: accuracy (a tie earns half), ROC AUC, log-loss, expected
calibration error, and the worker-bootstrap CI of an accuracy gain."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score


def correct(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """1 where P(left) picks the preferred side, 0 where it picks the other, 0.5 for a tie (p = 0.5:
    no prediction, half credit, as a coin flip would earn)."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    return np.where(p == 0.5, 0.5, ((p > 0.5) == (y == 1)).astype(float))


def binned_ece(conf: np.ndarray, correct_: np.ndarray, low: float = 0.5, bins: int = 10) -> float:
    """Expected calibration error: Σ_bins (n_bin / n) · |accuracy − mean confidence| over
    ``bins`` equal-width bins of the confidence between ``low`` and 1."""
    conf, correct_ = np.asarray(conf, dtype=float), np.asarray(correct_, dtype=float)
    edges = np.linspace(low, 1.0, bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    tot = 0.0
    for k in range(bins):
        m = b == k
        if m.any():
            tot += m.mean() * abs(correct_[m].mean() - conf[m].mean())
    return float(tot)


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the predicted winner: bins of max(p, 1-p)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    return binned_ece(np.maximum(p, 1 - p), correct(y, p), 0.5, bins)


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype=int), np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    out = {"accuracy": float(correct(y, p).mean()) if len(y) else float("nan"), "n": int(len(y))}
    out["auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    out["log_loss"] = float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan")
    out["ece"] = ece(y, p)
    return out


def bootstrap_gain(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, groups: np.ndarray, n_boot: int = 2000,
                   seed: int = 0) -> dict[str, float]:
    """Accuracy of ``a`` minus ``b`` with a 95 % CI from resampling participants (``groups``) with
    replacement; ``n_participants`` counts them. Under two participants there is nothing to
    resample (every resample is the one participant: a zero-width "CI" and ``p_gain_le_0`` 0 or 1),
    so ``ci_low``, ``ci_high`` and ``p_gain_le_0`` are NaN (``null`` in JSON)."""
    ca, cb = correct(y, p_a), correct(y, p_b)
    ws, inv = np.unique(groups, return_inverse=True)
    if len(ws) < 2:
        return {"gain": float(ca.mean() - cb.mean()) if len(ca) else float("nan"), "ci_low": float("nan"),
                "ci_high": float("nan"), "p_gain_le_0": float("nan"), "n_participants": int(len(ws))}
    sa = np.bincount(inv, weights=ca, minlength=len(ws))
    sb = np.bincount(inv, weights=cb, minlength=len(ws))
    cnt = np.bincount(inv, minlength=len(ws)).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ws), size=(n_boot, len(ws)))
    g = (sa[idx].sum(1) - sb[idx].sum(1)) / cnt[idx].sum(1)
    return {"gain": float(ca.mean() - cb.mean()), "ci_low": float(np.percentile(g, 2.5)),
            "ci_high": float(np.percentile(g, 97.5)), "p_gain_le_0": float((g <= 0).mean()), "n_participants": int(len(ws))}
