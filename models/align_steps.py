"""The five steps of ``gazepref align`` (:mod:`gazepref.models.align` runs them in order, each
cached in a sub-folder of ``OUT``, :mod:`.align_cache`)::

    features   the implicit (gaze/mouse) feature table   only for label sources with implicit_features
    reward     every pairwise turn scored                 only for label sources with reward_model
    pairs      preference pairs (DPO) or unpaired examples (KTO), split by worker
    train      DPO or KTO with TRL (a tiny model built here with ``model.tiny``)
    eval       win rate of the aligned model over the reference on held-out prompts

Each is ``step(run, folder) -> result`` (a JSON-able dict; ``{"skipped": why}`` when it has
nothing to do) on an :class:`AlignRun`, reading what the steps before it wrote under ``run.out``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import UserError, schema
from ..datasets.label_sources import LabelSource
from .align_config import AlignConfig
from .align_scorers import load_reward_model, load_scorer

__all__ = ["AlignRun", "feature_table", "features", "pairs", "reward", "train", "win_rate"]


@dataclass
class AlignRun:
    """What the steps of one run share.

    Attributes
    ----------
    source
        The run's source as given (a path or a study slug).
    out
        The run's folder.
    cfg
        The run's configuration.
    kind
        ``"recording"``, ``"pairs"`` (a preference data set: the data steps are skipped) or
        ``"conversations"`` (a label source from mined text feedback: the source's chats).
    recording
        The :class:`~gazepref.datasets.recording.Recording` (None for a preference data set).
    turns
        Its turns (None for a preference data set).
    label
        The label source (:mod:`gazepref.datasets.label_sources`) of ``cfg.data.label_source``.
    state
        ``accelerate.PartialState`` under ``accelerate launch``, else None.
    progress
        Show progress (on the main process).
    db, instance
        Where a study slug's database is (:func:`gazepref.store.database_url`).
    """
    source: str
    out: Path
    cfg: AlignConfig
    kind: str
    recording: Any
    turns: list[schema.Turn] | None
    label: LabelSource
    state: Any = None
    progress: bool = False
    db: str | None = None
    instance: str | None = None

    @property
    def needs_reward(self) -> bool:
        """The labels come from a reward model (the ``reward`` step scores the turns)."""
        return self.label.reward_model

    @property
    def needs_features(self) -> bool:
        """That reward model reads implicit features (the ``features`` step computes them)."""
        return self.label.implicit_features


def _skip_reason(run: AlignRun, why: str) -> str:
    """Why a step has nothing to do: ``why``, or for a preference data set source, that."""
    return "source is a preference data set" if run.kind == "pairs" else why


# --------------------------------------------------------------------------- features


def feature_table(recording: Any, progress: bool = False):
    """The implicit feature table the reward models read: one row per pairwise turn of
    ``recording`` (labelled or not; :func:`~gazepref.models.comparisons.comparison_frame`) with the
    gaze/mouse feature columns; and the names of those columns."""
    import pandas as pd

    from .comparisons import comparison_frame
    from .implicit_features import implicit_table

    X = comparison_frame(recording, labelled_only=False)
    F = implicit_table(recording, X, "both", progress=progress)
    return pd.concat([X, F], axis=1), list(F.columns)


def features_skipped(run: AlignRun) -> str | None:
    """Why the ``features`` step has nothing to do for ``run`` (None: it runs)."""
    if run.kind != "recording" or not run.needs_features:
        return _skip_reason(run, f"not needed for label source {run.label.name!r}")
    return None


def features(run: AlignRun, folder: Path) -> dict[str, Any]:
    """``features/comparisons.parquet``: :func:`feature_table` of the recording (run only where
    :func:`features_skipped` says None; the step runner asks it first)."""
    table, columns = feature_table(run.recording, progress=run.progress)
    path = folder / "comparisons.parquet"
    table.to_parquet(path, index=False)
    have = int(table[columns].notna().any(axis=1).sum()) if columns else 0
    return {"path": str(path), "pairwise_turns": len(table), "feature_columns": len(columns),
            "turns_with_features": have}


# --------------------------------------------------------------------------- reward


def _baseline_rewards(turns: list[schema.Turn]) -> tuple[str, list[dict[str, Any]]]:
    """The length baseline's verdict on every pairwise turn."""
    from ..datasets.preference import LengthBaselineScorer, prompt_messages, rm_confidence

    base = LengthBaselineScorer()
    rows = []
    for tr in turns:
        if tr.pairwise and len(tr.responses) == 2:
            (r0, c0), (r1, c1) = (base.score(prompt_messages(tr), r.text) for r in tr.responses)
            rows.append({"turn_id": tr.turn_id, "reward": r0 - r1,
                         "confidence": rm_confidence(max(r0, r1), min(r0, r1), c0, c1), "source": base.name,
                         "reward_0": r0, "reward_1": r1})
    return base.name, rows


def _model_rewards(run: AlignRun, rm: Any) -> list[dict[str, Any]]:
    """The reward model's verdict on every pairwise turn (with the implicit feature table of the
    ``features`` step when the label source reads implicit features)."""
    import pandas as pd

    from .comparisons import comparison_frame

    if run.needs_features:
        X = pd.read_parquet(run.out / "features" / "comparisons.parquet")
        if any(c.startswith("hist_") for c in getattr(rm, "feature_columns", [])):
            from .comparisons import rated_responses
            from .personalized import history_features

            X = pd.concat([X, history_features(X, ratings=rated_responses(run.recording))], axis=1)
    else:
        X = comparison_frame(run.recording, labelled_only=False)
    return [{"turn_id": str(r.turn_id), "reward": float(r.reward), "confidence": float(r.confidence),
             "source": str(r.source), "reward_0": float(r.reward_0), "reward_1": float(r.reward_1)}
            for r in rm.score_frame(X).itertuples(index=False)]


def reward_skipped(run: AlignRun) -> str | None:
    """Why the ``reward`` step has nothing to do for ``run`` (None: it runs)."""
    if run.kind != "conversations" and (run.kind != "recording" or not run.needs_reward):
        return _skip_reason(run, "labels do not come from a reward model")
    return None


def reward(run: AlignRun, folder: Path) -> dict[str, Any]:
    """``reward/rewards.jsonl``: per pairwise turn the reward model's log-odds that the left
    response is preferred, its confidence and the evidence it used (run only where
    :func:`reward_skipped` says None; the step runner asks it first)."""
    if run.kind == "conversations":  # labels from text feedback: mine the source's chats
        from .feedback_source import mine

        return mine(run.source, folder, run.cfg.data, run.db, run.instance, run.progress)
    d = run.cfg.data
    rm = load_reward_model(d.reward_model)
    if rm is None:
        if run.needs_features:
            raise UserError(f"label source {d.label_source!r} needs --reward-model PATH "
                            "(a model from `gazepref reward train`)")
        name, rows = _baseline_rewards(run.turns)
    else:
        name, rows = Path(d.reward_model).name, _model_rewards(run, rm)
    with open(folder / "rewards.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    evidence: dict[str, int] = {}
    for r in rows:
        evidence[r["source"]] = evidence.get(r["source"], 0) + 1
    return {"reward_model": name, "turns_scored": len(rows), "evidence": evidence,
            "path": str(folder / "rewards.jsonl")}


# --------------------------------------------------------------------------- pairs


def _pair_score(run: AlignRun):
    """The ``reward`` step's verdicts as a label source's ``pair_score`` (None without them)."""
    if not run.needs_reward:
        return None
    table: dict[str, tuple[float, float]] = {}
    with open(run.out / "reward" / "rewards.jsonl") as fh:
        for line in fh:
            r = json.loads(line)
            table[str(r["turn_id"])] = (float(r["reward"]), float(r["confidence"]))

    def score(turn: schema.Turn) -> tuple[float, float]:
        return table.get(str(turn.turn_id), (math.nan, 0.0))

    return score


def pairs(run: AlignRun, folder: Path) -> dict[str, Any]:
    """``pairs/``: the preference data set (:func:`gazepref.datasets.preference.save`), split by
    worker; a preference data set as the source is copied."""
    from ..datasets import preference as P

    if run.kind == "pairs":
        ds = P.load(run.source)
        ds.save_to_disk(str(folder / "hf"), num_shards={k: 1 for k in ds})
        return {"from": str(run.source), "counts": {k: len(v) for k, v in ds.items()}, "path": str(folder)}
    d, algorithm = run.cfg.data, run.cfg.train.algorithm
    score = _pair_score(run)
    stats = P.BuildStats()
    kind = "unpaired" if algorithm == "kto" else "pairs"
    if run.kind == "conversations":  # from the feedback the reward step mined
        from .feedback_source import build

        items, stats, kind = build(run.source, run.out / "reward", d, algorithm, run.db, run.instance)
    elif algorithm == "kto":
        items = P.build_unpaired(run.turns, include_pairwise=d.kto_include_pairwise, pair_source=d.label_source,
                                 context_messages=d.context_messages, stats=stats, pair_score=score)
    else:
        items = P.build_pairs(run.turns, d.label_source, None, d.context_messages, d.min_confidence, stats,
                              pair_score=score)
    splits = P.split_by_worker(items, d.test_fraction, d.seed)
    if not splits["train"]:  # (before saving: an empty data set cannot be written)
        raise UserError(f"no training examples from {run.source} with label source {d.label_source!r}")
    man = P.save(splits, folder, kind=kind, stats=stats,
                 meta={"label_source": d.label_source})
    return {"counts": man["counts"], "participants": man["participants"], "stats": man["stats"], "path": str(folder)}


# --------------------------------------------------------------------------- train


def train(run: AlignRun, folder: Path) -> dict[str, Any]:
    """``train/``: DPO or KTO on the train split (:mod:`.dpo`, :mod:`.kto`), resumed from the latest
    checkpoint of an interrupted run."""
    from datasets import load_from_disk

    cfg = run.cfg
    ds = load_from_disk(str(run.out / "pairs" / "hf"))
    model_path = cfg.model.path
    if cfg.model.tiny:
        if run.state is not None:
            with run.state.main_process_first():
                model_path = str(_tiny_model(ds, cfg, folder / "tiny_model"))
        else:
            model_path = str(_tiny_model(ds, cfg, folder / "tiny_model"))
    if cfg.train.algorithm == "kto":
        from .kto import train_kto

        res = train_kto(ds["train"], cfg, folder, model_path, resume=True, progress=run.progress)
    else:
        from .dpo import train_dpo

        res = train_dpo(ds["train"], cfg, folder, model_path, resume=True, progress=run.progress)
    res["reference_model"] = model_path
    return res


def _tiny_model(ds, cfg: AlignConfig, path: Path) -> Path:
    from .tiny_lm import TinyModelConfig, build_tiny_model

    if (path / "config.json").exists():
        return path
    texts: list[str] = []
    for split in ds.values():
        for col in ("prompt", "chosen", "rejected", "completion"):
            if col in split.column_names:
                for v in split[col]:
                    texts += [m["content"] for m in v] if isinstance(v, list) else [str(v)]
    m = cfg.model
    tc = TinyModelConfig(arch=m.tiny_arch, hidden_size=m.tiny_hidden_size, layers=m.tiny_layers, heads=m.tiny_heads,
                         intermediate_size=m.tiny_intermediate_size, vocab_size=m.tiny_vocab_size,
                         max_positions=max(1024, cfg.train.max_length or 1024), seed=cfg.train.seed)
    return build_tiny_model(path, texts, tc, dtype="float32")


# --------------------------------------------------------------------------- eval


def _held_out_prompts(test, limit: int) -> list[list[dict[str, str]]]:
    """The distinct prompts of the test split (as chats), at most ``limit``."""
    prompts, seen = [], set()
    for p in test["prompt"]:
        if isinstance(p, str):  # standard (non-conversational) rows
            p = [{"role": "user", "content": p}]
        k = json.dumps(p, sort_keys=True)
        if k not in seen:
            seen.add(k)
            prompts.append(p)
    return prompts[:limit]


def win_rate(run: AlignRun, folder: Path, trained: dict[str, Any]) -> dict[str, Any]:
    """``eval/``: the win rate of the aligned model (``trained``: the train step's result) over the
    reference on the held-out prompts (:func:`gazepref.models.win_rate.evaluate`)."""
    from datasets import load_from_disk

    from .win_rate import OpenAIJudge, evaluate

    ds = load_from_disk(str(run.out / "pairs" / "hf"))
    test = ds["test"] if "test" in ds else None
    if test is None or len(test) == 0:
        return {"skipped": "no held-out prompts (the test split is empty: too few workers)"}
    e, t = run.cfg.eval, run.cfg.train
    prompts = _held_out_prompts(test, e.max_prompts)
    scorer = load_scorer(run.cfg.data.reward_model)
    judge = OpenAIJudge(e.judge_url, e.judge_model, e.judge_api_key_env) if e.judge_url else None
    return evaluate(trained["reference_model"], trained["model_dir"], prompts, scorer, folder,
                    max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, do_sample=e.do_sample,
                    temperature=e.temperature, seed=e.seed, judge=judge,
                    scorer_name=getattr(scorer, "name", "reward model"),
                    title=f"win rate: {t.algorithm} ({t.loss if t.algorithm == 'dpo' else 'kto'}), "
                          f"labels {run.cfg.data.label_source}")
