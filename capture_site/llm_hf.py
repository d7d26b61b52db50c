"""A local Hugging Face causal LM (a model folder on disk; nothing is downloaded).

``transformers`` is imported on first use, so the site starts without the ML extras.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .llm import BackendError, Message


class HFBackend:
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

    def _prompt(self, messages: list[Message]) -> str:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def generate(self, messages: list[Message]) -> str:
        with self._lock:
            if self._model is None:
                self._load()
            import torch

            inputs = self._tokenizer(self._prompt(messages), return_tensors="pt").to(self.device)
            kw = {"max_new_tokens": self.max_new_tokens, "do_sample": self.temperature > 0}
            if self.temperature > 0:
                kw["temperature"] = self.temperature
            pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self._tokenizer.eos_token_id
            with torch.no_grad():
                out = self._model.generate(**inputs, pad_token_id=pad, **kw)
        text = self._tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        if not text:
            raise BackendError(f"hf backend: {self.path.name} produced no text")
        return text
