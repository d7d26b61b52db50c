"""The participant flow with Flask's test client: consent, pseudonyms, resume, never twice."""
from sqlalchemy import select

from gazepref import store

from sitetest import Walker, csrf_of, participants


def test_nothing_is_stored_before_consent(client, dbs):
    r = Walker(client).arrive()
    assert r.request.path == "/consent" and "Consent text for the tests." in r.text
    assert participants(dbs) == []


def test_decline_is_recorded_and_nothing_else(client, dbs):
    w = Walker(client, "DECLINER")
    w.arrive()
    r = w.consent("decline")
    assert 'id="declined"' in r.text
    [p] = participants(dbs)
    assert p.consent is False and p.state == {} and p.tasks == [] and p.demographics is None
    # coming back by the link shows the decline again; nothing more is asked
    assert 'id="declined"' in w.arrive().text
    assert 'id="declined"' in client.get("/step").text


def test_platform_ids_are_pseudonymised_everywhere(app, client, dbs):
    w = Walker(client, "A1B2C3-RAW-PROLIFIC-ID")
    w.arrive(PROLIFIC_PID="A1B2C3-RAW-PROLIFIC-ID", STUDY_ID="RAW-STUDY-77", SESSION_ID="RAW-SESSION-88")
    w.consent()
    data = w.to_task()
    w.chat_turn(data, 0, "How does sleep help memory?")
    [p] = participants(dbs)
    assert p.platform == "prolific" and len(p.pseudonym) == 32
    db_path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
    dbs.close()
    raw = b"".join(open(db_path + sfx, "rb").read() for sfx in ("", "-wal") if __import__("os").path.exists(db_path + sfx))
    for secret in (b"A1B2C3-RAW-PROLIFIC-ID", b"RAW-STUDY-77", b"RAW-SESSION-88"):
        assert secret not in raw


def test_same_link_gets_same_pseudonym_and_resumes(client, make_app):
    w = Walker(client, "RESUMER")
    w.arrive()
    w.consent()
    w.answer({"age": "40"})  # demographics
    assert w.current_step() == "instructions"
    fresh = Walker(client.application.test_client(), "RESUMER")  # another browser, same link
    assert fresh.arrive().request.path == "/step"
    assert fresh.current_step() == "instructions"


def test_stale_form_is_not_counted_twice(client, dbs):
    w = Walker(client)
    w.arrive()
    w.consent()
    page = w.step().text
    form = {"csrf_token": csrf_of(page), "step": "demographics", "age": "25"}
    client.post("/step", data=form)
    client.post("/step", data=form)  # double submit
    assert w.current_step() == "instructions"
    [p] = participants(dbs)
    assert p.demographics.answers == {"age": 25}


def test_demographics_are_optional_and_apart(client, dbs):
    w = Walker(client)
    w.arrive()
    w.consent()
    page = w.step().text
    client.post("/step", data={"csrf_token": csrf_of(page), "step": "demographics", "skip": "1"})
    assert w.current_step() == "instructions"
    assert dbs.scalars(select(store.Demographics)).all() == []


def test_csrf_is_required_on_forms(client, dbs):
    w = Walker(client)
    w.arrive()
    r = client.post("/consent", data={"decision": "agree"})
    assert r.status_code == 400 and "CSRF" in r.text
    assert participants(dbs) == []


def test_required_answers_and_min_turns(client, dbs):
    w = Walker(client)
    w.arrive()
    w.consent()
    w.answer({"age": "22"})
    w.answer()  # instructions
    r = w.answer({}, follow=False)  # pre-task without its answer
    assert r.status_code == 400 and "Please answer" in r.text
    data = w.to_task()
    w.chat_turn(data, 0, "How does sleep help memory?")
    r = w.answer({}, follow=False)
    assert r.status_code == 400 and "at least 2 rated turns" in r.text
    w.chat_turn(data, 1, "How many hours of sleep?")
    w.answer()
    assert w.current_step() == "post:0"


def test_whole_flow_to_completion_code(client, dbs):
    w = Walker(client)
    w.arrive(workerId="MTURKW1", assignmentId="ASSIGN1", hitId="HIT1")
    w.consent()
    post = {"summary": "s", "understand_after": "4", "copy_sentence": "c", "attention": "3"}
    for task in range(2):
        data = w.to_task()
        for i, prompt in enumerate(["How does sleep help memory?", "How many hours do adults need?"]):
            w.chat_turn(data, i, prompt)
        w.answer()
        w.answer(post)
    done = w.step().text
    assert 'id="completion-code"' in done and "TEST-CODE-42" in done
    [p] = participants(dbs)
    assert p.platform == "mturk" and p.state["finished_at"]
    assert [t.answers["attention_passed"] for t in p.tasks] == [False, False]
    from gazepref.capture_site.quality import participant_quality

    [row] = participant_quality(dbs, p.study)
    assert row["attention_failed"] == 2 and row["turns"] == 4 and row["step"] == "done"
    assert [t.kind for t in p.tasks] == ["pairwise", "pointwise"]
    assert all(t.finished_at for t in p.tasks)


def test_mturk_preview_records_nothing(client, dbs):
    r = client.get("/", query_string={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H"})
    assert "accept the task" in r.text
    assert participants(dbs) == []
