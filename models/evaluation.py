"""Evaluation protocol for the reward models.

**Default protocol**: K-fold cross-validation *grouped by worker* (no worker is ever in both the
training and the test part of a fold), repeated over seeds (different fold assignments); for each
seed the out-of-fold predictions of all comparisons give accuracy, ROC AUC, log-loss and expected
calibration error (ECE, 10 equal-width bins of the predicted winner's probability); the report gives
mean ± std over seeds. Hyper-parameters (the L2 strength of every logistic head) are chosen by an
inner CV grouped by worker inside each training part (nested CV). Pointwise (Likert) models are
trained on the ratings of the training workers only.

``protocol="random"`` reproduces the IFLLM anchor's plain random K-fold (workers shared between
training and test) for comparison. :func:`train_test` trains on one recording and tests on another.

The **gain** of the fused model over the best text-only model (length rule included) has a 95 %
worker-level bootstrap CI: workers are resampled with replacement and the accuracy difference of the
seed-averaged out-of-fold predictions recomputed.

Labels: ``y = 1`` when the left response was preferred (see :mod:`gazepref.models.comparisons`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, KFold

from .. import UserError
from . import comparisons as comp
from .fusion import EarlyFusion, LateFusion, PointwiseFusion
from .implicit_features import hits_features
from .implicit_models import ImplicitModel, has_features
from .personalized import PAIR_HIST_COLUMNS, PersonalizedModel, history_features, model_rule_accuracy
from .text_models import EmbeddingBT, LengthRule, OrdinalLikert, StructureBT, TfidfBT

FEATURES_VERSION = "1"


# --------------------------------------------------------------------------- data


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


@lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """A hash of the code the cached features come from (the readers, the signal processing, the
    feature code): after any change there the features are computed afresh."""
    import gazepref.datasets
    import gazepref.signals

    h = hashlib.sha1()
    roots = [Path(d) for m in (gazepref.datasets, gazepref.signals) for d in m.__path__]
    files = [f for r in roots for f in sorted(r.rglob("*.py"))]
    files += [Path(__file__).with_name(n) for n in ("implicit_features.py", "comparisons.py")]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_path(rec: Any, kind: str) -> Path | None:
    """Where the features of the recording ``rec`` are cached: keyed by its content
    (:func:`gazepref.datasets.sources.fingerprint`: every file's size and time for a folder; the
    turns, labels and stream chunks for a study in the database) and by :func:`_code_fingerprint`.
    None when the recording cannot say what it holds (an in-memory recording)."""
    from gazepref.datasets.sources import fingerprint

    fp = fingerprint(rec)
    if fp is None:
        return None
    h = hashlib.sha1(f"{fp}|{FEATURES_VERSION}|{kind}|{_code_fingerprint()}".encode()).hexdigest()[:16]
    from ..settings import cache_dir

    return cache_dir("reward", f"{kind}-{h}.parquet")


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
              features: str = "hits") -> RewardData:
    """Read a recording into :class:`RewardData` (implicit features cached on disk per recording).

    ``source``: a Recording, or what :func:`gazepref.datasets.sources.open_source` opens (a folder
    or a study slug in the located database).

    ``features``: ``"hits"`` (this package's in-box features, default), ``"signals"`` (the
    signal-processor's comparison table, :func:`gazepref.models.implicit_features.signals_features`)
    or ``"both"``."""
    from gazepref.datasets.sources import open_source

    rec = open_source(source)
    X = comp.comparison_frame(rec, labelled_only=labelled_only)
    ratings = comp.rated_responses(rec)
    if implicit and len(X):
        cp = _cache_path(rec, "implicit") if cache and labelled_only else None
        F = None
        if cp is not None and cp.exists():
            F = pd.read_parquet(cp)
            F = F.set_index("turn_id").reindex(X["turn_id"]).reset_index(drop=True) if "turn_id" in F else None
        if F is None:
            F = hits_features(rec, X, progress=progress)
            if cp is not None:
                cp.parent.mkdir(parents=True, exist_ok=True)
                F.assign(turn_id=X["turn_id"].values).to_parquet(cp)
        if features in ("signals", "both"):
            from .implicit_features import signals_features

            S = signals_features(rec, X, progress=progress)
            F = S if features == "signals" else pd.concat([F.set_index(X.index), S], axis=1)
        elif features != "hits":
            raise ValueError(f"unknown features {features!r}; expected hits, signals or both")
        X = pd.concat([X, F.set_index(X.index)], axis=1)
    X = pd.concat([X, history_features(X, ratings=ratings)], axis=1)
    if text_feedback and len(X):
        X = pd.concat([X, text_feedback_features(X)], axis=1)
    y = X["y"].to_numpy(dtype=float)
    return RewardData(X, np.nan_to_num(y).astype(int), ratings)


# --------------------------------------------------------------------------- metrics


def correct(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """1 where P(left) picks the preferred side, 0 where it picks the other, 0.5 for a tie (p = 0.5:
    no prediction, half credit, as a coin flip would earn)."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    return np.where(p == 0.5, 0.5, ((p > 0.5) == (y == 1)).astype(float))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the predicted winner: bins of max(p, 1-p)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    conf = np.maximum(p, 1 - p)
    correct_ = correct(y, p)
    edges = np.linspace(0.5, 1.0, bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    tot = 0.0
    for k in range(bins):
        m = b == k
        if m.any():
            tot += m.mean() * abs(correct_[m].mean() - conf[m].mean())
    return float(tot)


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y, p = np.asarray(y, dtype=int), np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    out = {"accuracy": float(correct(y, p).mean()) if len(y) else float("nan"), "n": int(len(y))}
    out["auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    out["log_loss"] = float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan")
    out["ece"] = ece(y, p)
    return out


# --------------------------------------------------------------------------- models


def default_models(text_feedback: bool = False) -> dict[str, tuple[str, Callable[[], Any]]]:
    """name → (track, factory). Tracks: text, implicit, fused, personalized, ablation."""
    m: dict[str, tuple[str, Callable[[], Any]]] = {
        "length_rule": ("text", LengthRule),
        "structure_bt": ("text", StructureBT),
        "tfidf_bt": ("text", TfidfBT),
        "minilm_bt": ("text", EmbeddingBT),
        "ordinal_likert": ("text", OrdinalLikert),
        "implicit_logistic": ("implicit", lambda: ImplicitModel("logistic")),
        "implicit_gbm": ("implicit", lambda: ImplicitModel("gbm")),
        "implicit_forest": ("implicit", lambda: ImplicitModel("forest")),
        "late_fusion": ("fused", lambda: LateFusion(StructureBT())),
        "late_fusion_worker_cal": ("fused", lambda: LateFusion(StructureBT(), per_worker=True)),
        "late_fusion_length_worker_cal": ("fused", lambda: LateFusion(LengthRule(), per_worker=True)),
        "late_fusion_centred": ("fused", lambda: LateFusion(StructureBT(), per_worker="centre")),
        "late_fusion_length_centred": ("fused", lambda: LateFusion(LengthRule(), per_worker="centre")),
        "late_fusion_minilm": ("fused", lambda: LateFusion(EmbeddingBT(), per_worker=True)),
        "late_fusion_gbm": ("fused", lambda: LateFusion(StructureBT(), head="gbm")),
        "early_fusion": ("fused", lambda: EarlyFusion(per_worker=True)),
        "pointwise_fusion": ("fused", lambda: PointwiseFusion(per_worker=True)),
        "personalized": ("personalized", lambda: PersonalizedModel(LengthRule())),
        "personalized_choices": ("personalized", lambda: PersonalizedModel(LengthRule(), history=("hist_d_task_side",))),
        "personalized_all_history": ("personalized", lambda: PersonalizedModel(LengthRule(), history=PAIR_HIST_COLUMNS)),
        "personalized_structure": ("personalized", lambda: PersonalizedModel(StructureBT())),
        "personalized_fused": ("personalized", lambda: PersonalizedModel(LengthRule(), implicit=True, per_worker=True)),
        "personalized_fused_centred": ("personalized", lambda: PersonalizedModel(LengthRule(), implicit=True,
                                                                                  per_worker="centre")),
        # ablations: which signal carries what
        "ablation_gaze": ("ablation", lambda: ImplicitModel("logistic", sources=("gaze",))),
        "ablation_mouse": ("ablation", lambda: ImplicitModel("logistic", sources=("mouse",))),
        "ablation_text+gaze": ("ablation", lambda: LateFusion(StructureBT(), sources=("gaze",), per_worker=True)),
        "ablation_text+mouse": ("ablation", lambda: LateFusion(StructureBT(), sources=("mouse",), per_worker=True)),
    }
    if text_feedback:
        m["ablation_text_feedback"] = ("ablation", lambda: ImplicitModel("logistic", sources=("tf",)))
        m["ablation_text+text_feedback"] = ("ablation", lambda: LateFusion(StructureBT(), sources=("tf",)))
        m["ablation_fused+text_feedback"] = ("ablation", lambda: LateFusion(StructureBT(), sources=("gaze", "mouse", "tf"),
                                                                           per_worker=True))
    return m


def applicable_models(models: dict[str, tuple[str, Callable[[], Any]]],
                      X: pd.DataFrame) -> dict[str, tuple[str, Callable[[], Any]]]:
    """``models`` without the implicit-only ones that would find none of their columns in ``X`` (a
    recording without gaze or pointer trajectories); the fused models then fall back to text."""
    out = {}
    for name, (track, factory) in models.items():
        m = factory()
        if isinstance(m, ImplicitModel) and not has_features(m, X):
            continue
        out[name] = (track, factory)
    return out


#: the model reported under each track's name in the JSON. ``text`` is the length rule, the strongest
#: text-only baseline here (so ``fused`` vs ``text`` is the honest comparison); the others are the
#: designs chosen for their track (per-worker calibrated late fusion; length + history)
PRIMARY = {"text": "length_rule", "implicit": "implicit_logistic", "fused": "late_fusion_worker_cal",
           "personalized": "personalized"}


def _primary(models: dict) -> dict[str, str]:
    """The model reported under each track: :data:`PRIMARY`, else the track's first model."""
    out = {}
    for track in ("text", "implicit", "fused", "personalized"):
        if PRIMARY[track] in models:
            out[track] = PRIMARY[track]
        else:
            names = [n for n, (t, _) in models.items() if t == track]
            if names:
                out[track] = names[0]
    return out


def splits(data: RewardData, protocol: str, folds: int, seed: int):
    n = len(data.y)
    if protocol == "group":
        k = min(folds, len(np.unique(data.groups)))
        if k < 2:
            raise UserError(f"CV grouped by worker needs comparisons of at least 2 workers (got {k})")
        return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), groups=data.groups))
    if protocol == "random":
        return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(n)))
    raise ValueError(f"unknown protocol {protocol!r}; expected 'group' or 'random'")


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


