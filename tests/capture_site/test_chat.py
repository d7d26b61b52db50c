"""The chat API: backend failures lose no turn, retries are idempotent, tokens isolate sessions."""
import uuid

import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.llm import BackendError

from sitetest import HeldBackend, Walker, legacy_token, readmit_now, reused_row, row_pseudonym, study_variant, withdraw_now


class FlakyBackend:
    """Fails the first ``failures`` calls, then answers."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, 0

    def generate(self, messages):
        self.calls += 1
        if self.calls <= self.failures:
            raise BackendError("connection refused")
        return f"answer to: {messages[-1]['content']}"


def headers(data):
    return {"X-Participant-Token": data["token"]}


def test_backend_failure_shows_retry_and_loses_no_turn(make_app, dbs):
    flaky = FlakyBackend(failures=2)
    app = make_app(LLM_BACKENDS={"concise": flaky})
    w = Walker(app.test_client())
    w.arrive()
    w.consent()
    data = w.to_task()
    body = {"index": 0, "prompt": "How does sleep help memory?"}
    for _ in range(2):
        r = w.client.post(data["urls"]["turns"], json=body, headers=headers(data))
        assert r.status_code == 503 and r.json["retry"] is True and "try again" in r.json["error"]
    with app.extensions["gazepref"].sessions() as s:
        assert s.scalars(select(store.Turn)).all() == []
    r = w.client.post(data["urls"]["turns"], json=body, headers=headers(data))
    assert r.status_code == 200  # (the failures gave the turn's lease back: not "still being answered")
    texts = {x["text"] for x in r.json["turn"]["responses"]}
    assert any(t.startswith("answer to: How does sleep help memory?") for t in texts)
    assert len(texts) == 2  # the other arm (demo, detailed) still answered differently


def test_copies_of_a_turn_being_answered_call_no_model(make_app, database):
    """A turn's copies sent while its models answer (a script, the participant's own token: 20 at
    once made 40 model calls for the one turn stored) are answered 409 "still being answered"
    (retry) and call no model; once stored, the same message gets the stored turn, and the next
    turn is answered as usual (the lease ended)."""
    import threading

    held = HeldBackend()
    app = make_app(LLM_BACKENDS={"concise": held}, **({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"LEASE-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    data = w.to_task()
    url, body = data["urls"]["turns"], {"index": 0, "prompt": "How does sleep help memory?"}
    first = {}
    sender = threading.Thread(target=lambda: first.update(r=app.test_client().post(url, json=body, headers=headers(data))))
    sender.start()
    try:
        assert held.called.wait(30)
        for prompt in (body["prompt"], "another message", body["prompt"]):
            r = app.test_client().post(url, json={"index": 0, "prompt": prompt}, headers=headers(data))
            assert r.status_code == 409 and r.json["retry"] is True and r.json["answering"] is True, r.json
            assert "still being answered" in r.json["error"]
    finally:
        held.release.set()
        sender.join(30)
    assert first["r"].status_code == 200 and held.calls == 1
    again = app.test_client().post(url, json=body, headers=headers(data))
    assert again.status_code == 200 and again.json["turn"] == first["r"].json["turn"] and held.calls == 1
    with app.extensions["gazepref"].sessions() as s:
        assert len(s.scalars(select(store.Turn).where(store.Turn.task_id == data["task"])).all()) == 1
        assert s.scalars(select(store.TurnLease)).all() == []  # given back once stored


def test_expired_turn_leases_are_purged(make_app):
    """A lease left by a server that died while the models answered: it ends after LEASE_S (a copy
    is then answered) and the purge deletes it."""
    from gazepref.capture_site import turn_leases

    app = make_app()
    engine = app.extensions["gazepref"].engine
    with app.extensions["gazepref"].sessions() as s, s.begin():
        turn_leases.take(s, 7, 0, now=1000.0)
        turn_leases.take(s, 8, 2, now=5000.0)
    with app.extensions["gazepref"].sessions() as s:
        with pytest.raises(Exception, match="still being answered"):
            turn_leases.take(s, 8, 2, now=5000.0 + turn_leases.LEASE_S - 1)
        assert turn_leases.take(s, 7, 0, now=1000.0 + turn_leases.LEASE_S + 1)  # ended: taken again
        s.rollback()
    assert turn_leases.purge_expired(engine, now=1000.0 + turn_leases.LEASE_S + 1) == 1
    with app.extensions["gazepref"].sessions() as s:
        assert [lease.task_id for lease in s.scalars(select(store.TurnLease))] == [8]


def test_resend_returns_stored_turn_and_order_is_enforced(walker, client, dbs):
    walker.arrive()
    walker.consent()
    data = walker.to_task()
    url, h = data["urls"]["turns"], headers(data)
    first = client.post(url, json={"index": 0, "prompt": "Why sleep?"}, headers=h).json["turn"]
    again = client.post(url, json={"index": 0, "prompt": "Why sleep?"}, headers=h).json["turn"]
    assert first == again
    assert client.post(url, json={"index": 0, "prompt": "Other"}, headers=h).status_code == 409
    r = client.post(url, json={"index": 1, "prompt": "Next"}, headers=h)
    assert r.status_code == 409 and "rate the previous answer" in r.json["error"]
    assert client.post(url, json={"index": 3, "prompt": "Far"}, headers=h).status_code == 409
    assert len(dbs.scalars(select(store.Turn)).all()) == 1


def test_rating_validation_and_no_double_rating(walker, client, dbs):
    walker.arrive()
    walker.consent()
    data = walker.to_task()
    url, h = data["urls"]["turns"], headers(data)
    client.post(url, json={"index": 0, "prompt": "Why sleep?"}, headers=h)
    base = {"origin": 1.7e12, "t_shown": 10.0, "t_decided": 20.0}
    cases = [
        ({**base, "likert": [4]}, "one rating per response"),
        ({**base, "likert": [4, 6], "choice": 0}, "likert must be an integer in 1..5"),
        ({**base, "likert": [4, 4]}, "choose the answer you prefer"),
        ({**base, "likert": [4, 4], "choice": 0, "t_shown": "soon"}, "t_shown must be a number between"),
    ]
    for body, message in cases:
        r = client.post(f"{url}/0/rating", json=body, headers=h)
        assert r.status_code == 400 and message in r.json["error"], r.json
    ok = client.post(f"{url}/0/rating", json={**base, "likert": [5, 1], "choice": 1, "strength": 3}, headers=h)
    assert ok.status_code == 200 and ok.json["turn"]["rated"]
    again = client.post(f"{url}/0/rating", json={**base, "likert": [1, 1], "choice": 0}, headers=h)
    assert again.json["already"] is True
    turn = dbs.scalars(select(store.Turn)).one()
    assert [r.likert for r in turn.responses] == [5, 1] and turn.choice == 1 and turn.choice_strength == 3
    assert turn.t_shown == 10.0  # the first page of the task anchors the task clock


def test_participant_reads_and_writes_only_own_session(make_app):
    app = make_app()
    a, b = Walker(app.test_client(), "ALICE"), Walker(app.test_client(), "BOB")
    for w in (a, b):
        w.arrive()
        w.consent()
    da, db_ = a.to_task(), b.to_task()
    r = b.client.post(da["urls"]["turns"], json={"index": 0, "prompt": "hi"}, headers=headers(db_))
    assert r.status_code == 403
    batch = {"task": da["task"], "seq": 0, "origin": 1.7e12, "streams": {"mouse": {"t": [1.0], "x": [1.0], "y": [1.0]}}}
    assert b.client.post("/api/ingest", json=batch, headers=headers(db_)).status_code == 403
    forged = da["token"][:-2] + ("AA" if not da["token"].endswith("AA") else "BB")
    assert b.client.post("/api/ingest", json=batch, headers={"X-Participant-Token": forged}).status_code == 401
    assert b.client.post("/api/ingest", json=batch).status_code == 401


def _to_task(client, name: str) -> dict:
    w = Walker(client, name)
    w.arrive()
    w.consent()
    return w.to_task()


def test_a_deleted_participants_token_opens_nothing_of_the_one_who_got_their_row_id(reusing_ids, make_app):
    """A token names a row id; on a database that gave a deleted participant's id to the next
    one (SQLite made before participants were AUTOINCREMENT) the deleted one's open page wrote
    the next one's turns and telemetry. It is refused like a forged token; the next one's own
    token works. Of the earlier forms, one carrying the pseudonym itself works for its own
    participant only, and one of the id alone, which cannot tell them apart, is refused here."""
    app = make_app()
    old, client, new, pid = reused_row(app, _to_task)
    assert new["task"] == old["task"], "the task's id was reused too: ownership alone does not tell them apart"
    batch = {"task": new["task"], "seq": 0, "origin": 1.7e12, "streams": {"mouse": {"t": [1.0], "x": [1.0], "y": [1.0]}}}
    r = client.post(new["urls"]["turns"], json={"index": 0, "prompt": "hello"}, headers=headers(old))
    assert r.status_code == 401, r.json
    assert client.post("/api/ingest", json=batch, headers=headers(old)).status_code == 401
    assert client.post(f"/api/ingest?token={old['token']}", json=batch).status_code == 401  # (sendBeacon)
    with app.extensions["gazepref"].sessions() as s:
        assert s.scalars(select(store.Turn)).all() == [] and s.scalars(select(store.StreamChunk)).all() == []
    Walker(client, "NEXT").chat_turn(new, 0, "hello")
    assert client.post("/api/ingest", json=batch, headers=headers(new)).status_code == 200
    # a page loaded before tokens carried the pseudonym's digest goes on working for its participant
    legacy = {"X-Participant-Token": legacy_token(pid, row_pseudonym(app, pid))}
    r = client.post("/api/ingest", json=batch | {"seq": 1}, headers=legacy)
    assert r.status_code == 200 and r.json["stored"] == 1, r.json
    assert client.post(new["urls"]["turns"], json={"index": 1, "prompt": "more"}, headers=legacy).status_code == 200
    for token in (legacy_token(pid, "0" * 32), legacy_token(pid)):  # another pseudonym; the id alone
        r = client.post(new["urls"]["turns"], json={"index": 2, "prompt": "again"},
                        headers={"X-Participant-Token": token})
        assert r.status_code == 401, r.json
        assert client.post(f"/api/ingest?token={token}", json=batch | {"seq": 2}).status_code == 401


def test_closed_task_accepts_no_more_turns(walker, client):
    walker.arrive()
    walker.consent()
    data = walker.to_task()
    walker.chat_turn(data, 0, "Why sleep?")
    walker.chat_turn(data, 1, "How long?")
    walker.answer()  # finish the task
    r = client.post(data["urls"]["turns"], json={"index": 2, "prompt": "More?"}, headers=headers(data))
    assert r.status_code == 409 and "already finished" in r.json["error"] and r.json["reload"] is True


def test_bodies_that_are_not_json_objects_and_ids_out_of_range(walker, client, dbs):
    walker.arrive()
    walker.consent()
    data = walker.to_task()
    url, h = data["urls"]["turns"], headers(data)
    r = client.post(url, json=[0, "Why sleep?"], headers=h)
    assert r.status_code == 400 and "JSON object" in r.json["error"]
    assert client.post(url, json={"index": 0, "prompt": "Why sleep?"}, headers=h).status_code == 200
    r = client.post(f"{url}/0/rating", json=[5, 1], headers=h)
    assert r.status_code == 400 and "JSON object" in r.json["error"]
    huge = url.replace(f"/tasks/{data['task']}/", f"/tasks/{10**30}/")
    r = client.post(huge, json={"index": 1, "prompt": "x"}, headers=h)  # no id the databases can hold
    assert r.status_code == 404 and "no such id" in r.json["error"]
    turn = dbs.scalars(select(store.Turn)).one()
    assert turn.prompt == "Why sleep?" and not turn.responses[0].likert  # the stored turn is untouched


def test_answers_come_rendered_as_markdown_or_as_plain_text(make_app, tmp_path):
    for fmt, rendered in (("markdown", True), ("plain", False)):
        app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / f"{fmt}.toml", answer_format=f'"{fmt}"')))
        w = Walker(app.test_client(), f"FMT-{fmt}")
        w.arrive()
        w.consent()
        turn = w.chat_turn(w.to_task(), 0, "How does sleep help memory?")
        html = turn["responses"][0]["html"]
        assert (html is not None and 'class="w"' in html) is rendered


@pytest.mark.parametrize("gone", ["withdrawn", "readmitted"])
def test_a_participant_who_withdraws_while_the_models_answer_gets_401(make_app, database, monkeypatch, gone):
    """The participant withdraws (their task is deleted) while the models answer their message,
    or before their rating is written: 401, as the same request gets after the withdrawal,
    never a 500; nothing stored. The same when the researcher deletes their data and lets them
    start again meanwhile (their row goes: a 500 before, taking its lock)."""
    from gazepref.capture_site import chat

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"CHAT-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    data = w.to_task()
    answer = chat._answer
    with w.client.session_transaction() as sess:
        pid = sess["pid"]

    def withdraw_meanwhile(*args):
        texts = answer(*args)
        if gone == "withdrawn":
            withdraw_now(app, data["task"])
        else:
            readmit_now(app, pid)
        return texts

    monkeypatch.setattr(chat, "_answer", withdraw_meanwhile)
    r = w.client.post(data["urls"]["turns"], json={"index": 0, "prompt": "hello"}, headers=headers(data))
    assert (r.status_code, r.json) == (401, {"error": "unknown participant"})
    monkeypatch.setattr(chat, "_answer", answer)
    after = w.client.post(data["urls"]["turns"], json={"index": 0, "prompt": "hello"}, headers=headers(data))
    assert (after.status_code, after.json) == (r.status_code, r.json)
    with app.extensions["gazepref"].sessions() as s:
        assert s.scalars(select(store.Turn).where(store.Turn.task_id == data["task"])).all() == []


def test_a_rating_whose_participant_withdraws_before_its_write_gets_401(make_app, database, monkeypatch):
    from gazepref.capture_site import chat

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"CHAT-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    data = w.to_task()
    r = w.client.post(data["urls"]["turns"], json={"index": 0, "prompt": "hello"}, headers=headers(data))
    assert r.status_code == 200
    to_clock, withdrawn = chat.to_task_clock, []

    def withdraw_meanwhile(task, *args):
        value = to_clock(task, *args)
        if not withdrawn:  # (the first of its two times)
            withdraw_now(app, data["task"])
            withdrawn.append(True)
        return value

    monkeypatch.setattr(chat, "to_task_clock", withdraw_meanwhile)
    body = {"likert": [4, 3], "origin": 1.7e12, "t_shown": 1000.0, "t_decided": 2000.0, "choice": 0, "strength": 2}
    r = w.client.post(f"{data['urls']['turns']}/0/rating", json=body, headers=headers(data))
    assert (r.status_code, r.json) == (401, {"error": "unknown participant"})


def test_a_turn_whose_task_is_finished_while_the_models_answer_is_not_stored(make_app, database, monkeypatch):
    """Another tab finishes the task while the models answer a message (seconds with a real
    model): 409 with reload, and the task keeps its turns (the turn was stored, unrated, after
    the task's end while the participant was on the post-task questions)."""
    import threading

    from gazepref.capture_site import chat

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"CHAT-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    data = w.to_task()
    for i in range(2):  # the turns the task needs before it can be finished
        w.chat_turn(data, i, f"question {i}")
    other_tab = Walker(app.test_client(), w.pid)
    with w.client.session_transaction() as mine, other_tab.client.session_transaction() as theirs:
        theirs.update(dict(mine))
    answer = chat._answer

    def finish_meanwhile(*args):
        texts = answer(*args)
        finishing = threading.Thread(target=lambda: other_tab.answer(follow=False))  # "Finish task"
        finishing.start()
        finishing.join()
        return texts

    monkeypatch.setattr(chat, "_answer", finish_meanwhile)
    r = w.client.post(data["urls"]["turns"], json={"index": 2, "prompt": "one more"}, headers=headers(data))
    assert r.status_code == 409 and r.json["reload"] and "already finished" in r.json["error"]
    assert w.current_step().startswith("post:")
    with app.extensions["gazepref"].sessions() as s:
        task = s.get(store.Task, data["task"])
        assert task.finished_at is not None and [t.index for t in task.turns] == [0, 1]
