"""Per-application state of the study site: database sessions, study configs, backends, limits.

Blueprints reach it through :func:`site` (the ``Site`` of the current app) and :func:`db` (the
request's SQLAlchemy session, closed at the end of the request).
"""
from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import current_app, g
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from .. import store
from .config import ConfigError, ModelSpec, StudyConfig, parse_config
from ..llm import Backend, BackendError, build_backend
from .ratelimit import DbRateLimiter


#: SQLite's primary result codes that say the database cannot serve the request now (busy or
#: locked by another writer, out of memory, an I/O error, a full disk, a file it cannot open):
#: SQLITE_BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN, PROTOCOL
_SQLITE_UNAVAILABLE = frozenset({5, 6, 7, 10, 13, 14, 15})

#: the errors of a database that cannot serve requests: the server down or restarted, a connection
#: cut (``OperationalError``, ``InterfaceError``), every pooled connection busy (``PoolTimeout``);
#: :func:`database_outage` tells an outage from SQLite's faults among them
OUTAGE_ERRORS = (OperationalError, InterfaceError, PoolTimeout)


def database_outage(e: Exception) -> bool:
    """Whether the database error ``e`` says the database cannot serve requests right now (answered
    503 + Retry-After by :class:`.app._DatabaseUnavailable`; a purge logs it as one line,
    :mod:`.purge`) rather than a fault of the site or its
    schema. PostgreSQL's driver raises ``OperationalError`` for the server's state only (down,
    restarting, the connection cut, resources, a deadlock to retry); SQLite raises it also for a
    query its schema cannot answer (``no such table``/``no such column``, a syntax error:
    ``SQLITE_ERROR``), a read-only or corrupt file: those are faults, which a retry never mends
    (a 500 with its traceback in the log, instead of pages resending for ever)."""
    orig = getattr(e, "orig", None)
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in _SQLITE_UNAVAILABLE
    return True


T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass
class Site:
    sessions: sessionmaker[Session]
    default_slug: str
    limiter: DbRateLimiter  # the ingest limit, shared by every process and host
    #: for single statements outside a transaction (store.autocommit_engine): the hot paths'
    #: checks, rate limits and one-statement inserts
    statements: Engine
    checkpointer: Any = None  # SQLite: the background log checkpoints (.sqlite_checkpoint)
    backend_overrides: dict[str, Backend] = field(default_factory=dict)
    _configs: dict[str, StudyConfig] = field(default_factory=dict)
    _unreadable: dict[str, dict] = field(default_factory=dict)  # slug -> a stored config that failed to parse
    _backends: dict[tuple[str, str], tuple[ModelSpec, Backend]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reuses_ids: bool | None = None

    @property
    def engine(self):
        return self.sessions.kw["bind"]

    @property
    def reuses_participant_ids(self) -> bool:
        """Whether the database may give a deleted participant's row id to the next one (a SQLite
        database made before ``participants`` was AUTOINCREMENT: :func:`gazepref.store.reuses_ids`;
        read once per process)."""
        if self._reuses_ids is None:
            self._reuses_ids = store.reuses_ids(self.engine, store.Participant.__tablename__)
        return self._reuses_ids

    def dispose(self) -> None:
        """Close the pooled database connections (both pools); stop the checkpoints."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()
        self.statements.dispose()

    def config(self, study: store.Study) -> StudyConfig:
        """The validated configuration of ``study`` as its row now stores it (parsed once per
        version): a host started with a newer study file rewrites the row, and every other process
        and host follows at its next request instead of keeping the file it first read (a pass
        threshold, a completion code, a model differing between hosts). A row this version cannot
        read (written by a host of a newer version) keeps the config read before, with a warning
        logged once; with none read before, its :class:`ConfigError` stands."""
        cfg = self._configs.get(study.slug)
        if cfg is None or cfg.raw != study.config:
            if cfg is not None and self._unreadable.get(study.slug) == study.config:
                return cfg  # that version failed already (logged): not parsed again per request
            try:
                parsed = parse_config(study.config, f"study {study.slug!r}", strict=False)
            except ConfigError as e:
                if cfg is None:  # nothing to keep serving
                    raise
                # a host of a newer version rewrote the row with what this code cannot read (a rolling
                # upgrade): keep the config this process serves instead of failing every request
                self._unreadable[study.slug] = study.config
                log.warning("study %r: its stored config changed and this version cannot read it (%s); "
                            "serving the config read before until this host runs the version that wrote it",
                            study.slug, e)
                return cfg
            cfg = self._configs[study.slug] = parsed
            self._unreadable.pop(study.slug, None)
        return cfg

    def backend(self, cfg: StudyConfig, model: str) -> Backend:
        """The backend serving ``model`` in ``cfg`` (tests may override by model name)."""
        if model in self.backend_overrides:
            return self.backend_overrides[model]
        if model not in cfg.models:
            raise BackendError(f"model {model!r} is not configured")
        spec = cfg.models[model]
        key = (cfg.slug, model)
        with self._lock:  # a model whose [models.NAME] table changed gets a new backend
            built = self._backends.get(key)
            if built is None or built[0] != spec:
                built = self._backends[key] = (spec, build_backend(spec.backend, **spec.options))
            return built[1]


def ensure_study(sessions: sessionmaker[Session], cfg: StudyConfig) -> None:
    """Create the study row for ``cfg`` (with a fresh pseudonymisation salt) or update its config."""
    try:
        _ensure_study(sessions, cfg)
    except IntegrityError:  # another server process created it at the same moment
        _ensure_study(sessions, cfg)


def _ensure_study(sessions: sessionmaker[Session], cfg: StudyConfig) -> None:
    with sessions() as s, s.begin():
        study = s.scalar(select(store.Study).where(store.Study.slug == cfg.slug))
        if study is None:
            s.add(store.Study(slug=cfg.slug, name=cfg.name, config=cfg.raw, salt=secrets.token_hex(16)))
        elif study.config != cfg.raw:
            study.config, study.name = cfg.raw, cfg.name


def site() -> Site:
    return current_app.extensions["gazepref"]


def app_extension(key: str, make: Callable[[], T]) -> T:
    """The current app's extension ``key`` in this process, made by ``make()`` on first use (once:
    under the site's lock; ``make`` must not take that lock itself)."""
    found = current_app.extensions.get(key)
    if found is None:
        with site()._lock:
            found = current_app.extensions.get(key)
            if found is None:
                found = current_app.extensions[key] = make()
    return found


def db() -> Session:
    if "gazepref_db" not in g:
        g.gazepref_db = site().sessions()
    return g.gazepref_db


def close_db(_exc: Any = None) -> None:
    """End the request's session (``teardown_appcontext``). A connection that died after the
    request's last query (the database restarted, the connection cut) fails the rollback that
    closing does: it is dropped from the pool instead; the answer is made by then (a view that
    wanted its writes kept committed them), so it is not turned into a bare 500 afterwards."""
    session = g.pop("gazepref_db", None)
    if session is not None:
        try:
            session.close()
        except DBAPIError as e:
            session.invalidate()
            log.info("the request's database connection was gone at its end (%s)",
                     " ".join(str(getattr(e, "orig", None) or e).split())[:200])


def study_by_slug(slug: str) -> store.Study | None:
    return db().scalar(select(store.Study).where(store.Study.slug == slug))

