"""Serving helpers: a request log without query strings, and a server in a background thread."""
from __future__ import annotations

import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


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
