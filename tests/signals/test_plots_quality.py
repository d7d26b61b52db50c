"""The quality view's calibration panel: a unit and a threshold only where there is calibration data."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from matplotlib.text import Text

from gazepref.signals.plots.quality import plot_quality
from gazepref.signals.plots.summary import collect


@pytest.fixture(scope="module")
def sample_summary(ifllm_sample):
    from gazepref.datasets.recording import open_recording

    return collect(open_recording(ifllm_sample))


def _panel(fig, title_start: str):
    return next(ax for ax in fig.axes if ax.get_title(loc="left").startswith(title_start))


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("unit", ["px", "%", None])
def test_quality_without_calibration_data_says_so(sample_summary, unit):
    p = sample_summary.participants.copy()
    p["calibration"], p["calibration_unit"] = np.nan, unit
    fig = plot_quality(replace(sample_summary, participants=p), size=(1200, 600))
    ax = _panel(fig, "calibration accuracy")
    assert ax.get_title(loc="left") == "calibration accuracy"  # no unit
    texts = _texts(ax)
    assert "no calibration data" in texts
    assert not any("px" in t or "%" in t or "200" in t or "70" in t or "n/a" in t for t in texts), texts
    assert not ax.lines  # no dashed threshold


@pytest.mark.parametrize(("unit", "threshold"), [("px", "200 px"), ("%", "min 70 %")])
def test_quality_with_calibration_data_keeps_unit_and_threshold(sample_summary, unit, threshold):
    p = sample_summary.participants.copy()
    p["calibration"], p["calibration_unit"] = np.r_[120.0, [np.nan] * (len(p) - 1)], unit
    fig = plot_quality(replace(sample_summary, participants=p), size=(1200, 600))
    ax = _panel(fig, "calibration accuracy")
    assert ax.get_title(loc="left") == f"calibration accuracy ({unit})"
    texts = [t.strip() for t in _texts(ax)]
    assert threshold in texts and "no calibration data" not in texts and "n/a" in texts
    assert ax.lines
