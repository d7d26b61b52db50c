"""Serving helpers: a request log without query strings, a server in a background thread, and
the request threads the server gives each process (:func:`worker_threads`)."""
from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


#: request threads of this process as its server reported them (gunicorn_conf.post_fork); None: unknown
_server_threads: int | None = None


def note_worker_threads(n: int) -> None:
    """Record the request threads the server gives this process (called by the gunicorn hook
    :func:`gazepref.capture_site.gunicorn_conf.post_fork` in each worker before the app loads)."""
    global _server_threads
    _server_threads = max(1, int(n))


def gunicorn_threads() -> int | None:
    """What gunicorn told this worker (None: not under ``gazepref.capture_site.gunicorn_conf``)."""
    return _server_threads


def worker_threads(settings) -> tuple[int, str]:
    """The request threads of this server process and where the number comes from:
    ``$GAZEPREF_WORKER_THREADS`` (an override), else what gunicorn told the worker
    (``gunicorn -c python:gazepref.capture_site.gunicorn_conf``), else 32 (``settings.threads``)."""
    if settings.worker_threads is not None:
        return settings.worker_threads, "$GAZEPREF_WORKER_THREADS"
    if _server_threads is not None:
        return _server_threads, "gunicorn --threads"
    return settings.threads, "default"


class RedactingRequestHandler(WSGIRequestHandler):
    """Logs requests without their query string: arrival links carry raw platform ids."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s" %s %s', self.command, path, code, size)


class BackgroundServer:
    """``with BackgroundServer(app) as url: ...`` serves ``app`` on 127.0.0.1 (a free port)."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        handler = _QuietHandler if quiet else RedactingRequestHandler
        self.server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=handler)
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


class _QuietHandler(RedactingRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass
