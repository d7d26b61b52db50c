"""The one chunk insert's SQLite write lock: one writer at a time across the threads and the
processes (gunicorn's workers) of a host."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from gazepref import store
from gazepref.capture_site.chunks import write_lock

pytest.importorskip("fcntl")

HOLD = """
import sys, time
from gazepref import store
from gazepref.capture_site.chunks import write_lock
engine = store.make_engine(sys.argv[1])
with write_lock(engine):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_another_process_waits_for_the_write_lock(tmp_path):
    url = store.sqlite_url(tmp_path / "db.sqlite")
    engine = store.make_engine(url)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url, "1.0"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        with write_lock(engine):
            waited = time.monotonic() - t0
        assert waited > 0.5, f"the lock was taken while another process held it ({waited:.2f} s)"
    finally:
        holder.wait(timeout=30)
    t0 = time.monotonic()
    with write_lock(engine):  # free again: no wait
        assert time.monotonic() - t0 < 0.5
    with engine.connect() as conn:
        assert write_lock(engine) is write_lock(conn)  # one lock per file


def test_postgresql_takes_no_lock(postgres_url):
    engine = store.make_engine(postgres_url)
    try:
        with write_lock(engine), write_lock(engine):  # nothing to wait for: re-entrant no-op
            pass
    finally:
        engine.dispose()
