"""The participant flow with Flask's test client: consent, pseudonyms, resume, never twice."""
import re
import time
import uuid

import pytest
from sqlalchemy import select

from gazepref import store

from sitetest import Walker, csrf_of, first_sentence, page_data, participants, readmit_now


def test_nothing_is_stored_before_consent(client, dbs):
    r = Walker(client).arrive()
    assert r.request.path == "/consent" and "Consent text for the tests." in r.text
    assert participants(dbs) == []



@pytest.mark.parametrize("webcam, gaze, says", [
    ("off", "", None),
    ("required", "", ["needs a webcam", "grey patches of your eyes", "No camera picture leaves your computer", "cannot take part"]),
    ("optional", 'compute = "server"', ["uses your webcam if you have one", "sent to the study's server only to find",
                                        "without eye tracking"]),
    ("optional", 'compute = "server"\nkeep_frames = true', ["stored with your other study data"]),
])
def test_the_consent_page_says_that_the_webcam_is_used(make_app, tmp_path, webcam, gaze, says):
    """The consent text is the researcher's and need not name the camera (the default study's
    lists mouse, scrolling and clicks only); a webcam study's consent page says, before the
    participant agrees, that the camera is used, whether it is needed and where its pictures go."""
    from sitetest import study_variant

    extra = f"[gaze]\n{gaze}\n" if webcam != "off" else ""
    toml = study_variant(tmp_path / "s.toml", extra, webcam=f'"{webcam}"')
    if "keep_frames" in gaze:
        toml.write_text(toml.read_text().replace('text = "Consent text for the tests."',
                                                 'text = "Consent text for the tests."\ncamera_images = true'))
    page = Walker(make_app(STUDY_CONFIG=str(toml)).test_client()).arrive().text
    assert "Consent text for the tests." in page
    if says is None:
        assert 'id="consent-camera"' not in page and "webcam" not in page.lower()
        return
    note = page.split('id="consent-camera"', 1)[1].split("</p>", 1)[0]
    for words in says:
        assert words in note, (words, note)


def test_only_answers_that_change_the_session_set_its_cookie(client):
    """An answer that leaves the session as it is (a static file, the favicon, a step page) sets
    no cookie: one that read the cookie before the consent POST and was answered after it put back
    the session without the participant, and the next page asked for consent again (the
    participant's "I agree" lost; test_webcam_site's flaky walk, repro/stale_cookie_race.py)."""
    client.get("/", query_string={"PROLIFIC_PID": "COOKIE1", "STUDY_ID": "S", "SESSION_ID": "X"})
    page = client.get("/consent").text
    for path in ("/static/favicon.svg", "/static/page.js", "/consent"):
        r = client.get(path)
        assert r.status_code == 200 and "Set-Cookie" not in r.headers, (path, r.headers.get("Set-Cookie"))
    r = client.post("/consent", data={"csrf_token": csrf_of(page), "decision": "agree"})
    assert r.status_code == 302 and "Set-Cookie" in r.headers  # the participant: the session changed
    r = client.get("/step")
    assert r.status_code == 200 and "Set-Cookie" not in r.headers


def test_the_link_opened_again_leaves_the_open_tabs_forms_working(client):
    """The arrival makes the form token (no page drawn later writes the session for it: two
    first pages at once each made their own, and the later answer's cookie expired the other
    tab's forms), and the same link opened again keeps it: the step form of a tab still open
    is taken (400 "This page has expired" before, as its window reports, lost)."""
    arrived = client.get("/", query_string={"PROLIFIC_PID": "AGAIN1", "STUDY_ID": "S", "SESSION_ID": "X"})
    assert "Set-Cookie" in arrived.headers
    consent = client.get("/consent")
    assert "Set-Cookie" not in consent.headers  # (the token is there already)
    client.post("/consent", data={"csrf_token": csrf_of(consent.text), "decision": "agree"})
    open_tab = client.get("/step").text
    client.get("/", query_string={"PROLIFIC_PID": "AGAIN1", "STUDY_ID": "S", "SESSION_ID": "X"})  # another tab
    step = re.search(r'name="step" value="([^"]+)"', open_tab).group(1)
    r = client.post("/window", data={"csrf_token": csrf_of(open_tab), "too_small": "1", "width": "500", "height": "400"})
    assert r.status_code == 204
    r = client.post("/step", data={"csrf_token": csrf_of(open_tab), "step": step, "age": "30"})
    assert r.status_code == 302, r.text[:300]
    assert re.search(r'name="step" value="([^"]+)"', client.get("/step").text).group(1) != step


#: the headers a browser sends with a form of the site's own page (Chromium, Firefox, Safari)
OWN_FORM = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Sec-Fetch-User": "?1"}


def _another_tab_arrived(client):
    """What the answer to a second arrival at the same moment leaves (a double click on the study
    link: each cookieless arrival makes its own token, and the later answer's cookie wins): the
    session's form token is no longer the one of the page on screen."""
    with client.session_transaction() as sess:
        sess["csrf"] = "the-other-arrivals-token"


def test_a_stale_consent_form_goes_back_to_consent_and_the_next_click_counts(client, dbs):
    """A double click on the study link: the tab on screen shows the page of the arrival whose
    cookie lost, and its "I agree" was a 400 "This page has expired" (4 of 10 walks in Chromium).
    Sent by the browser from the site's own page, it comes back to consent, saying nothing was
    sent; the fresh form's click counts. Nothing is stored by the stale one."""
    w = Walker(client, "DOUBLE1")
    page = w.arrive().text
    _another_tab_arrived(client)
    r = client.post("/consent", data={"csrf_token": csrf_of(page), "decision": "agree"}, headers=OWN_FORM)
    assert r.status_code == 303 and r.location == "/consent?expired=1"
    assert participants(dbs) == []
    again = client.get(r.location).text
    assert 'id="expired-notice"' in again and "Nothing was sent" in again
    assert 'id="expired-notice"' not in client.get("/consent").text
    r = client.post("/consent", data={"csrf_token": csrf_of(again), "decision": "agree"}, headers=OWN_FORM)
    assert r.status_code == 302 and r.location.endswith("/step")
    assert [p.consent for p in participants(dbs)] == [True]


