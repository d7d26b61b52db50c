"""Gaze cleaning and events on synthetic webcam-like trajectories with known fixations."""
from __future__ import annotations

import numpy as np
import pytest

from gazepref.signals import gaze_events as ge


def scripted(fix_xy, fix_ms, dt=70.0, noise=8.0, seed=0, jitter=0.0):
    """Fixations at ``fix_xy`` lasting ``fix_ms`` each, instant jumps between them."""
    rng = np.random.default_rng(seed)
    t, x, y, truth = [], [], [], []
    now = 0.0
    for k, ((fx, fy), d) in enumerate(zip(fix_xy, fix_ms)):
        n = int(round(d / dt))
        for _ in range(n):
            t.append(now)
            x.append(fx + rng.normal(0, noise))
            y.append(fy + rng.normal(0, noise))
            truth.append(k)
            now += dt + (rng.uniform(-jitter, jitter) if jitter else 0.0)
    return np.array(t), np.array(x), np.array(y), np.array(truth)


FIX = [(200, 200), (600, 220), (620, 600), (100, 500)]
DUR = [700, 420, 980, 560]


def test_idt_finds_the_scripted_fixations():
    t, x, y, truth = scripted(FIX, DUR, jitter=15.0)
    seg = ge.segments(t)
    fx = ge.detect_fixations_idt(t, x, y, seg)
    assert len(fx) == len(FIX)
    for k in range(len(FIX)):
        members = np.flatnonzero(truth == k)
        assert fx.start[k] == members[0] and fx.end[k] == members[-1]
        assert abs(fx.x[k] - FIX[k][0]) < 15 and abs(fx.y[k] - FIX[k][1]) < 15
    assert np.allclose(fx.duration, [ge.sample_durations(t, seg)[truth == k].sum() for k in range(4)])


def test_idt_respects_min_duration_and_gaps():
    t, x, y, _ = scripted([(100, 100), (500, 500), (100, 400)], [140, 70, 700], dt=70.0, noise=1.0)
    fx = ge.detect_fixations_idt(t, x, y, ge.segments(t), min_duration_ms=100)
    assert len(fx) == 2  # the 70 ms glance is too short
    # a gap longer than MAX_GAP_MS splits a long fixation into two segments
    t2, x2, y2, _ = scripted([(300, 300)], [1400], dt=70.0, noise=2.0)
    t2[10:] += 1000.0
    seg = ge.segments(t2)
    fx2 = ge.detect_fixations_idt(t2, x2, y2, seg)
    assert len(fx2) == 2 and fx2.end[0] == 9 and fx2.start[1] == 10


def test_idt_matches_pymovements():
    """Same fixations as pymovements' I-DT on data it accepts (constant interval, integer ms).

    pymovements also keeps the sample that breaks the dispersion threshold in the fixation (and
    starts the next window after it); ours ends before it, so offsets differ by exactly one sample."""
    pm = pytest.importorskip("pymovements")
    from pymovements.events import idt

    t, x, y, _ = scripted(FIX * 3, DUR * 3, dt=10.0, noise=3.0, seed=3)
    t = t.astype(np.int64)
    ours = ge.detect_fixations_idt(t, x, y, ge.segments(t), dispersion_px=60, min_duration_ms=100)
    ev = idt(np.column_stack([x, y]), t, minimum_duration=100, dispersion_threshold=60).frame
    onsets = np.asarray(ev["onset"].to_list())
    offsets = np.asarray(ev["offset"].to_list())
    assert pm is not None and len(onsets) == len(ours) == 12
    # pymovements' next window starts one sample late: the breaking sample is swallowed
    assert np.all(np.abs(onsets - ours.onset) <= 10)
    assert np.all((offsets - t[ours.end] >= 0) & (offsets - t[ours.end] <= 10))


def test_clean_orders_dedups_and_drops_offscreen_and_spikes():
    t, x, y, _ = scripted([(300, 300)], [2100], dt=70.0, noise=2.0)
    x[10] += 900  # spike
    x[20] = -500  # off screen (left)
    y[25] = 5000  # off screen (below a 1080 px viewport)
    # duplicates and disorder, like IFLLM's doubled abs_gaze rows
    tt = np.concatenate([t, t[:5]])[::-1]
    xx = np.concatenate([x, x[:5]])[::-1]
    yy = np.concatenate([y, y[:5]])[::-1]
    cg = ge.clean_gaze(tt, xx, yy, bounds=(1920, 1080))
    assert cg.n_duplicates == 5 and cg.n_offscreen == 2 and cg.n_spikes == 1
    assert np.all(np.diff(cg.t) > 0)
    assert len(cg) == len(t) - 3
    assert np.abs(cg.x - 300).max() < 10  # smoothed, spike gone


def test_segments_split_on_group_change():
    t = np.arange(10) * 50.0
    g = np.array([0] * 5 + [1] * 5)
    assert ge.segments(t, g).tolist() == [0] * 5 + [1] * 5


def test_ivt_and_saccades():
    t, x, y, truth = scripted(FIX, DUR, dt=33.0, noise=1.0)
    seg = ge.segments(t)
    mask = ge.ivt_fixation_mask(t, x, y, seg, velocity_px_s=1500)
    # all but the last sample of each fixation (whose speed is the jump) are fixation samples
    last = np.r_[truth[1:] != truth[:-1], False]
    assert mask[~last].mean() > 0.95 and not mask[last].any()
    fx = ge.detect_fixations_idt(t, x, y, seg)
    sc = ge.saccades_between(fx, seg)
    assert len(sc) == 3
    assert np.allclose(sc.amplitude, [np.hypot(400, 20), np.hypot(20, 380), np.hypot(520, 100)], atol=3)


def test_blinks_are_short_gaps_or_flags():
    t = np.arange(0, 3000, 70.0)
    t = np.delete(t, [10, 11])  # 210 ms hole: a blink or a short loss
    t = np.concatenate([t[:30], t[30:] + 2000])  # a 2 s loss is not a blink
    b = ge.detect_blinks(t)
    assert b.shape == (1, 2) and b[0, 1] - b[0, 0] == pytest.approx(210.0)
    flags = np.zeros(len(t), dtype=np.int32)
    flags[5:7] = 16  # GazeFlag.BLINK
    assert ge.detect_blinks(t, flags).shape[0] == 2
