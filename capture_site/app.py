"""Flask application factory for the study site.

``create_app()`` reads settings from ``overrides``, then the environment
(:class:`gazepref.settings.Settings`, read once here: ``GAZEPREF_INSTANCE``,
``GAZEPREF_DATABASE_URL``, ``GAZEPREF_STUDY_CONFIG``, ``GAZEPREF_SECRET_KEY`` and the gaze limits
``GAZEPREF_GAZE_*``), then embedded defaults: SQLite in the instance folder, the embedded demo study
(offline demo LLM) and a secret key generated once (into ``instance/secret_key`` with SQLite, into
the database's ``site_secrets`` on a database server that several hosts may share). Request
handlers read ``app.config`` only, never the environment.

Production (see README): ``gunicorn -c python:gazepref.capture_site.gunicorn_conf -w 2 --threads 32
-b 127.0.0.1:8000 'gazepref.capture_site.app:create_app()'`` behind a TLS proxy (the config module
tells each worker gunicorn's thread count, :mod:`.gunicorn_conf`); gunicorn writes no access log
unless asked, and one must not log query strings (they carry platform ids on arrival). A setting
the site cannot start with raises :class:`SiteStartError`: one line, under gunicorn too.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, render_template, request
from markupsafe import Markup, escape
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from .. import UserError, store
from ..settings import Settings
from ..settings import current as current_settings
from .batches import MAX_BODY_BYTES
from .chat import MAX_FEEDBACK
from .config import load_config
from .questions import MAX_ANSWER
from .ratelimit import DbRateLimiter
from .runtime import OUTAGE_ERRORS, Site, close_db, database_outage, ensure_study
from .security import EXPIRED_ARG, content_security_policy, csrf_token, form_draft_key
from .serving import gunicorn_threads, worker_threads
from .validation import InvalidInput, check_request


def _secret_key(instance: Path, sessions) -> str:
    """The site's secret key when none is set: with SQLite (one host) the instance's
    ``secret_key`` file, created once; on a database server, which several hosts may share, the
    ``site_secrets`` row, created once by the first server to start (from the instance's file
    where one exists, so a host keeps the key it had), so every host signs with the same key
    without anyone copying it."""
    if sessions.kw["bind"].dialect.name == "sqlite":
        return _file_secret_key(instance)
    from sqlalchemy import select

    path = instance / "secret_key"
    candidate = path.read_text().strip() if path.is_file() else ""
    with sessions() as s, s.begin():
        store.insert_once(s, store.SiteSecret, ["name"], name="secret_key",
                          value=candidate or secrets.token_hex(32))
        key = s.scalar(select(store.SiteSecret.value).where(store.SiteSecret.name == "secret_key"))
    logging.getLogger(__name__).warning(
        "no $GAZEPREF_SECRET_KEY: signing with the key kept in the database (table site_secrets); "
        "whoever can read the database (a read-only role, a dump) can then sign a researcher's login. "
        "Set $GAZEPREF_SECRET_KEY on every host (docs/STUDY_SITE.md)")
    return key


def _file_secret_key(instance: Path) -> str:
    """The instance's secret key, created once; several starting processes agree on one file."""
    path = instance / "secret_key"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # atomic: only the first process's key is kept
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _init_db(url: str):
    engine = store.make_engine(url)  # a URL it cannot use: one line (UserError)
    for attempt in range(5):  # several server processes may create the tables at once
        try:
            return store.init_db(engine)
        except OperationalError as e:
            if attempt == 4:  # a server that is down, a wrong password or database name
                raise store.database_error(url, e) from None
            time.sleep(0.2 * (attempt + 1))


try:  # under gunicorn, an app that cannot start is reported in its own line, without a traceback
    from gunicorn.errors import AppImportError as _AppLoadError
except ImportError:  # (gunicorn not installed)
    class _AppLoadError(Exception):  # type: ignore[no-redef]
        pass


