"""The in-box family of the comparison table (:mod:`gazepref.signals.inbox`)."""
import numpy as np

from gazepref.signals import inbox


def test_char_index_counted_from_a_paragraph_is_re_anchored_by_its_window():
    """Some IFLLM recordings count ``char_index`` from the rendered paragraph, not the response:
    the window (the text around the caret) puts the sample back where it was, so reading depth is
    that of the last paragraph, not of the first."""
    left = "Intro paragraph about sleep and memory. " * 5 + "The final paragraph names the character who lived."
    right = "Another answer entirely, about something else. " * 6
    at = left.index("character")
    n = 40  # the sample sits on "character" in the last paragraph; the recorder counted 12
    t, pos, char = 74.0 * np.arange(n), np.zeros(n), np.full(n, 12)
    window = np.array([left[at - 10:at + 10]] * n, dtype=object)
    raw = inbox.source_measures(t, pos, char, (left, right))
    fixed = inbox.source_measures(t, pos, char, (left, right), window=window)
    assert raw["gaze_d_depth"] < 0.1  # read as the start of the answer
    assert np.isclose(fixed["gaze_d_depth"], at / len(left), atol=0.05)  # where the words really are
    assert fixed["gaze_d_share"] == raw["gaze_d_share"]  # dwell is not a matter of characters


def test_dwell_share_visits_and_first_box():
    """Left box for 10 samples, right box for 30, then off the boxes: each sample stands for the
    time to the next one (capped), so the right box holds three quarters of the in-box dwell."""
    t = 100.0 * np.arange(50)
    pos = np.r_[np.zeros(10), np.ones(30), -np.ones(10)]
    char = np.where(pos >= 0, 5, -1)
    m = inbox.source_measures(t, pos, char, ("a" * 100, "b" * 100), source="mouse")
    assert np.isclose(m["mouse_d_share"], 0.25 - 0.5)
    assert m["mouse_d_first"] == 1.0 and m["mouse_d_visits"] == 0.0  # one visit each
    assert "mouse_s_camera_ok" not in m
    # a sample time twice (IFLLM writes some rows twice) counts once
    t2, pos2, char2 = np.r_[t, t[:5]], np.r_[pos, pos[:5]], np.r_[char, char[:5]]
    assert inbox.source_measures(t2, pos2, char2, ("a" * 100, "b" * 100), source="mouse") == m
    # swapping the boxes negates the pairwise columns
    sw = inbox.source_measures(t, np.where(pos >= 0, 1 - pos, -1), char, ("b" * 100, "a" * 100), source="mouse")
    for k, v in m.items():
        assert np.isclose(sw[k], -v if "_d_" in k else v)


def test_a_source_without_samples_in_the_turn_is_missing():
    s = {"gaze": {"t": np.arange(5.0), "turn": np.zeros(5), "pos": np.zeros(5), "char": np.zeros(5)},
         "mouse": {"t": np.arange(5.0), "turn": np.ones(5), "pos": np.zeros(5), "char": np.zeros(5)}}
    m = inbox.turn_measures(s, 0, ("abc", "def"))
    assert m["gaze_s_present"] == 1.0 and "gaze_d_share" in m
    assert m["mouse_s_present"] == 0.0 and not [k for k in m if k.startswith("mouse_d_")]
    assert inbox.columns(list(m) + ["g_share_l", "d_g_dwell_ms", "gaze"]) == list(m)
