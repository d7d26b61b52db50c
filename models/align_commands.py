"""CLI: ``gazepref align SOURCE --model PATH --out DIR`` (see :mod:`gazepref.models.align`)."""
from __future__ import annotations

import argparse

from ..datasets import label_sources
from ..datasets.sources import add_source_arguments
from .align_cache import STEPS
from .align_config import ALGORITHMS, LOSSES, TINY_DEFAULTS, DataConfig, EvalConfig, ModelConfig, TrainConfig

STEP_NAMES = (*STEPS, "all")


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}


def _default(section: str, name: str) -> str:
    """" (default: N; --tiny: M)": the value a run gets when neither the flag nor --config sets it."""
    value = _SECTIONS[section].__dataclass_fields__[name].default
    tiny = TINY_DEFAULTS.get(section, {}).get(name, value)
    said = "all" if value is None else value
    return f" (default {said}" + (f"; --tiny: {tiny})" if tiny != value else ")")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align", help="align an LLM with DPO/KTO from a recorded study",
        description="Features → reward → preference pairs → DPO (or KTO) → win-rate evaluation. Each step is "
                    "cached in OUT and skipped when its inputs are unchanged. SOURCE is an IFLLM-layout folder, a "
                    "gazepref Parquet export, a preference data set (from a previous run's OUT/pairs, or JSONL), "
                    "or the slug of a study in the site's database.")
    add_source_arguments(p, dest="source", help="an IFLLM-layout folder, a gazepref Parquet export, preference "
                                                  "data (a previous run's OUT/pairs, or JSONL), or the slug of a "
                                                  "study in the site's database")
    p.add_argument("--model", help="Hugging Face causal LM folder (the reference and the start of the policy)")
    p.add_argument("--out", required=True, help="output folder (steps are cached here)")
    p.add_argument("--tiny", action="store_true", help="build a tiny model and tokenizer from config (CPU run, "
                                                       "nothing downloads)")
    p.add_argument("--config", help="TOML or YAML config ([data], [model], [train], [eval]); flags override it")
    p.add_argument("--label-source", choices=label_sources.names(),
                   help="where preference labels come from (default human; not with a preference data set, "
                        "labelled already): " + "; ".join(
                       f"{s.name}: {s.description}" for s in label_sources.sources()))
    p.add_argument("--reward-model", help="reward model folder for labels from a reward model (text_rm, ...) and "
                                          "the win-rate judge "
                                          "(default: the length baseline judges)")
    p.add_argument("--algorithm", choices=ALGORITHMS, help="dpo on pairs (default) or kto on unpaired examples")
    p.add_argument("--loss", choices=LOSSES, help="DPO loss: sigmoid (default), robust (rDPO, ε from label "
                                                  "confidence), sigmoid+sft (DPO + NLL on chosen)")
    p.add_argument("--steps", type=int, help="optimizer steps" + _default("train", "steps"))
    p.add_argument("--batch-size", type=int, help="per-device batch size" + _default("train", "batch_size"))
    p.add_argument("--lr", type=float, help="learning rate" + _default("train", "learning_rate"))
    p.add_argument("--beta", type=float, help="DPO/KTO β" + _default("train", "beta"))
    p.add_argument("--lora-r", type=int, help="LoRA rank, 0: full fine-tuning" + _default("model", "lora_r"))
    p.add_argument("--max-length", type=int, help="max tokens of prompt + response" + _default("train", "max_length"))
    p.add_argument("--context-messages", type=int, help="earlier chat messages kept in each prompt" + _default("data", "context_messages"))
    p.add_argument("--test-fraction", type=float, help="share of participants held out for evaluation" + _default("data", "test_fraction"))
    p.add_argument("--max-prompts", type=int, help="held-out prompts in the win-rate evaluation" + _default("eval", "max_prompts"))
    p.add_argument("--max-new-tokens", type=int, help="tokens generated per answer in the evaluation" + _default("eval", "max_new_tokens"))
    p.add_argument("--judge-url", help="OpenAI-compatible base URL of an LLM judge (e.g. http://127.0.0.1:8000/v1); "
                                      "asked once before any step runs, so a judge that does not answer stops "
                                      "the run before training")
    p.add_argument("--judge-model", help="model name sent to the judge" + _default("eval", "judge_model"))
    p.add_argument("--force", action="append", default=[], choices=STEP_NAMES, metavar="STEP",
                   help=f"redo STEP and the steps after it ({', '.join(STEP_NAMES)}); repeatable")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_align)


def build_config(args: argparse.Namespace):
    from .. import UserError
    from .align_config import TINY_DEFAULTS, AlignConfig, load_config

    base = AlignConfig()
    if args.tiny:
        base.apply(TINY_DEFAULTS)
    cfg = load_config(args.config, base)
    flags = {
        ("data", "label_source"): args.label_source, ("data", "reward_model"): args.reward_model,
        ("data", "context_messages"): args.context_messages, ("data", "test_fraction"): args.test_fraction,
        ("model", "path"): args.model, ("train", "algorithm"): args.algorithm, ("train", "loss"): args.loss,
        ("train", "steps"): args.steps, ("train", "batch_size"): args.batch_size,
        ("train", "learning_rate"): args.lr, ("train", "beta"): args.beta, ("model", "lora_r"): args.lora_r,
        ("train", "max_length"): args.max_length, ("eval", "max_prompts"): args.max_prompts,
        ("eval", "max_new_tokens"): args.max_new_tokens, ("eval", "judge_url"): args.judge_url,
        ("eval", "judge_model"): args.judge_model,
    }
    for (section, key), v in flags.items():
        if v is not None:
            setattr(getattr(cfg, section), key, v)
    if args.tiny:
        cfg.model.tiny = True
    if not cfg.model.tiny and not cfg.model.path:
        raise UserError("give --model PATH (a Hugging Face model folder) or --tiny")
    if args.steps is not None and args.steps < 1:
        raise UserError("--steps must be at least 1")
    return cfg.validate()


def _text(report: dict) -> str:
    lines = [f"out: {report['out']}"]
    for name, s in report["steps"].items():
        res = s.get("result") or {}
        detail = res.get("skipped", "")
        if name == "features" and "pairwise_turns" in res:
            detail = f"{res['turns_with_features']} of {res['pairwise_turns']} pairwise turns with implicit features"
        elif name == "reward" and "mined" in res:
            detail = f"{res['mined']} answers with a reaction mined {res['by_level']}"
        elif name == "reward" and "turns_scored" in res:
            detail = f"{res['turns_scored']} turns scored by {res['reward_model']} {res['evidence']}"
        elif name == "pairs" and "counts" in res:
            detail = " ".join(f"{k}={v}" for k, v in res["counts"].items())
        elif name == "train" and "steps" in res:
            detail = f"{res['steps']} steps, {res.get('steps_per_s')} steps/s, margin {res.get('margin_last')}"
        elif name == "eval" and "win_rate" in res:
            detail = f"win rate {res['win_rate']:.3f} over {res['prompts']} prompts ({res['scorer']})"
        lines.append(f"{name:<9} {s['status']:<8} {detail}")
    return "\n".join(lines)


def _align(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .align import run

    cfg = build_config(args)
    report = run(args.source, args.out, cfg, force=tuple(args.force), progress=not args.json, db=args.db,
                 instance=args.instance)
    import os

    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`, one report
        emit(report, args.json, _text)
    return 0
