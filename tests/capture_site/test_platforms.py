"""Crowd platforms: admission by platform id, completion and screen-out hand-offs."""
from __future__ import annotations

import pytest

from gazepref.capture_site.config import ConfigError, load_config
from sitetest import Walker, first_sentence, participants, study_variant

PROLIFIC = '[platform]\nname = "prolific"\nscreenout_code = "NOCONSENT"'
POST = {"summary": "s", "understand_after": "4", "attention": "2"}


def finish(w: Walker) -> str:
    """Walk a consenting participant to the done page; its HTML."""
    for _ in range(2):
        data = w.to_task()
        for i, prompt in enumerate(["How does sleep help memory?", "How many hours do adults need?"]):
            turn = w.chat_turn(data, i, prompt)
        w.answer()
        w.answer({**POST, "copy_sentence": first_sentence(turn)})
    return w.step().text


def test_prolific_completion_link_carries_the_code(make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", PROLIFIC)))
    w = Walker(app.test_client(), "PRO1")
    w.arrive()
    w.consent()
    done = finish(w)
    assert 'href="https://app.prolific.com/submissions/complete?cc=TEST-CODE-42"' in done
    assert "Return to Prolific" in done and "PRO1" not in done


def test_prolific_requires_its_id_and_decline_gets_the_screenout_code(make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", PROLIFIC)))
    client = app.test_client()
    bare = client.get("/")
    assert bare.status_code == 403 and "open the study from Prolific" in bare.text
    assert client.get("/", query_string={"pid": "OTHER"}).status_code == 403  # another platform's id
    assert client.get("/consent").status_code == 403
    w = Walker(client, "PRO2")
    assert w.arrive().status_code == 200
    declined = w.consent("decline").text
    assert 'href="https://app.prolific.com/submissions/complete?cc=NOCONSENT"' in declined
    assert 'id="screen-out-code"' in declined
    # the same browser may come back by the bare link: it sees its decision again
    again = client.get("/", follow_redirects=True)
    assert again.status_code == 200 and "NOCONSENT" in again.text
    with app.extensions["gazepref"].sessions() as s:
        assert [p.consent for p in participants(s)] == [False]


def test_mturk_submit_goes_only_to_mturk_hosts(make_app, tmp_path):
    app = make_app()
    sandbox = Walker(app.test_client(), "MT1")
    sandbox.arrive(workerId="MT1", assignmentId="A1", hitId="H1", turkSubmitTo="https://workersandbox.mturk.com")
    sandbox.consent()
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in finish(sandbox)
    rogue = Walker(app.test_client(), "MT2")
    rogue.arrive(workerId="MT2", assignmentId="A2", hitId="H2", turkSubmitTo="https://evil.example")
    rogue.consent()
    done = finish(rogue)
    assert "evil.example" not in done and 'action="https://www.mturk.com/mturk/externalSubmit"' in done


def test_a_worker_back_by_the_bare_link_keeps_their_platforms_hand_off(make_app, tmp_path):
    """An MTurk worker who comes back mid-study by the study's bare address (a closed tab, the
    address typed again) resumes, and the done page still submits the HIT: the arrival kept the
    hand-off of the link they came by (before, it became a "direct" arrival without the
    assignment: "Please enter this code on Amazon Mechanical Turk", where an ExternalQuestion HIT
    has no field for it)."""
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", '[platform]\nname = "mturk"')))
    w = Walker(app.test_client(), "MT3")
    w.arrive(workerId="MT3", assignmentId="A3", hitId="H3", turkSubmitTo="https://workersandbox.mturk.com")
    w.consent()
    w.answer({"age": "30"})
    again = w.client.get("/s/test-study/", follow_redirects=True)
    assert again.status_code == 200 and again.request.path == "/step"
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in finish(w)


def test_no_camera_in_a_webcam_only_study_screens_out(make_app, tmp_path):
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", PROLIFIC, webcam='"required"')))
    w = Walker(app.test_client(), "CAM1")
    w.arrive()
    w.consent()
    w.answer({"age": "30"})
    w.answer()  # instructions
    assert w.current_step() == "calibration"
    page = w.answer({"outcome": "no-camera"}).text
    assert "needs a working webcam" in page and "cc=NOCONSENT" in page
    assert "needs a working webcam" in w.step().text  # every later visit: the same page
    with app.extensions["gazepref"].sessions() as s:
        [p] = participants(s)
        assert p.state["screened_out"]["reason"] == "no-camera" and not p.tasks


MTURK_ARRIVAL = {"workerId": "MTC", "assignmentId": "AC", "hitId": "HC", "turkSubmitTo": "https://www.mturk.com"}


@pytest.mark.parametrize("arrival, word", [({"PROLIFIC_PID": "CAM2", "STUDY_ID": "S", "SESSION_ID": "X"},
                                             "return the study on Prolific"),
                                            (MTURK_ARRIVAL, "return the HIT on Amazon Mechanical Turk")])
def test_no_camera_without_a_screenout_code_says_what_to_return_in_the_platforms_word(make_app, tmp_path,
                                                                                    arrival, word):
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", webcam='"required"')))
    w = Walker(app.test_client())
    w.arrive(**arrival)
    w.consent()
    w.answer({"age": "30"})
    w.answer()  # instructions
    page = w.answer({"outcome": "no-camera"}).text
    assert "needs a working webcam" in page and f"Please close this page and {word}." in page
    assert "handoff" not in page  # no code: nothing to submit


def _gate(html: str) -> str:
    start = html.index('id="viewport-gate"')
    return html[start:html.index("</div>\n", html.index('id="viewport-way-out"', start))]


def test_the_larger_window_page_hands_back_to_the_platform_as_a_missing_camera_does(make_app, tmp_path):
    """A phone cannot enlarge its window: the "please use a larger window" page offers the same
    screen-out hand-off as no camera in a webcam-only study (the code and link, or the MTurk
    word); the hand-off pages themselves need no large window and have no such page."""
    small = {"min_viewport": "[1024, 600]"}
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "p.toml", PROLIFIC, **small)))
    w = Walker(app.test_client(), "PHONE1")
    gate = _gate(w.arrive().text)  # the consent page
    assert 'href="https://app.prolific.com/submissions/complete?cc=NOCONSENT"' in gate
    assert 'id="screen-out-code">NOCONSENT<' in gate
    declined = w.consent("decline").text
    assert "viewport-gate" not in declined and declined.count('id="handoff"') == 1

    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "m.toml", **small)))
    w = Walker(app.test_client())
    w.arrive(**MTURK_ARRIVAL)
    w.consent()
    gate = _gate(w.step().text)  # a step page
    assert "Please close this page and return the HIT on Amazon Mechanical Turk." in gate
    assert "handoff" not in gate  # no screen-out code: nothing to submit
    assert "viewport-gate" not in finish(w)  # the done page shows its code on any window