def bootstrap_gain(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, groups: np.ndarray, n_boot: int = 2000,
                   seed: int = 0) -> dict[str, float]:
    """Accuracy of ``a`` minus ``b`` with a 95 % CI from resampling workers with replacement."""
    ca, cb = correct(y, p_a), correct(y, p_b)
    ws, inv = np.unique(groups, return_inverse=True)
    sa = np.bincount(inv, weights=ca, minlength=len(ws))
    sb = np.bincount(inv, weights=cb, minlength=len(ws))
    cnt = np.bincount(inv, minlength=len(ws)).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ws), size=(n_boot, len(ws)))
    g = (sa[idx].sum(1) - sb[idx].sum(1)) / cnt[idx].sum(1)
    return {"gain": float(ca.mean() - cb.mean()), "ci_low": float(np.percentile(g, 2.5)),
            "ci_high": float(np.percentile(g, 97.5)), "p_gain_le_0": float((g <= 0).mean()), "n_workers": int(len(ws))}


def evaluate(data: RewardData, models: dict[str, tuple[str, Callable[[], Any]]] | None = None,
             protocol: str = "group", folds: int = 5, seeds: Sequence[int] = (0, 1, 2, 3, 4),
             progress: bool = False, n_boot: int = 2000) -> dict[str, Any]:
    """Cross-validated report: per model mean ± std over seeds, the four tracks, the gain CI."""
    models = models or default_models(text_feedback=any(c.startswith("tf_") for c in data.X.columns))
    jobs = [(name, s) for name in models for s in seeds]
    if progress:
        from gazepref.progress import progress as bar

        jobs = bar(jobs, total=len(jobs), desc=f"{protocol} CV")
    oof: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for name, s in jobs:
        oof[name].append(cross_val_predict(models[name][1], data, protocol, folds, s))
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
    report: dict[str, Any] = {"protocol": protocol, "folds": folds, "seeds": list(seeds), "n": int(len(y)),
                              "workers": int(len(np.unique(data.groups))), "models": per_model}
    for track, name in _primary(models).items():
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
        raise ValueError("every worker of the test data is also in the training data; "
                         "the test must hold out whole workers")
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
                              "workers_test": int(len(np.unique(test.groups))), "models": per_model}
    for track, name in _primary(models).items():
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


