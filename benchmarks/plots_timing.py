"""Timing of the analyst views (issue 8) on an IFLLM folder (default: the dev archive's cache).

    .venv/bin/python benchmarks/plots_timing.py [DATA] [--task worker/task --turn N]

Prints wall and CPU seconds of: opening the data, each per-turn view, the one-pass summary over all
tasks (the aggregate views' input), each aggregate view, and the whole HTML report.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEFAULT = Path(os.path.expanduser("~/.cache/gazepref/ifllm-dev/dataset"))
DEV_TASK = "worker_4e81fa4e/133"  # the dev archive's task the per-turn timings were quoted for


def timed(label: str, fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    print(f"{label:<28} wall {time.perf_counter() - w:7.2f} s   cpu {time.process_time() - c:7.2f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(DEFAULT))
    ap.add_argument("--task", default=None,
                    help=f"task of the per-turn views (default: {DEV_TASK} where the data has it, else the "
                         "data's first task with turns)")
    ap.add_argument("--turn", type=int, default=1)
    a = ap.parse_args()
    from gazepref import UserError
    from gazepref.signals.plots import fig_to_png
    from gazepref.signals.plots._data import open_data, resolve_task
    from gazepref.signals.plots.plot_commands import make_plot
    from gazepref.signals.plots.report import write_report
    from gazepref.signals.plots.summary import collect

    rec = timed("open", lambda: open_data(a.data))
    timed("tasks + turns", lambda: (rec.tasks(), rec.turns()))
    if a.task is None:
        try:
            a.task = resolve_task(rec, task=DEV_TASK)
        except UserError:  # another recording (e.g. the IFLLM sample)
            a.task = resolve_task(rec)
    print(f"per-turn views of {a.task} turn {a.turn}", flush=True)
    for kind in ("heatmap", "scanpath", "mouse", "timeline"):
        timed(f"plot {kind}", lambda: fig_to_png(make_plot(kind, rec, task=a.task, turn=a.turn)))
    s = timed("summary (all tasks)", lambda: collect(rec))
    from gazepref.signals.plots.attention import plot_attention
    from gazepref.signals.plots.features import plot_features
    from gazepref.signals.plots.quality import plot_quality

    for name, fn in (("attention", plot_attention), ("features", plot_features), ("quality", plot_quality)):
        timed(f"plot {name}", lambda: fig_to_png(fn(s)))
    with tempfile.TemporaryDirectory() as d:
        timed("report (fresh reader)", lambda: write_report(a.data, Path(d) / "r.html"))
    print(f"counts: {s.counts}")


if __name__ == "__main__":
    main()
