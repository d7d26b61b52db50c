"""One configuration for alignment runs: data, model, training (DPO or KTO), evaluation.

Read from TOML or YAML (:func:`load_config`), overridden by command-line flags, and written next
to every run (``OUT/align_config.json``). Example (TOML)::

    [data]
    label_source = "human"        # gazepref.datasets.label_sources: human | ratings | text_rm | ...
    test_fraction = 0.2           # share of *participants* (workers) held out
    context_messages = 4          # earlier chat messages kept in the prompt (omit: all)

    [model]
    path = "/models/Qwen2.5-0.5B-Instruct"
    lora_r = 16                   # 0: full fine-tuning

    [train]
    algorithm = "dpo"             # dpo | kto
    loss = "robust"               # sigmoid | robust | sigmoid+sft
    steps = 500
    batch_size = 4

    [eval]
    max_prompts = 64
    judge_url = "http://127.0.0.1:8000/v1"   # optional LLM judge (OpenAI-compatible)

:meth:`TrainConfig.label_smoothing_for` documents how rDPO's ε comes from the labels' confidence.
"""
from __future__ import annotations

import json
import os
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import UserError
from ..datasets import label_sources

LOSSES = ("sigmoid", "robust", "sigmoid+sft")
ALGORITHMS = ("dpo", "kto")
MAX_EPSILON = 0.49  # TRL's rDPO needs ε < 0.5


@dataclass
class DataConfig:
    label_source: str = "human"
    test_fraction: float = 0.2
    seed: int = 0
    context_messages: int | None = None
    min_confidence: float = 0.0
    kto_include_pairwise: bool = True  # KTO: also use both sides of every pair
    reward_model: str | None = None  # path for label sources from a reward model (and eval)
    # feedback_pairs / feedback_kto (mined text feedback, gazepref.datasets.feedback_pairs)
    feedback_backend: str = "offline"  # offline | llm (the judge from GAZEPREF_LLM_BASE_URL / _MODEL)
    feedback_accept_level: int = 3  # a revision counts as accepted when its reaction is at least this
    feedback_desirable_level: int = 5  # KTO: desirable from this level (4 adds engagement)


@dataclass
class ModelConfig:
    path: str | None = None  # any HF causal LM folder (or hub cache name, offline)
    tiny: bool = False  # build a tiny model from config instead (CPU runs, tests)
    tiny_arch: str = "llama"
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_intermediate_size: int = 128
    tiny_vocab_size: int = 4000
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    attn_implementation: str | None = None  # e.g. "sdpa", "flash_attention_2"
    lora_r: int = 0  # 0 = no LoRA
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    trust_remote_code: bool = False


@dataclass
class TrainConfig:
    algorithm: str = "dpo"
    loss: str = "sigmoid"
    beta: float = 0.1
    sft_weight: float = 0.2  # weight of the NLL term in sigmoid+sft (the DPO term has weight 1)
    label_smoothing: float | str = "auto"  # robust: ε; "auto" = from the labels' confidence
    learning_rate: float = 5e-6
    steps: int = 100
    epochs: float = 1.0  # used when steps <= 0
    batch_size: int = 2
    grad_accum: int = 1
    max_length: int | None = 1024
    warmup_ratio: float = 0.0
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    logging_steps: int = 1
    save_steps: int = 50
    save_total_limit: int = 2
    bf16: bool | None = None  # None: on when CUDA supports it
    gradient_checkpointing: bool = False
    seed: int = 0
    desirable_weight: float = 1.0  # KTO
    undesirable_weight: float = 1.0  # KTO
    dataloader_num_workers: int = 0
    report_to: str = "none"
    precompute_ref_log_probs: bool = False

    def label_smoothing_for(self, confidences: list[float]) -> float:
        """rDPO's ε (probability that a label is flipped): ε = clip(1 − mean confidence, 0, 0.49).

        A label's ``confidence`` is our estimate of P(label right), so 1 − confidence is its flip
        probability; TRL's robust loss takes one ε for the data set, so the mean is used. Human
        labels that agree with the Likert ratings (confidence 1) give ε = 0 (plain DPO); RM labels
        near a coin flip give ε close to 0.5, where the robust loss's gradient vanishes, hence the cap.
        """
        if self.label_smoothing != "auto":
            eps = float(self.label_smoothing)
        elif not confidences:
            eps = 0.0
        else:
            eps = 1.0 - sum(confidences) / len(confidences)
        return float(min(MAX_EPSILON, max(0.0, eps)))


@dataclass
class EvalConfig:
    max_prompts: int = 32
    max_new_tokens: int = 64
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 0.7
    judge_url: str | None = None  # OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    judge_model: str = "judge"
    judge_api_key_env: str | None = None
    seed: int = 0