def test_a_stale_step_form_changes_nothing_and_comes_back_to_the_step(client, dbs):
    w = Walker(client, "DOUBLE2")
    w.arrive()
    w.consent()
    page = w.step().text
    step = re.search(r'name="step" value="([^"]+)"', page).group(1)
    _another_tab_arrived(client)
    r = client.post("/step", data={"csrf_token": csrf_of(page), "step": step, "age": "30"}, headers=OWN_FORM)
    assert r.status_code == 303 and r.location == "/step?expired=1"
    assert w.current_step() == step
    (p,) = participants(dbs)
    dbs.refresh(p)
    assert "answers" not in (p.state or {}) or not p.state["answers"]
    assert 'id="expired-notice"' in client.get(r.location).text


@pytest.mark.parametrize("headers", [
    {**OWN_FORM, "Sec-Fetch-Site": "cross-site"},  # another site's form: never sent back to a page
    {**OWN_FORM, "Sec-Fetch-Mode": "cors"},  # a script's request
    {},  # a browser that does not say where the request comes from
], ids=["cross-site", "fetch", "no-fetch-metadata"])
def test_a_stale_form_from_anywhere_else_is_a_400(client, dbs, headers):
    page = Walker(client, "DOUBLE3").arrive().text
    _another_tab_arrived(client)
    r = client.post("/consent", data={"csrf_token": csrf_of(page), "decision": "agree"}, headers=headers)
    assert r.status_code == 400 and "CSRF" in r.text
    assert participants(dbs) == []


def test_a_stale_form_to_an_address_without_a_page_is_a_400(client, dbs):
    w = Walker(client, "DOUBLE4")
    w.arrive()
    w.consent()
    page = w.step().text
    _another_tab_arrived(client)
    r = client.post("/window", data={"csrf_token": csrf_of(page), "too_small": "1", "width": "500", "height": "400"},
                    headers=OWN_FORM)
    assert r.status_code == 400


def test_a_tab_left_open_by_the_participant_before_does_not_act_on_the_next(client, dbs):
    """A shared computer: A leaves the withdraw page open, B arrives by their own link in the same
    browser and consents. A's forms are refused (400) and B is untouched: a form token kept across
    the arrival of another participant let A's "Withdraw" delete B's data."""
    def arrive_and_consent(pid):
        client.get("/", query_string={"PROLIFIC_PID": pid, "STUDY_ID": "S", "SESSION_ID": "X"})
        page = client.get("/consent").text
        client.post("/consent", data={"csrf_token": csrf_of(page), "decision": "agree"})

    arrive_and_consent("SHARED-A")
    a_withdraw, a_step = client.get("/withdraw").text, client.get("/step").text
    arrive_and_consent("SHARED-B")
    assert csrf_of(a_withdraw) != csrf_of(client.get("/step").text)
    assert client.post("/withdraw", data={"csrf_token": csrf_of(a_withdraw)}).status_code == 400
    r = client.post("/window", data={"csrf_token": csrf_of(a_step), "too_small": "1", "width": "300", "height": "200"})
    assert r.status_code == 400
    people = dbs.scalars(select(store.Participant).order_by(store.Participant.id)).all()
    assert [p.consent for p in people] == [True, True]
    assert not any("withdrawn" in (p.state or {}) or "window" in (p.state or {}) for p in people)


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


def test_same_link_in_the_same_browser_resumes(client):
    w = Walker(client, "RESUMER")
    w.arrive()
    w.consent()
    w.answer({"age": "40"})  # demographics
    assert w.current_step() == "instructions"
    assert w.arrive().request.path == "/step"  # the link again (a reload, the platform's return)
    assert w.current_step() == "instructions"


def _resume_code(html: str) -> str:
    m = re.search(r'id="resume-code">Your resume code: <strong>([A-Z0-9]{4}-[A-Z0-9]{4})</strong>', html)
    assert m, "page shows no resume code"
    return m.group(1)


def test_another_browser_with_the_same_link_needs_the_resume_code(client, dbs):
    w = Walker(client, "RESUMER")
    w.arrive()
    code = _resume_code(w.consent().text)  # shown from the first page after consent
    w.answer({"age": "40"})
    thief = Walker(client.application.test_client(), "RESUMER")  # another browser, same worker id
    r = thief.arrive()
    assert r.request.path == "/resume" and "resume code" in r.text and code not in r.text
    for path in ("/step", "/consent"):  # no way around it, not even a second consent
        assert thief.client.get(path, follow_redirects=True).request.path == "/resume"
    page = thief.client.get("/resume").text
    assert thief.client.post("/consent", data={"csrf_token": csrf_of(page), "decision": "agree"},
                             follow_redirects=True).request.path == "/resume"
    r = thief.client.post("/resume", data={"csrf_token": csrf_of(page), "code": "AAAA-AAAA"})
    assert r.status_code == 400 and "not the resume code" in r.text
    assert thief.client.get("/step", follow_redirects=True).request.path == "/resume"
    # the participant's own code, typed loosely, lets the second browser in
    r = thief.client.post("/resume", data={"csrf_token": csrf_of(page), "code": code.lower().replace("-", " ")},
                          follow_redirects=True)
    assert r.request.path == "/step" and thief.current_step() == "instructions"
    assert w.current_step() == "instructions"  # the first browser goes on too
    [p] = participants(dbs)
    assert p.state["resume_failures"] == 1


def test_resume_code_locks_after_too_many_wrong_codes(client):
    from gazepref.capture_site.flow import MAX_RESUME_FAILURES

    w = Walker(client, "LOCKED")
    w.arrive()
    w.consent()
    code = _resume_code(w.step().text)
    other = Walker(client.application.test_client(), "LOCKED")
    other.arrive()
    page = other.client.get("/resume").text
    for _ in range(MAX_RESUME_FAILURES):
        assert other.client.post("/resume", data={"csrf_token": csrf_of(page), "code": "WRONG"}).status_code == 400
    r = other.client.post("/resume", data={"csrf_token": csrf_of(page), "code": code})
    assert r.status_code == 400 and "locked" in r.text


