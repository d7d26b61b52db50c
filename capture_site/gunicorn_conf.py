"""gunicorn's settings for the study site: ``gunicorn -c python:gazepref.capture_site.gunicorn_conf``.

::

    gunicorn -c python:gazepref.capture_site.gunicorn_conf -w 2 --threads 32 -b 127.0.0.1:8000 \\
        'gazepref.capture_site.app:create_app()'

Defaults (the command line wins over each, as over any gunicorn config file): the threaded
worker (``worker_class = "gthread"``), 2 workers of 32 threads each (docs/STUDY_SITE.md sizes them).

The hook :func:`post_fork` tells each worker, before it loads the app, how many request threads
gunicorn gives it (``worker.cfg.threads``: the value after the command line and
``$GUNICORN_CMD_ARGS`` were applied), so the site's per-process limits (the WebSocket
pending-token cap, ``GAZE_WS_MAX_PENDING``: a quarter of the threads) follow ``--threads``
without anyone keeping ``$GAZEPREF_WORKER_THREADS`` in step by hand; that variable, where set,
still wins (:func:`gazepref.capture_site.serving.worker_threads`). A worker class without request
threads of its own (gevent, eventlet, ...) reports nothing and the site assumes 32.

This module is read by gunicorn's master process: it imports nothing from the site at its top
(the app is loaded in each worker; do not use ``--preload``, see docs/STUDY_SITE.md "Shutdown").
"""
from __future__ import annotations

worker_class = "gthread"
workers = 2
threads = 32


def post_fork(server, worker) -> None:
    """In the new worker, before it loads the app: note gunicorn's thread count for the site."""
    from gunicorn.workers.gthread import ThreadWorker

    from gazepref.capture_site.serving import note_worker_threads

    if isinstance(worker, ThreadWorker):
        note_worker_threads(int(worker.cfg.threads))
