"""``gazepref align``: from a recorded study (or a preference data set) to an aligned model.

Steps, each writing one sub-folder of ``OUT`` with a ``step.json`` (its input fingerprint and
result)::

    features  signals/features.py tables          (only for implicit_rm / fused_rm labels)
    reward    rewards.jsonl: each response scored  (only for *_rm labels)
    pairs     preference pairs (DPO) or unpaired examples (KTO), split by worker
    train     DPO or KTO with TRL (tiny model built here with --tiny)
    eval      win rate of the aligned model over the reference on held-out prompts

A step is skipped when its ``step.json`` holds the same fingerprint (the source's content, the
config values it uses, the fingerprints of the steps before it) and its outputs exist; ``force``
reruns a step and every step after it. The train step also resumes from its latest checkpoint
when it was interrupted.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import UserError, schema
from .align_config import AlignConfig

STEPS = ("features", "reward", "pairs", "train", "eval")
RM_SOURCES = ("text_rm", "implicit_rm", "fused_rm")


# --------------------------------------------------------------------------- reward scorers


def _last_user(prompt: Any) -> str:
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else ""
    return str(prompt)


class RewardModelScorer:
    """A saved reward model (:func:`gazepref.models.scoring.load_reward_model`) as a
    :class:`gazepref.datasets.preference.RewardScorer`: ``score(prompt, response)`` is the text
    utility of one response (centred Bradley-Terry scale) and its confidence."""

    def __init__(self, rm: Any, name: str):
        self.rm = rm
        self.name = name

    def score(self, prompt: Any, response: str) -> tuple[float, float]:
        s = self.rm.score([{"prompt": _last_user(prompt), "response": response}])[0]
        return float(s.reward), float(s.confidence)


def load_reward_model(path: str | None):
    """The project's reward model at ``path``, or None for the length baseline (None or
    ``"length-baseline"``)."""
    if not path or path == "length-baseline":
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"no such reward model: {p}")
    from .scoring import load_reward_model as load

    return load(str(p))


def load_scorer(path: str | None):
    """A :class:`~gazepref.datasets.preference.RewardScorer` for the win rate: the reward model at
    ``path``, or the length baseline."""
    from ..datasets.preference import LengthBaselineScorer

    rm = load_reward_model(path)
    return LengthBaselineScorer() if rm is None else RewardModelScorer(rm, Path(path).name)


# --------------------------------------------------------------------------- caching


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def source_fingerprint(source: str | Path, turns: list[schema.Turn] | None) -> str:
    """Content of the recording's turns plus the size and mtime of its files."""
    h = hashlib.sha256()
    p = Path(source)
    if p.exists():
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            st = f.stat()
            h.update(f"{f.relative_to(p) if f != p else f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    else:
        h.update(str(source).encode())
    for t in turns or []:
        h.update(json.dumps(t.to_dict(), sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


class Step:
    def __init__(self, out: Path, name: str, inputs: dict[str, Any], forced: bool):
        self.dir = out / name
        self.name = name
        self.fingerprint = _hash(inputs)
        self.forced = forced

    def cached(self) -> dict[str, Any] | None:
        f = self.dir / "step.json"
        if self.forced or not f.exists():
            return None
        try:
            d = json.loads(f.read_text())
        except ValueError:
            return None
        if d.get("fingerprint") != self.fingerprint or d.get("status") != "done":
            return None
        return d.get("result")

    def begin(self, keep: bool = False) -> Path:
        """Start the step in a clean folder; with ``keep``, an interrupted run of the same inputs
        (same fingerprint, not forced) keeps its folder so that training resumes from a checkpoint."""
        prev = None
        try:
            prev = json.loads((self.dir / "step.json").read_text()).get("fingerprint")
        except (OSError, ValueError):
            pass
        if self.dir.exists() and not (keep and not self.forced and prev == self.fingerprint):
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "step.json").write_text(json.dumps({"fingerprint": self.fingerprint, "status": "running"}))
        return self.dir

    def done(self, result: dict[str, Any]) -> None:
        (self.dir / "step.json").write_text(json.dumps({"fingerprint": self.fingerprint, "status": "done",
                                                        "result": result}, indent=2, default=str))


# --------------------------------------------------------------------------- the pipeline


def open_source(source: str, db: str | None = None, instance: str | None = None):
    """(kind, recording or None): ``pairs`` for a preference data set, ``recording`` otherwise."""
    from ..datasets.preference import is_preference_data

    p = Path(source).expanduser()
    if p.exists() and is_preference_data(p):
        return "pairs", None
    if p.exists():
        from ..datasets.recording import open_recording

        return "recording", open_recording(p)
    if "/" in source or source.startswith("."):
        raise UserError(f"no such file or folder: {p}")
    from ..datasets.store_recording import StoreRecording

    return "recording", StoreRecording.open(source, db_url=db, instance=instance)


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(f"[align] {msg}", file=sys.stderr)


def run(source: str, out: str | os.PathLike, cfg: AlignConfig, force: tuple[str, ...] = (), progress: bool = False,
        db: str | None = None, instance: str | None = None, until: str | None = None) -> dict[str, Any]:
    """Run the pipeline; return ``{"out": ..., "steps": {name: {"status", "seconds", "result"}}}``."""
    cfg.validate()
    bad = [f for f in force if f not in STEPS and f != "all"]
    if bad:
        raise UserError(f"--force: unknown step {bad[0]!r} (one of {', '.join(STEPS)}, all)")
    first_forced = min((STEPS.index(f) if f != "all" else 0 for f in force), default=len(STEPS))
    out = Path(out).expanduser()
    kind, rec = open_source(source, db, instance)  # a bad source fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        (out / "align_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    turns = rec.turns() if rec is not None else None
    src_fp = source_fingerprint(source, turns)
    d, t = cfg.data, cfg.train
    report: dict[str, Any] = {"out": str(out), "source": str(source), "source_kind": kind, "steps": {}}
    fps: dict[str, str] = {}

    # Under `accelerate launch` (WORLD_SIZE > 1) every process runs this function: the main process
    # does each data/eval step first and the others then find it cached; training runs on all.
    state = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())  # CPU runs need cpu=True to see the others
    main_proc = state is None or state.is_main_process
    progress = progress and main_proc

    def _step(st: Step, fn: Callable[[Path], dict[str, Any]], keep: bool, all_processes: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        cached = st.cached()
        if all_processes and state is not None:
            state.wait_for_everyone()  # every process has read the cache before the main one changes it
        if cached is not None:
            _say(progress, f"{st.name}: cached")
            report["steps"][st.name] = {"status": "cached", "seconds": 0.0, "result": cached}
            return cached
        _say(progress, f"{st.name}: running")
        if main_proc:
            st.begin(keep=keep)
        if all_processes and state is not None:
            state.wait_for_everyone()
        res = fn(st.dir)
        if main_proc:
            st.done(res)
        if all_processes and state is not None:
            state.wait_for_everyone()
        report["steps"][st.name] = {"status": "skipped" if res.get("skipped") else "ran",
                                    "seconds": round(time.perf_counter() - t0, 3), "result": res}
        return res

    def step(name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]], keep: bool = False):
        st = Step(out, name, {"step": name, **inputs}, forced=STEPS.index(name) >= first_forced)
        fps[name] = st.fingerprint
        if state is None or name == "train":
            return _step(st, fn, keep, all_processes=name == "train")
        with state.main_process_first():
            if not main_proc:
                st.forced = False  # the main process has just (re)done it
            return _step(st, fn, keep, all_processes=False)

    needs_rm = d.label_source in RM_SOURCES
    needs_features = d.label_source in ("implicit_rm", "fused_rm")
    if kind == "recording" and needs_features and not d.reward_model:
        raise UserError(f"label source {d.label_source!r} needs --reward-model PATH (a model from "
                        "`gazepref reward train`)")

    # ---- features
    def do_features(sd: Path) -> dict[str, Any]:
        if kind != "recording" or not needs_features:
            return {"skipped": f"not needed for label source {d.label_source!r}" if kind == "recording"
                    else "source is a preference data set"}
        import pandas as pd

        from .comparisons import comparison_frame
        from .implicit_features import implicit_table

        X = comparison_frame(rec, labelled_only=False)
        F = implicit_table(rec, X, "both", progress=progress)
        pd.concat([X, F], axis=1).to_parquet(sd / "comparisons.parquet", index=False)
        have = int(F.notna().any(axis=1).sum()) if len(F.columns) else 0
        return {"path": str(sd / "comparisons.parquet"), "pairwise_turns": len(X), "feature_columns": len(F.columns),
                "turns_with_features": have}

    step("features", {"source": src_fp, "needed": needs_features and kind == "recording"}, do_features)

    # ---- reward
    def do_reward(sd: Path) -> dict[str, Any]:
        if kind != "recording" or not needs_rm:
            return {"skipped": "labels do not come from a reward model" if kind == "recording"
                    else "source is a preference data set"}
        from ..datasets.preference import LengthBaselineScorer, prompt_messages, rm_confidence

        rm = load_reward_model(d.reward_model)
        rows: list[dict[str, Any]] = []
        if rm is None:
            if d.label_source != "text_rm":
                raise UserError(f"label source {d.label_source!r} needs --reward-model PATH "
                                "(a model from `gazepref reward train`)")
            base = LengthBaselineScorer()
            for tr in turns:
                if tr.pairwise and len(tr.responses) == 2:
                    (r0, c0), (r1, c1) = (base.score(prompt_messages(tr), r.text) for r in tr.responses)
                    z = r0 - r1
                    conf = rm_confidence(max(r0, r1), min(r0, r1), c0, c1)
                    rows.append({"turn_id": tr.turn_id, "reward": z, "confidence": conf, "source": base.name,
                                 "reward_0": r0, "reward_1": r1})
            name = base.name
        else:
            import pandas as pd

            from .comparisons import comparison_frame

            if needs_features:
                X = pd.read_parquet(out / "features" / "comparisons.parquet")
                if any(c.startswith("hist_") for c in getattr(rm, "feature_columns", [])):
                    from .comparisons import rated_responses
                    from .personalized import history_features

                    X = pd.concat([X, history_features(X, ratings=rated_responses(rec))], axis=1)
            else:
                X = comparison_frame(rec, labelled_only=False)
            S = rm.score_frame(X)
            for r in S.itertuples(index=False):
                rows.append({"turn_id": str(r.turn_id), "reward": float(r.reward), "confidence": float(r.confidence),
                             "source": str(r.source), "reward_0": float(r.reward_0), "reward_1": float(r.reward_1)})
            name = Path(d.reward_model).name
        with open(sd / "rewards.jsonl", "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
        sources: dict[str, int] = {}
        for r in rows:
            sources[r["source"]] = sources.get(r["source"], 0) + 1
        return {"reward_model": name, "turns_scored": len(rows), "evidence": sources,
                "path": str(sd / "rewards.jsonl")}

    step("reward", {"source": src_fp, "features": fps["features"], "label_source": d.label_source,
                    "reward_model": d.reward_model, "reward_model_files":
                    source_fingerprint(d.reward_model, None) if d.reward_model else None, "needed": needs_rm},
         do_reward)

    # ---- pairs
    def do_pairs(sd: Path) -> dict[str, Any]:
        from ..datasets import preference as P

        if kind == "pairs":
            ds = P.load(source)
            ds.save_to_disk(str(sd / "hf"), num_shards={k: 1 for k in ds})
            return {"from": str(source), "counts": {k: len(v) for k, v in ds.items()}, "path": str(sd)}
        table: dict[str, tuple[float, float]] = {}
        if needs_rm:
            with open(out / "reward" / "rewards.jsonl") as fh:
                for line in fh:
                    r = json.loads(line)
                    table[str(r["turn_id"])] = (float(r["reward"]), float(r["confidence"]))

        def table_score(turn: schema.Turn) -> tuple[float, float]:
            return table.get(str(turn.turn_id), (math.nan, 0.0))

        score = table_score if needs_rm else None

        stats = P.BuildStats()
        if t.algorithm == "kto":
            items = P.build_unpaired(turns, include_pairwise=d.kto_include_pairwise, pair_source=d.label_source,
                                     context_messages=d.context_messages, stats=stats, pair_score=score)
        else:
            items = P.build_pairs(turns, d.label_source, None, d.context_messages, d.min_confidence, stats,
                                  pair_score=score)
        splits = P.split_by_worker(items, d.test_fraction, d.seed)
        man = P.save(splits, sd, kind="unpaired" if t.algorithm == "kto" else "pairs", stats=stats,
                     meta={"label_source": d.label_source})
        if not splits["train"]:
            raise UserError(f"no training examples from {source} with label source {d.label_source!r}")
        return {"counts": man["counts"], "workers": man["workers"], "stats": man["stats"], "path": str(sd)}

    step("pairs", {"source": src_fp, "reward": fps["reward"], "data": asdict(d), "algorithm": t.algorithm}, do_pairs)
    if until == "pairs":
        return report

    # ---- train
    def do_train(sd: Path) -> dict[str, Any]:
        from datasets import load_from_disk

        ds = load_from_disk(str(out / "pairs" / "hf"))
        model_path = cfg.model.path
        if cfg.model.tiny:
            if state is not None:
                with state.main_process_first():
                    model_path = str(_tiny_model(ds, cfg, sd / "tiny_model"))
            else:
                model_path = str(_tiny_model(ds, cfg, sd / "tiny_model"))
        if t.algorithm == "kto":
            from .kto import train_kto

            res = train_kto(ds["train"], cfg, sd, model_path, resume=True, progress=progress)
        else:
            from .dpo import train_dpo

            res = train_dpo(ds["train"], cfg, sd, model_path, resume=True, progress=progress)
        res["reference_model"] = model_path
        return res

    model_fp = cfg.model.path if not cfg.model.tiny else "tiny"
    if cfg.model.path and not cfg.model.tiny and Path(cfg.model.path).exists():
        model_fp = source_fingerprint(cfg.model.path, None)
    train_res = step("train", {"pairs": fps["pairs"], "model": asdict(cfg.model), "model_files": model_fp,
                               "train": asdict(t)}, do_train, keep=True)
    if until == "train":
        return report

    # ---- eval
    def do_eval(sd: Path) -> dict[str, Any]:
        from datasets import load_from_disk

        from .win_rate import OpenAIJudge, evaluate

        ds = load_from_disk(str(out / "pairs" / "hf"))
        test = ds["test"] if "test" in ds else None
        if test is None or len(test) == 0:
            return {"skipped": "no held-out prompts (the test split is empty: too few workers)"}
        prompts, seen = [], set()
        for p in test["prompt"]:
            if isinstance(p, str):  # standard (non-conversational) rows
                p = [{"role": "user", "content": p}]
            k = json.dumps(p, sort_keys=True)
            if k not in seen:
                seen.add(k)
                prompts.append(p)
        prompts = prompts[: cfg.eval.max_prompts]
        scorer = load_scorer(d.reward_model)
        judge = (OpenAIJudge(cfg.eval.judge_url, cfg.eval.judge_model, cfg.eval.judge_api_key_env)
                 if cfg.eval.judge_url else None)
        e = cfg.eval
        return evaluate(train_res["reference_model"], train_res["model_dir"], prompts, scorer, sd,
                        max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, do_sample=e.do_sample,
                        temperature=e.temperature, seed=e.seed, judge=judge,
                        scorer_name=getattr(scorer, "name", "reward model"),
                        title=f"win rate: {t.algorithm} ({t.loss if t.algorithm == 'dpo' else 'kto'}), "
                              f"labels {d.label_source}")

    step("eval", {"train": fps["train"], "eval": asdict(cfg.eval), "reward_model": d.reward_model}, do_eval)
    if main_proc:
        (out / "align_report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


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
