"""LLM-judge backend for text feedback: an OpenAI-compatible ``/chat/completions`` endpoint.

Same output as the offline classifier (``{nof, sat, ordinal, confidence}`` per record). The judge
gets the taxonomy, the previous query and answer and the next message, and must answer with one
JSON object ``{"nof": ..., "builds_on_answer": true|false, "confidence": 0..1}``.

Configuration: ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``) and ``model``, by default the
settings' ``llm_base_url``, ``llm_model`` and ``llm_api_key`` (:mod:`gazepref.settings`: the
environment variables ``GAZEPREF_LLM_BASE_URL``, ``GAZEPREF_LLM_MODEL`` and ``GAZEPREF_LLM_API_KEY``,
the last falling back to ``OPENAI_API_KEY``). Requests go through the project's OpenAI-compatible
client (:mod:`gazepref.llm`). Nothing is sent anywhere unless this backend is chosen explicitly.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .. import UserError
from ..llm import BackendError, build_backend
from ..settings import current as current_settings
from .text_feedback import CATEGORIES, NONE, as_records, result_for

SYSTEM_PROMPT = """You label naturally occurring feedback in chats between a user and an AI assistant.
Given the user's previous query, the assistant's answer, and the user's NEXT message, decide whether the
next message is feedback about that answer. Categories:
- repeat_rephrase: the user asks the same question again, verbatim or reworded, because the answer did not satisfy.
- make_aware_with_correction: the user says the answer is wrong or incomplete AND gives the correct information or says what to do instead.
- make_aware_without_correction: the user says the answer is wrong, unhelpful or off-topic, without giving the fix.
- ask_clarification: the user asks what the answer meant, or to explain part of it again or more simply.
- positive: the user thanks or praises the answer.
- none: anything else, in particular a NEW question, even on the same topic or about something the answer mentioned.
Most next messages are new questions: answer "none" unless the message clearly is feedback.
Also say whether the next message builds on the answer (picks up something the answer introduced).
Reply with only a JSON object: {"nof": "<category>", "builds_on_answer": true|false, "confidence": <0..1>}"""


def build_messages(rec: Mapping[str, str], max_chars: int = 4000) -> list[dict[str, str]]:
    """The chat messages sent to the judge for one record."""
    user = (
        f"PREVIOUS QUERY:\n{rec['prev_query'][:max_chars]}\n\n"
        f"ASSISTANT ANSWER:\n{rec['prev_response'][:max_chars]}\n\n"
        f"NEXT MESSAGE:\n{rec['next_query'][:max_chars]}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_reply(text: str) -> tuple[str, bool, float]:
    """(category, builds_on_answer, confidence) from the judge's reply; tolerant of code fences."""
    m = re.search(r"\{.*\}", text or "", re.DOTALL)
    if not m:
        raise ValueError(f"no JSON object in the judge's reply: {text[:200]!r}")
    obj = json.loads(m.group(0))
    nof = str(obj.get("nof", obj.get("category", ""))).strip().lower().replace(" ", "_").replace("/", "_")
    aliases = {"repeat": "repeat_rephrase", "rephrase": "repeat_rephrase", "clarification": "ask_clarification",
               "positive_feedback": "positive", "no_feedback": NONE}
    nof = aliases.get(nof, nof)
    if nof not in CATEGORIES:
        raise ValueError(f"the judge answered an unknown category {nof!r}")
    try:
        conf = float(obj.get("confidence", 0.5))
    except (TypeError, ValueError):
        conf = 0.5
    return nof, bool(obj.get("builds_on_answer", False)), min(1.0, max(0.0, conf))


class LLMJudge:
    """Text-feedback classification by an LLM behind an OpenAI-compatible chat endpoint.

    Uses the project's client (a :func:`gazepref.llm.build_backend` ``openai`` backend).
    Parameters: ``base_url`` (the API root, ending before ``/chat/completions``), ``model``,
    ``api_key`` (a bearer token) or ``api_key_env`` (the name of an environment variable holding
    one), ``timeout`` seconds. Unset ones default to the settings (:func:`gazepref.settings.current`):
    ``$GAZEPREF_LLM_BASE_URL``, ``$GAZEPREF_LLM_MODEL``, ``$GAZEPREF_LLM_API_KEY`` (else ``$OPENAI_API_KEY``).
    """

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key_env: str | None = None,
                 timeout: float = 60.0, api_key: str | None = None):
        settings = current_settings()
        self.base_url = (base_url or settings.llm_base_url or "").rstrip("/")
        self.model = model or settings.llm_model or ""
        self.api_key_env = api_key_env
        self.timeout = timeout
        if not self.base_url:
            raise UserError("the llm backend needs --base-url (or GAZEPREF_LLM_BASE_URL)")
        if not self.model:
            raise UserError("the llm backend needs --model (or GAZEPREF_LLM_MODEL)")
        if api_key is None and api_key_env is None:
            api_key = settings.llm_api_key
        self.backend_ = build_backend("openai", base_url=self.base_url, model=self.model, api_key=api_key,
                                      api_key_env=api_key_env, timeout=timeout, max_tokens=200, temperature=0.0)

    def _ask(self, rec: Mapping[str, str]) -> str:
        try:
            return self.backend_.generate(build_messages(rec))
        except BackendError as e:
            raise UserError(f"LLM judge failed: {e}") from None

    def classify(self, records: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
        """Per record ``{nof, sat, ordinal, confidence}``; an unusable reply counts as ``none`` (confidence 0)."""
        out = []
        for rec in as_records(records):
            try:
                nof, engaged, conf = parse_reply(self._ask(rec))
            except (ValueError, json.JSONDecodeError):
                nof, engaged, conf = NONE, False, 0.0
            out.append(result_for(nof, conf, engaged))
        return out

    def predict(self, records) -> list[str]:
        return [r["nof"] for r in self.classify(records)]