class SiteStartError(UserError, _AppLoadError):
    """A setting the site cannot start with (the database, the study file, an environment
    variable, the instance folder): one line saying which and why. It is a
    :class:`gazepref.UserError` (``gazepref serve`` prints it and exits with status 2) and
    gunicorn's ``AppImportError``, which gunicorn prints as that one line, without a traceback,
    and then stops ("App failed to load.") instead of starting worker after worker."""


class _DatabaseUnavailable:
    """The answer to a request the database could not serve (the server down or restarted, a
    connection cut, the pool exhausted), on every page and API alike: ``503`` with
    ``Retry-After`` (app config ``DB_RETRY_AFTER_S``, 1 s) and ``{"error", "retry": true}`` on the
    API, as a restarting server answers (:mod:`.shutdown`), so the pages keep their batches and
    send them again (a batch is stored once) and a participant's form or turn can be sent again;
    never Flask's bare 500 page. Logged as one line (``gazepref.capture_site.app``, WARNING) at most
    every ``DB_UNAVAILABLE_LOG_S`` (10 s) per process, with the count in between. Once the
    database is back, the pool's dead connections are replaced (SQLAlchemy invalidates the pool
    on the first disconnect it sees) and requests succeed again. An error that is no outage
    (:func:`database_outage`: SQLite's schema errors) is raised on: a 500 with its traceback."""

    def __init__(self, app: Flask):
        import threading

        self.log = logging.getLogger(__name__)
        self.retry = str(max(1, math.ceil(float(app.config.get("DB_RETRY_AFTER_S", 1)))))
        self.every_s = float(app.config.get("DB_UNAVAILABLE_LOG_S", 10.0))
        self.lock, self.count, self.logged_at = threading.Lock(), 0, -math.inf

    def answer(self, e: Exception):
        if not database_outage(e):  # a fault (500, logged with its traceback), not a state to wait out
            raise e
        with self.lock:
            self.count += 1
            now = time.monotonic()
            if now - self.logged_at >= self.every_s:
                count, self.count, self.logged_at = self.count, 0, now
            else:
                count = 0
        if count:
            reason = " ".join(str(getattr(e, "orig", None) or e).split())[:300]
            self.log.warning("database unavailable (%d request(s) answered 503 since the last such line): "
                             "%s %s: %s", count, request.method, request.endpoint, reason)  # (paths
            # may hold a pseudonym: the dashboard's participant pages)
        close_db()  # the request's session is in a failed transaction: the page draws without it
        message = "The study's database cannot be reached right now; please try again in a few seconds."
        headers = {"Retry-After": self.retry}
        if request.path.startswith("/api/"):
            return jsonify(error=message, retry=True), 503, headers
        return render_template("error.html", message=message), 503, headers


def instance_folder(path: str | None = None) -> Path:
    """The instance folder (database, secret key): ``path``, $GAZEPREF_INSTANCE or ./instance;
    made for its owner only (0700) when it does not exist yet."""
    instance = store.instance_folder(path)
    instance.mkdir(parents=True, exist_ok=True, mode=0o700)
    return instance


def paragraphs(text: str) -> Markup:
    """Study texts from TOML as HTML paragraphs: blank lines separate paragraphs, a single line
    break is a space (the file's own wrapping), except before a list item ("- ", "* ", "1. ")."""
    out = []
    for block in re.split(r"\n\s*\n", (text or "").strip()):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        parts: list[str] = []
        for ln in lines:
            if parts and not re.match(r"([-*]|\d+[.)])\s", ln):
                parts[-1] += " " + ln
            else:
                parts.append(ln)
        out.append("<p>" + "<br>".join(str(escape(s)) for s in parts) + "</p>")
    return Markup("\n".join(out))


def create_app(instance_path: str | None = None, overrides: dict[str, Any] | None = None,
               settings: Settings | None = None) -> Flask:
    """The study site. ``settings``: default those of the running entry point (``gazepref serve``)
    or else the environment, read once here (:func:`gazepref.settings.current`); ``overrides`` win
    over them. A setting the site cannot start with raises :class:`SiteStartError` (one line)."""
    try:
        return _create_app(instance_path, overrides, settings)
    except SiteStartError:
        raise
    except UserError as e:
        raise SiteStartError(str(e)) from None
    except OSError as e:  # the instance folder or the secret key file cannot be written
        where = f"{e.filename}: " if e.filename else ""
        raise SiteStartError(f"the study site cannot start: {where}{e.strerror or e}") from None