def test_platform_and_page_options_are_validated(tmp_path):
    cfg = load_config(study_variant(tmp_path / "a.toml", PROLIFIC, webcam='"required"'))
    assert cfg.platform.require_id and cfg.min_viewport == (1024, 600) and cfg.answer_format == "markdown"
    assert load_config(study_variant(tmp_path / "b.toml")).min_viewport == (0, 0)
    bad = [('[platform]\ncompletion_url = "http://x.example/?cc={code}"', {}, "platform.completion_url"),
           ('[platform]\nname = "mechanical"', {}, "platform.name"),
           # a placeholder that is not {code} would reach every link as it is
           ('[platform]\ncompletion_url = "https://x.example/?cc={cod}"', {}, r"platform.completion_url has '\{cod\}'"),
           ('[platform]\nscreenout_url = "https://x.example/?p={{%PROLIFIC_PID%}}"', {}, r"platform.screenout_url has '\{\{%PROLIFIC_PID%\}'"),
           ('[platform]\ncompletion_url = "https://x.example/?cc={code"', {}, r"platform.completion_url has '\{code'"),
           ("", {"min_viewport": "[1024]"}, "study.min_viewport"),
           ("", {"answer_format": '"html"'}, "study.answer_format")]
    for extra, study, key in bad:
        with pytest.raises(ConfigError, match=key):
            load_config(study_variant(tmp_path / "c.toml", extra, **study))


def test_mturk_frame_offers_a_tab_of_its_own(client):
    args = {"workerId": "MTF", "assignmentId": "AF", "hitId": "HF", "turkSubmitTo": "https://www.mturk.com"}
    framed = client.get("/", query_string=args, headers={"Sec-Fetch-Dest": "iframe"})
    assert framed.status_code == 200 and 'id="open-study"' in framed.text and 'target="_blank"' in framed.text
    assert "frame-ancestors 'self' https://worker.mturk.com" in framed.headers["Content-Security-Policy"]
    preview = client.get("/", query_string={**args, "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"})
    assert "https://workersandbox.mturk.com" in preview.headers["Content-Security-Policy"]
    top = client.get("/", query_string=args, headers={"Sec-Fetch-Dest": "document"})
    assert top.status_code == 302 and "frame-ancestors 'none'" in top.headers["Content-Security-Policy"]
