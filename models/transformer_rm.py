"""A transformer reward model trained with TRL's ``RewardTrainer`` (for users with a GPU and a local
model; nothing is downloaded).

``TransformerRM(model_path=...)`` fine-tunes a local sequence-classification checkpoint (one output:
the reward) on the comparisons with the Bradley–Terry loss of ``RewardTrainer``:
``chosen`` = the preferred response, ``rejected`` = the other, both after the prompt. It follows the
pairwise convention of :mod:`gazepref.models.text_models`: ``fit(X, y)``, ``decision_function(X)`` =
reward(left) − reward(right), ``predict_proba(X)[:, 1] = P(left preferred)``; :meth:`reward` scores
single responses. :func:`build_tiny_reward_model` writes a randomly initialised 2-layer Llama/GPT-2
scorer with a word-level tokenizer built from the texts (tests, CPU smoke runs).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin


def build_tiny_reward_model(out: str | Path, texts: Iterable[str], arch: str = "llama", hidden_size: int = 32,
                            layers: int = 2, heads: int = 2, max_positions: int = 512, seed: int = 0) -> Path:
    """A tiny sequence-classification model (num_labels=1) and tokenizer, built from config."""
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2Config, LlamaConfig

    from .tiny_lm import build_tokenizer

    tok = build_tokenizer(texts, 2000)
    tok.padding_side = "right"
    common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, num_labels=1)
    if arch == "llama":
        cfg = LlamaConfig(hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
                          num_key_value_heads=heads, intermediate_size=2 * hidden_size,
                          max_position_embeddings=max_positions, **common)
    elif arch == "gpt2":
        cfg = GPT2Config(n_embd=hidden_size, n_layer=layers, n_head=heads, n_positions=max_positions, **common)
    else:
        raise ValueError(f"unknown arch {arch!r}; expected llama or gpt2")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def encode(tok: Any, prompt: str, response: str, max_length: int) -> list[int]:
    """Token ids of one response after its prompt, as the reward model reads it in training and in
    scoring alike: the tokenizer's chat template when it has one (else prompt, newline, response),
    ending with the end-of-text token. A text longer than ``max_length`` tokens loses the end of its
    response (TRL's RewardTrainer would drop the whole pair instead, and the long responses are the
    ones people tend to prefer, so dropping them would bias the training set)."""
    if tok.chat_template:
        msgs = [{"role": "user", "content": str(prompt)}, {"role": "assistant", "content": str(response)}]
        ids = tok.apply_chat_template(msgs, tokenize=True)
        if not isinstance(ids, list):  # a BatchEncoding
            ids = ids["input_ids"]
    else:
        ids = tok(f"{prompt}\n{response}")["input_ids"]
    ids = list(ids)
    eos = tok.eos_token_id
    if len(ids) > max_length or not ids or ids[-1] != eos:
        ids = ids[:max_length - 1] + [eos]
    return ids


def _preference_rows(X: pd.DataFrame, y: np.ndarray, tok: Any, max_length: int) -> list[dict[str, list[int]]]:
    """Pre-tokenised pairs (``chosen_ids``/``rejected_ids``): RewardTrainer then neither re-formats
    nor filters them."""
    rows = []
    for p, a, b, yy in zip(X["prompt"], X["text_0"], X["text_1"], y):
        chosen, rejected = (a, b) if yy == 1 else (b, a)
        rows.append({"chosen_ids": encode(tok, p, chosen, max_length),
                     "rejected_ids": encode(tok, p, rejected, max_length)})
    return rows


class TransformerRM(ClassifierMixin, BaseEstimator):
    """Fine-tune a local reward model with TRL's RewardTrainer."""

    def __init__(self, model_path: str | None = None, output_dir: str | None = None, max_steps: int = 100,
                 learning_rate: float = 1e-4, batch_size: int = 8, max_length: int = 512, seed: int = 0):
        self.model_path = model_path
        self.output_dir = output_dir
        self.max_steps = max_steps
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: Any, **_: Any) -> "TransformerRM":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from datasets import Dataset
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from trl import RewardConfig, RewardTrainer

        y = np.asarray(y, dtype=int)
        out = self.output_dir or tempfile.mkdtemp(prefix="gazepref-rm-")
        path = self.model_path
        if path is None:
            path = str(build_tiny_reward_model(Path(out) / "init", pd.concat([X["prompt"], X["text_0"], X["text_1"]])))
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        if tok.eos_token is None:  # encoder checkpoints (BERT, MiniLM) end a text with [SEP]
            tok.eos_token = tok.sep_token
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if tok.eos_token is None or tok.pad_token is None:
            raise ValueError(f"{path}: the tokenizer has no end-of-text (eos/sep) or padding token")
        model.config.pad_token_id = tok.pad_token_id
        ds = Dataset.from_list(_preference_rows(X, y, tok, self.max_length))
        args = RewardConfig(output_dir=out, max_steps=self.max_steps, learning_rate=self.learning_rate,
                            per_device_train_batch_size=self.batch_size, max_length=self.max_length,
                            logging_steps=max(1, self.max_steps // 5), save_strategy="no", report_to=[],
                            seed=self.seed, use_cpu=not _has_cuda(), dataloader_pin_memory=False)
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
        trainer.train()
        self.n_train_pairs_ = len(trainer.train_dataset)
        self.model_ = trainer.model.eval()
        self.tokenizer_ = tok
        self.classes_ = np.array([0, 1])
        return self

    def reward(self, prompts: Sequence[str], texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """Reward of each response after its prompt (the model's scalar head)."""
        import torch

        tok, model = self.tokenizer_, self.model_
        out = []
        dev = next(model.parameters()).device
        for i in range(0, len(texts), batch_size):
            ids = [encode(tok, p, t, self.max_length) for p, t in zip(prompts[i:i + batch_size], texts[i:i + batch_size])]
            enc = tok.pad({"input_ids": ids}, return_tensors="pt")
            with torch.no_grad():
                out.append(model(**{k: v.to(dev) for k, v in enc.items()}).logits[:, 0].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        p = X["prompt"].tolist()
        return self.reward(p, X["text_0"].tolist()) - self.reward(p, X["text_1"].tolist())

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False
