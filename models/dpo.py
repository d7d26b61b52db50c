"""DPO training with TRL's ``DPOTrainer`` on gazepref preference data.

:func:`train_dpo` takes a preference ``Dataset`` (conversational rows from
:mod:`gazepref.datasets.preference`) and an :class:`~gazepref.models.align_config.AlignConfig`, and
trains any Hugging Face causal LM from a local path:

* ``loss = "sigmoid"`` — the DPO loss;
* ``loss = "robust"`` — rDPO (Chowdhury et al. 2024); its label smoothing ε (flip probability)
  comes from the labels' confidence (:meth:`TrainConfig.label_smoothing_for`);
* ``loss = "sigmoid+sft"`` — DPO plus an NLL term on the chosen response (RPO), TRL 1.16's
  ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, sft_weight]``;
* optional LoRA (``model.lora_r > 0``; the reference is the base model with adapters disabled).

Checkpoints go to ``OUT/checkpoints`` every ``save_steps`` and a run resumes from the latest one;
every log line of TRL (loss, rewards/chosen, rewards/rejected, rewards/margins,
rewards/accuracies, ...) is appended to ``OUT/metrics.jsonl``; the final model (merged when LoRA)
and tokenizer are saved to ``OUT/model`` and a summary to ``OUT/train_summary.json``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .. import UserError
from ..llm.hf import FALLBACK_CHAT_TEMPLATE, ensure_chat_template  # noqa: F401  (one template: gazepref.llm)
from .align_config import AlignConfig, peft_config, trainer_kwargs


# --------------------------------------------------------------------------- shared helpers


def _callbacks(out: Path, total_steps: int | None, progress: bool):
    from transformers import TrainerCallback

    class JsonlLog(TrainerCallback):
        """Append each of TRL's log dicts to ``metrics.jsonl`` (and a progress line to stderr)."""

        def __init__(self):
            self.path = out / "metrics.jsonl"
            self.t0 = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs:
                return
            rec = {"step": state.global_step, "epoch": state.epoch, "time_s": round(time.perf_counter() - self.t0, 3),
                   **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            if progress:
                keys = ("loss", "rewards/margins", "rewards/accuracies", "kl")
                msg = " ".join(f"{k}={logs[k]:.4g}" for k in keys if isinstance(logs.get(k), (int, float)))
                print(f"[train] step {state.global_step}/{total_steps or state.max_steps} {msg}", file=sys.stderr)

    return [JsonlLog()]


def resolve_model_path(path: str | None) -> str:
    """The model folder ``path`` (checked: it holds ``config.json``), or a hub name (``org/name``, read
    from the local cache). A missing path written as one (absolute, ``~``, ``./``, ``../``, or with
    more than one ``/``: no hub name has) is a :class:`UserError`; it was taken for a hub name and
    failed in the train step with huggingface_hub's "Repo id must be in the form ..."."""
    if not path:
        raise UserError("no model: give --model PATH (a Hugging Face model folder) or --tiny")
    p = Path(path).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise UserError(f"{p}: not a Hugging Face model folder (config.json is missing)")
        return str(p)
    if path.startswith(("/", "~", "./", "../", ".\\", "..\\")) or path.count("/") > 1 or p.is_absolute():
        raise UserError(f"no such model folder: {p}")
    return path  # a hub name: must be in the local cache (HF_HUB_OFFLINE is honoured by transformers)


def load_policy(cfg: AlignConfig, path: str, for_reference: bool = False):
    """(model, tokenizer) from ``path``; dtype and attention from the config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.dtype not in (None, "auto"):
        kw["dtype"] = getattr(torch, cfg.model.dtype)
    if cfg.model.attn_implementation:
        kw["attn_implementation"] = cfg.model.attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kw)
        tok = None if for_reference else AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as e:
        raise UserError(f"cannot load model {path!r}: {str(e).splitlines()[0]}") from None
    if tok is not None:
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        ensure_chat_template(tok)
    return model, tok


def quiet(trainer):
    """Drop transformers' PrinterCallback (it prints every log dict to stdout, which must stay
    clean for ``--json``); our JSONL callback logs instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    if trainer.args.disable_tqdm:
        trainer.remove_callback(ProgressCallback)
    return trainer


