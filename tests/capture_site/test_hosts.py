"""Several hosts: one study served by two gunicorn instances on one PostgreSQL database, a
participant's requests alternating between them (a round-robin proxy): nothing is lost or stored
twice, and the per-participant rate limit is the configured one for both servers together."""
from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from gazepref import store
from sitetest import STUDY_TOML, HttpClient, Walker, free_port, serve_gunicorn


@pytest.fixture
def fresh_postgres(postgres_url):
    """A database of its own on the session's PostgreSQL server (other tests share ``postgres``)."""
    name = f"hosts_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _batch(task: int, seq: int) -> dict:
    t0 = seq * 1000.0
    return {"task": task, "seq": seq, "origin": 1.7e12,
            "streams": {"mouse": {"t": [t0 + k * 16.7 for k in range(60)], "x": [float(k) for k in range(60)],
                                  "y": [2.0 * k for k in range(60)]}}}


def test_two_servers_one_database_alternating_requests(fresh_postgres, tmp_path):
    pytest.importorskip("gunicorn")
    ports = [free_port(), free_port()]
    env = {"GAZEPREF_INGEST_RATE_PER_S": "0.001", "GAZEPREF_INGEST_BURST": "30"}  # no refill in the test
    procs = [serve_gunicorn(tmp_path / f"host{i}", STUDY_TOML, port, fresh_postgres, **env)
             for i, port in enumerate(ports)]
    try:
        client = HttpClient([f"http://127.0.0.1:{p}" for p in ports])
        w = Walker(client, "TWO-HOSTS")
        assert w.arrive().status_code == 200
        assert w.consent().status_code == 200
        data = w.to_task()
        turns = [w.chat_turn(data, i, f"question {i} about two servers?") for i in range(3)]
        # a retried turn (the page's resend, now to the other server) is the stored one
        again = client.post(data["urls"]["turns"], json={"index": 2, "prompt": "question 2 about two servers?"},
                            headers={"X-Participant-Token": data["token"]})
        assert again.status_code == 200 and again.json["turn"]["responses"] == turns[2]["responses"]

        headers = {"X-Participant-Token": data["token"]}
        statuses, duplicates = [], []
        for seq in range(12):  # each batch sent twice: the resend reaches the other server
            for _ in range(2):
                r = client.post("/api/ingest", json=_batch(data["task"], seq), headers=headers)
                statuses.append(r.status_code)
                duplicates.append(r.json.get("duplicate"))
        for seq in range(12, 20):
            statuses.append(client.post("/api/ingest", json=_batch(data["task"], seq), headers=headers).status_code)
        # one bucket of 30 for both servers (in-process buckets would have let all 32 through)
        assert statuses == [200] * 30 + [429] * 2
        assert duplicates == [False, True] * 12
        assert {b.rsplit(":", 1)[1] for b in client.served_by} == {str(p) for p in ports}
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)

    engine = store.make_engine(fresh_postgres)
    try:
        with store.init_db(engine)() as s:
            people = s.scalars(select(store.Participant)).all()
            assert len(people) == 1 and people[0].consent
            got = s.execute(select(store.Turn.index, func.count()).group_by(store.Turn.index)
                            .order_by(store.Turn.index)).all()
            assert [tuple(r) for r in got] == [(0, 1), (1, 1), (2, 1)]
            assert s.scalar(select(func.count()).select_from(store.Response)) == sum(
                len(t["responses"]) for t in turns)
            seqs = s.scalars(select(store.StreamChunk.seq).where(store.StreamChunk.task_id == data["task"],
                                                                 store.StreamChunk.stream == "mouse")).all()
            assert sorted(seqs) == list(range(18))  # 12 sent twice + 6 within the bucket, each once
            assert s.scalar(select(func.sum(store.StreamChunk.n)).where(
                store.StreamChunk.task_id == data["task"])) == 18 * 60
    finally:
        engine.dispose()
