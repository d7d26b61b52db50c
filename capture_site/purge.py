"""Purging the rows of limits that no longer limit anything: full rate-limit buckets
(``rate_buckets``, :func:`.ratelimit.purge_full_buckets`), login back-offs whose block is over
and whose count is forgotten (``login_throttle``, :func:`.accounts.purge_forgotten`), and
researcher sessions that have ended (``researcher_sessions``,
:func:`.accounts.purge_expired_sessions`), and the leases of chat turns that have ended
(``turn_leases``, :func:`.turn_leases.purge_expired`). Such rows are the same as no row, so deleting them
changes no decision; without it every participant, key and login ever seen would keep a row for
good.

When: at the end of a request (a ``teardown_request`` hook), at most once per
``PURGE_INTERVAL_S`` (app config, default 60 s; 0: never) per server process, by a monotonic
timer: the first request of a process purges, then the first one after each interval. Each purge
deletes at most ``PURGE_BATCH`` rows per table (default 1,000), so its cost is bounded (a few
milliseconds added to that one request); more wait for the next one. Chosen over a background
thread: nothing to start after gunicorn forks its workers or to stop at shutdown, it runs on
SQLite and PostgreSQL alike, and an idle process (which writes no rows either) does no work.
Every worker on every host purges on its own; the deletes are race-safe (their WHERE tests each
row's state, so a row another process draws from at that moment stays) and purges that meet
just find less to delete.

The hook closes the request's database session (rolling back what it left uncommitted) before
purging: that transaction would hold locks the purge's own connection waits on.

A purge that fails is logged (logger ``gazepref.capture_site.purge``, WARNING; the statements
bind only times and a count, so no key or identity reaches the log) and tried again after the
next interval; it never reaches the request. A database that cannot be reached (the requests'
503, :func:`.runtime.database_outage`) is one line without a traceback, and the run's other
tables wait for the next interval too.

A participant's data is deleted by :func:`purge_participant`, the one deletion of what a
participant gave: the participant's own withdrawal (``withdrawn=True``: the row stays as the
marker that they withdrew, read by :func:`withdrawal_of`) and the researcher's "Delete data" on
the dashboard (the row stays as the marker that their data was deleted, read by
:func:`deletion_of`; a withdrawal's marker stays as it is). A marker keeps the pseudonym (the
salted hash of the platform id), the platform, the times of arrival and consent, ``consent``
False and the time and step of the withdrawal or deletion: nothing the row did not hold before,
and no answer, sample, code or browser key. With it the same platform id is not enrolled again
as a new participant (a withdrawn one gets the withdrawal's final page, a deleted one a page
saying the study is over for them). Only the researcher lets a deleted participant's platform id
start afresh: "Allow to start again" on the dashboard (``readmit=True``) removes the marker row;
a withdrawal's marker is never removed (it records the participant's own decision).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app, has_app_context
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .. import store
from . import accounts, turn_leases
from .gaze_limits import frame_limiter
from .ratelimit import purge_full_buckets
from .runtime import OUTAGE_ERRORS, close_db, database_outage, site

__all__ = ["Purge", "commit_in_study", "deletion_in", "deletion_of", "forget_in_memory", "install", "purge_participant", "still_in_study",
           "withdrawal_in", "withdrawal_of"]

log = logging.getLogger(__name__)


def _buckets(limit: int) -> int:
    """Full buckets of the site's database rate limits (ingest and webcam batches: one table)."""
    return purge_full_buckets(site().statements, [site().limiter, frame_limiter()], limit=limit)


def _throttles(limit: int) -> int:
    """Forgotten login back-offs."""
    forget_s = float(current_app.config.get("LOGIN_FORGET_S", accounts.FORGET_S))
    return accounts.purge_forgotten(site().statements, forget_s, limit=limit)


def _sessions(limit: int) -> int:
    """Researcher sessions past ``RESEARCHER_SESSION_S``."""
    return accounts.purge_expired_sessions(site().statements, accounts.session_s(), limit=limit)


def _leases(limit: int) -> int:
    """Chat turns' leases that have ended (a server that died while the models answered)."""
    return turn_leases.purge_expired(site().statements, limit=limit)


#: (table, purge of at most ``limit`` rows, in the app's context)
TABLES: list[tuple[str, Callable[[int], int]]] = [("rate_buckets", _buckets), ("login_throttle", _throttles),
                                                  ("researcher_sessions", _sessions), ("turn_leases", _leases)]


