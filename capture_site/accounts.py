"""Researcher accounts: login with back-off, server-side sessions, password changes.

* **Back-off** per account and per client address (:class:`store.LoginThrottle`, in the
  database so several processes and hosts share it): after ``LOGIN_FREE_ATTEMPTS`` failures of an
  account (default 5; an address: ``LOGIN_FREE_ATTEMPTS_PER_ADDRESS``, default 20) each further
  failure blocks the key for twice as long as the one before, from 1 s up to
  ``LOGIN_MAX_BLOCK_S`` (default 900 s); a blocked login is answered 429 with ``Retry-After``
  without checking the password (even the right one). Each attempt is counted before its
  password is checked (attempts sent at once count one after another, and those past the free
  ones are refused unchecked); a success clears the account's count and takes itself back from
  the address's; a
  key's count is forgotten once its block is over and its last failure is ``LOGIN_FORGET_S`` old
  (default 86,400 s: a day). Such rows are then the same as none: :func:`purge_forgotten`
  deletes them now and then (:mod:`.purge`).
* **The same work for unknown names**: a password is always checked against a hash, a dummy one
  when the user name is unknown, so the answer's timing does not tell which names exist.
* **Sessions** are rows (:class:`store.ResearcherSession`); the signed cookie only names one.
  Logging out deletes the row, and a password change deletes every session of the account. A
  session ends ``RESEARCHER_SESSION_S`` after its login (default 43,200 s: 12 hours, a working
  day; the dashboard's live table polls every few seconds, so an idle timeout would never end an
  open tab's): its row then opens nothing, and :func:`purge_expired_sessions` deletes such rows
  now and then (:mod:`.purge`).
* **Studies**: an account opens the studies its ``study_access`` rows grant (a slug each, or
  ``*``: every study; no row: no study), read on every request (:func:`may_open`, checked for
  every researcher view by :func:`.security.login_required`); ``gazepref user add/grant/revoke/list``
  manage them, and ``gazepref user delete`` deletes an account with its grants and sessions
  (:func:`delete_account`; the last account granted all studies only with ``--force``).
  Accounts made before the table existed were granted ``*`` by :func:`gazepref.store.init_db`
  when it created it.
* **Log**: each attempt is logged (``gazepref.capture_site.accounts``, INFO) with its outcome,
  the user name and the client address; never the password.

Behind a reverse proxy the client address is the proxy's unless the app is told how many proxies
to trust (``PROXY_HOPS`` / ``$GAZEPREF_PROXY_HOPS``, docs/STUDY_SITE.md).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from functools import lru_cache

from flask import current_app, request, session
from sqlalchemy import ColumnElement, case, delete, literal, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .. import store

log = logging.getLogger(__name__)

T = store.LoginThrottle.__table__


#: seconds after a key's last failure (its block over) when its count is forgotten (LOGIN_FORGET_S)
FORGET_S = 86_400.0
#: seconds after a login when its session ends (RESEARCHER_SESSION_S)
SESSION_S = 43_200.0


def _now() -> float:
    return time.time()


def _utc(unix_s: float) -> dt.datetime:
    """Unix seconds as the naive UTC datetime of ``updated_at`` (:func:`store.utcnow`'s kind)."""
    return dt.datetime.fromtimestamp(unix_s, dt.timezone.utc).replace(tzinfo=None)


def _forgotten(now_s: float, forget_s: float) -> ColumnElement[bool]:
    """A row whose block is over and whose count is forgotten: the same as no row."""
    return ((T.c.blocked_until <= literal(now_s, T.c.blocked_until.type))
            & (T.c.updated_at < literal(_utc(now_s - forget_s), T.c.updated_at.type)))


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a random password, made like real ones: checked when the user name is unknown."""
    return generate_password_hash(secrets.token_hex(16))


def _keys(username: str) -> list[tuple[str, int]]:
    """(throttle key, free attempts) of an attempt: the account and the client address."""
    cfg = current_app.config
    name = hashlib.sha256(username.strip().lower().encode("utf-8", "replace")).hexdigest()[:40]
    addr = hashlib.sha256((request.remote_addr or "?").encode()).hexdigest()[:40]
    return [(f"u:{name}", int(cfg.get("LOGIN_FREE_ATTEMPTS", 5))),
            (f"a:{addr}", int(cfg.get("LOGIN_FREE_ATTEMPTS_PER_ADDRESS", 20)))]


def blocked_for(db: Session, username: str) -> float:
    """Seconds until an attempt with ``username`` from this address may be checked (0: now)."""
    keys = [k for k, _ in _keys(username)]
    until = db.scalar(select(T.c.blocked_until).where(T.c.key.in_(keys)).order_by(T.c.blocked_until.desc()).limit(1))
    return max(0.0, (until or 0.0) - _now())


def _count_attempt(db: Session, username: str) -> dict[str, float] | None:
    """Count this attempt as a failure of each of its keys *before* its password is checked, in
    one transaction; None (nothing counted) when a key is blocked by then, else the blocks it set
    (key -> blocked_until: a success takes back its own). Counted after the check (a slow hash),
    attempts sent at once all found no block: 30-60 of them were checked where 5 are free, the
    right password among them logged in."""
    max_block = float(current_app.config.get("LOGIN_MAX_BLOCK_S", 900))
    now = _now()
    forgotten = _forgotten(now, float(current_app.config.get("LOGIN_FORGET_S", FORGET_S)))
    dialect = db.get_bind().dialect.name
    blocks: dict[str, float] = {}
    for key, free in _keys(username):
        # one statement: the first attempt inserts the row, a later one counts on (from 1 again
        # where the count is forgotten) unless the key is blocked now (an attempt counted
        # meanwhile set it: PostgreSQL re-tests the row it waited for, SQLite writes one at a
        # time); a purge at that moment either went first (this inserts) or finds the row
        # updated (no longer forgotten) and leaves it
        upsert = store.on_conflict_insert(dialect, store.LoginThrottle).values(
            key=key, failures=1, blocked_until=0.0, updated_at=_utc(now))
        upsert = upsert.on_conflict_do_update(
            index_elements=[T.c.key], set_={"failures": case((forgotten, 1), else_=T.c.failures + 1),
                                            "updated_at": _utc(now)},
            where=T.c.blocked_until <= literal(now, T.c.blocked_until.type))
        failures = db.execute(upsert.returning(T.c.failures)).scalar()
        if failures is None:
            db.rollback()
            return None
        if failures > free:  # this attempt is checked; the next waits (twice as long each time)
            blocks[key] = now + min(max_block, 2.0 ** min(failures - free - 1, 30))
            db.execute(update(T).where(T.c.key == key).values(blocked_until=blocks[key]))
    db.commit()
    return blocks


def purge_forgotten(engine: Engine, forget_s: float = FORGET_S, now: float | None = None, limit: int = 1000) -> int:
    """Delete at most ``limit`` rows of ``login_throttle`` whose block is over and whose count is
    forgotten (``forget_s``: the app's ``LOGIN_FORGET_S``); returns how many went. Such a row is
    the same as none (:func:`blocked_for` finds no block; the key's next failure counts 1), so this
    changes no decision. Race-safe: the DELETE's own WHERE tests the row's state, and a failure
    recorded at that moment has made the row fresh (PostgreSQL re-tests a row updated under the
    DELETE; SQLite writes one at a time)."""
    from .chunks import write_lock

    forgotten = _forgotten(_now() if now is None else float(now), float(forget_s))
    batch = select(T.c.key).where(forgotten).limit(int(limit))
    with write_lock(engine), engine.begin() as conn:
        return conn.execute(delete(T).where(forgotten, T.c.key.in_(batch))).rowcount


def authenticate(db: Session, username: str, password: str) -> tuple[store.User | None, float]:
    """(the user, 0) when ``username`` and ``password`` match; (None, 0) when they do not; (None,
    seconds to wait) when the account or the address is blocked. Logs the attempt."""
    addr = request.remote_addr or "?"
    wait, blocks = blocked_for(db, username), None
    if wait == 0 and (blocks := _count_attempt(db, username)) is None:  # blocked by an attempt sent at once
        wait = max(1.0, blocked_for(db, username))
    if wait > 0:
        log.info("researcher login blocked for %r from %s (%.0f s left)", username[:64], addr, wait)
        return None, wait
    user = db.scalar(select(store.User).where(store.User.username == username)) if len(username) <= 64 else None
    ok = check_password_hash(user.password_hash if user is not None else _dummy_hash(), password)
    if not (ok and user is not None):
        log.info("researcher login failed for %r from %s", username[:64], addr)
        return None, 0.0
    # the attempt was counted as a failure: the account's count goes (as its block), the
    # address's takes the attempt back, and the block this attempt set there (the address was not
    # blocked before it: else it would not have been checked), so that the others behind the same
    # address (a university's NAT, a proxy) are not kept out by a success; a block set since by
    # someone else's failure stays
    (account, _), (address, free) = _keys(username)
    db.execute(delete(T).where(T.c.key == account))
    mine = (blocks or {}).get(address)
    undo = T.c.failures - 1 <= free
    if mine is not None:
        undo = or_(undo, T.c.blocked_until == literal(mine, T.c.blocked_until.type))
    db.execute(update(T).where(T.c.key == address).values(
        failures=T.c.failures - 1, blocked_until=case((undo, 0.0), else_=T.c.blocked_until)))
    log.info("researcher login ok for %r from %s", username, addr)
    return user, 0.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(db: Session, user: store.User) -> None:
    """Log ``user`` in on this browser: a new session row and a fresh cookie, with a new CSRF token
    (one known before the login, e.g. from a cookie planted in the browser, opens nothing)."""
    token = secrets.token_urlsafe(32)
    db.add(store.ResearcherSession(id=_digest(token), user_id=user.id, created_at=_utc(_now())))
    db.commit()
    session.clear()
    # (the form token made here, not by the first page drawn: two pages loaded at once after the
    # login each made their own, and the later answer's cookie expired the other tab's forms)
    session.update(user_id=user.id, username=user.username, rsid=token, csrf=secrets.token_urlsafe(24))


#: the session keys of a researcher's login (:func:`start_session`) and of the forms they have open
LOGIN_KEYS = ("user_id", "username", "rsid", "csrf")


def login_keys() -> dict[str, object]:
    """This browser's researcher login (its session keys), for a participant's arrival to keep:
    a researcher who opens the study's link to try it stays logged in, and the forms of their open
    dashboard pages keep working. Empty when no researcher is logged in."""
    return {k: session[k] for k in LOGIN_KEYS if k in session} if "rsid" in session else {}


def end_session(db: Session) -> None:
    """Log this browser out: its session row goes, so a copy of the cookie opens nothing. The
    login's keys go; a study the researcher was trying in another tab (a participant's keys, the
    form token they share) goes on, and a browser without a token gets one here (two login pages
    drawn at once would each make their own)."""
    token = session.get("rsid")
    if isinstance(token, str):
        db.execute(delete(store.ResearcherSession).where(store.ResearcherSession.id == _digest(token)))
        db.commit()
    for key in ("user_id", "username", "rsid"):
        session.pop(key, None)
    session.setdefault("csrf", secrets.token_urlsafe(24))


def session_s() -> float:
    """How long a researcher's session lasts (s): the app's ``RESEARCHER_SESSION_S``."""
    return float(current_app.config.get("RESEARCHER_SESSION_S", SESSION_S))


def session_user_id(db: Session) -> int | None:
    """The researcher this browser is logged in as, when its session row still exists and is
    younger than ``RESEARCHER_SESSION_S``."""
    token, uid = session.get("rsid"), session.get("user_id")
    if not isinstance(token, str) or not isinstance(uid, int):
        return None
    row = db.get(store.ResearcherSession, _digest(token))
    if row is None or row.user_id != uid:
        return None
    if row.created_at is None or row.created_at < _utc(_now() - session_s()):
        return None  # ended (its row goes with the next purge)
    return uid


def purge_expired_sessions(engine: Engine, session_s: float = SESSION_S, now: float | None = None,
                           limit: int = 1000) -> int:
    """Delete at most ``limit`` researcher session rows older than ``session_s`` (the app's
    ``RESEARCHER_SESSION_S``): such a row opens nothing already (:func:`session_user_id`), so this
    changes no decision. Returns how many went."""
    from .chunks import write_lock

    R = store.ResearcherSession.__table__
    old = R.c.created_at < literal(_utc((_now() if now is None else float(now)) - float(session_s)),
                                   R.c.created_at.type)
    batch = select(R.c.id).where(old).limit(int(limit))
    with write_lock(engine), engine.begin() as conn:
        return conn.execute(delete(R).where(old, R.c.id.in_(batch))).rowcount


def set_password(db: Session, user: store.User, password: str) -> None:
    """Set ``user``'s password and end all their sessions (every browser logs in again)."""
    user.password_hash = generate_password_hash(password)
    if user.id is not None:
        db.execute(delete(store.ResearcherSession).where(store.ResearcherSession.user_id == user.id))


# --------------------------------------------------------------------------- per-study access
#
# An account opens the studies its ``study_access`` rows name (:class:`store.StudyAccess`): one
# row per study slug, or one :data:`store.ALL_STUDIES` row for every study. No row: no study. The
# rows are read on every request, so a change of grants (``gazepref user grant / revoke``) reaches
# a logged-in browser at its next request.

A = store.StudyAccess


def _grants(user_id: int):
    return select(A.study_slug).where(A.user_id == user_id)


def visible_studies(user_id: int):
    """A SELECT of the studies ``user_id`` may open, by id (every study for an all-studies account)."""
    S = store.Study
    granted = select(A.user_id).where(A.user_id == user_id, (A.study_slug == S.slug) | (A.study_slug == store.ALL_STUDIES))
    return select(S).where(granted.exists()).order_by(S.id)


def may_open(db: Session, user_id: int, slug: str) -> store.Study | None:
    """The study ``slug`` when it exists and ``user_id`` may open it, else None (one answer for
    both: a study outside the account's scope is the same as no study)."""
    return db.scalar(visible_studies(user_id).where(store.Study.slug == slug))


def scope(db: Session, user_id: int) -> tuple[bool, list[str]]:
    """(whether ``user_id`` opens every study, the slugs it is granted one by one, sorted)."""
    slugs = set(db.scalars(_grants(user_id)))
    return store.ALL_STUDIES in slugs, sorted(slugs - {store.ALL_STUDIES})


def grant(db: Session, user: store.User, slugs: list[str]) -> list[str]:
    """Grant ``user`` the studies ``slugs`` (:data:`store.ALL_STUDIES`: every study); returns the
    slugs it did not have yet. The caller checks that the slugs name studies where it must."""
    have = set(db.scalars(_grants(user.id)))
    new = [s for s in dict.fromkeys(slugs) if s not in have]
    db.add_all(A(user_id=user.id, study_slug=s) for s in new)
    db.flush()
    return new


def revoke(db: Session, user: store.User, slugs: list[str]) -> None:
    """Take ``slugs`` (:data:`store.ALL_STUDIES`: the all-studies grant) from ``user``: never
    widens (the last grant gone leaves no study). A slug ``user`` has no grant of is a
    :class:`gazepref.UserError` naming what it has."""
    from .. import UserError

    every, have = scope(db, user.id)
    missing = [s for s in dict.fromkeys(slugs) if not (every if s == store.ALL_STUDIES else s in have)]
    if missing:
        what = ", ".join("all studies" if s == store.ALL_STUDIES else repr(s) for s in missing)
        raise UserError(f"user {user.username} has no grant of {what} (it has: {describe_scope(every, have)})")
    db.execute(delete(A).where(A.user_id == user.id, A.study_slug.in_(slugs)))


def delete_account(db: Session, user: store.User) -> int:
    """Delete ``user`` with its study grants and its sessions (each browser logged in as it
    opens nothing from its next request); returns how many sessions ended. Explicit deletes (the
    database's ``ON DELETE CASCADE`` is not relied on: SQLite enforces it only with its pragma)."""
    R = store.ResearcherSession
    ended = db.execute(delete(R).where(R.user_id == user.id)).rowcount
    db.execute(delete(A).where(A.user_id == user.id))
    db.delete(user)
    db.flush()
    return int(ended or 0)


def set_scope(db: Session, user: store.User, slugs: list[str]) -> None:
    """Make ``slugs`` (or :data:`store.ALL_STUDIES`) ``user``'s whole scope."""
    db.execute(delete(A).where(A.user_id == user.id, A.study_slug.not_in(slugs)))
    grant(db, user, slugs)


def describe_scope(every: bool, slugs: list[str]) -> str:
    """An account's scope in words: ``all studies``, ``a, b`` or ``no study``."""
    if every:
        return "all studies" + (f" (also granted: {', '.join(slugs)})" if slugs else "")
    return ", ".join(slugs) if slugs else "no study"
