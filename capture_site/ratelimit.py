"""Per-key token buckets (a key per participant and limit, e.g. ``p42`` for participant 42's ingest).

:class:`DbRateLimiter` keeps its buckets in the database (:class:`gazepref.store.RateBucket`):
every server process and every host behind a proxy draws from the same bucket, so the limit is
the configured one however many app servers there are. Taking a token is one atomic statement
(``INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING``, SQLite and PostgreSQL alike: a
key's first request inserts its bucket); on PostgreSQL the hot paths take it inside their own
lookup (:func:`with_take`).
Refills are computed from the app hosts' clocks (Unix time; keep them in step with NTP): a clock
behind the last writer's refills nothing until it catches up, so skew only tightens the limit.

A bucket that has refilled to its full burst is the same as no row at all (a key's first take
inserts a full bucket less the token taken), so :func:`purge_full_buckets` deletes such rows
(the site runs it now and then, :mod:`.purge`): the table holds the keys active in the last
minute or so, not every key ever seen.

:class:`RateLimiter` is the in-process bucket, for state that belongs to one connection (the gaze
WebSocket's frames: a socket lives on one host) and for tests of the arithmetic.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable

from sqlalchemy import Select, bindparam, case, delete, func, literal, select
from sqlalchemy.engine import Engine

from .. import store

__all__ = ["DbRateLimiter", "RateLimiter", "purge_full_buckets", "with_take"]

B = store.RateBucket.__table__


class RateLimiter:
    """An in-process token bucket per key: ``rate`` tokens a second, at most ``burst``."""

    def __init__(self, rate: float = 5.0, burst: float = 30.0, max_keys: int = 100_000):
        self.rate, self.burst, self.max_keys = float(rate), float(burst), max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token for ``key``; False when the bucket is empty."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if len(self._buckets) >= self.max_keys and key not in self._buckets:
                self._buckets.clear()  # bounded memory; forgetting buckets only relaxes limits
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True


_NOW, _RATE, _BURST = bindparam("now"), bindparam("rate"), bindparam("burst")
_REFILLED = case((_NOW > B.c.at, B.c.tokens + (_NOW - B.c.at) * _RATE), else_=B.c.tokens)
_AVAILABLE = case((_REFILLED > _BURST, _BURST), else_=_REFILLED)
#: take a token when the refilled bucket holds one: one statement, atomic on both databases
_TAKE_WHERE = _AVAILABLE >= literal(1.0)
_TAKE_SET = {"tokens": _AVAILABLE - literal(1.0), "at": case((_NOW > B.c.at, _NOW), else_=B.c.at)}


def _take(dialect: str):
    """Take a token for key ``k``: one statement, atomic on both databases. A key's first request
    inserts its bucket (``burst`` - 1 tokens); later ones refill and take one where the refilled
    bucket holds one (INSERT ... ON CONFLICT DO UPDATE ... WHERE): a row is returned when a token
    was taken, none when the bucket is empty (nothing is written then)."""
    ins = store.on_conflict_insert(dialect, store.RateBucket).values(key=bindparam("k"), tokens=_BURST - literal(1.0),
                                                                       at=_NOW)
    return ins.on_conflict_do_update(index_elements=[B.c.key], set_=_TAKE_SET, where=_TAKE_WHERE).returning(B.c.tokens)


_TAKES = {name: _take(name) for name in ("sqlite", "postgresql")}
#: the tokens ``k``'s bucket holds now (no row: none taken lately, a full bucket), read only
_PEEK = select(_AVAILABLE).where(B.c.key == bindparam("k"))


class DbRateLimiter:
    """Token buckets in the database: ``rate`` tokens a second per key, at most ``burst``.

    Parameters
    ----------
    engine
        The site's engine (SQLite or PostgreSQL).
    rate, burst
        Tokens per second and bucket size.
    """

    def __init__(self, engine: Engine, rate: float = 5.0, burst: float = 30.0):
        # each statement is atomic on its own: autocommit saves PostgreSQL's BEGIN and COMMIT round
        # trips (the site passes its autocommit engine, store.autocommit_engine: nothing to switch)
        self.engine = engine if store.is_autocommit(engine) else engine.execution_options(isolation_level="AUTOCOMMIT")
        self.rate, self.burst = float(rate), float(burst)

    @property
    def full_after_s(self) -> float:
        """Seconds after its last take by which any bucket of this limiter is full again (inf:
        ``rate`` 0, never). A take leaves at least ``burst`` - 1 tokens on insert and at least 0
        on update, so ``max(burst, 1) / rate`` covers every row this limiter writes."""
        return max(self.burst, 1.0) / self.rate if self.rate > 0 else math.inf

    def params(self, key: str, now: float | None = None) -> dict[str, object]:
        """The bound parameters of a take for ``key`` (``k``, ``now``, ``rate``, ``burst``)."""
        return {"k": key, "now": time.time() if now is None else float(now), "rate": self.rate, "burst": self.burst}

    def has_token(self, key: str, now: float | None = None) -> bool:
        """Whether ``key``'s bucket holds a token now, taking none: one read by primary key, the
        same refill expression as the take (no row: a full bucket). For refusing early what a
        take would refuse anyway (ingest looks before parsing a large body); a True is no promise,
        the take decides."""
        if self.burst < 1.0:
            return False
        with self.engine.connect() as conn:
            left = conn.execute(_PEEK, self.params(key, now)).scalar()
        return left is None or left >= 1.0

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token for ``key``; False when the bucket is empty (nothing is written then)."""
        from .chunks import write_lock

        if self.burst < 1.0:
            return False
        with write_lock(self.engine), self.engine.connect() as conn:
            return conn.execute(_TAKES[conn.dialect.name], self.params(key, now)).first() is not None


