"""``gazepref align``: from a recorded study (or a preference data set) to an aligned model.

Steps (:mod:`.align_steps`), each writing one sub-folder of ``OUT`` with a ``step.json`` (its
input fingerprint and result)::

    features  the implicit feature table          (only for label sources with implicit features)
    reward    rewards.jsonl: each response scored  (only for label sources from a reward model)
    pairs     preference pairs (DPO) or unpaired examples (KTO), split by worker
    train     DPO or KTO with TRL (tiny model built here with --tiny)
    eval      win rate of the aligned model over the reference on held-out prompts

A step is skipped when its ``step.json`` holds the same fingerprint (the source's content, the
config values it uses, the fingerprints of the steps before it) and its outputs exist; ``force``
reruns a step and every step after it (:mod:`.align_cache`). The train step also resumes from
its latest checkpoint when it was interrupted. Label sources: :mod:`gazepref.datasets.label_sources`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from .. import UserError
from ..datasets import label_sources
from . import align_steps
from .align_cache import STEPS, StepRunner, source_fingerprint
from .align_config import AlignConfig, DataConfig
from .align_scorers import RewardModelScorer, check_reward_model, load_reward_model, load_scorer

__all__ = ["STEPS", "RewardModelScorer", "load_reward_model", "load_scorer", "open_align_source", "run"]


def open_align_source(source: str, db: str | None = None, instance: str | None = None,
                      label_source: str | None = None):
    """(kind, recording or None) of ``source`` for the label source ``label_source`` (default
    :attr:`DataConfig.label_source`): ``pairs`` for a preference data set; ``conversations`` for a
    label source that mines text feedback (a chat log or a recording folder, read by the mining
    step: no recording; a study: its recording's tasks' chats); else ``recording`` with what
    :func:`gazepref.datasets.sources.open_source` opens (a folder or a study slug).

    A preference data set is labelled already: a label source other than the default would be
    ignored, so it is a :class:`UserError`, but for a file given to a label source that mines text
    feedback (a ``.jsonl`` file is a chat log to those)."""
    from ..datasets.preference import check_preference_file, is_preference_data
    from ..datasets.sources import open_source

    given, default = label_source or DataConfig.label_source, DataConfig.label_source
    label = label_sources.get(given)
    p = Path(source).expanduser()
    if p.exists():
        if is_preference_data(p) and not (p.is_file() and label.mined_feedback):
            if p.is_file():
                check_preference_file(p)
            if given != default:
                raise UserError(f"label source {given!r} (--label-source or [data] label_source) labels a "
                                f"recording or a study, but {source} is a preference data set, labelled already: "
                                f"leave the label source out (default {default!r}) or give the recording it was "
                                "built from")
            return "pairs", None
        if label.mined_feedback:
            return "conversations", None
    rec = open_source(source, db=db, instance=instance)
    return ("conversations" if label.mined_feedback else "recording"), rec


def _accelerate_state():
    """``accelerate.PartialState`` under ``accelerate launch`` (WORLD_SIZE > 1), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())  # CPU runs need cpu=True to see the others


def _model_fingerprint(cfg: AlignConfig) -> str | None:
    """The reference model's files (a folder), its name, or ``"tiny"``."""
    if cfg.model.tiny:
        return "tiny"
    if cfg.model.path and Path(cfg.model.path).exists():
        return source_fingerprint(cfg.model.path, None)
    return cfg.model.path


def run(source: str, out: str | os.PathLike, cfg: AlignConfig, force: tuple[str, ...] = (), progress: bool = False,
        db: str | None = None, instance: str | None = None, until: str | None = None) -> dict[str, Any]:
    """Run the pipeline; return ``{"out": ..., "steps": {name: {"status", "elapsed_s", "result"}}}``.

    ``until`` (``"pairs"``, ``"train"``) stops after that step.
    """
    cfg.validate()
    bad = [f for f in force if f not in STEPS and f != "all"]
    if bad:
        raise UserError(f"--force: unknown step {bad[0]!r} (one of {', '.join(STEPS)}, all)")
    label = label_sources.get(cfg.data.label_source)
    out = Path(out).expanduser()
    # a bad source (or a label source a preference data set would ignore) fails before anything is written
    kind, rec = open_align_source(source, db, instance, cfg.data.label_source)
    if not cfg.model.tiny and until != "pairs":  # a wrong --model fails before the data steps, not after
        from .dpo import resolve_model_path

        resolve_model_path(cfg.model.path)
    if kind == "recording" and label.implicit_features and not cfg.data.reward_model:
        raise UserError(f"label source {label.name!r} needs --reward-model PATH (a model from "
                        "`gazepref reward train`)")
    check_reward_model(cfg.data.reward_model)  # (before the features step, not after it)
    if cfg.eval.judge_url and until not in ("pairs", "train"):
        # the judge is used only by the last step: ask it once now, so an unreachable one costs no training
        from .win_rate import check_judge

        check_judge(cfg.eval.judge_url, cfg.eval.judge_model, cfg.eval.judge_api_key_env)
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        (out / "align_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    turns = rec.turns() if rec is not None else None
    src_fp = source_fingerprint(rec if rec is not None else source, turns)
    report: dict[str, Any] = {"out": str(out), "source": str(source), "source_kind": kind, "steps": {}}
    step = StepRunner(out, force, _accelerate_state(), progress, report)
    r = align_steps.AlignRun(str(source), out, cfg, kind, rec, turns, label, step.state, step.progress, db, instance)
    d, fps = cfg.data, step.fingerprints

    step("features", {"source": src_fp, "needed": r.needs_features and kind == "recording"},
         partial(align_steps.features, r), skip=partial(align_steps.features_skipped, r))
    step("reward", {"source": src_fp, "features": fps["features"], "label_source": d.label_source,
                    "feedback_backend": d.feedback_backend if label.mined_feedback else None,
                    "reward_model": d.reward_model, "needed": r.needs_reward,
                    "reward_model_files": source_fingerprint(d.reward_model, None) if d.reward_model else None},
         partial(align_steps.reward, r), skip=partial(align_steps.reward_skipped, r))
    step("pairs", {"source": src_fp, "reward": fps["reward"], "data": asdict(d), "algorithm": cfg.train.algorithm},
         partial(align_steps.pairs, r))
    if until == "pairs":
        return report
    trained = step("train", {"pairs": fps["pairs"], "model": asdict(cfg.model), "model_files": _model_fingerprint(cfg),
                             "train": asdict(cfg.train)}, partial(align_steps.train, r), keep=True)
    if until == "train":
        return report
    step("eval", {"train": fps["train"], "eval": asdict(cfg.eval), "reward_model": d.reward_model},
         partial(align_steps.win_rate, r, trained=trained))
    if step.main_process:
        (out / "align_report.json").write_text(json.dumps(report, indent=2, default=str))
    return report
