"""Token buckets: the arithmetic (in process and in the database) and the database bucket's
atomicity under concurrent requests, on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import literal, select, text, update

from gazepref import store
from gazepref.capture_site.ratelimit import (SKEW_MARGIN_S, DbRateLimiter, RateLimiter, purge_full_buckets,
                                              with_take)


@pytest.fixture
def engine(database, tmp_path):
    url = database or store.sqlite_url(tmp_path / "rl.sqlite")
    engine = store.make_engine(url)
    store.init_db(engine)
    yield engine
    engine.dispose()


def test_in_process_bucket_refills():
    rl = RateLimiter(rate=2, burst=2)
    assert [rl.allow("k", now=0.0) for _ in range(3)] == [True, True, False]
    assert rl.allow("k", now=0.6) and not rl.allow("k", now=0.6)
    assert rl.allow("other", now=0.6)


def test_database_bucket_refills(engine):
    rl = DbRateLimiter(engine, rate=2, burst=2)
    k, other = uuid.uuid4().hex, uuid.uuid4().hex
    assert [rl.allow(k, now=100.0) for _ in range(3)] == [True, True, False]
    assert rl.allow(k, now=100.6) and not rl.allow(k, now=100.6)
    assert rl.allow(k, now=200.0) and rl.allow(k, now=200.0) and not rl.allow(k, now=200.0)  # capped at burst
    assert rl.allow(other, now=100.6)
    # a host whose clock is behind the last writer's refills nothing (skew only tightens the limit)
    assert not rl.allow(k, now=150.0)


def test_a_look_at_the_bucket_agrees_with_the_take_and_takes_nothing(engine):
    rl = DbRateLimiter(engine, rate=2, burst=2)
    k = uuid.uuid4().hex
    assert rl.has_token(k, now=100.0) and bucket_keys(engine, [k]) == set()  # no row: full; none written
    for _ in range(5):
        assert rl.has_token(k, now=100.0)  # (looks take nothing)
    assert rl.allow(k, now=100.0) and rl.has_token(k, now=100.0) and rl.allow(k, now=100.0)
    assert not rl.has_token(k, now=100.0) and not rl.allow(k, now=100.0)
    assert not rl.has_token(k, now=100.4) and rl.has_token(k, now=100.5) and rl.allow(k, now=100.5)  # the same refill
    assert not DbRateLimiter(engine, rate=2, burst=0.5).has_token(uuid.uuid4().hex)  # as the take: never


def test_two_limiters_on_one_database_share_the_bucket(engine):
    """Two app servers (two engines on one database) draw from one bucket."""
    other_engine = store.make_engine(engine.url.render_as_string(hide_password=False))
    try:
        a, b = DbRateLimiter(engine, rate=0.001, burst=4), DbRateLimiter(other_engine, rate=0.001, burst=4)
        k = uuid.uuid4().hex
        assert [lim.allow(k) for lim in (a, b, a, b, a, b)] == [True] * 4 + [False] * 2
    finally:
        other_engine.dispose()


def test_database_bucket_is_atomic_under_concurrency(engine):
    """Eight threads, two engines, 20 requests each on one key: exactly ``burst`` are allowed."""
    other_engine = store.make_engine(engine.url.render_as_string(hide_password=False))
    limiters = [DbRateLimiter(e, rate=0.0, burst=25) for e in (engine, other_engine)]
    k = uuid.uuid4().hex
    allowed = []

    def hammer(lim: DbRateLimiter) -> None:
        allowed.extend(lim.allow(k) for _ in range(20))

    threads = [threading.Thread(target=hammer, args=(limiters[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other_engine.dispose()
    assert sum(allowed) == 25 and len(allowed) == 160


def bucket_keys(engine, keys) -> set[str]:
    """Which of ``keys`` have a row (the PostgreSQL database is shared by the session's tests)."""
    with engine.connect() as conn:
        return set(conn.scalars(select(store.RateBucket.key).where(store.RateBucket.key.in_(list(keys)))))


def test_purge_deletes_full_buckets_and_keeps_the_others(engine):
    """rate 2/s, burst 4: full 2 s after the last take; the purge leaves SKEW_MARGIN_S more."""
    rl = DbRateLimiter(engine, rate=2, burst=4)
    assert rl.full_after_s == 2.0
    now = 10_000.0
    full, emptied, recent = (uuid.uuid4().hex for _ in range(3))
    rl.allow(full, now=now - 2.0 - SKEW_MARGIN_S - 0.1)
    for _ in range(4):
        rl.allow(emptied, now=now - 0.1)
    rl.allow(recent, now=now - 2.0 - SKEW_MARGIN_S + 0.1)  # full, but within the margin for clock skew
    assert purge_full_buckets(engine, [rl], now=now) >= 1
    assert bucket_keys(engine, [full, emptied, recent]) == {emptied, recent}
    assert not rl.allow(emptied, now=now)  # kept: 0.2 tokens refilled (a purged one would allow)
    # a limiter that never refills (rate 0) keeps every bucket, however old
    assert purge_full_buckets(engine, [rl, DbRateLimiter(engine, rate=0, burst=4)], now=now + 1e6) == 0
    assert bucket_keys(engine, [emptied, recent]) == {emptied, recent}


def test_purge_uses_the_slowest_limiter_of_the_table(engine):
    """Two limits share the table (ingest and webcam batches): a bucket stays until the slower
    one would have refilled it."""
    fast, slow = DbRateLimiter(engine, rate=10, burst=10), DbRateLimiter(engine, rate=0.1, burst=10)
    k = uuid.uuid4().hex
    for _ in range(10):
        slow.allow(k, now=0.0)
    purge_full_buckets(engine, [fast, slow], now=50.0 + SKEW_MARGIN_S)  # fast would be full after 1 s
    assert bucket_keys(engine, [k]) == {k}
    assert [slow.allow(k, now=50.0) for _ in range(6)] == [True] * 5 + [False]  # half refilled, not a new one
    purge_full_buckets(engine, [fast, slow], now=150.1 + SKEW_MARGIN_S)
    assert bucket_keys(engine, [k]) == set()


def test_purge_is_bounded(engine):
    rl = DbRateLimiter(engine, rate=1, burst=1)
    now = 1e5
    purge_full_buckets(engine, [rl], now=now, limit=100_000)  # the shared database's stale rows of other tests
    keys = [uuid.uuid4().hex for _ in range(5)]
    for k in keys:
        rl.allow(k, now=now - 1000.0)
    assert purge_full_buckets(engine, [rl], now=now, limit=2) == 2
    assert len(bucket_keys(engine, keys)) == 3
    assert purge_full_buckets(engine, [rl], now=now, limit=10) == 3


@pytest.mark.parametrize("pattern", [[0.0] * 6, [0.0, 0.0, 0.0, 0.4, 0.9, 1.0, 1.0, 1.3, 2.5, 2.5, 2.5, 2.5]])
def test_a_purged_key_behaves_like_a_new_one(engine, pattern):
    """The same takes after the purge give the same answers as for a key never seen, and as for the
    same history kept (not purged)."""
    rl = DbRateLimiter(engine, rate=2, burst=3)
    purged, kept, new = (uuid.uuid4().hex for _ in range(3))
    for k in (purged, kept):
        for t in pattern:
            rl.allow(k, now=100.0 + t)
    later = 200.0 + SKEW_MARGIN_S
    with engine.begin() as conn:  # keep one bucket out of the purge: touched later (still full)
        conn.execute(update(store.RateBucket).where(store.RateBucket.key == kept).values(at=later - 3.0))
    purge_full_buckets(engine, [rl], now=later)
    assert bucket_keys(engine, [purged, kept]) == {kept}
    answers = {k: [rl.allow(k, now=later + t) for t in pattern] for k in (purged, kept, new)}
    assert answers[purged] == answers[new] == answers[kept], answers
    assert False in answers[new]  # the pattern reaches the limit


def test_purge_never_deletes_a_bucket_drawn_from_meanwhile(engine):
    """PostgreSQL: a take holds a stale bucket's row (its transaction still open) while a purge
    that saw the row stale waits for it; once the take commits the purge must leave the row (a
    deleted one would come back full: a token more)."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite writes one at a time: no purge sees a row that a take is changing")
    rl = DbRateLimiter(engine, rate=1e-6, burst=2)  # full 2e6 s after a take
    k, now = uuid.uuid4().hex, 1e7
    rl.allow(k, now=0.0)  # stale: a purge at `now` would delete it
    purged = []
    purger = threading.Thread(target=lambda: purged.append(purge_full_buckets(rl.engine, [rl], now=now)))
    with engine.connect() as conn, conn.begin():  # the hot path's take (with_take), in a transaction
        assert conn.execute(with_take(select(literal(1).label("one"))), rl.params(k, now)).one().took == 1
        purger.start()
        with engine.connect() as watch:  # until the purge waits for the take's row lock
            deadline = time.monotonic() + 30

            def purge_waits() -> bool:
                n = watch.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                      "AND query LIKE 'DELETE FROM rate_buckets%'"))
                watch.rollback()  # pg_stat_activity is read once a transaction: look again in a new one
                return bool(n)

            while not purge_waits():
                if time.monotonic() > deadline or not purger.is_alive():
                    pytest.fail(f"the purge did not wait for the take (it returned {purged})")
                time.sleep(0.025)
    purger.join()
    assert bucket_keys(engine, [k]) == {k}
    assert [rl.allow(k, now=now) for _ in range(2)] == [True, False]  # one token left of the two
