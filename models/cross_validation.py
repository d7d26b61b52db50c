"""Cross-validation of the reward models and train/test runs.

**Default protocol**: K-fold cross-validation *grouped by worker* (no worker is ever in both the
training and the test part of a fold), repeated over seeds (different fold assignments); for each
seed the out-of-fold predictions of all comparisons give accuracy, ROC AUC, log-loss and expected
calibration error (:mod:`gazepref.models.metrics`); the report gives mean ± std over seeds.
Hyper-parameters (the L2 strength of every logistic head) are chosen by an inner CV grouped by
worker inside each training part (nested CV). Pointwise (Likert) models are trained on the ratings
of the training workers only.

``protocol="random"`` reproduces the IFLLM anchor's plain random K-fold (workers shared between
training and test) for comparison. :func:`train_test` trains on one recording and tests on another.

The **gain** of the fused model over the best text-only model (length rule included) has a 95 %
worker-level bootstrap CI (:func:`gazepref.models.metrics.bootstrap_gain`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold

from .. import UserError
from .fusion import LateFusion, PointwiseFusion
from .metrics import bootstrap_gain, metrics
from .model_registry import default_models, primary
from .personalized import PersonalizedModel, model_rule_accuracy
from .reward_data import RewardData
from .text_models import OrdinalLikert


def n_folds(data: RewardData, protocol: str, folds: int) -> int:
    """The folds that run: grouped by participant, no more than there are participants (more would
    leave folds empty; as many is leave-one-participant-out). Fewer than 2 participants: UserError."""
    if protocol != "group":
        return folds
    k = min(folds, len(np.unique(data.groups)))
    if k < 2:
        raise UserError(f"CV grouped by participant needs labelled comparisons of at least 2 participants (got {k})")
    return k


def splits(data: RewardData, protocol: str, folds: int, seed: int):
    n = len(data.y)
    if protocol == "group":
        k = n_folds(data, protocol, folds)
        return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), groups=data.groups))
    if protocol == "random":
        return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(n)))
    raise ValueError(f"unknown protocol {protocol!r}; expected 'group' or 'random'")


def distinct_seeds(data: RewardData, protocol: str, folds: int, seeds: Sequence[int]) -> dict[int, int]:
    """For each seed, the first seed of ``seeds`` whose folds are the same partition of the
    comparisons (the fold order aside). Leave-one-worker-out (grouped folds = workers) gives every
    seed the same folds, so repeating it only costs time."""
    first: dict[frozenset, int] = {}
    same: dict[int, int] = {}
    for s in seeds:
        key = frozenset(frozenset(te.tolist()) for _, te in splits(data, protocol, folds, s))
        same[s] = first.setdefault(key, s)
    return same


def fit_model(model: Any, X: pd.DataFrame, y: np.ndarray, ratings: pd.DataFrame | None = None,
              exclude_turns: set[str] = frozenset()) -> Any:
    """Fit with the Likert ratings the model may use (training workers only)."""
    fp = {}
    if isinstance(model, (OrdinalLikert, LateFusion, PersonalizedModel)) and ratings is not None:
        r = ratings[ratings["worker"].isin(set(X["worker"])) & ~ratings["turn_id"].isin(exclude_turns)]
        fp = {"ratings": r}
    if isinstance(model, (LateFusion, PersonalizedModel)) and not _needs_ratings(model):
        fp = {}
    return model.fit(X, y, **fp)


def _needs_ratings(model: Any) -> bool:
    if isinstance(model, OrdinalLikert):
        return True
    tm = getattr(model, "text_model", None)
    return isinstance(tm, OrdinalLikert) or (tm is None and isinstance(model, PointwiseFusion))


def cross_val_predict(factory: Callable[[], Any], data: RewardData, protocol: str = "group", folds: int = 5,
                      seed: int = 0) -> np.ndarray:
    """Out-of-fold P(left preferred) for every comparison."""
    p = np.full(len(data.y), np.nan)
    for tr, te in splits(data, protocol, folds, seed):
        Xtr = data.X.iloc[tr]
        test_turns = set(data.X["turn_id"].iloc[te])
        m = fit_model(factory(), Xtr, data.y[tr], data.ratings, test_turns)
        p[te] = m.predict_proba(data.X.iloc[te])[:, 1]
    return p


def evaluate(data: RewardData, models: dict[str, tuple[str, Callable[[], Any]]] | None = None,
             protocol: str = "group", folds: int = 5, seeds: Sequence[int] = (0, 1, 2, 3, 4),
             progress: bool = False, n_boot: int = 2000) -> dict[str, Any]:
    """Cross-validated report: per model mean ± std over seeds, the four tracks, the gain CI.

    Seeds whose folds are those of an earlier seed (every seed under leave-one-worker-out) are
    not run again: they get that seed's predictions, which running them would give, so the
    figures are the same; ``seeds_run`` says how many distinct seeds were run."""
    models = models or default_models(text_feedback=any(c.startswith("tf_") for c in data.X.columns))
    same = distinct_seeds(data, protocol, folds, seeds)
    run = list(dict.fromkeys(same.values()))
    jobs = [(name, s) for name in models for s in run]
    if progress:
        from gazepref.progress import progress as bar

        jobs = bar(jobs, total=len(jobs), desc=f"{protocol} CV")
    by_seed: dict[str, dict[int, np.ndarray]] = {name: {} for name in models}
    for name, s in jobs:
        by_seed[name][s] = cross_val_predict(models[name][1], data, protocol, folds, s)
    oof = {name: [by_seed[name][same[s]] for s in seeds] for name in models}
    y = data.y
    per_model: dict[str, Any] = {}
    for name, ps in oof.items():
        ms = [metrics(y, p) for p in ps]
        row: dict[str, Any] = {"track": models[name][0], "n": int(len(y)), "seeds": len(ps)}
        for k in ("accuracy", "auc", "log_loss", "ece"):
            v = np.array([m[k] for m in ms])
            row[k] = float(np.nanmean(v))
            row[f"{k}_std"] = float(np.nanstd(v))
        row["accuracy_seed_avg"] = metrics(y, np.mean(ps, axis=0))["accuracy"]
        per_model[name] = row
    avg = {name: np.mean(ps, axis=0) for name, ps in oof.items()}
    k = n_folds(data, protocol, folds)
    report: dict[str, Any] = {"protocol": protocol, "folds": k, "seeds": list(seeds), "seeds_run": len(run),
                              "n": int(len(y)), "participants": int(len(np.unique(data.groups))), "models": per_model}
    if k != folds:  # grouped, more folds asked than there are workers
        report["folds_asked"] = folds
    for track, name in primary(models).items():
        report[track] = {"model": name, **{k: per_model[name][k] for k in per_model[name] if k != "track"}}
    text_names = [n for n, (t, _) in models.items() if t == "text"]
    if text_names and "fused" in report:
        best_text = max(text_names, key=lambda n: per_model[n]["accuracy"])
        fused = report["fused"]["model"]
        report["gain_fused_vs_best_text"] = {"fused": fused, "best_text": best_text,
                                             **bootstrap_gain(y, avg[fused], avg[best_text], data.groups, n_boot)}
    if text_names and "personalized" in report:
        best_text = max(text_names, key=lambda n: per_model[n]["accuracy"])
        pers = report["personalized"]["model"]
        report["gain_personalized_vs_best_text"] = {"personalized": pers, "best_text": best_text,
                                                    **bootstrap_gain(y, avg[pers], avg[best_text], data.groups, n_boot)}
    if "personalized" in report:
        report["personalized"]["model_rule"] = model_rule_accuracy(data.X)
    return report


def held_out_test(train: RewardData, test: RewardData) -> tuple[RewardData, list[str]]:
    """The test data without the workers that are also in the training data, and those workers.

    A train/test report must hold out whole workers; when the test recording also holds training
    workers (e.g. the full release against a subset of it), their comparisons are left out of the
    test, not refused. Raises ``ValueError`` when no test worker is left."""
    shared = sorted(set(map(str, train.groups)) & set(map(str, test.groups)))
    if not shared:
        return test, []
    keep = ~np.isin(test.groups.astype(str), shared)
    if not keep.any():
        raise ValueError("every participant of the test data is also in the training data; "
                         "the test must hold out whole participants")
    return test.subset(np.flatnonzero(keep)), shared


def train_test(train: RewardData, test: RewardData, models: dict[str, tuple[str, Callable[[], Any]]] | None = None,
               progress: bool = False, n_boot: int = 2000) -> dict[str, Any]:
    """Train on one data set (its workers), test on another."""
    models = models or default_models(text_feedback=any(c.startswith("tf_") for c in train.X.columns))
    items = list(models.items())
    if progress:
        from gazepref.progress import progress as bar

        items = bar(items, total=len(items), desc="train/test")
    per_model, preds = {}, {}
    for name, (track, factory) in items:
        m = fit_model(factory(), train.X, train.y, train.ratings)
        p = m.predict_proba(test.X)[:, 1]
        preds[name] = p
        per_model[name] = {"track": track, **metrics(test.y, p)}
    report: dict[str, Any] = {"protocol": "train_test", "n_train": int(len(train.y)), "n": int(len(test.y)),
                              "participants_test": int(len(np.unique(test.groups))), "models": per_model}
    for track, name in primary(models).items():
        report[track] = {"model": name, **{k: v for k, v in per_model[name].items() if k != "track"}}
    text_names = [n for n, (t, _) in models.items() if t == "text"]
    if text_names and "fused" in report:
        best_text = max(text_names, key=lambda n: per_model[n]["accuracy"])
        report["gain_fused_vs_best_text"] = {"fused": report["fused"]["model"], "best_text": best_text,
                                             **bootstrap_gain(test.y, preds[report["fused"]["model"]], preds[best_text],
                                                              test.groups, n_boot)}
    if "personalized" in report:
        report["personalized"]["model_rule"] = model_rule_accuracy(test.X)
    return report
