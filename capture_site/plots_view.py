"""Dashboard pages with the analyst views (issue 8) per participant and turn.

``/admin/studies/<slug>/participants/<pseudonym>/plots`` lists the participant's tasks and turns
with their heatmap, scanpath, mouse path and timeline, and the participant's data-quality view;
the images come from ``.../plot/<kind>.png?task=<task number>&turn=<n>``, drawn on request by
:mod:`gazepref.signals.plots` from the study's database (consented participants only). Login
required, like the rest of the dashboard.
"""
from __future__ import annotations

from flask import Blueprint, Response, abort, render_template_string, request, url_for

from .. import UserError
from .runtime import db, study_by_slug
from .security import login_required

bp = Blueprint("plots", __name__, url_prefix="/admin")

TURN_KINDS = ("heatmap", "scanpath", "mouse", "timeline")
PARTICIPANT_KINDS = ("quality", "attention", "features")
MAX_SIZE = (2400, 2400)

_PAGE = """{% extends "admin/base.html" %}
{% block title %}{{ pseudonym }} – plots – gazepref{% endblock %}
{% block content %}
<h1>Participant <code>{{ pseudonym }}</code></h1>
<p><a href="{{ url_for('dashboard.study', slug=slug) }}">← {{ slug }}</a></p>
<h2>Data quality</h2>
<p><img class="plot" alt="data quality" loading="lazy" width="1000" height="320"
  src="{{ url_for('plots.plot_png', slug=slug, pseudonym=pseudonym, kind='quality', size='1000x320') }}"></p>
{% for task in tasks %}
<h2>Task {{ task.number }}{% if task.kind %} ({{ task.kind }}){% endif %}</h2>
{% if not task.turns %}<p>No turns.</p>{% endif %}
{% for turn in task.turns %}
<h3>Turn {{ turn.index }}{% if turn.prompt %}: “{{ turn.prompt }}”{% endif %}</h3>
<p>{% for kind in kinds %}
<img class="plot" alt="{{ kind }} of task {{ task.number }} turn {{ turn.index }}" loading="lazy" width="900" height="560"
  src="{{ url_for('plots.plot_png', slug=slug, pseudonym=pseudonym, kind=kind, task=task.number, turn=turn.index, size='900x560') }}">
{% endfor %}</p>
{% endfor %}{% endfor %}
{% endblock %}"""


def _recording(slug: str):
    """The study as a recording (pseudonymous, consented participants only); each task carries
    the webcam calibration in force for it (accuracy in px)."""
    from ..datasets.store_recording import StoreRecording

    study = study_by_slug(slug)
    if study is None:
        abort(404, description="no such study")
    return StoreRecording(db(), study)


def _pseudonym(rec, given: str) -> str:
    """The full pseudonym for ``given``: itself, or the one participant it is a prefix of (the
    study page shows the first 12 characters)."""
    known = {t.participant_id for t in rec.tasks()}
    if given in known:
        return given
    hits = [k for k in known if len(given) >= 8 and k.startswith(given)]
    if len(hits) != 1:
        abort(404, description="no such participant (or no consent)")
    return hits[0]


def _size(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if not text:
        return default
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        abort(400, description="size must look like 900x560")
    if not (200 <= w <= MAX_SIZE[0] and 150 <= h <= MAX_SIZE[1]):
        abort(400, description="size out of range")
    return w, h


@bp.get("/studies/<slug>/participants/<pseudonym>/plots")
@login_required
def participant_plots(slug: str, pseudonym: str):
    rec = _recording(slug)
    pseudonym = _pseudonym(rec, pseudonym)
    tasks = [t for t in rec.tasks() if t.participant_id == pseudonym]
    if not tasks:
        abort(404, description="no such participant (or no consent)")
    by_task: dict[str, list] = {}
    for tr in rec.turns():
        if tr.participant_id == pseudonym:
            by_task.setdefault(tr.task_id, []).append(tr)
    rows = []
    for t in tasks:
        turns = sorted(by_task.get(t.task_id, []), key=lambda x: x.index)
        rows.append({"number": t.task_id.rpartition("/")[2], "kind": t.kind,
                     "turns": [{"index": x.index, "prompt": (x.prompt or "")[:120]} for x in turns]})
    return render_template_string(_PAGE, slug=slug, pseudonym=pseudonym, tasks=rows, kinds=TURN_KINDS)


@bp.get("/studies/<slug>/participants/<pseudonym>/plot/<kind>.png")
@login_required
def plot_png(slug: str, pseudonym: str, kind: str):
    from ..signals.plots import fig_to_png
    from ..signals.plots.plot_commands import make_plot

    if kind not in TURN_KINDS + PARTICIPANT_KINDS:
        abort(404, description="no such plot")
    size = _size(request.args.get("size"), (1200, 800))
    task = request.args.get("task")
    turn = request.args.get("turn", type=int)
    rec = _recording(slug)
    pseudonym = _pseudonym(rec, pseudonym)
    try:
        if kind in TURN_KINDS:
            fig = make_plot(kind, rec, participant=pseudonym, task=task, turn=turn, size=size)
        else:
            fig = make_plot(kind, rec, participant=pseudonym, task=task, size=size)
        png = fig_to_png(fig)
    except UserError as e:
        # the <img> shows why there is no plot (a turn without gaze, ...)
        return Response(_message_png(str(e), size), status=404, mimetype="image/png")
    resp = Response(png, mimetype="image/png")
    resp.headers["Cache-Control"] = "private, max-age=60"
    return resp


def _message_png(message: str, size: tuple[int, int]) -> bytes:
    import textwrap

    from ..signals.plots import fig_to_png, new_figure
    from ..signals.plots._common import no_data

    return fig_to_png(no_data(new_figure(size), "\n".join(textwrap.wrap(message, 70))))


def plots_url(slug: str, pseudonym: str) -> str:
    return url_for("plots.participant_plots", slug=slug, pseudonym=pseudonym)
