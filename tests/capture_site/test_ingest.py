"""Telemetry ingest: stored atomically, idempotent on replay, strict on malformed input."""
import gzip
import json
import uuid

import pytest
from sqlalchemy import func, select

from gazepref import store

from sitetest import Walker, withdraw_now


@pytest.fixture
def app(make_app, database):
    """Every ingest test on SQLite and on PostgreSQL (whose path takes the rate-limit token in the
    ownership check's statement and inserts in autocommit)."""
    return make_app(**({"DATABASE_URL": database} if database else {}))


@pytest.fixture
def walker(client):
    return Walker(client, pid=f"W{uuid.uuid4().hex[:10]}")  # one PostgreSQL server serves the session's tests


@pytest.fixture
def task(walker):
    walker.arrive()
    walker.consent()
    return walker.to_task()


def batch(task, seq, n=60, t0=0.0, **streams):
    mouse = {"t": [t0 + i * 16.7 for i in range(n)], "x": [100.0 + i for i in range(n)],
             "y": [200.0] * n, "buttons": [0] * n}
    return {"task": task["task"], "seq": seq, "origin": 1_763_860_000_000.5,
            "streams": {"mouse": mouse, **streams}}


def post(client, task, body, gz=True, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"X-Participant-Token": task["token"], "Content-Type": "application/json"}
    if gz:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return client.post("/api/ingest", data=data, headers=headers)


def counts(dbs, task):
    """(chunks, samples) stored for ``task``."""
    dbs.expire_all()
    return dbs.execute(select(func.count(store.StreamChunk.id), func.coalesce(func.sum(store.StreamChunk.n), 0))
                       .where(store.StreamChunk.task_id == task["task"])).one()


def test_batch_is_stored_and_replay_adds_nothing(client, task, dbs):
    events = {"t": [5.0, 9.0], "type": ["click", "hover_enter"], "target": ["window", "response:0"],
              "x": [1.0, None], "y": [2.0, None], "detail": ["send", None]}
    r = post(client, task, batch(task, 0, events=events))
    assert r.status_code == 200 and r.json == {"ok": True, "seq": 0, "stored": 62, "duplicate": False}
    assert tuple(counts(dbs, task)) == (2, 62)
    r = post(client, task, batch(task, 0, events=events))
    assert r.json["duplicate"] is True and tuple(counts(dbs, task)) == (2, 62)
    t = dbs.get(store.Task, task["task"])
    assert t.clock_anchor_epoch_ms == 1_763_860_000_000.5
    mouse = store.read_stream(dbs, t, "mouse")
    assert mouse.num_rows == 60 and mouse.column("x").to_pylist()[:2] == [100.0, 101.0]


def test_a_reloaded_pages_batch_of_a_seq_the_earlier_page_used_is_stored(client, task, dbs):
    """A page reloaded without its saved counter (localStorage cleared or unavailable) numbers its
    batches on from the server's next seq while the earlier page's last batch (its pagehide beacon)
    is still on the way: the same seq, another page load (origin). Both are stored, in either
    order; a replay is the same page load's seq."""
    later = dict(batch(task, 0, t0=5000.0), origin=1_763_860_060_000.25)
    assert post(client, task, later).json["duplicate"] is False
    assert post(client, task, batch(task, 0)).json == {"ok": True, "seq": 0, "stored": 60, "duplicate": False}
    assert post(client, task, batch(task, 0)).json["duplicate"] is True  # a replay of either adds nothing
    assert post(client, task, later).json["duplicate"] is True
    assert tuple(counts(dbs, task)) == (2, 120)
    mouse = store.read_stream(dbs, dbs.get(store.Task, task["task"]), "mouse")
    assert mouse.num_rows == 120


