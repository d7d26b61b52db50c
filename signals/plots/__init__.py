"""Analyst views: heatmaps and scanpaths over the response text, mouse paths, timelines, aggregate
attention, feature distributions, data quality, and a self-contained HTML report.

All plotting uses matplotlib's object API with the Agg canvas (no pyplot state, no display).
Functions return :class:`matplotlib.figure.Figure` objects of an exact pixel size
(``size=(width_px, height_px)`` at :data:`DPI`); :func:`save` writes PNG or SVG.
The command line is in :mod:`gazepref.signals.plots.plot_commands`.
"""
from __future__ import annotations

from ._common import DPI, KINDS, fig_to_png, new_figure, save

__all__ = ["DPI", "KINDS", "fig_to_png", "new_figure", "save"]
