"""Token buckets: the arithmetic (in process and in the database) and the database bucket's
atomicity under concurrent requests, on SQLite and PostgreSQL."""
from __future__ import annotations

import threading
import uuid

import pytest

from gazepref import store
from gazepref.capture_site.ratelimit import DbRateLimiter, RateLimiter


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