def _create_app(instance_path: str | None, overrides: dict[str, Any] | None,
                settings: Settings | None) -> Flask:
    settings = current_settings() if settings is None else settings
    threads, threads_from = worker_threads(settings)  # gunicorn's --threads (gunicorn_conf), else the env
    settings = dataclasses.replace(settings, worker_threads=threads)
    instance = instance_folder(instance_path)
    app = Flask(__name__, instance_path=str(instance), instance_relative_config=True)
    app.config.from_mapping(
        DATABASE_URL=store.database_url(instance=instance),  # $GAZEPREF_DATABASE_URL, else the instance's SQLite
        STUDY_CONFIG=settings.study_config,
        SECRET_KEY=settings.secret_key,
        GAZE_CONCURRENCY=settings.gaze_slots,  # frames in the gaze pipeline at once (0: no limit)
        GAZE_SHED_MS=settings.gaze_shed_ms,
        GAZE_WS_COMMIT_MS=settings.gaze_ws_commit_ms,
        GAZE_WS_SKIP_STALE=settings.gaze_ws_skip_stale,
        WORKER_THREADS=threads,  # this process's request threads (what the limits below derive from)
        WORKER_THREADS_FROM=threads_from,  # "gunicorn --threads", "$GAZEPREF_WORKER_THREADS" or "default"
        GAZE_WS_MAX_PENDING=settings.gaze_ws_pending_cap,  # sockets waiting for their token (0: no cap)
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES + 1024,
        INGEST_RATE_PER_S=settings.ingest_rate_per_s,  # per participant, all servers together
        INGEST_BURST=settings.ingest_burst,
        LLM_BACKENDS={},  # model name -> backend object, replacing the configured one (tests)
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # only an answer that changes the session sets its cookie. Flask's default re-sets a
        # permanent session's cookie on every answer (static files, the favicon) with the session
        # as that request read it: one still in flight when the consent POST was answered put
        # back the session without the participant, and the next page asked for consent again.
        # (The cookie then lasts PERMANENT_SESSION_LIFETIME, 31 days, from its last change.)
        SESSION_REFRESH_EACH_REQUEST=False,
        # HTTPS deployments (docs/STUDY_SITE.md): cookies only over TLS, under the __Host- prefix
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PROXY_HOPS=settings.proxy_hops,  # trusted X-Forwarded-For/-Proto hops
        WEB_MODULES=settings.web_modules,  # the page's npm packages (capture_site/vendor.py)
    )
    if overrides:
        app.config.update(overrides)
    if app.config["SESSION_COOKIE_SECURE"]:
        app.config["PREFERRED_URL_SCHEME"] = "https"
        if app.config.get("SESSION_COOKIE_NAME", "session") == "session":
            app.config["SESSION_COOKIE_NAME"] = "__Host-session"  # Secure, Path=/, no Domain
    if app.config["PROXY_HOPS"]:  # the client's address and scheme as the trusted proxies saw them
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = int(app.config["PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    cfg = load_config(app.config["STUDY_CONFIG"])  # a bad key (the [gaze] table's too) fails here, naming it
    if cfg.calibration:
        from .gaze_settings import calibration_warnings, gaze_settings

        for warning in calibration_warnings(gaze_settings(cfg)):
            app.logger.warning("study %r: %s", cfg.slug, warning)
    try:
        sessions = _init_db(app.config["DATABASE_URL"])
        ensure_study(sessions, cfg)
        if not app.config["SECRET_KEY"]:
            app.config["SECRET_KEY"] = _secret_key(instance, sessions)
    except DBAPIError as e:  # e.g. a user without the right to create the tables
        raise store.database_error(app.config["DATABASE_URL"], e) from None
    app.extensions["gazepref_settings"] = settings
    statements = store.autocommit_engine(sessions.kw["bind"])
    from .sqlite_checkpoint import install as install_checkpointer

    # SQLite: log checkpoints in a background thread, off the request path (0: SQLite's own)
    checkpoint_s = app.config.get("SQLITE_CHECKPOINT_S", 0.0 if app.testing else 0.5)
    app.extensions["gazepref"] = Site(
        sessions=sessions, default_slug=cfg.slug, statements=statements,
        checkpointer=install_checkpointer(sessions.kw["bind"], checkpoint_s),
        limiter=DbRateLimiter(statements, app.config["INGEST_RATE_PER_S"], app.config["INGEST_BURST"]),
        backend_overrides=dict(app.config["LLM_BACKENDS"]),
    )

    from . import (chat, compressed, dashboard, flow, gaze, gaze_step, gaze_ws, ingest, purge, setup_log, shutdown,
                   vendor)

    app.config.setdefault("SOCK_SERVER_OPTIONS", dict(gaze_ws.SERVER_OPTIONS))
    for module in (flow, chat, ingest, gaze, gaze_ws, dashboard, vendor):
        app.register_blueprint(module.bp)
    compressed.install(app)  # /static/ and /vendor/ gzip-compressed, from copies in the instance folder
    flow.init_steps(app)  # this app's flow steps: the built-in ones ...
    gaze_step.register(app)  # ... and the webcam calibration step
    try:  # the analyst views (gazepref.signals.plots) on the dashboard, when installed
        from . import plots_view
    except ImportError:
        pass
    else:
        app.register_blueprint(plots_view.bp)
    app.teardown_appcontext(close_db)
    purge.install(app)  # full rate-limit buckets and forgotten login back-offs, now and then
    setup_log.install(app)  # set-up frame counts held in memory written within seconds (the dashboard)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["form_draft_key"] = form_draft_key
    app.jinja_env.globals.update(max_answer=MAX_ANSWER, max_feedback=MAX_FEEDBACK,  # the fields' maxlength
                                 expired_arg=EXPIRED_ARG)
    app.jinja_env.filters["paragraphs"] = paragraphs

    shutdown.install(app)  # SIGTERM: 503 + Retry-After for new work, WebSockets told to reconnect
    app.before_request(check_request)  # the edge: nothing unstorable reaches a handler

    def _error(message: str, code: int):
        if request.path.startswith("/api/"):  # the participant API answers JSON, also for its 404s
            return jsonify(error=message), code
        return render_template("error.html", message=message), code

    @app.errorhandler(HTTPException)
    def _error_page(e: HTTPException):
        return _error(e.description or e.name, e.code)

    @app.errorhandler(InvalidInput)
    def _invalid_input(e: InvalidInput):
        return _error(str(e), 400)

    unavailable = _DatabaseUnavailable(app)

    def _database_unavailable(e: Exception):  # the server down or restarted, a connection cut, the pool busy
        return unavailable.answer(e)

    for error in OUTAGE_ERRORS:
        app.register_error_handler(error, _database_unavailable)

    csp = content_security_policy()  # framable pages set their own (pages.framable)

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("Content-Security-Policy", csp)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")  # arrival URLs carry platform ids
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    told = gunicorn_threads()
    if threads_from == "$GAZEPREF_WORKER_THREADS" and told is not None and told != threads:
        app.logger.warning("$GAZEPREF_WORKER_THREADS=%d overrides gunicorn's --threads %d for the per-process "
                           "limits (unset it to follow --threads)", threads, told)
    if not app.testing:
        # What the imports and the app made lives as long as the server process (~190,000
        # objects: pandas, scikit-learn, SciPy, OpenCV): out of the cyclic garbage collector's
        # way. Its full passes over them took ~70 ms each, holding every request thread of the
        # worker (the ingest benchmark's 100-150 ms spikes). Reference counting still frees them.
        gc.collect()
        gc.freeze()
    return app