def test_a_seq_far_ahead_is_refused_so_that_a_reloaded_page_gets_one_it_can_use(client, walker, task, dbs):
    """A page is given the task's last seq + 1: a batch stored at the top of the seq range (a
    forged or corrupted counter) would leave every later page of the task a seq the site refuses
    (its outbox drops refused batches). Beyond SEQ_FREE a seq is taken only near the last stored."""
    from gazepref.capture_site.batches import MAX_SEQ
    from gazepref.capture_site.chunks import SEQ_FREE, SEQ_STEP

    assert post(client, task, batch(task, 0)).status_code == 200
    for seq in (MAX_SEQ, SEQ_FREE + 1):
        r = post(client, task, batch(task, seq))
        assert r.status_code == 400 and "jumps ahead" in r.json["error"] and "last stored: 0" in r.json["error"], r.json
    assert counts(dbs, task)[0] == 1
    for seq in (SEQ_FREE, SEQ_FREE + SEQ_STEP):  # within reach of what is stored: taken
        assert post(client, task, batch(task, seq)).status_code == 200
    assert post(client, task, batch(task, SEQ_FREE + 2 * SEQ_STEP + 1)).status_code == 400
    page = walker.to_task()  # the page reloaded
    assert page["next_seq"] == SEQ_FREE + SEQ_STEP + 1
    r = post(client, page, batch(page, page["next_seq"]) | {"origin": 1_763_860_100_000.5})
    assert r.status_code == 200 and r.json["stored"] == 60, r.json
    assert post(client, task, batch(task, SEQ_FREE + SEQ_STEP)).json["duplicate"]  # a replay stays one


def test_concurrent_copies_of_a_later_batch_store_it_once(app, client, task, dbs):
    """A task's later batches take the one-statement insert (PostgreSQL: autocommit): copies
    arriving at once store the batch's chunks once, all of them or none."""
    import threading

    assert post(client, task, batch(task, 0)).status_code == 200  # the first batch sets the anchor
    events = {"t": [5.0], "type": ["click"], "target": ["window"], "x": [1.0], "y": [2.0], "detail": ["send"]}
    body, answers = batch(task, 1, t0=1000.0, events=events), []

    def send():
        answers.append(post(app.test_client(), task, body).json)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 7
    assert tuple(counts(dbs, task)) == (3, 121)


def test_gaze_before_calibration_may_lack_a_position(client, task, dbs):
    gaze = {"t": [1.0, 2.0], "x": [None, 3.0], "y": [None, 4.0], "eye_left_x": [0.1, 0.2]}
    assert post(client, task, batch(task, 0, n=0, gaze=gaze)).status_code == 200
    mouse = batch(task, 1, n=2)
    mouse["streams"]["mouse"]["x"][0] = None
    r = post(client, task, mouse)
    assert r.status_code == 400 and "streams.mouse.x: required column has null values" in r.json["error"]
    t = dbs.get(store.Task, task["task"])
    assert store.read_stream(dbs, t, "gaze").column("x").to_pylist() == [None, 3.0]


