"""LLM clients behind one interface, below every area of gazepref.

A backend turns a chat (``[{"role": "user"|"assistant"|"system", "content": str}, ...]``) into
the assistant's next message. Kinds (:data:`KINDS`): ``demo`` (offline, deterministic, the study
site's embedded default), ``openai`` (any OpenAI-compatible HTTP server: vLLM, Ollama, llama.cpp
server, OpenAI) and ``hf`` (a local Hugging Face model folder). :func:`build_backend` builds one
from plain arguments; the study site (its ``[models.NAME]`` tables), the text-feedback judge
(:mod:`gazepref.signals.feedback_llm`) and the win-rate judge (:mod:`gazepref.models.win_rate`)
all use it. Every failure is raised as :class:`BackendError` (the site turns it into a "try
again" for the participant; the judges into a one-line user error).

Local Hugging Face generation has one helper, :func:`gazepref.llm.hf.generate_chat`, and one
fallback chat template for tokenizers without one, :data:`gazepref.llm.hf.FALLBACK_CHAT_TEMPLATE`
(also what DPO training formats conversations with), used by the ``hf`` backend, the win-rate
evaluation and DPO alike.
"""
from __future__ import annotations

from typing import Any, Protocol

Message = dict[str, str]

#: The backend kinds :func:`build_backend` knows.
KINDS = ("demo", "openai", "hf")


class BackendError(RuntimeError):
    """The model could not answer (unreachable server, timeout, bad reply, missing model)."""


class Backend(Protocol):
    def generate(self, messages: list[Message]) -> str:  # pragma: no cover - interface
        ...


def build_backend(kind: str, **options: Any) -> Backend:
    """A backend of ``kind`` from plain keyword arguments.

    * ``demo``: ``variant`` (``concise`` or ``detailed``), ``fail`` (always raise; to show the
      retry path), ``rank`` (answer with the k-th best corpus entry); other options are ignored
      here (a study file naming one fails ``study check``).
    * ``openai``: ``base_url``, ``model``, ``api_key`` (or ``api_key_env``: the name of the
      environment variable holding it), ``timeout``, ``max_tokens``, ``temperature``, ``system``;
      other options are sent with each request (see :class:`gazepref.llm.openai_compat.OpenAIBackend`).
    * ``hf``: ``path`` (a model folder on disk), ``max_new_tokens``, ``temperature``, ``device``.
    """
    if kind == "demo":
        from .demo import DemoBackend

        return DemoBackend(variant=options.get("variant", "concise"), fail=bool(options.get("fail")),
                           rank=options.get("rank", 0))
    if kind == "openai":
        from .openai_compat import OpenAIBackend

        return OpenAIBackend(**options)
    if kind == "hf":
        from .hf import HFBackend

        return HFBackend(**options)
    raise BackendError(f"unknown backend {kind!r} (one of {', '.join(KINDS)})")


__all__ = ["KINDS", "Backend", "BackendError", "Message", "build_backend"]
