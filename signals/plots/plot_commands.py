"""CLI: ``gazepref plot KIND SOURCE ... --out FILE.png|.svg`` and ``gazepref report SOURCE --out report.html``
(SOURCE: a folder or a study slug, see :func:`gazepref.datasets.sources.open_source`)."""
from __future__ import annotations

import argparse

from ...datasets.sources import add_source_arguments, source_from_args
from ._common import KINDS

_TURN_KINDS = ("heatmap", "scanpath", "mouse", "timeline")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot", help="analyst views: heatmap, scanpath, mouse, timeline, attention, features, quality",
        description="Draw one view of SOURCE (an IFLLM folder, a gazepref Parquet export or a study slug in "
                    "the site's database) as PNG or SVG. "
                    "Per turn: heatmap (gaze density over the response text), scanpath (numbered "
                    "fixations), mouse (pointer path with clicks and hovers), timeline (which response "
                    "and where in it over time). Aggregate (over SOURCE, or one participant/task): "
                    "attention (dwell by position in the text, preferred vs not), features "
                    "(distributions by outcome), quality (per participant).")
    p.add_argument("kind", metavar="KIND", help="one of: " + ", ".join(KINDS))
    add_source_arguments(p, dest="data")
    p.add_argument("--participant", "-p", help="participant (pseudonym / IFLLM worker id)")
    p.add_argument("--task", "-t", help="task id (participant/task, e.g. an IFLLM worker_x/183), or the task number with --participant")
    p.add_argument("--turn", "-n", type=int, help="turn index within the task (0-based; default 0): --turn 0 is the figure's 'turn 1'")
    p.add_argument("--size", help="image size in px, WxH (default 1200x800); heatmap and scanpath fit their "
                   "height to the text, up to H")
    p.add_argument("--source", choices=("gaze", "mouse"), default="gaze", help="heatmap: which samples (default gaze)")
    p.add_argument("--max-fixations", type=int, default=80, help="scanpath: fixations drawn (default 80)")
    p.add_argument("--out", "-o", required=True, help="output file, .png or .svg")
    p.add_argument("--json", action="store_true", help="print what was drawn as JSON: kind, out, task_id and "
                   "turn (0-based; null for the aggregate views)")
    p.set_defaults(func=_plot)

    r = sub.add_parser(
        "report", help="self-contained HTML report: data quality, behaviour, reward models",
        description="Write one HTML file (images embedded as base64 PNG, no external resources) "
                    "summarising SOURCE: counts, data quality per participant, attention and feature "
                    "distributions by outcome, example turns, and the reward-model table when "
                    "--reward-json is given (from `gazepref reward evaluate --json`).")
    add_source_arguments(r, dest="data")
    r.add_argument("--out", "-o", required=True, help="output .html file")
    r.add_argument("--reward-json", help="JSON written by `gazepref reward evaluate --json` (default: none, the report says how to add it)")
    r.add_argument("--participant", "-p", help="only this participant")
    r.add_argument("--examples", type=int, default=2, help="example turns drawn (heatmap + scanpath), default 2")
    r.add_argument("--jobs", type=int, default=None, help="reader threads (default 4)")
    r.add_argument("--json", action="store_true", help="print the result as JSON: out, bytes")
    r.set_defaults(func=_report)


def make_plot(kind: str, data, participant=None, task=None, turn=None, size=None, source="gaze", progress=False,
              max_fixations: int = 80, view=None):
    """The figure for ``gazepref plot KIND`` (also used by the dashboard); ``view``: the turn views'
    :class:`~gazepref.signals.plots._data.TurnView`, when already loaded."""
    from ... import UserError
    from ._common import parse_size

    if kind not in KINDS:
        raise UserError(f"unknown plot kind {kind!r} (kinds: {', '.join(KINDS)})")
    size = parse_size(size) if isinstance(size, (str, type(None))) else size
    if kind == "heatmap":
        from .heatmap import plot_heatmap

        return plot_heatmap(data, participant, task, turn, size=size, source=source, view=view)
    if kind == "scanpath":
        from .scanpath import plot_scanpath

        if max_fixations < 1:
            raise UserError("--max-fixations must be 1 or more")
        return plot_scanpath(data, participant, task, turn, size=size, max_fixations=max_fixations, view=view)
    if kind == "mouse":
        from .mouse import plot_mouse

        return plot_mouse(data, participant, task, turn, size=size, view=view)
    if kind == "timeline":
        from .timeline import plot_timeline

        return plot_timeline(data, participant, task, turn, size=size, view=view)
    if turn is not None:
        raise UserError(f"--turn applies to {', '.join(_TURN_KINDS)}, not to {kind}")
    from .summary import collect

    table = collect(data, participant=participant, task=task, progress=progress)
    if kind == "attention":
        from .attention import plot_attention

        return plot_attention(table, size=size)
    if kind == "features":
        from .features import plot_features

        return plot_features(table, size=size)
    from .quality import plot_quality

    return plot_quality(table, size=size)


def _plot(args: argparse.Namespace) -> int:
    from ...cli import emit
    from ._common import check_out, save

    check_out(args.out)  # before the data is read and drawn
    data, view = source_from_args(args, "data"), None
    if args.kind in _TURN_KINDS:  # the turn drawn (without --task: the first with turns), for --json
        from ._data import TurnView

        view = TurnView.load(data, args.participant, args.task, args.turn)
    fig = make_plot(args.kind, data, args.participant, args.task, args.turn, args.size, args.source,
                    progress=True, max_fixations=args.max_fixations, view=view)
    out = save(fig, args.out)
    emit({"kind": args.kind, "out": str(out), "task_id": view.task_id if view else None,
          "turn": view.turn.index if view else None}, args.json, lambda r: r["out"])
    return 0


def _report(args: argparse.Namespace) -> int:
    from ...cli import emit
    from .report import write_report

    out = write_report(source_from_args(args, "data"), args.out, reward_json=args.reward_json, participant=args.participant,
                       jobs=args.jobs, progress=True, n_examples=args.examples)
    emit({"out": str(out), "bytes": out.stat().st_size}, args.json, lambda r: r["out"])
    return 0