# --------------------------------------------------------------------------- Markdown


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Protocol: **{report['protocol']}**"
             + (f", {report.get('folds')} folds × {len(report.get('seeds', []))} seeds" if report.get("seeds") else "")
             + f"; n = {report['n']} comparisons", "",
             "| model | track | accuracy | AUC | log-loss | ECE |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in report["models"].items():
        def f(k: str, pct: bool = False) -> str:
            v = r.get(k, float("nan"))
            s = r.get(f"{k}_std")
            if pct:
                return f"{100 * v:.1f}" + (f" ± {100 * s:.1f}" if s is not None else "")
            return f"{v:.3f}" + (f" ± {s:.3f}" if s is not None else "")
        lines.append(f"| {name} | {r['track']} | {f('accuracy', True)} | {f('auc')} | {f('log_loss')} | {f('ece')} |")
    for track in ("fused", "personalized"):
        g = report.get(f"gain_{track}_vs_best_text")
        if g:
            lines += ["", f"Gain of {g[track]} over the best text model ({g['best_text']}): "
                          f"{100 * g['gain']:+.1f} points, 95% worker-bootstrap CI "
                          f"[{100 * g['ci_low']:+.1f}, {100 * g['ci_high']:+.1f}] ({g['n_workers']} workers)."]
    pr = report.get("personalized", {}).get("model_rule")
    if pr:
        lines += ["", f"'The model this person preferred earlier' alone: {100 * pr['accuracy']:.1f}% on {pr['n']} turns where it applies."]
    return "\n".join(lines)


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=float)
