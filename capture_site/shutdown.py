"""Graceful shutdown: on SIGTERM the site stops taking new work and exits within seconds.

Once draining (:func:`begin_drain`, called by the SIGTERM handler :func:`install_sigterm`):

* every new request is answered ``503`` with ``Retry-After`` (``DRAIN_RETRY_AFTER_S``, default
  5 s) and ``{"error", "retry": true}`` on the API; the pages retry after that long (telemetry
  outbox, webcam batches) and nothing is lost: a retried batch is stored once (its (task, page load, seq) key);
* every open webcam WebSocket stores its buffered rows, sends ``{"stored": seq}`` and then
  ``{"reconnect": true, "retry_after_ms": n}`` and closes (1012, service restart); the page
  reconnects after that long and resends whatever was not acknowledged;
* after the sockets closed (at most ``DRAIN_GRACE_S``, default 2 s) the server's own SIGTERM
  handling runs (gunicorn: the worker finishes its requests in flight and exits; without a
  handler: the process ends), so the whole shutdown takes a few seconds instead of gunicorn's 30 s
  graceful timeout.

The handler is installed when the app is created in the main thread (gunicorn without
``--preload``, ``gazepref serve``); app config ``DRAIN_ON_SIGTERM = False`` (the default under
``TESTING``) leaves SIGTERM alone.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from typing import Any

from flask import Flask, current_app, jsonify, render_template, request

_KEY = "gazepref_drain"


class Drain:
    """The app's draining state and its open WebSockets."""

    def __init__(self, retry_after_s: float, grace_s: float):
        self.event = threading.Event()
        self.retry_after_s, self.grace_s = retry_after_s, grace_s
        self.sockets = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    @property
    def draining(self) -> bool:
        return self.event.is_set()

    def socket_opened(self) -> None:
        with self._lock:
            self.sockets += 1

    def socket_closed(self) -> None:
        with self._lock:
            self.sockets -= 1
            self._idle.notify_all()

    def wait_sockets_closed(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self.sockets > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True


def drain_state(app: Flask | None = None) -> Drain:
    return (app or current_app).extensions[_KEY]


def draining() -> bool:
    """Whether the current app is shutting down (WebSocket loops poll this)."""
    drain = current_app.extensions.get(_KEY)
    return drain is not None and drain.draining


def begin_drain(app: Flask) -> Drain:
    """Stop taking new work: new requests get 503, WebSockets close with a reconnect message."""
    drain = drain_state(app)
    drain.event.set()
    return drain


def _refuse_when_draining():
    drain = current_app.extensions.get(_KEY)
    if drain is None or not drain.draining:
        return None
    retry = str(max(1, math.ceil(drain.retry_after_s)))
    message = "The site is restarting; please try again in a few seconds."
    if request.path.startswith("/api/"):
        return jsonify(error=message, retry=True), 503, {"Retry-After": retry}
    return render_template("error.html", message=message), 503, {"Retry-After": retry}


def install(app: Flask) -> None:
    """Set up draining for ``app`` (the 503 hook; the SIGTERM handler when in the main thread)."""
    app.extensions[_KEY] = Drain(float(app.config.get("DRAIN_RETRY_AFTER_S", 5)),
                                 float(app.config.get("DRAIN_GRACE_S", 2)))
    app.before_request(_refuse_when_draining)
    if app.config.get("DRAIN_ON_SIGTERM", not app.testing) and threading.current_thread() is threading.main_thread():
        install_sigterm(app)


def _flush_setup_counts(app: Flask) -> None:
    """Write the set-up counters this process still holds (the dashboard's "why they stopped")."""
    from .setup_log import flush_pending

    try:
        with app.app_context():
            flush_pending()
    except Exception:  # noqa: BLE001 - a display figure; never block the shutdown
        app.logger.warning("set-up counters not written at shutdown", exc_info=True)


def install_sigterm(app: Flask) -> None:
    previous = signal.getsignal(signal.SIGTERM)

    def finish() -> None:
        drain = drain_state(app)
        drain.wait_sockets_closed(drain.grace_s)
        time.sleep(0.2)  # requests queued behind the signal are answered 503, not cut off
        _flush_setup_counts(app)
        if callable(previous):  # gunicorn's worker: stop accepting, finish requests in flight, exit
            previous(signal.SIGTERM, None)
        elif previous in (signal.SIG_DFL, None):  # (reset to the default by on_sigterm)
            os.kill(os.getpid(), signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        if drain_state(app).draining:
            return
        if not callable(previous) and previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # only the main thread may; a 2nd SIGTERM ends at once
        begin_drain(app)
        threading.Thread(target=finish, name="gazepref-drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
