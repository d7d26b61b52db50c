"""Small pieces: platform ids, pseudonyms, log redaction, rate limiting, word lookup."""
import logging

import pandas as pd
import pytest

from gazepref.capture_site.hits import word_at
from gazepref.capture_site.identity import arrival_from_args
from gazepref.capture_site.security import pseudonymise
from gazepref.capture_site.serving import RedactingRequestHandler


def test_platform_parameters():
    a = arrival_from_args({"PROLIFIC_PID": "abc", "STUDY_ID": "s", "SESSION_ID": "x"})
    assert (a.platform, a.raw_id, a.extras) == ("prolific", "abc", {"STUDY_ID": "s", "SESSION_ID": "x"})
    m = arrival_from_args({"workerId": "W", "assignmentId": "A", "hitId": "H"})
    assert m.platform == "mturk" and not m.preview and m.extras["hitId"] == "H"
    assert arrival_from_args({"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE"}).preview
    assert arrival_from_args({"pid": "p1"}).platform == "generic"
    d1, d2 = arrival_from_args({}), arrival_from_args({})
    assert d1.platform == "direct" and d1.raw_id != d2.raw_id


@pytest.mark.parametrize("args", [
    {"PROLIFIC_PID": "{{%PROLIFIC_PID%}}", "STUDY_ID": "{{%STUDY_ID%}}", "SESSION_ID": "{{%SESSION_ID%}}"},
    {"pid": "{{ID}}"},
])
def test_an_unfilled_placeholder_is_no_participant_id(args):
    """The study link as written (opened directly, or posted where the platform fills nothing in)
    made everyone who opened it one participant (the same pseudonym): a placeholder is no id."""
    first, second = arrival_from_args(args), arrival_from_args(args)
    assert first.platform == "direct" and first.raw_id != second.raw_id


def test_pseudonyms_depend_on_salt_and_platform():
    p = pseudonymise("salt1", "prolific", "abc")
    assert p == pseudonymise("salt1", "prolific", " abc ") and len(p) == 32 and "abc" not in p
    assert p != pseudonymise("salt2", "prolific", "abc") != pseudonymise("salt1", "mturk", "abc")


def test_request_log_has_no_query_string(caplog):
    handler = RedactingRequestHandler.__new__(RedactingRequestHandler)
    handler.path, handler.command = "/?PROLIFIC_PID=SECRET123&STUDY_ID=S", "GET"
    handler.client_address, handler.requestline = ("127.0.0.1", 1), "GET /?PROLIFIC_PID=SECRET123 HTTP/1.1"
    handler.server = type("S", (), {"log_format": None})()
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        handler.log_request(302, 0)
    assert "GET /" in caplog.text and "SECRET123" not in caplog.text




def test_word_at_uses_latest_layout_and_pane_scroll():
    layout = pd.DataFrame([
        # t, target, kind, index, s, e, x, y, w, h, turn
        (0.0, "response:0", "element", -1, -1, -1, 100, 100, 300, 200, 0),
        (0.0, "response:0", "word", 0, 0, 5, 10, 10, 40, 18, 0),
        (0.0, "response:0", "word", 1, 6, 11, 10, 250, 40, 18, 0),  # below the fold
        (50.0, "response:0", "element", -1, -1, -1, 100, 60, 300, 200, 0),  # window scrolled by 40
    ], columns=["t", "target", "kind", "index", "char_start", "char_end", "x", "y", "w", "h", "turn"])
    scroll = pd.DataFrame([(0.0, "response:0", 0.0, 0.0), (80.0, "response:0", 0.0, 200.0)],
                          columns=["t", "target", "scroll_x", "scroll_y"])
    assert word_at(layout, scroll, 10.0, 120, 115).index == 0
    assert word_at(layout, scroll, 60.0, 120, 115) is None  # the word moved up with the page
    assert word_at(layout, scroll, 60.0, 120, 75).index == 0
    hit = word_at(layout, scroll, 90.0, 120, 115)  # pane scrolled down 200 px: the second word
    assert hit.index == 1 and (hit.char_start, hit.char_end) == (6, 11) and hit.rel_y == 255
    assert word_at(layout, scroll, 90.0, 50, 50) is None  # outside every response


def test_study_texts_become_paragraphs_not_ragged_lines():
    from gazepref.capture_site.app import paragraphs

    html = str(paragraphs("We record your\nmouse.\n\nYou may <stop>:\n- any time\n- no reason needed"))
    assert html == ("<p>We record your mouse.</p>\n"
                    "<p>You may &lt;stop&gt;:<br>- any time<br>- no reason needed</p>")
