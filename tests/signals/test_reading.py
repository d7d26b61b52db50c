"""Reading measures on a synthetic reader with a known reading order."""
from __future__ import annotations

import numpy as np
import pytest

from gazepref.signals import gaze_events, reading
from gazepref.signals.task_data import SampleFrame
from gazepref.datasets.text_mapping import text_units

TEXT = "aaaa bbbb cccc dddd. eeee ffff gggg hhhh."  # 8 words, 2 sentences, words 5 chars apart


def frame_from_fixations(seq, per_fix=5, dt=70.0, turn=0):
    """``seq``: list of (region, word) fixations; each becomes ``per_fix`` samples at a
    position 200 px from the previous one (so I-DT separates them)."""
    u = text_units(TEXT)
    t, x, y, reg, word, char = [], [], [], [], [], []
    now = 0.0
    for k, (r, w) in enumerate(seq):
        px, py = 100.0 + 200 * (k % 5), 100.0 + 150 * (k // 5)
        for _ in range(per_fix):
            t.append(now)
            x.append(px)
            y.append(py)
            reg.append(r)
            word.append(w)
            char.append(int(u.word_start[w]) if w >= 0 else -1)
            now += dt
    t = np.array(t)
    seg = gaze_events.segments(t)
    word = np.array(word, dtype=np.int32)
    sent = np.where(word >= 0, u.word_sentence[np.maximum(word, 0)], -1).astype(np.int32)
    reg = np.array(reg, dtype=np.int8)
    n = len(t)
    return SampleFrame(t, np.array(x), np.array(y), np.full(n, turn, np.int32), np.where(reg <= 1, reg, -1).astype(np.int8),
                       np.array(char, dtype=np.int32), word, sent, np.zeros(n), reg, gaze_events.sample_durations(t, seg), seg), u


def test_linear_reading_then_regression():
    # prompt, read words 0..5 of response 0, glance at the prompt, come back to word 2 and 7
    seq = [(2, -1)] + [(0, w) for w in range(6)] + [(2, -1)] + [(0, 2), (0, 7)]
    f, u = frame_from_fixations(seq)
    fx = reading.fixations(f)
    assert len(fx) == len(seq)
    assert fx.region.tolist() == [r for r, _ in seq]
    assert fx.word.tolist() == [w for _, w in seq]
    vis = reading.visit_ids(fx.region, fx.turn)
    assert vis.tolist() == [0, 1, 1, 1, 1, 1, 1, 2, 3, 3]
    m = reading.response_gaze_measures(fx, vis, 0, u)
    fd = 5 * 70.0
    assert m["g_fix_n"] == 8 and m["g_fix_ms"] == pytest.approx(8 * fd)
    assert m["g_first_fix_ms"] == pytest.approx(fd)
    assert m["g_first_pass_ms"] == pytest.approx(6 * fd)  # the first visit: words 0..5
    assert m["g_word_cov"] == pytest.approx(7 / 8)
    assert m["g_sent_cov"] == 1.0
    assert m["g_regressions"] == 0  # word 2 is re-read in a *new* visit: a re-reading, not a regression
    assert m["g_reread_word_share"] == pytest.approx(1 / 7)
    assert m["g_word_gd_ms"] == pytest.approx(fd)
    assert m["g_read_wpm"] == pytest.approx(7 / (8 * fd / 60000))
    assert m["g_sent_first_share"] == pytest.approx(5 / 8)
    assert m["g_sent_last_share"] == pytest.approx(3 / 8)
    # sentence 0 (words 0-3) read in visits 1 and 3 → re-read; sentence 1 (4,5 then 7) too
    assert m["g_sent_reread_share"] == 1.0
    d = reading.dwell_measures(f, 0, u, 0.0, "g_")
    assert d["g_visits"] == 2 and d["g_depth"] == pytest.approx(u.word_start[7] / u.n_chars)
    assert d["g_first_entry_ms"] == pytest.approx(fd)
    # nothing on response 1
    m1 = reading.response_gaze_measures(fx, vis, 1, u)
    assert m1["g_fix_n"] == 0 and m1["g_word_cov"] == 0.0 and np.isnan(m1["g_first_fix_ms"])


def test_regressions_within_a_visit_and_gaze_duration():
    seq = [(0, 0), (0, 1), (0, 1), (0, 2), (0, 0), (0, 3)]
    f, u = frame_from_fixations(seq)
    fx = reading.fixations(f)
    vis = reading.visit_ids(fx.region, fx.turn)
    m = reading.response_gaze_measures(fx, vis, 0, u)
    fd = 5 * 70.0
    assert m["g_regressions"] == 1  # 2 → 0
    assert m["g_regression_rate"] == pytest.approx(1 / 4)  # transitions between different words
    # gaze duration: word 1 has two consecutive fixations → 2 fd; others 1 fd
    assert m["g_word_gd_ms"] == pytest.approx((fd + 2 * fd + fd + fd) / 4)
    assert m["g_word_ffd_ms"] == pytest.approx(fd)


def test_sentence_measures():
    seq = [(0, 0), (0, 1), (0, 5), (2, -1), (0, 6)]
    f, u = frame_from_fixations(seq)
    fx = reading.fixations(f)
    vis = reading.visit_ids(fx.region, fx.turn)
    s = reading.sentence_measures(fx, vis, f, 0, u)
    assert s["n_words"].tolist() == [4, 4]
    assert s["g_fix_n"].tolist() == [2, 2]
    assert s["g_visits"].tolist() == [1, 2]
    assert s["g_word_cov"].tolist() == [0.5, 0.5]
    assert s["g_dwell_ms"].sum() == pytest.approx(4 * 5 * 70.0)
