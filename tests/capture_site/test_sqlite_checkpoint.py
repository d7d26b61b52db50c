"""SQLite log checkpoints off the request path: the site's background checkpointer copies the
write-ahead log into the database file while requests write (so the log starts again from its
beginning instead of waiting for SQLite's checkpoint inside a request), and stops with the site."""
from __future__ import annotations

import gzip
import json
import time

import pytest
from sqlalchemy import text

from gazepref.capture_site.sqlite_checkpoint import BACKSTOP_PAGES
from sitetest import Walker


def _store_batches(app, seqs) -> None:
    w = Walker(app.test_client(), pid=f"CKPT{seqs[0]}")
    w.arrive()
    w.consent()
    task = w.to_task()
    headers = {"X-Participant-Token": task["token"], "Content-Type": "application/json", "Content-Encoding": "gzip"}
    for seq in seqs:
        t = [seq * 1000.0 + i * 16.7 for i in range(60)]
        body = {"task": task["task"], "seq": seq, "origin": 1.7e12,
                "streams": {"mouse": {"t": t, "x": [1.0 * seq] * 60, "y": [2.0] * 60, "buttons": [0] * 60}}}
        r = w.client.post("/api/ingest", data=gzip.compress(json.dumps(body).encode()), headers=headers)
        assert r.status_code == 200


@pytest.mark.parametrize("interval_s", [0.05, 0.0])
def test_the_log_is_copied_in_the_background_while_batches_are_stored(make_app, interval_s):
    app = make_app(SQLITE_CHECKPOINT_S=interval_s, INGEST_BURST=100)
    site = app.extensions["gazepref"]
    with site.engine.connect() as conn:
        backstop = conn.execute(text("PRAGMA wal_autocheckpoint")).scalar()
    _store_batches(app, list(range(40)))
    if interval_s:
        assert site.checkpointer.is_alive() and backstop == BACKSTOP_PAGES  # SQLite's own only as a backstop
        done, deadline = site.checkpointer.checkpoints, time.monotonic() + 10
        while site.checkpointer.checkpoints < done + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # rounds after the last write copy the whole log
    else:
        assert site.checkpointer is None and backstop == 1000  # SQLite's default
    _store_batches(app, [1000])  # the next writer: starts the log again where it was all copied
    deadline = time.monotonic() + 5
    with site.engine.connect() as conn:
        while True:  # busy: the background thread is checkpointing this very moment; ask again
            busy, log_pages, _ = conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
            if busy == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert busy == 0
    if interval_s:
        assert log_pages < 40, "the log was not copied in the background"
        site.dispose()
        site.checkpointer.join(timeout=5)
        assert not site.checkpointer.is_alive()
    else:  # nothing copied it: the log holds all 41 batches' pages
        assert log_pages > 40


def test_no_checkpointer_on_postgresql(make_app, postgres_url):
    assert make_app(SQLITE_CHECKPOINT_S=0.05, DATABASE_URL=postgres_url).extensions["gazepref"].checkpointer is None