def last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    d = out / "checkpoints"
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def finish(trainer, cfg: AlignConfig, out: Path, extra: dict[str, Any], t0: float, train_output) -> dict[str, Any]:
    """Save the final model (merged if LoRA), tokenizer, log history and a summary."""
    import torch

    model = trainer.model
    model_dir = out / "model"
    if trainer.accelerator.is_main_process:
        unwrapped = trainer.accelerator.unwrap_model(model)
        if cfg.model.lora_r:
            unwrapped.save_pretrained(str(out / "adapter"))
            unwrapped = unwrapped.merge_and_unload()
        unwrapped.save_pretrained(str(model_dir))
        trainer.processing_class.save_pretrained(str(model_dir))
    main = trainer.accelerator.is_main_process
    hist = trainer.state.log_history
    if main:
        (out / "log_history.json").write_text(json.dumps(hist, indent=1))
    m = train_output.metrics if train_output is not None else {}
    steps = trainer.state.global_step
    runtime = float(m.get("train_runtime", time.perf_counter() - t0))
    summary = {
        "algorithm": extra.pop("algorithm"),
        "model_dir": str(model_dir),
        "steps": steps,
        "train_runtime_s": round(runtime, 3),
        "steps_per_s": round(float(m.get("train_steps_per_second", steps / runtime if runtime else 0.0)), 4),
        "samples_per_s": round(float(m.get("train_samples_per_second", 0.0)), 4),
        "train_loss": m.get("train_loss"),
        "device": str(trainer.args.device),
        "processes": trainer.accelerator.num_processes,
        "bf16": bool(trainer.args.bf16),
        "lora": bool(cfg.model.lora_r),
        **extra,
    }
    if torch.cuda.is_available():
        summary["cuda_max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        summary["gpu"] = torch.cuda.get_device_name()
    first = next((h for h in hist if "rewards/margins" in h), None)
    last = next((h for h in reversed(hist) if "rewards/margins" in h), None)
    if first and last:
        summary["margin_first"] = first["rewards/margins"]
        summary["margin_last"] = last["rewards/margins"]
    if main:
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def run_trainer(trainer_cls, cfg: AlignConfig, path: str, args, train_dataset, out: Path, progress: bool,
                resume: bool):
    """Load the policy (and the reference, unless LoRA or precomputed log-probs make it
    unnecessary), build a TRL trainer of ``trainer_cls`` and train, resuming from the last
    checkpoint in ``out`` when asked. Returns (trainer, train output, checkpoint, start time)."""
    model, tok = load_policy(cfg, path)
    lora = peft_config(cfg)
    ref = None if lora is not None or args.precompute_ref_log_probs else load_policy(cfg, path, for_reference=True)[0]
    t0 = time.perf_counter()
    trainer = trainer_cls(model=model, ref_model=ref, args=args, train_dataset=train_dataset, processing_class=tok,
                          peft_config=lora, callbacks=_callbacks(out, args.max_steps, progress))
    quiet(trainer)
    ckpt = last_checkpoint(out) if resume else None
    return trainer, trainer.train(resume_from_checkpoint=ckpt), ckpt, t0


def _check_rows(ds, needed: tuple[str, ...]) -> None:
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise UserError(f"training data lacks columns {missing} (have {ds.column_names})")
    if len(ds) == 0:
        raise UserError("no training examples (every label was missing, tied or filtered)")


# --------------------------------------------------------------------------- DPO


def dpo_args(cfg: AlignConfig, out: Path, confidences: list[float], n_train: int):
    """TRL ``DPOConfig`` for ``cfg`` and the label smoothing used."""
    from trl import DPOConfig

    t = cfg.train
    kw = trainer_kwargs(cfg, out, n_train)
    eps = 0.0
    if t.loss == "sigmoid":
        kw["loss_type"] = ["sigmoid"]
    elif t.loss == "robust":
        eps = t.label_smoothing_for(confidences)
        kw["loss_type"] = ["robust"]
        kw["label_smoothing"] = eps
    elif t.loss == "sigmoid+sft":
        kw["loss_type"] = ["sigmoid", "sft"]
        kw["loss_weights"] = [1.0, float(t.sft_weight)]
    return DPOConfig(**kw), eps


def train_dpo(train_dataset, cfg: AlignConfig, out: str | os.PathLike, model_path: str | None = None,
              resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Train with DPO; returns the summary written to ``out/train_summary.json``."""
    from trl import DPOTrainer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_rows(train_dataset, ("prompt", "chosen", "rejected"))
    path = resolve_model_path(model_path or cfg.model.path)
    conf = [float(c) for c in train_dataset["confidence"]] if "confidence" in train_dataset.column_names else []
    args, eps = dpo_args(cfg, out, conf, len(train_dataset))
    trainer, res, ckpt, t0 = run_trainer(DPOTrainer, cfg, path, args, train_dataset, out, progress, resume)
    return finish(trainer, cfg, out, {"algorithm": "dpo", "loss": cfg.train.loss, "loss_type": list(args.loss_type),
                                      "loss_weights": args.loss_weights, "label_smoothing": eps, "beta": args.beta,
                                      "n_train": len(train_dataset), "resumed_from": ckpt,
                                      "mean_confidence": (sum(conf) / len(conf)) if conf else None}, t0, res)