def test_uncompressed_beacon_form_is_accepted(client, task, dbs):
    body = json.dumps(batch(task, 3)).encode()
    r = client.post(f"/api/ingest?token={task['token']}", data=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json["stored"] == 60


def test_second_page_load_is_shifted_onto_the_task_clock(client, task, dbs):
    post(client, task, batch(task, 0))
    later = batch(task, 1, n=2)
    later["origin"] += 60_000  # a reload one minute later restarts performance.now()
    post(client, task, later)
    t = dbs.get(store.Task, task["task"])
    times = store.read_stream(dbs, t, "mouse").column("t").to_pylist()
    assert times[-2:] == [pytest.approx(60_000.0), pytest.approx(60_016.7)]


BAD = [
    (lambda b: b.update(seq=-1), "seq must be an integer"),
    (lambda b: b.update(seq="7"), "seq must be an integer"),
    (lambda b: b.update(origin=None), "origin must be performance.timeOrigin"),
    (lambda b: b["streams"].update(sonar={"t": [1.0]}), "unknown stream 'sonar'"),
    (lambda b: b["streams"]["mouse"].update(x=[1.0] * 59), "columns have different lengths"),
    (lambda b: b["streams"]["mouse"]["x"].__setitem__(3, "left"), "streams.mouse.x: expected numbers"),
    (lambda b: b["streams"]["mouse"]["x"].__setitem__(3, 1e999), "non-finite number Infinity"),
    (lambda b: b["streams"]["mouse"]["t"].__setitem__(10, 1.0), "time goes backwards at row 10"),
    (lambda b: b["streams"]["mouse"]["t"].__setitem__(59, 1e300), "1e+300 ms is no time on a page's clock"),
    (lambda b: b["streams"].update(events={"t": [1e10], "type": ["click"], "target": ["w"]}),
     "streams.events.t: 10000000000.0 ms is no time on a page's clock"),
    (lambda b: b["streams"]["mouse"].pop("y"), "missing required column 'y'"),
    (lambda b: b["streams"]["mouse"].update(z=[0.0] * 60), "unknown column 'z'"),
    (lambda b: b["streams"]["mouse"]["buttons"].__setitem__(0, 1.5), "expected whole numbers"),
    (lambda b: b["streams"].update(events={"t": [1.0], "type": [7], "target": ["w"]}), "events.type: expected text"),
    (lambda b: b.update(extra=1), "unknown batch field 'extra'"),
    (lambda b: b.update(task=10**30), "task must be an integer task id"),
    (lambda b: b.update(origin=1e300), "origin must be performance.timeOrigin"),
    (lambda b: b["streams"]["mouse"]["x"].__setitem__(3, 1e300), "out of range for float32"),
    (lambda b: b["streams"]["mouse"]["y"].__setitem__(3, -1e39), "out of range for float32"),
    (lambda b: b["streams"].update(events={"t": [1.0], "type": ["click"], "target": ["\ud800"]}),
     "events.target: text is not valid Unicode"),
    (lambda b: b["streams"].update(events={"t": [1.0], "type": ["click"], "target": ["a\u0000b"]}),
     "events.target: text contains a NUL character"),
]


@pytest.mark.parametrize("spoil, message", BAD)
def test_malformed_batch_is_rejected_whole(client, task, dbs, spoil, message):
    post(client, task, batch(task, 0))
    before = tuple(counts(dbs, task))
    body = batch(task, 1, events={"t": [1.0], "type": ["click"], "target": ["window"]})
    spoil(body)
    r = post(client, task, body)
    assert r.status_code == 400, r.json
    assert message in r.json["error"]
    assert tuple(counts(dbs, task)) == before  # nothing of the batch, nothing before touched


@pytest.mark.parametrize("raw, gz, message", [
    (b"{not json", False, "body is not JSON"),
    (b"NaN", False, "non-finite number NaN"),
    (b"[1, 2]", False, "batch must be a JSON object"),
    (b"[" * 100_000, False, "nested too deeply"),
    (b'{"streams": ' + b"[" * 100_000, False, "nested too deeply"),
    (b"\x1f\x8b\x08\x00garbage", None, "gzip"),
    (b'{"task": 1' + b"0" * 400 + b"}", False, "out of range"),  # beyond float64: was a 500 where checked
])
def test_undecodable_bodies(client, task, dbs, raw, gz, message):
    headers = {"X-Participant-Token": task["token"]}
    if gz is None:
        headers["Content-Encoding"] = "gzip"
    r = client.post("/api/ingest", data=raw, headers=headers)
    assert r.status_code == 400 and message in r.json["error"]
    assert tuple(counts(dbs, task)) == (0, 0)


def test_oversized_batches_are_refused(client, task, dbs):
    big = batch(task, 0, n=20_001)
    r = post(client, task, big)
    assert r.status_code == 413 and "limit 20000" in r.json["error"]
    bomb = gzip.compress(b'{"pad": "' + b" " * (17 * 1024 * 1024) + b'"}')
    r = post(client, task, None, gz=False, raw=bomb)  # sent as gzip but not declared: still refused
    assert r.status_code in (400, 413)
    r = client.post("/api/ingest", data=bomb, headers={"X-Participant-Token": task["token"], "Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json["error"]
    r = client.post("/api/ingest", data=b"x" * (3 * 1024 * 1024), headers={"X-Participant-Token": task["token"]})
    assert r.status_code == 413 and "error" in r.json
    assert tuple(counts(dbs, task)) == (0, 0)


def test_rate_limit_per_token(make_app, database):
    app = make_app(INGEST_RATE_PER_S=0.001, INGEST_BURST=3, **({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), pid=f"W{uuid.uuid4().hex[:10]}")
    w.arrive()
    w.consent()
    task = w.to_task()
    codes = [post(w.client, task, batch(task, i, n=1)).status_code for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = post(w.client, task, batch(task, 9, n=1))
    assert r.headers["Retry-After"] == "1" and "slow down" in r.json["error"]


def _layout_batch(task, seq, words: int) -> dict:
    """A batch whose layout stream makes its JSON ``words`` word boxes long (a long answer's boxes)."""
    layout = {"t": [5.0] * words, "kind": ["word"] * words, "target": ["response:0"] * words,
              "index": list(range(words)), "x": [1.5] * words, "y": [2.5] * words, "w": [30.0] * words,
              "h": [12.0] * words, "char_start": list(range(words)), "char_end": list(range(1, words + 1))}
    return batch(task, seq, n=1, layout=layout)


def test_a_participant_out_of_tokens_is_refused_before_a_large_body_is_read(make_app, database, monkeypatch):
    """A body larger than LARGE_JSON_BYTES once decompressed (gzip: as its trailer says) is
    decompressed and parsed only when the participant's bucket holds a token; the look takes none.
    Small bodies cost no look (the take decides)."""
    from gazepref.capture_site import batches, ingest, ratelimit

    app = make_app(INGEST_RATE_PER_S=0.001, INGEST_BURST=3, **({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), pid=f"W{uuid.uuid4().hex[:10]}")
    w.arrive()
    w.consent()
    task = w.to_task()
    large = _layout_batch(task, 1, 2000)
    raw = json.dumps(large).encode()
    assert len(raw) > batches.LARGE_JSON_BYTES and len(gzip.compress(raw)) < 64 * 1024  # (sent: a few KB)

    looks = []
    has_token = ratelimit.DbRateLimiter.has_token
    monkeypatch.setattr(ratelimit.DbRateLimiter, "has_token",
                        lambda self, key, now=None: looks.append(key) or has_token(self, key, now))
    assert post(w.client, task, batch(task, 0, n=1)).status_code == 200 and looks == []  # small: no look
    assert post(w.client, task, large).status_code == 200 and len(looks) == 1  # a token left: parsed, stored
    assert post(w.client, task, batch(task, 2, n=1)).status_code == 200  # the look took none: 3 of 3
    assert post(w.client, task, batch(task, 3, n=1)).status_code == 429

    decoded = []
    decode = ingest.decode_body
    monkeypatch.setattr(ingest, "decode_body", lambda raw, gz: decoded.append(len(raw)) or decode(raw, gz))
    for gz in (True, False):  # out of tokens: refused unread (gzip: its trailer says it is large)
        r = post(w.client, task, _layout_batch(task, 4, 2000), gz=gz)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1" and "slow down" in r.json["error"]
    assert decoded == []
    assert post(w.client, task, batch(task, 4, n=1)).status_code == 429 and len(decoded) == 1  # small: parsed
    with app.extensions["gazepref"].sessions() as dbs:
        assert tuple(counts(dbs, task)) == (4, 1 + 2001 + 1)  # batches 0, 1 (mouse and layout), 2


def test_gzip_bodies_are_held_to_their_trailer(client, task, dbs):
    """The gzip trailer's size decides before decompressing: over the limit is refused unread; a
    body decompressing to more than it declares is cut off there; data after the stream is refused;
    a trailer no stream of the body's length can have (a body cut short), or a body that is not
    gzip at all, is a 400, not a 413 of a made-up size."""
    body = gzip.compress(json.dumps(batch(task, 0)).encode())
    headers = {"X-Participant-Token": task["token"], "Content-Encoding": "gzip"}
    lying = body[:-4] + (5).to_bytes(4, "little")
    r = client.post("/api/ingest", data=lying, headers=headers)
    assert r.status_code == 400 and "the size its trailer declares" in r.json["error"]
    huge = body[:-4] + (17 * 1024 * 1024).to_bytes(4, "little")  # more than deflate packs in this length
    r = client.post("/api/ingest", data=huge, headers=headers)
    assert r.status_code == 400 and "cut short" in r.json["error"]
    # a body cut short ends in bytes of the stream, which read as a size: not a 413 "too large"
    r = client.post("/api/ingest", data=body[:len(body) // 2], headers=headers)
    assert r.status_code == 400 and "gzip" in r.json["error"], r.json
    r = client.post("/api/ingest", data=json.dumps(batch(task, 0)).encode(), headers=headers)  # labelled gzip, is not
    assert r.status_code == 400 and "not gzip" in r.json["error"]
    for after in (gzip.compress(b"{}"), b"\x00\x00\x10\x00"):  # (the last 4 bytes: 2 bytes, 1 MiB)
        r = client.post("/api/ingest", data=body + after, headers=headers)
        assert r.status_code == 400 and "not one gzip stream" in r.json["error"], r.json
    assert tuple(counts(dbs, task)) == (0, 0)
    assert client.post("/api/ingest", data=body, headers=headers).status_code == 200


def test_a_batch_whose_participant_withdraws_meanwhile_is_refused_like_after(app, client, task, dbs, monkeypatch):
    """The participant withdraws (their task is deleted) after the batch's consent check and
    before its insert: 401 as for the same batch after the withdrawal, never a 500 or a replay's
    200, and nothing stored (SQLite: one transaction; PostgreSQL: one autocommit statement)."""
    from gazepref.capture_site import ingest

    insert = ingest.insert_chunks

    def withdraw_first(*args, **kwargs):
        withdraw_now(app, task["task"])
        return insert(*args, **kwargs)

    monkeypatch.setattr(ingest, "insert_chunks", withdraw_first)
    r = post(client, task, batch(task, 0))
    assert (r.status_code, r.json) == (401, {"error": "unknown participant"})
    assert tuple(counts(dbs, task)) == (0, 0)
    monkeypatch.setattr(ingest, "insert_chunks", insert)
    after = post(client, task, batch(task, 1))
    assert (after.status_code, after.json) == (r.status_code, r.json)


def test_a_webcam_study_takes_no_gaze_rows_through_ingest(make_app, tmp_path):
    """Gaze of a study that records a webcam comes only through the webcam endpoints (each frame
    once under the task's lock, calibration, flags): a telemetry batch carrying ``gaze`` rows is
    refused whole (400 naming them), its other streams too; without gaze it is stored as ever.
    A study without a webcam still takes them (the simulator's way:
    ``test_gaze_before_calibration_may_lack_a_position``)."""
    pytest.importorskip("mediapipe")
    from gazetest import answer_step, calibrate, to_calibration, webcam_toml
    from sitetest import page_data

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam_study.toml")))
    client = app.test_client()
    token = to_calibration(client, "CAM-INGEST")["token"]
    calibrate(client, token)
    assert answer_step(client).status_code == 302
    answer_step(client, {"understand_before": "3"})
    task = page_data(client.get("/step").text)
    assert task["token"] == token and task["gaze"] is not None
    gaze = {"t": [1.0, 2.0], "x": [10.0, 11.0], "y": [20.0, 21.0]}
    r = post(client, task, batch(task, 0, gaze=gaze))
    assert r.status_code == 400 and "/api/gaze/frames" in r.json["error"] and "streams.gaze" in r.json["error"]
    with app.extensions["gazepref"].sessions() as dbs:
        assert tuple(counts(dbs, task)) == (0, 0)
        r = post(client, task, batch(task, 0, n=3))
        assert r.status_code == 200 and r.json["stored"] == 3
        assert tuple(counts(dbs, task)) == (1, 3)