class Purge:
    """The ``teardown_request`` hook: :meth:`run` at most once per ``interval_s`` of ``clock``
    (0 or less: never); the first call runs it."""

    def __init__(self, interval_s: float = 60.0, batch: int = 1000, clock: Callable[[], float] = time.monotonic):
        self.interval_s, self.batch, self.clock = float(interval_s), int(batch), clock
        self._due = -float("inf")
        self._lock = threading.Lock()
        self.runs = 0  # purges started (for tests and curiosity)
        self.deleted: dict[str, int] = {}  # rows deleted per table, all purges together

    def __call__(self, _exc: BaseException | None = None) -> None:
        if self.interval_s <= 0 or self.clock() < self._due:
            return
        if not self._lock.acquire(blocking=False):  # another thread of this process is purging
            return
        try:
            now = self.clock()
            if now < self._due:
                return
            self._due = now + self.interval_s  # a failed purge, too, waits for the next interval
            if has_app_context():
                # the request's session first (it would be closed next, at the app context's end):
                # a transaction it left open (a request that wrote and failed) holds SQLite's write
                # lock (the purge would wait out the busy timeout, holding the host's write lock)
                # or, on PostgreSQL, row locks this thread's own DELETE would wait on for ever
                close_db()
            self.run()
        finally:
            self._lock.release()

    def run(self) -> dict[str, int]:
        """Purge each table once (in the app's context); returns the rows deleted per table (a
        failed one is logged and left out)."""
        self.runs += 1
        done = {}
        for i, (table, purge) in enumerate(TABLES):
            try:
                done[table] = purge(self.batch)
            except OUTAGE_ERRORS as exc:
                if not database_outage(exc):
                    self._failed(table, exc)
                    continue
                # the database away (the requests answer 503 and log it): one line for the run, no
                # traceback, and the other tables wait too (every worker purges at its interval:
                # a 10 s outage left ~650 lines of tracebacks in each host's log)
                log.warning("purge of %s skipped: database unavailable (%s); trying again in %.0f s",
                            ", ".join(t for t, _ in TABLES[i:]), type(exc).__name__, self.interval_s)
                break
            except Exception as exc:  # noqa: BLE001 - never into the request; tried again next interval
                self._failed(table, exc)
            else:
                self.deleted[table] = self.deleted.get(table, 0) + done[table]
        return done

    def _failed(self, table: str, exc: Exception) -> None:
        log.warning("purge of %s failed (%s); trying again in %.0f s", table, type(exc).__name__,
                    self.interval_s, exc_info=exc)


def install(app: Flask) -> Purge:
    """Purge at the end of ``app``'s requests (app config ``PURGE_INTERVAL_S``, ``PURGE_BATCH``)."""
    purge = Purge(float(app.config.get("PURGE_INTERVAL_S", 60.0)), int(app.config.get("PURGE_BATCH", 1000)))
    app.extensions["gazepref_purge"] = purge
    app.teardown_request(purge)
    return purge


# --------------------------------------------------------------------------- a participant's data


def purge_participant(s: Session, p: store.Participant, *, withdrawn: bool = False, readmit: bool = False) -> None:
    """Delete everything recorded of participant ``p`` in session ``s`` (the caller commits):
    webcam frames, telemetry chunks, answers and ratings (turns, responses), tasks with their
    questionnaire answers, calibrations and demographics. The row stays as a marker, as a
    declined consent's does: pseudonym, platform and the time of the consent, ``consent`` False,
    no completion code, ``state`` only the marker:

    * ``withdrawn`` (the participant's own withdrawal): ``{"withdrawn": {"at", "step"}}`` (the
      site then shows them the withdrawal's final page and admits them no more; the dashboard
      lists them as withdrawn);
    * else (the researcher's "Delete data"): ``{"deleted": {"at", "step"}}`` (the site tells them
      the study is over for them; the dashboard lists them as deleted). A row that is a marker
      already (withdrew, deleted before) keeps it as it is;
    * ``readmit`` (the researcher lets the platform id start again as a new participant): the
      row goes too. Never for one who withdrew (ValueError): their marker records their decision.

    Either way exports and analyses leave them out (:func:`gazepref.store.consenting`).
    Explicit deletes in dependency order (the database's ``ON DELETE CASCADE`` would do the same:
    this does not depend on it), so that keeping the row deletes the same rows as deleting it."""
    from .plan import step_at

    if readmit and withdrawal_of(p) is not None:
        raise ValueError("a participant who withdrew is not readmitted")
    T, Tu = store.Task, store.Turn
    tasks = select(T.id).where(T.participant_id == p.id)
    turns = select(Tu.id).where(Tu.task_id.in_(tasks))
    for stmt in (delete(store.GazeFrame).where(store.GazeFrame.participant_id == p.id),
                 delete(store.StreamChunk).where(store.StreamChunk.task_id.in_(tasks)),
                 delete(store.Response).where(store.Response.turn_id.in_(turns)),
                 delete(Tu).where(Tu.task_id.in_(tasks)),
                 delete(T).where(T.participant_id == p.id),
                 delete(store.Calibration).where(store.Calibration.participant_id == p.id),
                 delete(store.Demographics).where(store.Demographics.participant_id == p.id)):
        s.execute(stmt.execution_options(synchronize_session=False))
    step = step_at(p.state or {}, "-") if p.consent else "-"
    s.expire(p)  # its collections: the rows just deleted
    if readmit:
        s.delete(p)
        return
    if withdrawal_of(p) is not None or deletion_of(p) is not None:  # a marker already: it stays as it is
        return
    p.consent = False
    p.completion_code = None
    p.state = {"withdrawn" if withdrawn else "deleted": {"at": store.utcnow().isoformat(timespec="seconds"),
                                                         "step": step}}


