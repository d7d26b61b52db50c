"""Win rate of an aligned model over its reference on held-out prompts.

Both models answer the same prompts (greedy by default); a reward scorer
(:class:`gazepref.datasets.preference.RewardScorer`: the project's text or fused reward model,
or the length baseline) scores each answer, and optionally an LLM judge behind an
OpenAI-compatible endpoint picks the better of the two (shown in random order, so position bias
averages out). A win counts 1, a tie ½.

:func:`evaluate` writes ``win_rate.json`` (per prompt and totals) and ``win_rate.md`` (a small
table) to the output folder.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Any

from .. import UserError

JUDGE_PROMPT = (
    "You compare two assistant answers to the same conversation. Reply with one letter: "
    "A if answer A is better, B if answer B is better.\n\n"
    "Conversation:\n{conversation}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}\n\nBetter answer (A or B):"
)


def generate(model_path: str, prompts: list[list[dict[str, str]]], max_new_tokens: int = 64, batch_size: int = 8,
             do_sample: bool = False, temperature: float = 0.7, seed: int = 0, dtype: str = "auto") -> list[str]:
    """Answers of the model at ``model_path`` to chat ``prompts`` (new tokens only, special tokens dropped)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..llm.hf import generate_chat

    kw: dict[str, Any] = {}
    if dtype not in ("auto", None):
        kw["dtype"] = getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, **kw)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    torch.manual_seed(seed)
    return generate_chat(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         do_sample=do_sample, temperature=temperature, device=device)


class OpenAIJudge:
    """An LLM judge through an OpenAI-compatible ``/chat/completions`` endpoint (a
    :mod:`gazepref.llm` ``openai`` backend). ``api_key``: a bearer token, or ``api_key_env``: the
    name of the environment variable holding one."""

    def __init__(self, base_url: str, model: str = "judge", api_key_env: str | None = None, timeout: float = 60.0,
                 api_key: str | None = None):
        from ..llm import build_backend

        self.base_url = base_url
        self.backend = build_backend("openai", base_url=base_url, model=model, api_key=api_key,
                                     api_key_env=api_key_env, timeout=timeout, max_tokens=4, temperature=0.0)

    def check(self) -> None:
        """One cheap request (a one-word question, 4 tokens at most), so an unreachable or broken
        judge fails before anything is trained; raises a one-line :class:`UserError` naming the URL."""
        from ..llm import BackendError

        try:
            self.backend.generate([{"role": "user", "content": "Answer with one letter: A or B?"}])
        except BackendError as e:
            detail = " ".join(str(e).split())
            raise UserError(f"the LLM judge at --judge-url {self.base_url} does not answer ({detail}); "
                            "start it or leave --judge-url out") from None

    def prefer(self, prompt: list[dict[str, str]], a: str, b: str) -> int | None:
        """0 if ``a`` is better, 1 if ``b``, None if the reply is neither."""
        from ..llm import BackendError

        conv = "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
        msg = JUDGE_PROMPT.format(conversation=conv, a=a, b=b)
        try:
            reply = self.backend.generate([{"role": "user", "content": msg}])
        except BackendError as e:
            raise UserError(f"LLM judge: {e}") from None
        m = re.match(r"\W*([AB])\b", reply.strip().upper())
        return None if m is None else (0 if m.group(1) == "A" else 1)


def check_judge(base_url: str, model: str = "judge", api_key_env: str | None = None, timeout: float = 30.0) -> None:
    """Ask the judge at ``base_url`` once (:meth:`OpenAIJudge.check`); a judge that cannot be
    built (e.g. its key variable unset) or does not answer raises a one-line :class:`UserError`."""
    from ..llm import BackendError

    try:
        judge = OpenAIJudge(base_url, model, api_key_env, timeout=timeout)  # the check's own timeout
    except BackendError as e:
        raise UserError(f"the LLM judge at --judge-url {base_url}: {' '.join(str(e).split())}") from None
    judge.check()


