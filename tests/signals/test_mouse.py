"""Mousetrap measures and scroll measures on trajectories with known geometry."""
from __future__ import annotations

import numpy as np
import pytest

from gazepref.signals import gaze_events, regions
from gazepref.signals.mouse import scroll_measures, selection_counts, trajectory_measures
from gazepref.signals.task_data import SampleFrame


def frame(x, y, dt=100.0, region=regions.RESP_0):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    t = np.arange(n) * dt
    seg = gaze_events.segments(t)
    z = np.full(n, -1, dtype=np.int32)
    reg = np.full(n, region, dtype=np.int8) if np.isscalar(region) else np.asarray(region, dtype=np.int8)
    return SampleFrame(t, x, y, np.zeros(n, np.int32), reg, z, z, z, np.zeros(n), reg,
                       gaze_events.sample_durations(t, seg), seg)


def test_straight_path_has_no_deviation():
    m = trajectory_measures(frame([0, 10, 20, 30, 40], [0, 0, 0, 0, 0]))
    assert m["m_dist_px"] == 40 and m["m_mad_px"] == 0 and m["m_auc_px2"] == 0
    assert m["m_x_flips"] == 0 and m["m_vel_max"] == pytest.approx(100.0)  # 10 px / 100 ms
    assert m["m_idle_ms"] == 0


def test_detour_mad_auc_flips_idle():
    # right along y=0 via a 30 px bump up (screen y grows downwards), back and forth in x once
    x = [0, 50, 100, 100, 150, 120, 200]
    y = [0, -30, 0, 0, 0, 0, 0]
    m = trajectory_measures(frame(x, y))
    assert m["m_mad_px"] == pytest.approx(30)  # + : to the left of the direction of travel, on screen
    assert trajectory_measures(frame(x, [-v for v in y]))["m_mad_px"] == pytest.approx(-30)
    assert abs(m["m_auc_px2"]) == pytest.approx(0.5 * 100 * 30)  # the triangle of the bump
    assert m["m_x_flips"] == 2  # → ← →
    assert m["m_y_flips"] == 1
    assert m["m_idle_ms"] == pytest.approx(100) and m["m_idle_max_ms"] == pytest.approx(100)
    assert m["m_dist_px"] == pytest.approx(2 * np.hypot(50, 30) + 50 + 30 + 80)


def test_hover_split_by_region():
    m = trajectory_measures(frame([0, 1, 2, 3], [0, 0, 0, 0], region=[0, 1, 2, 2]))
    assert m["m_hover_resp_ms"] == pytest.approx(200) and m["m_hover_prompt_ms"] == pytest.approx(200)


def test_scroll_measures():
    # content top: 300 → 200 → 100 (scrolled down 200), back up to 150, jitter below 1 px ignored
    t = np.arange(6) * 1000.0
    top = np.array([300, 200.3, 100, 100.2, 150, 150.4])
    s = scroll_measures(t, top, 5000.0)
    assert s["sc_depth_px"] == 200 and s["sc_dist_px"] == 250 and s["sc_back_n"] == 1
    assert s["sc_speed_px_s"] == pytest.approx(50)
    assert np.isnan(scroll_measures(np.zeros(0), np.zeros(0), 10.0)["sc_depth_px"])


def test_selection_counts_from_events():
    import pyarrow as pa

    ev = pa.table({"t": [1.0, 2.0, 3.0, 9.0], "type": ["select", "copy", "select", "select"],
                   "target": ["response:0", "response:0", "response:1", "response:0"], "turn": [0, 0, 0, 0]})
    assert selection_counts(ev, 0, 0, t_max=5.0) == {"m_select_n": 1.0, "m_copy_n": 1.0}
    assert np.isnan(selection_counts(None, 0, 0, None)["m_select_n"])