@dataclass
class AlignConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> AlignConfig:
        source = label_sources.get(self.data.label_source)  # UserError naming the sources
        if source.mined_feedback:
            from .feedback_source import check

            check(source.name, self.train.algorithm, self.data.feedback_backend)
        if self.train.loss not in LOSSES:
            raise UserError(f"unknown loss {self.train.loss!r} (one of {', '.join(LOSSES)})")
        if self.train.algorithm not in ALGORITHMS:
            raise UserError(f"unknown algorithm {self.train.algorithm!r} (dpo or kto)")
        if self.train.algorithm == "dpo" and label_sources.PAIRS not in source.gives:
            raise UserError(f"label source {source.name!r} gives unpaired examples only: use algorithm kto")
        if not 0 <= self.data.test_fraction < 1:
            raise UserError("test_fraction must be in [0, 1)")
        if self.train.batch_size < 1 or self.train.grad_accum < 1:
            raise UserError("batch_size and grad_accum must be at least 1")
        ls = self.train.label_smoothing
        if isinstance(ls, str) and ls != "auto":
            try:
                float(ls)
            except ValueError:
                raise UserError(f"config: [train] label_smoothing must be a number or \"auto\", not {ls!r}") from None
        if int(self.model.lora_r) < 0:
            raise UserError(f"lora_r must be 0 (full fine-tuning) or a positive LoRA rank, not {self.model.lora_r}")
        return self

    def apply(self, d: dict[str, Any] | None) -> AlignConfig:
        """Set the values of ``{section: {key: value}}`` (unknown sections/keys are user errors)."""
        for section, value in (d or {}).items():
            if section not in ("data", "model", "train", "eval") or not isinstance(value, dict):
                raise UserError(f"config: unknown section [{section}] (data, model, train, eval)")
            target = getattr(self, section)
            hints = typing.get_type_hints(type(target))
            names = {f.name for f in fields(target)}
            for k, v in value.items():
                if k not in names:
                    raise UserError(f"config: unknown key {k!r} in [{section}]")
                setattr(target, k, _typed(section, k, v, hints[k]))
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: AlignConfig | None = None) -> AlignConfig:
        return (base or cls()).apply(d).validate()


def _typed(section: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's type ``hint`` wants it, or a one-line :class:`UserError` naming the
    key: a config value of the wrong type (``steps = "ten"``) used to fail as a traceback inside
    the trainer, after the data steps had run. A number written as a string is read as one: YAML
    reads ``5e-6`` (no dot) as the string ``"5e-6"``. An integer is accepted where a float is
    wanted, and a whole float (``8.0``) where an integer is."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if value is None and type(None) in options:
        return None
    for t in options:  # the exact type first
        if t is bool and isinstance(value, bool):
            return value
        if t in (int, float, str) and type(value) is t:
            return value
        if typing.get_origin(t) is list and isinstance(value, list) and all(isinstance(x, str) for x in value):
            return value
    for t in options:  # then a lossless reading of it
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if t in (int, float) and isinstance(value, str) and str not in options:
            try:
                return t(value.strip())
            except ValueError:
                pass
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "omitted"}
    want = " or ".join(names.get(t, "a list of strings") for t in options)
    raise UserError(f"config: [{section}] {key} must be {want}, not {value!r}")


#: What ``--tiny`` changes before the config file and flags apply: a short CPU run.
TINY_DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"context_messages": 2},
    "model": {"tiny": True, "dtype": "float32"},
    "train": {"steps": 8, "learning_rate": 1e-3, "max_length": 256, "save_steps": 4, "bf16": False},
    "eval": {"max_prompts": 8, "max_new_tokens": 16},
}


def load_config(path: str | os.PathLike | None, base: AlignConfig | None = None) -> AlignConfig:
    """An :class:`AlignConfig` from a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file applied
    over ``base`` (default: the defaults)."""
    if path is None:
        return (base or AlignConfig()).validate()
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"no such config file: {p}")
    try:
        if p.suffix == ".toml":
            d = tomllib.loads(p.read_text())
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            d = yaml.safe_load(p.read_text()) or {}
        elif p.suffix == ".json":
            d = json.loads(p.read_text())
        else:
            raise UserError(f"{p}: config must be .toml, .yaml/.yml or .json")
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise UserError(f"{p}: cannot parse config: {str(e).splitlines()[0]}") from None
    except ImportError:
        raise UserError("YAML configs need PyYAML (pip install pyyaml); or use TOML") from None
    if not isinstance(d, dict):
        raise UserError(f"{p}: config must be a mapping of sections")
    return AlignConfig.from_dict(d, base)


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - torch missing or broken
        return False


def cuda_bf16() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception:  # noqa: BLE001 - torch missing or broken: no bf16
        return False


def trainer_kwargs(cfg: AlignConfig, out_dir: str | os.PathLike, n_train: int) -> dict[str, Any]:
    """Keyword arguments shared by ``DPOConfig`` and ``KTOConfig``."""
    t = cfg.train
    bf16 = cuda_bf16() if t.bf16 is None else bool(t.bf16)
    kw: dict[str, Any] = dict(
        output_dir=str(Path(out_dir) / "checkpoints"),
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate, beta=t.beta,
        max_length=t.max_length, warmup_steps=t.warmup_ratio, lr_scheduler_type=t.lr_scheduler,
        weight_decay=t.weight_decay, logging_steps=t.logging_steps, save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, bf16=bf16, fp16=False,
        gradient_checkpointing=t.gradient_checkpointing, seed=t.seed, data_seed=t.seed,
        report_to=t.report_to, dataloader_num_workers=t.dataloader_num_workers,
        precompute_ref_log_probs=t.precompute_ref_log_probs, remove_unused_columns=True,
        disable_tqdm=True, save_strategy="steps", eval_strategy="no", dataloader_pin_memory=cuda_available(),
        use_cpu=not cuda_available(),  # (lets CPU processes under torchrun/accelerate form one DDP group)
    )
    if t.steps and t.steps > 0:
        kw["max_steps"] = int(t.steps)
    else:
        kw["num_train_epochs"] = float(t.epochs)
    return kw


def peft_config(cfg: AlignConfig):
    """A ``peft.LoraConfig`` when ``model.lora_r > 0``, else None."""
    m = cfg.model
    if not m.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(r=int(m.lora_r), lora_alpha=int(m.lora_alpha), lora_dropout=float(m.lora_dropout),
                      target_modules=m.lora_target_modules, task_type="CAUSAL_LM", bias="none")
