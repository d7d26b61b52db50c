"""Every ``GAZEPREF_*`` environment variable, read in one place.

:class:`Settings` is a frozen dataclass with one field per variable. An entry point builds it once
(:meth:`Settings.from_env`): the command line in :func:`gazepref.cli.main` (installed for the
command's duration with :func:`using`), the study site in
:func:`gazepref.capture_site.app.create_app` (copied into ``app.config``, so no request reads the
environment). Library functions take explicit arguments whose defaults come from :func:`current`:
the settings an entry point installed, else the environment as it is at the call (library use
from Python, tests).

| variable | field | meaning | default |
| --- | --- | --- | --- |
| ``GAZEPREF_INSTANCE`` | ``instance`` | the site's instance folder (SQLite database, secret key) | ``./instance`` |
| ``GAZEPREF_DATABASE_URL`` | ``database_url`` | SQLAlchemy URL of the site's database (PostgreSQL: ``postgresql+psycopg://...``) | SQLite in the instance folder |
| ``GAZEPREF_STUDY_CONFIG`` | ``study_config`` | the study's TOML file | the embedded demo study |
| ``GAZEPREF_SECRET_KEY`` | ``secret_key`` | the site's session key (every process and host the same) | generated once: into ``instance/secret_key`` (SQLite), into the database's ``site_secrets`` (PostgreSQL, shared by the hosts) |
| ``GAZEPREF_GAZE_CONCURRENCY`` | ``gaze_concurrency`` | webcam frames in the gaze pipeline at once per process (0: no limit) | the CPU count |
| ``GAZEPREF_GAZE_SHED_MS`` | ``gaze_shed_ms`` | frames reached later than this after their request arrived are stored without gaze (0: off) | 0 |
| ``GAZEPREF_GAZE_WS_COMMIT_MS`` | ``gaze_ws_commit_ms`` | how often the WebSocket stores buffered gaze rows (0: every frame) | 500 |
| ``GAZEPREF_GAZE_WS_SKIP_STALE`` | ``gaze_ws_skip_stale`` | skip frames overtaken under overload (``0``/``false``/``no``/``off``: keep them) | on |
| ``GAZEPREF_GAZE_WS_MAX_PENDING`` | ``gaze_ws_max_pending`` | WebSockets per process still waiting for their first message (the token); more are refused at once with "try again later" (0: no cap) | a quarter of ``worker_threads`` |
| ``GAZEPREF_WORKER_THREADS`` | ``worker_threads`` | the request threads of each server process (per-process limits derive from it, it does not set them); an override: under gunicorn started with ``-c python:gazepref.capture_site.gunicorn_conf`` the site reads gunicorn's ``--threads`` itself | gunicorn's ``--threads``, else 32 |
| ``GAZEPREF_CACHE`` | ``cache`` | cache folder (unpacked archives, trained heads, embeddings, feature tables) | ``~/.cache/gazepref`` |
| ``GAZEPREF_EMBED_CACHE`` | ``embed_cache`` | keep sentence embeddings on disk under the cache (``0``: off) | on |
| ``GAZEPREF_DEVICE`` | ``device`` | torch device of the sentence encoder | ``cpu`` |
| ``GAZEPREF_LLM_BASE_URL`` | ``llm_base_url`` | OpenAI-compatible API root of the LLM judges | none |
| ``GAZEPREF_LLM_MODEL`` | ``llm_model`` | the judges' model name | none |
| ``GAZEPREF_LLM_API_KEY`` | ``llm_api_key`` | the judges' bearer token (else ``OPENAI_API_KEY``) | none |
| ``GAZEPREF_SECURE_COOKIES`` | ``secure_cookies`` | the site's session cookie ``Secure`` and named ``__Host-session`` (HTTPS deployments) | off |
| ``GAZEPREF_PROXY_HOPS`` | ``proxy_hops`` | trusted reverse proxies in front of the site (``X-Forwarded-For``/``-Proto``) | 0 |
| ``GAZEPREF_WEB_MODULES`` | ``web_modules`` | the ``node_modules`` folder the site serves the page's face mesh from | ``capture_site/web/node_modules`` |
| ``GAZEPREF_INGEST_RATE_PER_S`` | ``ingest_rate_per_s`` | telemetry batches a participant may send per second (all servers together) | 5 |
| ``GAZEPREF_INGEST_BURST`` | ``ingest_burst`` | telemetry batches a participant may send at once above the rate | 30 |

The database locator itself (``--db``, then ``GAZEPREF_DATABASE_URL``, then the instance) lives
with the store; these fields only carry the two variables.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

_OFF = ("0", "false", "no", "off", "")

#: request threads per server process assumed when neither ``$GAZEPREF_WORKER_THREADS`` nor the
#: server (gunicorn under ``gazepref.capture_site.gunicorn_conf``) says (the documented ``--threads``)
DEFAULT_WORKER_THREADS = 32


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() not in _OFF


def _number(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        from . import UserError

        raise UserError(f"${name} must be a number (got {raw!r})") from None


@dataclass(frozen=True)
class Settings:
    """gazepref's environment settings (see the module docstring for each variable)."""

    instance: str | None = None
    database_url: str | None = None
    study_config: str | None = None
    secret_key: str | None = None
    gaze_concurrency: int | None = None
    gaze_shed_ms: float = 0.0
    gaze_ws_commit_ms: float = 500.0
    gaze_ws_skip_stale: bool = True
    gaze_ws_max_pending: int | None = None
    worker_threads: int | None = None  # None: the server's own count (gunicorn_conf), else 32
    cache: str | None = None
    embed_cache: bool = True
    device: str = "cpu"
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    secure_cookies: bool = False
    proxy_hops: int = 0
    web_modules: str | None = None
    ingest_rate_per_s: float = 5.0
    ingest_burst: float = 30.0

    #: field -> environment variable
    ENV = {
        "instance": "GAZEPREF_INSTANCE", "database_url": "GAZEPREF_DATABASE_URL",
        "study_config": "GAZEPREF_STUDY_CONFIG", "secret_key": "GAZEPREF_SECRET_KEY",
        "gaze_concurrency": "GAZEPREF_GAZE_CONCURRENCY", "gaze_shed_ms": "GAZEPREF_GAZE_SHED_MS",
        "gaze_ws_commit_ms": "GAZEPREF_GAZE_WS_COMMIT_MS", "gaze_ws_skip_stale": "GAZEPREF_GAZE_WS_SKIP_STALE",
        "gaze_ws_max_pending": "GAZEPREF_GAZE_WS_MAX_PENDING", "worker_threads": "GAZEPREF_WORKER_THREADS",
        "cache": "GAZEPREF_CACHE", "embed_cache": "GAZEPREF_EMBED_CACHE", "device": "GAZEPREF_DEVICE",
        "llm_base_url": "GAZEPREF_LLM_BASE_URL", "llm_model": "GAZEPREF_LLM_MODEL",
        "llm_api_key": "GAZEPREF_LLM_API_KEY",
        "secure_cookies": "GAZEPREF_SECURE_COOKIES", "proxy_hops": "GAZEPREF_PROXY_HOPS",
        "web_modules": "GAZEPREF_WEB_MODULES",
        "ingest_rate_per_s": "GAZEPREF_INGEST_RATE_PER_S", "ingest_burst": "GAZEPREF_INGEST_BURST",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable once from ``environ`` (default ``os.environ``); empty counts as unset."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            return env.get(name) or None

        conc = _number(env, "GAZEPREF_GAZE_CONCURRENCY", None)
        pending = _number(env, "GAZEPREF_GAZE_WS_MAX_PENDING", None)
        threads = _number(env, "GAZEPREF_WORKER_THREADS", None)
        return cls(
            instance=text("GAZEPREF_INSTANCE"),
            database_url=text("GAZEPREF_DATABASE_URL"),
            study_config=text("GAZEPREF_STUDY_CONFIG"),
            secret_key=text("GAZEPREF_SECRET_KEY"),
            gaze_concurrency=None if conc is None else int(conc),
            gaze_shed_ms=float(_number(env, "GAZEPREF_GAZE_SHED_MS", 0.0)),
            gaze_ws_commit_ms=max(0.0, float(_number(env, "GAZEPREF_GAZE_WS_COMMIT_MS", 500.0))),
            gaze_ws_skip_stale=_flag(env.get("GAZEPREF_GAZE_WS_SKIP_STALE"), True),
            gaze_ws_max_pending=None if pending is None else max(0, int(pending)),
            worker_threads=None if threads is None else max(1, int(threads)),
            cache=text("GAZEPREF_CACHE"),
            embed_cache=env.get("GAZEPREF_EMBED_CACHE", "1") != "0",
            device=text("GAZEPREF_DEVICE") or "cpu",
            llm_base_url=text("GAZEPREF_LLM_BASE_URL"),
            llm_model=text("GAZEPREF_LLM_MODEL"),
            llm_api_key=text("GAZEPREF_LLM_API_KEY") or text("OPENAI_API_KEY"),
            secure_cookies=_flag(env.get("GAZEPREF_SECURE_COOKIES"), False),
            proxy_hops=int(_number(env, "GAZEPREF_PROXY_HOPS", 0)),
            web_modules=text("GAZEPREF_WEB_MODULES"),
            ingest_rate_per_s=float(_number(env, "GAZEPREF_INGEST_RATE_PER_S", 5.0)),
            ingest_burst=float(_number(env, "GAZEPREF_INGEST_BURST", 30.0)),
        )

    @property
    def cache_dir(self) -> Path:
        """``$GAZEPREF_CACHE`` or ``~/.cache/gazepref`` (not created)."""
        return Path(self.cache) if self.cache else Path.home() / ".cache" / "gazepref"

    @property
    def gaze_slots(self) -> int:
        """Frames in the gaze pipeline at once: ``gaze_concurrency``, else the CPU count (0: no limit)."""
        if self.gaze_concurrency is not None:
            return self.gaze_concurrency
        return os.cpu_count() or 0

    @property
    def threads(self) -> int:
        """The request threads of each server process: ``worker_threads``, else
        :data:`DEFAULT_WORKER_THREADS` (the site fills ``worker_threads`` in from gunicorn's
        ``--threads`` when it runs under ``gazepref.capture_site.gunicorn_conf``)."""
        return self.worker_threads or DEFAULT_WORKER_THREADS

    @property
    def gaze_ws_pending_cap(self) -> int:
        """WebSockets per process that may wait for their first message at once (0: no cap):
        ``gaze_ws_max_pending``, else a quarter of :attr:`threads` (at least 2): each waiting
        socket holds a request thread, so sockets that never authenticate can hold at most a
        quarter of a worker's threads and the other three quarters stay for participants."""
        if self.gaze_ws_max_pending is not None:
            return self.gaze_ws_max_pending
        return max(2, self.threads // 4)

    def __repr__(self) -> str:  # never print secrets
        hidden = {"secret_key", "llm_api_key", "database_url"}
        parts = [f"{f.name}={'***' if f.name in hidden and getattr(self, f.name) else getattr(self, f.name)!r}"
                 for f in fields(self)]
        return f"Settings({', '.join(parts)})"


_installed: Settings | None = None


def current() -> Settings:
    """The settings of this entry point (see :func:`using`), else read from the environment now."""
    return _installed if _installed is not None else Settings.from_env()


@contextlib.contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """Install ``settings`` as :func:`current` for the duration of the block (an entry point's run)."""
    global _installed
    before, _installed = _installed, settings
    try:
        yield settings
    finally:
        _installed = before


def cache_dir(*parts: str) -> Path:
    """A folder under the cache (``$GAZEPREF_CACHE`` or ``~/.cache/gazepref``); not created."""
    return current().cache_dir.joinpath(*parts)