def test_wrong_resume_codes_sent_at_once_each_count(client, monkeypatch):
    """Each wrong code counts, also sent from several browsers at once: the count was read, one
    added and written back unlocked, so codes at the same moment counted once (8 threads x 4 codes
    once stopped at 9 of the 10 allowed, leaving more guesses than the lock-out allows)."""
    import threading
    import time

    from gazepref.capture_site import flow

    w = Walker(client, "RACED")
    w.arrive()
    w.consent()
    code = _resume_code(w.step().text)
    set_state = flow.set_state

    def slow_set_state(p, **changes):  # between the count's read and its write, whatever the machine
        time.sleep(0.05)
        set_state(p, **changes)

    monkeypatch.setattr(flow, "set_state", slow_set_state)
    browsers = []
    for _ in range(5):
        b = Walker(client.application.test_client(), "RACED")
        b.arrive()
        browsers.append((b, csrf_of(b.client.get("/resume").text)))
    start = threading.Barrier(len(browsers))

    def guess(b, token):
        start.wait()
        for _ in range(2):
            assert b.client.post("/resume", data={"csrf_token": token, "code": "WRONG"}).status_code == 400

    threads = [threading.Thread(target=guess, args=pair) for pair in browsers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b, token = browsers[0]
    assert flow.MAX_RESUME_FAILURES == 10
    r = b.client.post("/resume", data={"csrf_token": token, "code": code})
    assert r.status_code == 400 and "locked" in r.text, "10 wrong codes were sent"


def test_study_option_allows_plain_resume_by_link(make_app, tmp_path):
    from sitetest import STUDY_TOML

    toml = tmp_path / "link.toml"
    toml.write_text(STUDY_TOML.read_text().replace('webcam = "off"', 'webcam = "off"\nresume = "link"'))
    app = make_app(STUDY_CONFIG=str(toml))
    w = Walker(app.test_client(), "RESUMER")
    w.arrive()
    w.consent()
    assert 'id="resume-code"' not in w.step().text  # no code to note
    w.answer({"age": "40"})
    fresh = Walker(app.test_client(), "RESUMER")  # another browser, same link
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
            turn = w.chat_turn(data, i, prompt)
        w.answer()
        refused = w.answer(post, follow=False)  # "c" is not a sentence of the answers
        assert refused.status_code == 400 and "not in the answers" in refused.text
        _resume_code(w.step().text)  # every step page before the end shows the resume code
        w.answer({**post, "copy_sentence": first_sentence(turn)})
    done = w.step().text
    assert 'id="completion-code"' in done and "TEST-CODE-42" in done
    assert 'id="resume-code"' not in done and "continue in another browser" not in done  # nothing left to resume
    # MTurk: the done page submits the assignment to MTurk (no turkSubmitTo in the link: the default host)
    assert 'action="https://www.mturk.com/mturk/externalSubmit"' in done
    assert 'name="assignmentId" value="ASSIGN1"' in done and 'name="completion_code" value="TEST-CODE-42"' in done
    [p] = participants(dbs)
    assert p.platform == "mturk" and p.state["finished_at"]
    assert [t.answers["attention_passed"] for t in p.tasks] == [False, False]
    from gazepref.capture_site.quality import participant_quality

    [row] = participant_quality(dbs, p.study)
    assert row["attention_failed"] == 2 and row["turns"] == 4 and row["step"] == "done"
    assert [t.kind for t in p.tasks] == ["pairwise", "pointwise"]
    assert all(t.finished_at for t in p.tasks)


def test_each_task_page_says_which_task_of_how_many(client):
    """The pre-task questions, the chat and the post-task questions of a task say "Task 1 of 2"
    (a participant otherwise cannot tell how much of the study is left); the pages before the
    first task and the done page say nothing of the kind."""
    w = Walker(client)
    w.arrive()
    w.consent()
    progress = re.compile(r'id="task-progress">Task (\d) of (\d)<')
    seen = []
    post = {"summary": "s", "understand_after": "4", "attention": "2"}
    while (step := w.current_step()) != "done":
        found = progress.findall(w.step().text)
        seen.append((step.split(":")[0], found[0] if found else None))
        if step.startswith("post:"):  # its box of the task's answers scrolls by keyboard too (not only in Chrome, Firefox)
            assert re.search(r'<section class="transcript"[^>]* tabindex="0"', w.step().text)
        if step.startswith("task:"):
            data = page_data(w.step().text)
            turn = [w.chat_turn(data, i, f"question {i}") for i in range(2)][-1]
            w.answer()
        else:
            w.answer({"understand_before": "3", "age": "30", **post, "copy_sentence": first_sentence(turn)
                      if step.startswith("post:") else ""})
    assert progress.search(w.step().text) is None
    assert seen == [("demographics", None), ("instructions", None)] + [
        (name, (str(i), "2")) for i in (1, 2) for name in ("pre", "task", "post")]


def test_a_page_refused_for_one_answer_keeps_the_others(client):
    """A post-task page refused (the copied text is not in the answers) comes back with every
    answer the participant gave still filled in, escaped; only the wrong one needs changing."""
    w = Walker(client)
    w.arrive()
    w.consent()
    data = w.to_task()
    for i, prompt in enumerate(["How does sleep help memory?", "How many hours do adults need?"]):
        w.chat_turn(data, i, prompt)
    w.answer()
    sent = {"summary": 'Sleep <b>"replays"</b> & sorts', "understand_after": "4",
            "copy_sentence": "not a sentence of any answer", "attention": "2", "feedback": "Nice."}
    refused = w.answer(sent, follow=False)
    assert refused.status_code == 400 and "not in the answers" in refused.text
    page = refused.text
    assert "Sleep &lt;b&gt;&#34;replays&#34;&lt;/b&gt; &amp; sorts</textarea>" in page
    assert "not a sentence of any answer</textarea>" in page and "Nice.</textarea>" in page
    checked = re.findall(r'name="(\w+)" value="(\d)" required checked', page)
    assert checked == [("understand_after", "4"), ("attention", "2")]


def test_mturk_preview_records_nothing(client, dbs):
    r = client.get("/", query_string={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H"})
    assert "accept the task" in r.text
    assert "Instructions for the tests." in r.text and "2 short chat tasks" in r.text  # the task is described
    assert "at least 2 messages each" in r.text
    assert participants(dbs) == []


def test_mturk_preview_counts_one_message_as_one(make_app, tmp_path):
    from sitetest import STUDY_TOML

    toml = tmp_path / "one.toml"
    toml.write_text(STUDY_TOML.read_text().replace("min_turns = 2", "min_turns = 1"))
    r = make_app(STUDY_CONFIG=str(toml)).test_client().get("/", query_string={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})
    assert "at least 1 message each" in r.text  # (it said "1 messages")


def test_same_form_sent_twice_at_once_keeps_the_first_answer(client, dbs):
    """Both copies pass the step check before either commits: the second's demographics row then
    collides with the first's (made here by hand, as the other request would) and the participant
    is sent on, not shown an error."""
    w = Walker(client)
    w.arrive()
    w.consent()
    page = w.step().text
    [p] = participants(dbs)
    dbs.add(store.Demographics(participant_id=p.id, answers={"age": 25}))  # the first copy, committed
    dbs.commit()
    r = client.post("/step", data={"csrf_token": csrf_of(page), "step": "demographics", "age": "31"})
    assert r.status_code == 302
    dbs.expire_all()
    assert participants(dbs)[0].demographics.answers == {"age": 25}
    assert w.current_step() == "demographics"  # the step was not counted twice either


def test_a_head_request_changes_nothing(client, dbs):
    """HEAD is answered by the GET/POST view, and the CSRF check looked at POSTs only: a HEAD of
    /withdraw (a link checker, a prefetch, a script of any page on the site's domain) deleted the
    participant's data, a HEAD of /consent recorded a decline. Both are the page now."""
    for path in ("/consent", "/withdraw"):  # before consent: nothing stored (a HEAD stored a decline)
        client.get("/", query_string={"PROLIFIC_PID": "HEAD1", "STUDY_ID": "S", "SESSION_ID": "X"})
        assert client.head(path).status_code in (200, 302)
    assert participants(dbs) == []
    w = Walker(client, "HEAD1")
    w.consent()
    step = w.current_step()
    for path in ("/withdraw", "/consent", "/step", "/resume"):
        assert client.head(path).status_code in (200, 302), path
    (p,) = participants(dbs)
    dbs.refresh(p)
    assert p.consent and "withdrawn" not in (p.state or {}) and w.current_step() == step
    assert client.head("/withdraw").status_code == 200  # the confirmation page's answer (a HEAD has no body)
    assert 'id="withdraw-confirm"' in client.get("/withdraw").text and p.consent


def test_forged_csrf_with_any_characters_is_a_400(client, dbs):
    Walker(client).arrive()
    for token in ("nicht-gültig", "\u00e9" * 32):
        r = client.post("/consent", data={"decision": "agree", "csrf_token": token})
        assert r.status_code == 400 and "CSRF" in r.text
    assert participants(dbs) == []


def test_a_task_reached_by_two_requests_at_once_is_created_once(app, dbs):
    """Two tabs (or a reload while the page loads) ask for a participant's new task together."""
    import threading

    from sqlalchemy import func

    for k in range(10):
        first = app.test_client()
        w = Walker(first, pid=f"RACE{k}")
        w.arrive()
        w.consent()
        w.answer({"age": "30"})  # demographics, then the instructions page
        w.answer({}, follow=False)  # instructions; the next page (pre:0) creates task 0
        cookie = first.get_cookie("session").value
        clients = [app.test_client() for _ in range(2)]
        for c in clients:
            c.set_cookie("session", cookie)
        ready, codes = threading.Barrier(2), []

        def load(c):
            ready.wait()
            codes.append(c.get("/step").status_code)

        threads = [threading.Thread(target=load, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert codes == [200, 200]
        dbs.expire_all()
        p = dbs.scalar(select(store.Participant).order_by(store.Participant.id.desc()))
        n = dbs.scalar(select(func.count()).select_from(store.Task).where(store.Task.participant_id == p.id))
        assert n == 1, f"participant {k}: {n} rows for task 0"


def test_a_topic_renamed_in_the_config_after_the_plan_was_drawn(make_app, tmp_path, dbs):
    """Participants who consented before the edit keep their planned topic id; nothing fails."""
    from sitetest import STUDY_TOML

    app = make_app()
    first = app.test_client()
    w = Walker(first)
    w.arrive()
    w.consent()
    edited = tmp_path / "edited.toml"
    edited.write_text(STUDY_TOML.read_text().replace('id = "sleep"', 'id = "sleep-v2"'))
    later = make_app(STUDY_CONFIG=str(edited)).test_client()
    later.set_cookie("session", first.get_cookie("session").value)
    w2 = Walker(later)
    seen = set()
    while (step := w2.current_step()) != "done" and not step.startswith("task:") and step not in seen:
        seen.add(step)
        assert w2.answer({"age": "30", "understand_before": "3"}, follow=False).status_code in (200, 302)
    dbs.expire_all()
    tasks = dbs.scalars(select(store.Task)).all()
    assert tasks and {t.answers["topic_id"] for t in tasks} == {"sleep"}  # the study's only topic, as planned
    assert later.get("/step").status_code == 200


def test_the_site_reads_the_environment_once_into_its_config(make_app, monkeypatch):
    monkeypatch.setenv("GAZEPREF_GAZE_SHED_MS", "120")
    monkeypatch.setenv("GAZEPREF_GAZE_WS_COMMIT_MS", "40")
    monkeypatch.setenv("GAZEPREF_GAZE_WS_SKIP_STALE", "0")
    monkeypatch.setenv("GAZEPREF_GAZE_CONCURRENCY", "2")
    app = make_app()
    assert (app.config["GAZE_SHED_MS"], app.config["GAZE_WS_COMMIT_MS"]) == (120.0, 40.0)
    assert app.config["GAZE_WS_SKIP_STALE"] is False and app.config["GAZE_CONCURRENCY"] == 2
    assert app.extensions["gazepref_settings"].gaze_shed_ms == 120.0
    assert make_app(GAZE_SHED_MS=5).config["GAZE_SHED_MS"] == 5  # overrides win


def test_each_app_has_its_own_flow_steps(make_app):
    from gazepref.capture_site import flow

    a, b = make_app(), make_app()
    flow.register_step("instructions", lambda ctx: "custom", lambda ctx: [], app=a)
    assert flow.step_handlers(a)["instructions"].render(None) == "custom"
    assert flow.step_handlers(b)["instructions"] is flow.BUILTIN_STEPS["instructions"]
    assert flow.step_handlers(a)["calibration"] is not flow.BUILTIN_STEPS["calibration"]  # the gaze module's
    with pytest.raises(TypeError):
        flow.BUILTIN_STEPS["task"] = flow.BUILTIN_STEPS["done"]


def test_the_browser_is_recognised_after_a_restart(client):
    """The session cookie outlives a browser restart (it has an expiry), so the same browser
    resumes without the code."""
    w = Walker(client, "RESTARTER")
    w.arrive()
    w.consent()
    cookie = client.get_cookie("session")
    assert cookie.expires is not None  # a persistent cookie, not a browser-session one
    restarted = client.application.test_client()
    restarted.set_cookie("session", cookie.value)  # what a browser keeps across a restart
    assert Walker(restarted, "RESTARTER").arrive().request.path == "/step"


def test_a_session_naming_another_participants_row_opens_nothing_of_theirs(client, dbs):
    """A browser's session names its participant by row id; on a database that reused the id of
    a deleted participant (SQLite before AUTOINCREMENT) it named the next one: their pages,
    resume code and completion code. The row must be the one the browser arrived as."""
    mine = Walker(client, "FIRST")
    mine.arrive()
    mine.consent()
    other = Walker(client.application.test_client(), "SECOND")
    other.arrive()
    code = _resume_code(other.consent().text)
    theirs = next(p for p in participants(dbs) if p.state["resume_code"] == code)
    with client.session_transaction() as s:  # as if this browser's row id had been given to them
        s["pid"] = theirs.id
    for path in ("/step", "/consent"):
        r = client.get(path, follow_redirects=True)
        assert code not in r.text and theirs.completion_code not in r.text
    page = client.get("/consent").text  # this browser starts over as itself, not as them
    assert "decision" in page
    # arriving by the other's link from a browser whose old session named their row id: the code first
    with client.session_transaction() as s:
        s["pid"] = theirs.id
    assert Walker(client, "SECOND").arrive().request.path == "/resume"


def test_the_window_report_keeps_what_the_set_up_log_wrote_meanwhile(make_app, tmp_path, monkeypatch, database):
    """``POST /window`` sets ``state["window"]`` while the set-up log (setup_log.py: other requests,
    processes or hosts, under the row's lock) adds to ``state["setup"]``: a report merged into the
    state it read before that write must not undo it."""
    from gazepref.capture_site import flow, setup_log
    from sitetest import study_variant

    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", min_viewport="[1024, 600]")),
                   **({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), "NARROW")
    w.arrive()
    page = w.consent()
    real = flow.current_participant

    def read_then_camera_error():  # the set-up log writes just after the report read the row
        p = real()
        setup_log.note_camera_error((p.id, p.pseudonym), "denied")
        return p

    monkeypatch.setattr(flow, "current_participant", read_then_camera_error)
    r = w.client.post("/window", data={"csrf_token": csrf_of(page.text), "too_small": "1", "width": "800",
                                       "height": "500"})
    assert r.status_code == 204
    with w.client.session_transaction() as sess:  # (the PostgreSQL server is shared by the session's tests)
        pid = sess["pid"]
    with app.extensions["gazepref"].sessions() as s:
        p = s.get(store.Participant, pid)
        assert p.state["window"]["too_small"] and p.state["window"]["size"] == [800, 500]
        assert p.state["setup"]["camera_error"] == "denied"


# --------------------------------------------------------------------------- withdrawal

WITHDRAW_LINK = 'id="withdraw-link" href="/withdraw"'


def _withdraw(w: Walker):
    """Open the confirmation page and confirm; returns (confirmation page, final response)."""
    page = w.client.get("/withdraw")
    assert page.status_code == 200, page.text
    return page, w.client.post("/withdraw", data={"csrf_token": csrf_of(page.text)})


def test_every_page_after_consent_offers_withdrawal(walker):
    """The "Withdraw from the study" link is on every flow page after consent (a plain link:
    keyboard reachable, to a confirmation page), not before consent nor after a decline."""
    assert WITHDRAW_LINK not in walker.arrive().text
    walker.consent()
    seen = set()
    while (step := walker.current_step()) != "done":
        assert WITHDRAW_LINK in walker.step().text, step
        seen.add(step.split(":")[0])
        if step.startswith("task:"):
            break
        walker.answer({"understand_before": "3", "age": "30"})
    assert {"demographics", "instructions", "pre", "task"} <= seen
    declined = Walker(walker.client.application.test_client(), "NO")
    declined.arrive()
    assert WITHDRAW_LINK not in declined.consent("decline").text
    assert declined.client.get("/withdraw").status_code in (302, 303)


def test_withdrawal_deletes_the_data_and_refuses_every_later_step(app, walker, dbs):
    """Confirmed by a CSRF-checked POST, a withdrawal deletes the participant's answers and
    recordings (nobody else's) and keeps only the row that says they withdrew; a reload, Back, a
    stale form, the page's token and the same link in another browser then get the final page or
    a 4xx, and nothing more is stored."""
    walker.arrive()
    walker.consent()
    data = walker.to_task()  # demographics answered (age 30): a Demographics row
    walker.chat_turn(data, 0, "How does sleep help memory?")
    token = {"X-Participant-Token": data["token"]}
    batch = {"task": data["task"], "seq": 0, "origin": 1.7e12,
             "streams": {"mouse": {"t": [1.0], "x": [1.0], "y": [1.0]}}}
    assert walker.client.post("/api/ingest", json=batch, headers=token).status_code == 200
    stale_form = walker.step().text
    other = Walker(app.test_client(), "STAYS")  # someone else's data stays
    other.arrive()
    other.consent()
    other.to_task()

    page = walker.client.get("/withdraw")
    text = page.text
    assert page.status_code == 200 and WITHDRAW_LINK not in text
    assert "answers and recordings will be deleted" in text and "will not receive a completion code" in text
    assert 'href="/step"' in text and "Cancel" in text  # back to where they were
    assert walker.client.post("/withdraw", data={}).status_code == 400  # no CSRF token: nothing happens
    dbs.expire_all()
    assert len(dbs.scalars(select(store.Turn)).all()) == 1

    _, r = _withdraw(walker)
    assert r.status_code in (302, 303) and r.headers["Location"].endswith("/withdrawn")
    final = walker.client.get("/withdrawn")
    assert final.status_code == 200 and "have been deleted" in final.text and WITHDRAW_LINK not in final.text
    assert "TEST-CODE-42" not in final.text

    dbs.expire_all()
    gone, stays = _withdrawn_and_other(dbs)
    assert gone.consent is False and gone.completion_code is None
    assert set(gone.state) == {"withdrawn"} and gone.demographics is None
    assert gone.tasks == [] and gone.calibrations == []
    assert [t.participant_id for t in dbs.scalars(select(store.Task))] == [stays.id]
    assert dbs.scalars(select(store.Turn)).all() == [] and dbs.scalars(select(store.StreamChunk)).all() == []
    assert stays.consent and stays.demographics is not None

    # a reload, the back button's stale form, the API with the old token: the final page or a 4xx
    for r in (walker.client.get("/step"), walker.client.get("/consent"), walker.client.get("/withdraw"),
              walker.client.post("/step", data={"csrf_token": csrf_of(stale_form), "step": "task:0"})):
        assert r.status_code in (302, 303) and r.headers["Location"].endswith("/withdrawn"), r.status_code
    r = walker.client.post(data["urls"]["turns"], json={"index": 1, "prompt": "again"}, headers=token)
    assert r.status_code == 401
    assert walker.client.post("/api/ingest", json=batch | {"seq": 1}, headers=token).status_code in (401, 403)
    assert walker.client.post("/window", data={"csrf_token": csrf_of(stale_form), "too_small": "1",
                                               "width": "10", "height": "10"}).status_code == 204
    # the same link again, in another browser: told they withdrew, not admitted again
    again = Walker(app.test_client(), walker.pid)
    r = again.arrive()
    assert "You have withdrawn" in r.text and WITHDRAW_LINK not in r.text
    assert again.client.get("/consent", follow_redirects=True).request.path == "/withdrawn"
    dbs.expire_all()
    gone, _ = _withdrawn_and_other(dbs)
    assert set(gone.state) == {"withdrawn"} and len(participants(dbs)) == 2
    assert dbs.scalars(select(store.Turn)).all() == [] and dbs.scalars(select(store.StreamChunk)).all() == []


def _withdrawn_and_other(dbs):
    """(the withdrawn participant's row, the consenting one's)."""
    rows = participants(dbs)
    stays = next(p for p in rows if p.consent)
    return next(p for p in rows if p is not stays), stays


@pytest.mark.parametrize("platform, arrival, says", [
    ("prolific", {"PROLIFIC_PID": "PW", "STUDY_ID": "S", "SESSION_ID": "X"}, "return the study on Prolific"),
    ("mturk", {"workerId": "MW", "assignmentId": "A1", "hitId": "H1", "turkSubmitTo": "https://www.mturk.com"},
     "return the HIT on Amazon Mechanical Turk"),
])
def test_withdrawal_says_how_to_leave_the_platform(make_app, tmp_path, platform, arrival, says):
    """Prolific participants return the study, MTurk workers the HIT; a return link the study
    configures (``screenout_url`` without a code) is offered; no code is given."""
    from sitetest import study_variant

    toml = study_variant(tmp_path / "s.toml", f'[platform]\nname = "{platform}"\n'
                                              'screenout_url = "https://example.org/left"')
    w = Walker(make_app(STUDY_CONFIG=str(toml)).test_client())
    w.arrive(**arrival)
    w.consent()
    page, r = _withdraw(w)
    final = w.client.get("/withdrawn").text
    for text in (page.text, final):
        assert says in text and 'href="https://example.org/left"' in text
        assert "TEST-CODE-42" not in text and "externalSubmit" not in text


def test_withdrawal_without_a_return_link_says_it_once(make_app, tmp_path):
    """Without a return link the note is one plain sentence (it said "On Prolific, please return
    the study (do not submit it): return the study on Prolific.", which reads like a broken link)."""
    from sitetest import study_variant

    w = Walker(make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", '[platform]\nname = "prolific"'))).test_client())
    w.arrive()
    w.consent()
    page, _ = _withdraw(w)
    for text in (page.text, w.client.get("/withdrawn").text):
        note = re.search(r'<p class="return-note" id="return-note">(.*?)</p>', text, re.S).group(1)
        assert " ".join(note.split()) == "On Prolific, please return the study (do not submit it)."


def test_a_screened_out_participant_can_withdraw_too(make_app, tmp_path):
    """Sent back to the platform without a camera, a participant's calibration-step data is still
    kept: their screened-out page offers the withdrawal, which deletes it."""
    from gazetest import answer_step, to_calibration, webcam_toml

    toml = webcam_toml(tmp_path / "required.toml")
    toml.write_text(toml.read_text().replace('webcam = "optional"', 'webcam = "required"'))
    app = make_app(STUDY_CONFIG=str(toml))
    client = app.test_client()
    to_calibration(client, "CAM-NONE")
    assert answer_step(client, {"outcome": "no-camera"}).status_code == 302
    page = client.get("/step").text
    assert "needs a working webcam" in page and WITHDRAW_LINK in page
    w = Walker(client, "CAM-NONE")
    _, r = _withdraw(w)
    assert r.headers["Location"].endswith("/withdrawn")
    with app.extensions["gazepref"].sessions() as s:
        [p] = participants(s)
        assert set(p.state) == {"withdrawn"} and p.demographics is None and p.tasks == []


@pytest.mark.parametrize("action", ["GET", "POST"])
def test_a_step_under_way_when_the_researchers_delete_the_data_writes_nothing_back(make_app, database, action):
    """The researchers' "Delete data" (or the participant's withdrawal in another tab) commits
    while a step request of theirs is under way, after it read the row: that request must not
    write back what it holds (the live state with its platform ids over the marker, the answers
    it was sending as a new demographics row, a task it reached): the marker row would take them,
    its foreign keys still hold. SQLite and PostgreSQL."""
    import uuid

    from sqlalchemy import event

    from gazepref.capture_site.purge import purge_participant

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"MIDSTEP-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    page = w.step().text
    with w.client.session_transaction() as sess:
        pid = sess["pid"]
    assert action == "GET" or 'name="age"' in page  # the demographics step
    armed, held = [True], []

    def researchers_delete(target, _context):
        if armed[0] and target.id == pid:  # just after the request read the row
            armed[0] = False
            if action == "POST":  # the request keeps working on what it read (not a reload of the row)
                held.append(target)
            with app.extensions["gazepref"].sessions() as s:
                purge_participant(s, s.get(store.Participant, pid))
                s.commit()

    event.listen(store.Participant, "load", researchers_delete)
    try:
        if action == "GET":
            w.client.get("/step")
        else:
            w.client.post("/step", data={"csrf_token": csrf_of(page), "step": "demographics", "age": "30"})
    finally:
        event.remove(store.Participant, "load", researchers_delete)
    assert not armed[0]
    with app.extensions["gazepref"].sessions() as s:
        p = s.get(store.Participant, pid)
        assert p.consent is False and set(p.state) == {"deleted"}, p.state
        assert s.scalars(select(store.Demographics.id).where(store.Demographics.participant_id == pid)).all() == []
        assert s.scalars(select(store.Task.id).where(store.Task.participant_id == pid)).all() == []
    assert w.step().status_code == 403  # "This study is over for you"


def test_a_resume_attempt_after_the_data_was_deleted_writes_nothing_on_the_marker(make_app, database):
    """Another browser with the same platform id waits at the resume code when the researchers
    delete the data: its codes are counted on no row (the marker keeps only what the deletion
    left), and it is told that the study is over for it. SQLite and PostgreSQL."""
    import uuid

    from gazepref.capture_site.purge import purge_participant

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"RESUMED-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    with w.client.session_transaction() as sess:
        pid = sess["pid"]
    other = Walker(app.test_client(), w.pid)
    assert other.arrive().request.path == "/resume"
    page = other.client.get("/resume").text
    with app.extensions["gazepref"].sessions() as s:
        purge_participant(s, s.get(store.Participant, pid))
        s.commit()
        marker = dict(s.get(store.Participant, pid).state)
    r = other.client.post("/resume", data={"csrf_token": csrf_of(page), "code": "AAAA-AAAA"}, follow_redirects=True)
    with app.extensions["gazepref"].sessions() as s:
        assert s.get(store.Participant, pid).state == marker
    assert r.status_code == 403 and "deleted your data" in r.text


@pytest.mark.parametrize("bounds, typed, stored, page_says", [
    ("", "-5", None, "Enter a whole number from 0 to 150"),     # the page's 0..150, now the server's too
    ("", "30.5", None, "Enter a whole number from 0 to 150"),   # the page's step 1
    ("", "30.0", 30, None),
    ("", "0", 0, None),
    ("min = 18\nmax = 99", "17", None, "Enter a whole number from 18 to 99"),
    ("min = 0.5\nmax = 2.5\ninteger = false", "2.25", 2.25, None),
    ("min = 0.5\nmax = 2.5\ninteger = false", "2.75", None, "Enter a number from 0.5 to 2.5"),
])
def test_a_number_questions_bounds_are_the_pages_and_the_servers(make_app, tmp_path, dbs, bounds, typed, stored,
                                                                  page_says):
    """A number question takes the study file's ``min``, ``max`` and ``integer`` (default 0, 150,
    whole numbers: what the page's input always allowed); the server refuses what the input would
    (an age of -5 was stored when sent without the page), and the page shows the bounds."""
    from sitetest import study_variant

    toml = study_variant(tmp_path / "s.toml")
    toml.write_text(toml.read_text().replace('label = "Age"\ntype = "number"', f'label = "Age"\ntype = "number"\n{bounds}'))
    w = Walker(make_app(STUDY_CONFIG=str(toml)).test_client())
    w.arrive()
    page = w.consent().text
    field = re.search(r'<input type="number" name="age"[^>]*>', page).group(0)
    lo, hi, step = ("0.5", "2.5", "any") if "integer = false" in bounds else ("18", "99", "1") if bounds else ("0", "150", "1")
    assert f'min="{lo}" max="{hi}" step="{step}"' in field
    r = w.answer({"age": typed})
    if page_says:
        assert r.status_code == 400 and page_says in r.text and w.current_step() == "demographics"
        assert f'value="{typed}"' in r.text  # kept for the participant to correct
    else:
        assert w.current_step() != "demographics"
        (p,) = participants(dbs)
        assert p.demographics.answers["age"] == stored and type(p.demographics.answers["age"]) is type(stored)


def _second_tab(app, w: Walker) -> Walker:
    """Another tab of ``w``'s browser: the same session cookie."""
    tab = Walker(app.test_client(), w.pid)
    with w.client.session_transaction() as mine, tab.client.session_transaction() as theirs:
        theirs.update(dict(mine))
    return tab


def _held_after_read(monkeypatch, thread_name: str, meanwhile):
    """The first step answer in the thread ``thread_name``, once it has read the participant's
    state and found its handler, lets ``meanwhile()`` run in another thread before it goes on, as
    a request held up there (a proxy's retry, a second tab's submit waiting for the database)
    would: it goes on once that is done, or after 2 s if ``meanwhile`` waits for it (for the
    participant's lock). Returns the other thread, to be joined."""
    import threading

    from gazepref.capture_site import flow

    real, others = flow.step_handlers, []

    def held(app=None):
        found = real(app)
        if threading.current_thread().name == thread_name and not others:
            others.append(threading.Thread(target=meanwhile))
            others[0].start()
            others[0].join(timeout=2.0)
        return found

    monkeypatch.setattr(flow, "step_handlers", held)
    return others


def _state(app, w: Walker) -> dict:
    with w.client.session_transaction() as sess:
        pid = sess["pid"]
    with app.extensions["gazepref"].sessions() as s:
        return s.get(store.Participant, pid).state


def test_a_late_copy_of_a_step_form_does_not_send_the_participant_back(make_app, database, monkeypatch):
    import threading

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"LATE-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    w.answer({"age": "30"})
    step_k = w.current_step()
    late_form = {"csrf_token": csrf_of(w.step().text), "step": step_k}
    tab = _second_tab(app, w)

    def participant_goes_on():  # meanwhile the participant answers this step and the next
        w.client.post("/step", data=late_form)
        w.answer({"understand_before": "3"})

    others = _held_after_read(monkeypatch, "late", participant_goes_on)
    late = threading.Thread(name="late", target=lambda: tab.client.post("/step", data=late_form))
    late.start()
    late.join()
    others[0].join()
    state = _state(app, w)
    assert state["pos"] == state["steps"].index(step_k) + 2, state["pos"]


def test_a_step_answer_whose_participant_is_readmitted_meanwhile_goes_to_the_start(make_app, database, monkeypatch):
    """The researcher deletes the participant's data and lets them start again (their row goes)
    while a step's answer of theirs is handled: the browser goes to the study's start, as at its
    next request, nothing written (a 500 before: the answer took the lock of a row no longer
    there)."""
    from gazepref.capture_site import flow

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"GONE-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    with w.client.session_transaction() as sess:
        pid = sess["pid"]

    lock = flow.participant_lock

    def readmitted_first(p):  # the answer has read the participant; the researcher acts now
        readmit_now(app, pid)
        return lock(p)

    monkeypatch.setattr(flow, "participant_lock", readmitted_first)
    got = w.answer({"age": "30"}, follow=False)
    assert got.status_code == 302 and got.headers["Location"].endswith("/consent"), got.status_code
    monkeypatch.setattr(flow, "participant_lock", lock)
    with app.extensions["gazepref"].sessions() as s:
        assert s.get(store.Participant, pid) is None
    assert "I agree" in w.client.get("/consent").text  # they may take part again


def test_a_step_answer_keeps_what_other_requests_wrote_into_the_state_meanwhile(make_app, database, monkeypatch):
    """A window report (written under the participant's lock) while a step's answer is handled
    stays: the answer wrote back the whole state as read at its start (the set-up log and the
    resume code's count of wrong codes were lost the same way)."""
    import threading

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    w = Walker(app.test_client(), f"STATE-{uuid.uuid4().hex[:8]}")
    w.arrive()
    page = w.consent().text
    tab = _second_tab(app, w)

    def report_window():
        r = tab.client.post("/window", data={"too_small": "1", "width": "500", "height": "400",
                                             "csrf_token": csrf_of(page)})
        assert r.status_code == 204

    others = _held_after_read(monkeypatch, "answer", report_window)
    form = {"csrf_token": csrf_of(w.step().text), "step": "demographics", "age": "30"}
    answer = threading.Thread(name="answer", target=lambda: w.client.post("/step", data=form))
    answer.start()
    answer.join()
    others[0].join()
    state = _state(app, w)
    assert state["pos"] == 1 and state.get("window"), state


def test_a_pages_first_visit_and_its_steps_answer_at_once_do_not_deadlock(make_app, postgres_url, monkeypatch):
    """The first visit of a pre-task page (it creates the task) while that step's answer, holding
    the participant's row, creates it too: PostgreSQL found a deadlock (the visit took the task's
    unique key, then waited for the row's key-share lock; the answer held the row and waited for
    the key) and one of the two got a 503. Now the row is locked first on both ways."""
    import threading

    from gazepref.capture_site import flow

    app = make_app(DATABASE_URL=postgres_url)
    w = Walker(app.test_client(), f"DEADLOCK-{uuid.uuid4().hex[:8]}")
    w.arrive()
    w.consent()
    w.answer({"age": "30"})
    page = w.step().text  # the instructions
    assert w.answer(follow=False).status_code == 302  # on to pre:0, its page (and task) not yet loaded
    form = {"csrf_token": csrf_of(page), "step": "pre:0", "understand_before": "3"}
    tab = _second_tab(app, w)
    real, locked, answers = flow.step_handlers, threading.Event(), {}

    def held(app_=None):
        found = real(app_)
        if threading.current_thread().name == "answer" and not locked.is_set():
            locked.set()  # (the answer holds the participant's row from here)
            time.sleep(1.5)  # the visit meanwhile: it waits for the row (or, before, took the task's key)
        return found

    monkeypatch.setattr(flow, "step_handlers", held)
    answer = threading.Thread(name="answer", target=lambda: answers.setdefault("post", w.client.post("/step", data=form)))
    visit = threading.Thread(target=lambda: (locked.wait(10), answers.setdefault("get", tab.client.get("/step"))))
    answer.start()
    visit.start()
    answer.join()
    visit.join()
    assert (answers["post"].status_code, answers["get"].status_code) == (302, 200)
    state = _state(app, w)
    assert state["steps"][state["pos"]] == "task:0"
    with w.client.session_transaction() as sess:
        pid = sess["pid"]
    with app.extensions["gazepref"].sessions() as s:
        tasks = s.scalars(select(store.Task).where(store.Task.participant_id == pid)).all()
    assert len(tasks) == 1 and tasks[0].answers["understand_before"] == 3
