"""Attention split between two responses on sequences with a known split."""
from __future__ import annotations

import numpy as np
import pytest

from gazepref.signals.pairwise import side_sequence_measures


def test_known_attention_split():
    # left 3 s, prompt 1 s, right 1 s, left 2 s, right 4 s  (as fixations of 1 s)
    side = np.array([0, 0, 0, 2, 1, 0, 0, 1, 1, 1, 1])
    dur = np.full(len(side), 1000.0)
    m = side_sequence_measures(side, dur, "g_")
    assert m["g_share_l"] == pytest.approx(5 / 10)
    assert m["g_l_ms"] == 5000 and m["g_r_ms"] == 5000
    assert m["g_switches"] == 3  # L→R→L→R (the prompt glance does not count)
    assert m["g_first_side"] == 0 and m["g_last_side"] == 1
    assert m["g_last_visit_ms"] == 4000
    assert m["g_returns"] == 2
    # last third of the 10 s on responses: the final 4 s on the right... and nothing on the left
    assert m["g_last_share_l"] == 0.0


def test_no_response_samples():
    m = side_sequence_measures(np.array([2, 2]), np.array([100.0, 100.0]), "m_")
    assert np.isnan(m["m_share_l"]) and np.isnan(m["m_last_side"]) and m["m_switches"] == 0