def _outcome(policy: float, ref: float) -> float:
    return 1.0 if policy > ref else (0.5 if policy == ref else 0.0)


def evaluate(ref_path: str, policy_path: str, prompts: list[list[dict[str, str]]], scorer, out: str | os.PathLike,
             max_new_tokens: int = 64, batch_size: int = 8, do_sample: bool = False, temperature: float = 0.7,
             seed: int = 0, judge: OpenAIJudge | None = None, scorer_name: str | None = None,
             title: str = "win rate") -> dict[str, Any]:
    """Generate with both models, score, write ``win_rate.json`` and ``win_rate.md``; return the totals."""
    if not prompts:
        raise UserError("no held-out prompts to evaluate on (the test split is empty)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ref_ans = generate(ref_path, prompts, max_new_tokens, batch_size, do_sample, temperature, seed)
    pol_ans = generate(policy_path, prompts, max_new_tokens, batch_size, do_sample, temperature, seed)
    t_gen = time.perf_counter() - t0
    rng = random.Random(seed)
    rows, wins, jwins, jn = [], 0.0, 0.0, 0
    for p, a_ref, a_pol in zip(prompts, ref_ans, pol_ans):
        r_ref, c_ref = scorer.score(p, a_ref)
        r_pol, c_pol = scorer.score(p, a_pol)
        w = _outcome(r_pol, r_ref)
        wins += w
        row = {"prompt": p[-1]["content"], "reference": a_ref, "policy": a_pol, "reward_reference": r_ref,
               "reward_policy": r_pol, "confidence_reference": c_ref, "confidence_policy": c_pol, "win": w}
        if judge is not None:
            flip = rng.random() < 0.5
            a, b = (a_pol, a_ref) if flip else (a_ref, a_pol)
            pick = judge.prefer(p, a, b)
            if pick is not None:
                jw = 1.0 if (pick == 0) == flip else 0.0
                jwins += jw
                jn += 1
                row["judge_win"] = jw
            else:
                row["judge_win"] = None
        rows.append(row)
    n = len(rows)
    mean = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
    totals = {
        "title": title,
        "prompts": n,
        "scorer": scorer_name or getattr(scorer, "name", type(scorer).__name__),
        "win_rate": wins / n,
        "wins": sum(r["win"] == 1.0 for r in rows),
        "ties": sum(r["win"] == 0.5 for r in rows),
        "losses": sum(r["win"] == 0.0 for r in rows),
        "mean_reward_reference": mean([r["reward_reference"] for r in rows]),
        "mean_reward_policy": mean([r["reward_policy"] for r in rows]),
        "judge_win_rate": (jwins / jn) if jn else None,
        "judge_decisions": jn if judge is not None else None,
        "reference": ref_path,
        "policy": policy_path,
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "generation_s": round(t_gen, 3),
    }
    (out / "win_rate.json").write_text(json.dumps({"totals": totals, "rows": rows}, indent=2, default=str))
    (out / "win_rate.md").write_text(markdown_table(totals))
    return totals


def markdown_table(t: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))

    lines = [f"# {t['title']}", "",
             "| judge | prompts | win rate | wins | ties | losses | mean reward (ref → policy) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
             f"| {t['scorer']} | {t['prompts']} | {f(t['win_rate'])} | {t['wins']} | {t['ties']} | {t['losses']} | "
             f"{f(t['mean_reward_reference'])} → {f(t['mean_reward_policy'])} |"]
    if t.get("judge_decisions") is not None:
        lines.append(f"| LLM judge | {t['judge_decisions']} | {f(t['judge_win_rate'])} | | | | |")
    lines += ["", f"Reference `{t['reference']}`, policy `{t['policy']}`; {t['max_new_tokens']} new tokens, "
              f"{'sampled' if t['do_sample'] else 'greedy'}. A tie counts ½.", ""]
    return "\n".join(lines)
