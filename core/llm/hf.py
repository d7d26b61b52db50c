"""Local Hugging Face causal LMs: one fallback chat template, one generation helper, the ``hf`` backend.

* :data:`FALLBACK_CHAT_TEMPLATE` / :func:`ensure_chat_template` — for tokenizers without a chat
  template (base models): plain ``User:``/``Assistant:`` turns, each assistant message ended by the
  EOS token. DPO training (:mod:`gazepref.models.dpo`), the win-rate evaluation
  (:mod:`gazepref.models.win_rate`) and the ``hf`` backend all format chats with it, so a model is
  prompted at evaluation and in the study the way it was trained.
* :func:`generate_chat` — the answers of a loaded model to a list of chats (left-padded batches,
  new tokens only, special tokens dropped; greedy unless ``do_sample``).
* :class:`HFBackend` — a model folder on disk as a chat backend (nothing is downloaded).

``transformers`` and ``torch`` are imported on first use, so the study site starts without the ML
extras.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from . import BackendError, Message

#: Used for base models whose tokenizer has no chat template: plain "User:/Assistant:" turns, each
#: assistant message ended by the EOS token.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}Assistant: {{ m['content'] }}{{ eos_token }}\n"
    "{% else %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def ensure_chat_template(tok) -> bool:
    """Give ``tok`` :data:`FALLBACK_CHAT_TEMPLATE` when it has none; True if it did."""
    if getattr(tok, "chat_template", None):
        return False
    logging.getLogger(__name__).warning("tokenizer has no chat template: using a plain User:/Assistant: one")
    tok.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def generate_chat(model, tok, prompts: list[list[Message]], max_new_tokens: int = 64, batch_size: int = 8,
                  do_sample: bool = False, temperature: float = 0.7, device: Any = None) -> list[str]:
    """Answers of ``model`` to the chats ``prompts`` (new tokens only, special tokens dropped, stripped).

    The tokenizer gets :data:`FALLBACK_CHAT_TEMPLATE` when it has no template, a pad token (its EOS)
    when it has none, and left padding. Each chat is formatted with the template's generation prompt
    and tokenised without extra special tokens (the template writes its own). ``device``: where the
    inputs go (default: the model's device). Sampling uses ``temperature``; seed torch beforehand
    for repeatable samples.
    """
    import torch

    ensure_chat_template(tok)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if device is None:
        device = getattr(model, "device", None) or next(model.parameters()).device
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                 for p in prompts[i:i + batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        gen_kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        if do_sample:
            gen_kw["temperature"] = temperature
        with torch.no_grad():
            ids = model.generate(**enc, **gen_kw)
        new = ids[:, enc["input_ids"].shape[1]:]
        out += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    return out


class HFBackend:
    """A local causal LM folder as a chat backend (greedy when ``temperature`` is 0)."""

    def __init__(self, path: str, max_new_tokens: int = 256, temperature: float = 0.0, device: str = "cpu"):
        self.path = Path(path)
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.device = device
        self._model = self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        if not self.path.is_dir():
            raise BackendError(f"hf backend: model folder not found: {self.path}")
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise BackendError("hf backend needs the ML extras: pip install 'gazepref[ml]'") from None
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self._model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True).to(self.device)
        except (OSError, ValueError) as e:
            raise BackendError(f"hf backend: cannot load {self.path}: {e}") from None
        self._model.eval()

    def generate(self, messages: list[Message]) -> str:
        with self._lock:
            if self._model is None:
                self._load()
            text = generate_chat(self._model, self._tokenizer, [messages], max_new_tokens=self.max_new_tokens,
                                 batch_size=1, do_sample=self.temperature > 0, temperature=self.temperature,
                                 device=self.device)[0]
        if not text:
            raise BackendError(f"hf backend: {self.path.name} produced no text")
        return text