def forget_in_memory(slug: str, participant: tuple[int, str]) -> None:
    """Drop what this process holds in memory of ``participant`` = (row id, pseudonym) of study
    ``slug``, whose data was just deleted (their withdrawal, the researchers' "Delete data"): their
    webcam tracker (:func:`.gaze_trackers.drop_tracker`) and the plots' cached data and pictures
    (:func:`.plots_view.forget_participant`, where the analyst views are installed); call in the
    app's context, after the commit."""
    from .gaze_trackers import drop_tracker

    drop_tracker(participant)
    try:
        from .plots_view import forget_participant
    except ImportError:  # the analyst views are not installed: nothing of theirs is cached
        return
    forget_participant(slug, participant[1])


def still_in_study(s: Session, participant_id: int) -> bool:
    """Whether participant ``participant_id`` still consents, read in ``s`` after its pending
    writes are flushed: call it just before committing a request's writes of that participant.
    A request reads the row at its start (its consent check); the researchers' "Delete data" or a
    withdrawal (another tab) may commit after that, and the marker row they leave still satisfies
    the foreign keys: committing would store what the request brought (answers, a calibration
    round with its camera pictures, the live state with its platform ids over the marker) for a
    participant whose data was deleted. The flush first: on PostgreSQL its writes hold the row's
    lock (or its key's, for a new row of theirs) and on SQLite the database's write lock until the
    commit, so no deletion commits between this read and it. False: the caller rolls back."""
    from sqlalchemy.orm.exc import StaleDataError

    try:
        s.flush()
    except StaleDataError:  # a row it updates was deleted meanwhile (by the deletion)
        return False
    return s.scalar(select(store.Participant.consent).where(store.Participant.id == participant_id)) is True


def commit_in_study(s: Session, participant_id: int) -> bool:
    """Commit ``s`` if participant ``participant_id`` still consents (:func:`still_in_study`), else
    roll it back, keeping nothing of the request; returns whether it committed."""
    if still_in_study(s, participant_id):
        s.commit()
        return True
    s.rollback()
    return False


def withdrawal_of(p: store.Participant | None) -> dict | None:
    """The withdrawal of ``p`` (``{"at", "step"}``; None: they did not withdraw)."""
    return withdrawal_in(p.state) if p is not None else None


def withdrawal_in(state: dict | None) -> dict | None:
    """The withdrawal recorded in a participant's ``state`` (:func:`withdrawal_of`)."""
    return _marker(state, "withdrawn")


def _marker(state: dict | None, key: str) -> dict | None:
    """The marker ``key`` (``withdrawn``, ``deleted``: :func:`purge_participant`) in ``state``."""
    info = (state or {}).get(key)
    return info if isinstance(info, dict) else None


def deletion_of(p: store.Participant | None) -> dict | None:
    """The researcher's deletion of ``p``'s data (``{"at", "step"}``; None: not deleted, or
    withdrawn: :func:`withdrawal_of`)."""
    return deletion_in(p.state) if p is not None else None


def deletion_in(state: dict | None) -> dict | None:
    """The deletion recorded in a participant's ``state`` (:func:`deletion_of`)."""
    return _marker(state, "deleted")
