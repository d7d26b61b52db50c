"""gunicorn config file of ``benchmarks/ingest.py --profile DIR``: each worker profiles its request
threads with cProfile (one profiler per thread, enabled only while a request is handled) and at
exit writes ``DIR/worker-<pid>.prof`` (all its threads merged).

    python -m pstats DIR/worker-<pid>.prof   # then: sort cumtime / stats 40

It replaces the site's config module on the command line, so it takes the site's ``post_fork``
hook (each worker learns gunicorn's ``--threads``: docs/STUDY_SITE.md).
"""
from __future__ import annotations

import cProfile
import os
import pstats
import threading
from pathlib import Path

from gazepref.capture_site.gunicorn_conf import post_fork  # noqa: F401 (a gunicorn hook)

_profiles: list[cProfile.Profile] = []
_local = threading.local()
_lock = threading.Lock()


def _profiled(app):
    def wsgi(environ, start_response):
        prof = getattr(_local, "prof", None)
        if prof is None:
            prof = _local.prof = cProfile.Profile()
            with _lock:
                _profiles.append(prof)
        prof.enable()
        try:
            return app(environ, start_response)
        finally:
            prof.disable()
    return wsgi


def post_worker_init(worker):
    worker.wsgi = _profiled(worker.wsgi)


def worker_exit(server, worker):
    with _lock:
        profiles = [p for p in _profiles if p.getstats()]
    if not profiles:
        return
    stats = pstats.Stats(profiles[0])
    for p in profiles[1:]:
        stats.add(p)
    out = Path(os.environ["GAZEPREF_BENCH_PROFILE_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(str(out / f"worker-{os.getpid()}.prof"))
