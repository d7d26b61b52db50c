"""Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, OpenAI)."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from . import BackendError, Message


class OpenAIBackend:
    """POST ``{base_url}/chat/completions``.

    Parameters: ``base_url`` (the API root, ending before ``/chat/completions``), ``model``,
    ``api_key`` (a bearer token; or ``api_key_env``, the name of an environment variable holding
    one, read here once: study configs name the variable, never the secret), ``timeout`` seconds,
    ``max_tokens``, ``temperature``, ``system`` (a system message put before every chat); other
    keyword arguments are sent with each request.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, api_key_env: str | None = None,
                 timeout: float = 60.0, max_tokens: int = 512, temperature: float = 0.7, system: str | None = None,
                 **extra):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        if api_key is None:
            api_key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.api_key = api_key
        self.timeout = float(timeout)
        self.params = {"max_tokens": int(max_tokens), "temperature": float(temperature), **extra}
        self.system = system

    def __repr__(self) -> str:  # never print the key
        return f"OpenAIBackend(url={self.url!r}, model={self.model!r})"

    def generate(self, messages: list[Message]) -> str:
        if self.system:
            messages = [{"role": "system", "content": self.system}, *messages]
        body = json.dumps({"model": self.model, "messages": messages, **self.params}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                reply = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise BackendError(f"{self.url}: HTTP {e.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise BackendError(f"{self.url}: {getattr(e, 'reason', e)}") from None
        except ValueError:
            raise BackendError(f"{self.url}: reply is not JSON") from None
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.url}: reply has no choices[0].message.content") from None
        if not isinstance(text, str) or not text.strip():
            raise BackendError(f"{self.url}: empty reply")
        return text.strip()
