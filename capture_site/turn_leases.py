"""One answer at a time for a chat turn: a lease on (task, turn) while its models answer.

A turn is stored only once every model answered (:mod:`.chat`), seconds after it was sent. Copies
of one turn sent meanwhile (a script, a participant's own token: 20 at once each called every
model, 40 model calls for the one turn stored) would each pay for answers that are thrown away. The
first request takes the task's lease (table ``turn_leases``, under the participant's lock, so two
requests of theirs never both take it; in the database, so every process and host sees it); a copy
of the same turn while it holds is answered 409 "still being answered" with ``retry`` and
``answering`` (the page sends the message again every few seconds meanwhile: once stored, the
same message gets the stored turn; a page reloaded while its message is answered is told so in
its data, :func:`answering`, and waits the same way). The lease ends when the turn
is stored or the models fail, or after :data:`LEASE_S` (a server that died while the models
answered); expired rows are deleted by the site's purge (:mod:`.purge`).
"""
from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from .. import store
from .api import ApiError

#: how long a lease holds (s): longer than a backend's answer may take (60 s timeout by default,
#: the models asked at once)
LEASE_S = 180.0
#: what a copy of a turn being answered is told (409, retry)
ANSWERING = "This message is still being answered. Please wait a moment, then press Try again."

_L = store.TurnLease.__table__


def take(db, task_id: int, turn: int, now: float | None = None) -> float:
    """Take the lease of ``task_id``'s turn ``turn`` in the session ``db`` (the caller holds the
    participant's lock and commits); returns its end (the token of :func:`give_back`).

    Raises
    ------
    ApiError
        409 (``retry``) while another request holds the lease of the same turn.
    """
    now = time.time() if now is None else float(now)
    lease = db.get(store.TurnLease, task_id, populate_existing=True)
    if lease is not None and lease.turn == turn and lease.until > now:
        raise ApiError(409, ANSWERING, retry=True, answering=True)
    until = now + LEASE_S
    if lease is None:
        db.add(store.TurnLease(task_id=task_id, turn=turn, until=until))
    else:  # an earlier turn's, or an expired one
        lease.turn, lease.until = turn, until
    return until


def answering(db, task_id: int, now: float | None = None) -> int | None:
    """The turn of ``task_id`` its models are answering now (a lease that holds), or None."""
    now = time.time() if now is None else float(now)
    lease = db.get(store.TurnLease, task_id, populate_existing=True)
    return lease.turn if lease is not None and lease.until > now else None


def give_back(engine: Engine, task_id: int, turn: int, until: float) -> None:
    """End the lease taken with end ``until`` (nothing when it is no longer that one)."""
    from .chunks import write_lock

    with write_lock(engine), engine.begin() as conn:
        conn.execute(delete(_L).where(_L.c.task_id == task_id, _L.c.turn == turn, _L.c.until == until))


def purge_expired(engine: Engine, now: float | None = None, limit: int = 1000) -> int:
    """Delete at most ``limit`` leases that have ended; returns how many went."""
    from .chunks import write_lock

    ended = _L.c.until < (time.time() if now is None else float(now))
    batch = select(_L.c.task_id).where(ended).limit(int(limit))
    with write_lock(engine), engine.begin() as conn:
        return conn.execute(delete(_L).where(ended, _L.c.task_id.in_(batch))).rowcount