def with_take(query: Select) -> Select:
    """``query`` (a SELECT) with a token taken in the same statement, for PostgreSQL: the take of
    :class:`DbRateLimiter` runs as a data-modifying CTE and the column ``took`` says whether it
    took one (1) or not (0: the bucket is empty). Bind the limiter's
    :meth:`~DbRateLimiter.params` with the query's own. One round trip instead of two on the hot
    paths; SQLite (no data-modifying CTEs) takes the token on its own."""
    take = _TAKES["postgresql"].cte("take")
    return query.add_columns(select(func.count()).select_from(take).scalar_subquery().label("took"))


#: a purge leaves rows this much longer than their refill (seconds): clocks of hosts that differ by
#: less see every purged bucket full too, so a purge changes no host's decision
SKEW_MARGIN_S = 60.0


def purge_full_buckets(engine: Engine, limiters: Iterable[DbRateLimiter], now: float | None = None,
                       limit: int = 1000) -> int:
    """Delete at most ``limit`` buckets that every one of ``limiters`` (all limiters writing the
    table: they share it, told apart only by their keys' prefixes) would find full again; returns
    how many went.

    A full bucket is the same as no row (the key's next take inserts a full one), so this changes
    no decision. Race-safe: the DELETE's own WHERE tests the row's state (last take before ``now``
    - the slowest refill - :data:`SKEW_MARGIN_S`); a take at that moment moves ``at`` to now, so
    the row no longer matches (PostgreSQL re-tests a row updated under the DELETE; SQLite writes
    one at a time) and a take after the delete inserts a full bucket. No index on ``at`` (it would
    cost every take an index write): the batch's SELECT scans the table, which the purges keep to
    the recently active keys."""
    full_after_s = max((lim.full_after_s for lim in limiters), default=math.inf)
    if not math.isfinite(full_after_s):
        return 0
    from .chunks import write_lock

    now = time.time() if now is None else float(now)
    stale = B.c.at < bindparam("cutoff")
    batch = select(B.c.key).where(stale).limit(int(limit))
    with write_lock(engine), engine.begin() as conn:
        return conn.execute(delete(B).where(stale, B.c.key.in_(batch)),
                            {"cutoff": now - full_after_s - SKEW_MARGIN_S}).rowcount
