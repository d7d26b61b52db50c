"""LLM backends behind one interface.

A backend turns a chat (``[{"role": "user"|"assistant"|"system", "content": str}, ...]``) into
the assistant's next message. Kinds: ``demo`` (offline, deterministic, the embedded default),
``openai`` (any OpenAI-compatible HTTP server: vLLM, Ollama, llama.cpp server, OpenAI) and ``hf``
(a local Hugging Face model folder). Every failure is raised as :class:`BackendError`, which the
chat API turns into a "try again" for the participant without losing the turn.
"""
from __future__ import annotations

from typing import Protocol

from .config import ModelSpec

Message = dict[str, str]


class BackendError(RuntimeError):
    """The model could not answer (unreachable server, timeout, bad reply, missing model)."""


class Backend(Protocol):
    def generate(self, messages: list[Message]) -> str:  # pragma: no cover - interface
        ...


def make_backend(spec: ModelSpec) -> Backend:
    """Build the backend for one ``[models.NAME]`` table of the study config."""
    if spec.backend == "demo":
        from .llm_demo import DemoBackend

        return DemoBackend(variant=spec.options.get("variant", "concise"), fail=bool(spec.options.get("fail")),
                           rank=spec.options.get("rank", 0))
    if spec.backend == "openai":
        from .llm_openai import OpenAIBackend

        return OpenAIBackend(**spec.options)
    if spec.backend == "hf":
        from .llm_hf import HFBackend

        return HFBackend(**spec.options)
    raise BackendError(f"unknown backend {spec.backend!r}")
