"""KTO training with TRL's ``KTOTrainer`` on unpaired desirable/undesirable examples.

The data are conversational rows with ``prompt``, ``completion`` and ``label`` (True =
desirable), from :func:`gazepref.datasets.preference.build_unpaired` (pointwise turns: better or
worse than the previous answer, Likert ratings; optionally both sides of each pair). A paired set
(``chosen``/``rejected``) is accepted too: TRL unpairs it.

Desirable/undesirable weights: when left at 1.0 and the classes are unbalanced, the desirable
weight is set to n_undesirable / n_desirable (the lower end of the KTO paper's recommended range,
Eq. 8) — or the undesirable weight to n_desirable / n_undesirable when desirables are fewer —
so both classes carry the same total weight.

Checkpoints, ``metrics.jsonl``, ``model/`` and ``train_summary.json`` as in :mod:`gazepref.models.dpo`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .align_config import AlignConfig, trainer_kwargs
from .dpo import _check_rows, finish, resolve_model_path, run_trainer


def balance_weights(labels: list[bool], desirable: float = 1.0, undesirable: float = 1.0) -> tuple[float, float]:
    n_d = sum(bool(x) for x in labels)
    n_u = len(labels) - n_d
    if desirable != 1.0 or undesirable != 1.0 or not n_d or not n_u or n_d == n_u:
        return desirable, undesirable
    if n_d < n_u:
        return round(n_u / n_d, 4), 1.0
    return 1.0, round(n_d / n_u, 4)


def kto_args(cfg: AlignConfig, out: Path, labels: list[bool], n_train: int):
    from trl import KTOConfig

    kw = trainer_kwargs(cfg, out, n_train)
    d, u = balance_weights(labels, cfg.train.desirable_weight, cfg.train.undesirable_weight)
    kw.update(desirable_weight=d, undesirable_weight=u)
    return KTOConfig(**kw)


def train_kto(train_dataset, cfg: AlignConfig, out: str | os.PathLike, model_path: str | None = None,
              resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Train with KTO; returns the summary written to ``out/train_summary.json``."""
    from trl import KTOTrainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if "chosen" in train_dataset.column_names:
        _check_rows(train_dataset, ("prompt", "chosen", "rejected"))
        labels = [True, False] * len(train_dataset)
    else:
        _check_rows(train_dataset, ("prompt", "completion", "label"))
        labels = [bool(x) for x in train_dataset["label"]]
    path = resolve_model_path(model_path or cfg.model.path)
    args = kto_args(cfg, out, labels, len(train_dataset))
    if args.per_device_train_batch_size < 2:
        # The KL term is estimated from mismatched completions within a batch: needs at least 2.
        args.per_device_train_batch_size = 2
    trainer, res, ckpt, t0 = run_trainer(KTOTrainer, cfg, path, args, train_dataset, out, progress, resume)
    return finish(trainer, cfg, out, {"algorithm": "kto", "beta": args.beta, "n_train": len(train_dataset),
                                      "n_desirable": sum(labels), "n_undesirable": len(labels) - sum(labels),
                                      "desirable_weight": args.desirable_weight,
                                      "undesirable_weight": args.undesirable_weight, "resumed_from": ckpt}, t0, res)
