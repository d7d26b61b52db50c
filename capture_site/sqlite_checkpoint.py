"""SQLite: write-ahead-log checkpoints off the request path.

SQLite's own automatic checkpoint (every 1000 pages of log, ~4 MB: about every 1.3 s at 400
participants) runs inside the commit that crosses the mark, while that request holds the host's
write lock (:func:`.chunks.write_lock`): every other write of the host waits behind the copy of
the log into the database file and its fsync (the ingest benchmark's 50-200 ms spikes).

:class:`Checkpointer` (one daemon thread per site process, only on SQLite) checkpoints every
``interval_s`` instead, in two steps: a PASSIVE checkpoint without the lock copies what the log
holds while writers go on appending; then one under the write lock copies the few pages written
meanwhile, so the log is all copied and the next writer starts it again from its beginning (a
checkpoint that never catches up with the writers would let the log grow without bound). The
lock is held only for that short tail. SQLite's automatic checkpoint stays as a backstop at
:data:`BACKSTOP_PAGES` (~64 MB), should the thread not run.

Each server process runs its own (gunicorn's workers): a checkpoint that finds another one
running returns at once (SQLITE_BUSY), harmless.
"""
from __future__ import annotations

import logging
import threading
import weakref

from sqlalchemy import event
from sqlalchemy.engine import Engine

from .chunks import write_lock

__all__ = ["BACKSTOP_PAGES", "Checkpointer", "install"]

log = logging.getLogger(__name__)

#: SQLite's own automatic checkpoint on the site's connections (pages of log), a backstop
BACKSTOP_PAGES = 16384


def _backstop(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cur.close()


class Checkpointer(threading.Thread):
    """Checkpoint ``engine``'s SQLite file every ``interval_s`` seconds (see the module text)
    until :meth:`stop` or until the engine is gone."""

    def __init__(self, engine: Engine, interval_s: float = 0.5):
        super().__init__(name="gazepref-sqlite-checkpoint", daemon=True)
        self._engine = weakref.ref(engine)
        self.interval_s = float(interval_s)
        self._halt = threading.Event()
        self.checkpoints = 0  # completed rounds (for tests and curiosity)

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            engine = self._engine()
            if engine is None:
                return
            try:
                self.checkpoint(engine)
            except Exception:  # noqa: BLE001 - never end the thread on one failure; SQLite's backstop remains
                log.warning("SQLite checkpoint failed", exc_info=True)
            del engine

    def checkpoint(self, engine: Engine) -> tuple[int, int, int]:
        """One round: the bulk without the write lock, the tail under it. Returns the second
        step's (busy, log pages, pages copied)."""
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            found = cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if found is not None and found[2] < found[1]:  # pages written meanwhile: the tail, locked
                with write_lock(engine):
                    found = cur.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            cur.close()
        finally:
            raw.close()
        self.checkpoints += 1
        return tuple(found) if found is not None else (0, 0, 0)


def install(engine: Engine, interval_s: float) -> Checkpointer | None:
    """Checkpoint ``engine``'s file in the background (SQLite only; ``interval_s`` <= 0: leave
    it to SQLite's automatic checkpoint). The site's connections get the backstop setting."""
    if engine.dialect.name != "sqlite" or interval_s <= 0 or not engine.url.database:
        return None
    event.listen(engine, "connect", _backstop)
    engine.dispose()  # connections opened before (creating the tables) get the setting too
    thread = Checkpointer(engine, interval_s)
    thread.start()
    return thread
