"""Dashboard pages with the analyst views (issue 8) per participant and turn.

``/admin/studies/<slug>/participants/<pseudonym>/plots`` lists the participant's tasks (by their
order) and turns with the views their samples support (heatmap and scanpath with gaze, the mouse
path with mouse samples, the timeline with either) and, with gaze, the data-quality view; only the
first turn's views are open, the others load when opened. The participant's data is read once per
data version (:meth:`_StudyView.data_version`) and the images are cached (:data:`CACHE_PNGS`);
the images come from ``.../plot/<kind>.png?task=<task number>&turn=<n>``, drawn on request by
:mod:`gazepref.signals.plots` from the study's database (consented participants only). Login
required, like the rest of the dashboard.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
from flask import Blueprint, Response, abort, current_app, g, render_template_string, request, url_for
from werkzeug.exceptions import HTTPException

from .. import UserError
from .dashboard import researcher_error_page
from .pages import no_store
from .runtime import db, study_by_slug
from .security import login_required

bp = Blueprint("plots", __name__, url_prefix="/admin")
bp.after_request(no_store)  # the page (prompts); its pictures set their own private caching

TURN_KINDS = ("heatmap", "scanpath", "mouse", "timeline")
PARTICIPANT_KINDS = ("quality", "attention", "features")
MAX_SIZE = (2400, 2400)

_PAGE = """{% extends "admin/base.html" %}
{% block title %}{{ pseudonym }} – plots – gazepref{% endblock %}
{% block content %}
<h1>Participant <code>{{ pseudonym }}</code></h1>
<p><a href="{{ url_for('dashboard.study', slug=slug) }}">← {{ slug }}</a></p>
{% if message %}<p class="flash">{{ message }}</p>{% endif %}
{% if quality %}<h2>Data quality</h2>
{% if unestimated %}<p>Gaze recorded without a calibration (the calibration failed; the study went on
recording): no gaze views. <code>gazepref gaze recalibrate --include-failed</code> estimates it with the best attempt.</p>
{% elif unestimated is not none %}<p>Gaze recorded, but no sample of it has an estimate (no face found in the pictures,
or none processed): no gaze views.</p>{% endif %}
<p><img class="plot" alt="data quality" loading="lazy" width="1000" height="320"
  src="{{ url_for('plots.plot_png', slug=slug, pseudonym=pseudonym, kind='quality', size='1000x320', v=version) }}"></p>
{% elif tasks %}<p>Mouse only (no webcam gaze): the mouse sample rate and gaps are in the study's participant table.</p>{% endif %}
{% for task in tasks %}
<h2>Task {{ task.order }}{% if task.kind %} ({{ task.kind }}){% endif %}{% if task.topic %}: {{ task.topic }}{% endif %}</h2>
{% if not task.turns %}<p>No turns.</p>{% endif %}
{% for turn in task.turns %}
<details class="turn"{% if turn.open %} open{% endif %}><summary><strong>Turn {{ turn.index + 1 }}</strong>{% if turn.prompt %}: “{{ turn.prompt }}”{% endif %}
<span class="hint">({{ turn.sources or "no samples" }})</span></summary>
{% if not turn.kinds %}<p>No gaze or mouse samples in this turn.</p>{% endif %}
<p>{% for kind in turn.kinds %}
<img class="plot" alt="{{ kind }} of task {{ task.order }} turn {{ turn.index + 1 }}" loading="lazy" width="900"
  {%- if kind not in ("heatmap", "scanpath") %} height="560"{% endif %}
  src="{{ url_for('plots.plot_png', slug=slug, pseudonym=pseudonym, kind=kind, task=task.number, turn=turn.index, size='900x560', v=version) }}">
{% endfor %}</p></details>
{% endfor %}{% endfor %}
{% endblock %}"""



def _recording(slug: str):
    """The study as a recording (pseudonymous, consented participants only); each task carries
    the webcam calibration in force for it (accuracy in px)."""
    from ..datasets.store_recording import StoreRecording

    study = g.get("study")  # (login_required found it in the account's scope: not read again)
    if study is None or study.slug != slug:
        study = study_by_slug(slug)
    if study is None:
        abort(404, description=f"There is no study {slug!r}.")
    return _StudyView(StoreRecording(db(), study))


class _StudyView:
    """A StoreRecording with what the plots pages ask of it besides the recording interface: the
    participants by pseudonym prefix and a participant's data version (the cache key)."""

    def __init__(self, rec):
        self._rec = rec

    def __getattr__(self, name):
        return getattr(self._rec, name)

    def pseudonyms(self, prefix: str) -> list[str]:
        """Consenting participants whose pseudonym starts with ``prefix`` (one query)."""
        from sqlalchemy import select

        from .. import store

        P = store.Participant
        return list(self._rec.db.scalars(select(P.pseudonym).where(
            store.consenting(self._rec.study.id), P.pseudonym.startswith(prefix, autoescape=True))))

    def data_version(self, pseudonym: str) -> str:
        """Changes whenever the participant's tasks, turns, ratings, streams or calibrations do, or
        they are screened out (five small queries): the key of the cached data and images."""
        from sqlalchemy import func, select

        from .. import store

        P, T, U, C, K = store.Participant, store.Task, store.Turn, store.StreamChunk, store.Calibration
        pid = select(P.id).where(P.study_id == self._rec.study.id, P.pseudonym == pseudonym).scalar_subquery()
        tasks = select(T.id).where(T.participant_id == pid)
        q = self._rec.db.execute
        row = [*q(select(func.count(T.id), func.max(T.id), func.count(T.finished_at)).where(T.participant_id == pid)).one(),
               *q(select(func.count(U.id), func.max(U.id), func.count(U.t_decided)).where(U.task_id.in_(tasks))).one(),
               *q(select(func.count(C.id), func.max(C.id)).where(C.task_id.in_(tasks))).one(),
               *q(select(func.count(K.id), func.max(K.id)).where(K.participant_id == pid)).one()]
        state = q(select(P.state).where(P.id == pid)).scalar() or {}
        row.append(int(bool(state.get("screened_out"))))  # the page says why there is no task
        return "-".join(str(v) for v in row)


def _pseudonym(rec, given: str) -> str:
    """The full pseudonym for ``given``: itself, or the one participant it is a prefix of (the
    study page shows the first 12 characters)."""
    if hasattr(rec, "pseudonyms"):
        known = set(rec.pseudonyms(given[:8] if len(given) >= 8 else given))
    else:
        known = {t.participant_id for t in rec.tasks()} | {p.participant_id for p in rec.participants()}
    if given in known:
        return given
    hits = [k for k in known if len(given) >= 8 and k.startswith(given)]
    if len(hits) != 1:
        abort(404, description="There is no consenting participant with this pseudonym in the study.")
    return hits[0]


# --------------------------------------------------------------------------- cached participant data

CACHE_PNGS = 256  # images kept per app (LRU)
CACHE_PARTICIPANTS = 8  # participants' data kept per app (LRU)


class _Lru(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get_or(self, key, make):
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()
        with self.lock:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


def _caches() -> tuple[_Lru, _Lru]:
    ext = current_app.extensions
    if "gazepref_plots_cache" not in ext:
        ext["gazepref_plots_cache"] = (_Lru(CACHE_PARTICIPANTS), _Lru(CACHE_PNGS))
    return ext["gazepref_plots_cache"]


def forget_participant(slug: str, pseudonym: str) -> int:
    """Drop this process's cached data and pictures of participant ``pseudonym`` of study
    ``slug`` (their withdrawal or the deletion of their data: at once, as their webcam tracker,
    not when other participants' plots push them out; call in the app's context). Other
    processes' caches keep theirs until pushed out (never served: the participant is no longer
    found). Returns how many entries went."""
    caches = current_app.extensions.get("gazepref_plots_cache")
    gone = 0
    for cache in caches or ():
        with cache.lock:
            for key in [k for k in cache if k[0] == slug and k[1] == pseudonym]:
                del cache[key]
                gone += 1
    return gone


@dataclass
class _Participant:
    """One participant's data, read once per data version: tasks, turns and derived streams as
    an in-memory recording, and per turn the sources it has samples of."""

    version: str
    rec: object
    tasks: list
    sources: dict  # (task_id, turn index) -> {"gaze", "mouse"} with samples
    has_gaze: bool
    pseudonym: str = ""
    on_text: frozenset = frozenset()  # (task_id, turn index) with gaze on a response's text
    gaze_recorded: bool = False  # gaze rows, estimated or not (a failed calibration's have none)
    webcam: str | None = None  # the participant's camera outcome (schema.Participant.webcam)


def _load(slug: str, given: str) -> _Participant:
    from ..datasets.derive import derive_streams
    from ..signals.plots._data import turns_by_task
    from ..signals.plots.synthetic import MemoryRecording

    rec = _recording(slug)
    pseudonym = _pseudonym(rec, given)
    version = rec.data_version(pseudonym) if hasattr(rec, "data_version") else f"mem{id(rec)}"

    def make() -> _Participant:
        tasks = [t for t in rec.tasks() if t.participant_id == pseudonym]
        by_task = turns_by_task(rec)
        turns = [tr for t in tasks for tr in by_task.get(t.task_id, [])]
        streams, sources, on_text, recorded = {}, {}, set(), False
        for t in tasks:
            st = rec.streams(t.task_id) if by_task.get(t.task_id) else {}
            streams[t.task_id] = st
            for tr in by_task.get(t.task_id, []):
                sources[(t.task_id, tr.index)] = set()
            if "gaze" in st and "position" not in st["gaze"].column_names:  # (an in-memory recording's raw streams)
                st = derive_streams(st, by_task[t.task_id])
            for name, src in (("gaze", "gaze"), ("hits", "gaze"), ("mouse", "mouse")):
                tb = st.get(name)
                if tb is None or not tb.num_rows or "turn" not in tb.column_names:
                    continue
                if name == "hits" and "source" in tb.column_names:
                    tb = tb.filter(pc.equal(tb.column("source"), "gaze"))
                if name == "gaze" and "x" in tb.column_names and "y" in tb.column_names:
                    recorded = True
                    # rows with an estimate only: a failed calibration's (record-uncalibrated) have none
                    tb = tb.filter(pc.and_(pc.is_finite(tb.column("x")), pc.is_finite(tb.column("y"))))
                for k in set(tb.column("turn").to_pylist()):
                    if (t.task_id, k) in sources:
                        sources[(t.task_id, k)].add(src)
                if src == "gaze":  # the heatmap and the scanpath: gaze on a response's text
                    on_text.update((t.task_id, k) for k in _turns_on_text(tb) if (t.task_id, k) in sources)
        people = [p for p in rec.participants() if p.participant_id == pseudonym]
        mem = MemoryRecording(people, tasks, turns, streams)
        return _Participant(version, mem, tasks, sources, any("gaze" in v for v in sources.values()), pseudonym,
                            frozenset(on_text), recorded, people[0].webcam if people else None)

    return _caches()[0].get_or((slug, pseudonym, version), make)


def _turns_on_text(tb) -> set:
    """The turns of derived gaze rows (or gaze hits) on a response's text: placed on a response
    (``position`` >= 0) at a point of its box or a character (what the heatmap draws:
    :meth:`gazepref.signals.plots._data.TurnView.points`)."""
    if "position" not in tb.column_names:
        return set()
    placed = pc.greater_equal(tb.column("position"), 0)
    at = pc.and_(pc.is_finite(tb.column("rel_x")), pc.is_finite(tb.column("rel_y"))) \
        if {"rel_x", "rel_y"} <= set(tb.column_names) else None
    if "char_index" in tb.column_names:
        char = pc.greater_equal(tb.column("char_index"), 0)
        at = char if at is None else pc.or_(at, char)
    if at is None:
        return set()
    return set(tb.filter(pc.fill_null(pc.and_(placed, at), False)).column("turn").to_pylist())


def turn_kinds(sources: set[str], on_text: bool = True) -> list[str]:
    """The per-turn views a turn's samples support: heatmap and scanpath need gaze on a
    response's text (``on_text``), the mouse view mouse samples, the timeline either."""
    kinds = []
    if "gaze" in sources and on_text:
        kinds += ["heatmap", "scanpath"]
    if "mouse" in sources:
        kinds.append("mouse")
    if sources:
        kinds.append("timeline")
    return kinds


bp.register_error_handler(HTTPException, researcher_error_page)


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
    data = _load(slug, pseudonym)
    by_task = {}
    for tr in data.rec.turns():
        by_task.setdefault(tr.task_id, []).append(tr)
    rows = []
    first = True
    for order, t in enumerate(data.tasks, start=1):
        turns = sorted(by_task.get(t.task_id, []), key=lambda x: x.index)
        trows = []
        for x in turns:
            src = data.sources.get((t.task_id, x.index), set())
            kinds = turn_kinds(src, (t.task_id, x.index) in data.on_text)
            trows.append({"index": x.index, "prompt": (x.prompt or "")[:120], "kinds": kinds,
                          "sources": " and ".join(sorted(src)), "open": first and bool(kinds)})
            first = first and not kinds  # only the first turn with views opens (the others load when opened)
        rows.append({"order": order, "number": t.task_id.rpartition("/")[2], "kind": t.kind, "topic": t.topic,
                     "turns": trows})
    message = None if rows else _no_task_message(data.rec, data.pseudonym)
    return render_template_string(_PAGE, slug=slug, pseudonym=data.pseudonym, tasks=rows,
                                  quality=data.has_gaze or data.gaze_recorded,
                                  unestimated=None if data.has_gaze else data.webcam == "uncalibrated",
                                  version=data.version, message=message)


def _no_task_message(rec: Any, pseudonym: str) -> str:
    """Why a participant's plots page has nothing: screened out before any task (no usable camera,
    a failed calibration where the study screens out), or no task started yet."""
    who = next((p for p in rec.participants() if p.participant_id == pseudonym), None)
    why = {"no-camera": "no usable camera", "calibration-failed": "the calibration failed"}
    reason = getattr(who, "screened_out", None)
    if reason:
        return (f"This participant was screened out at the camera set-up ({why.get(reason, reason)}) and did no "
                "task: there is nothing to plot.")
    return "This participant has not started a task yet: there is nothing to plot."


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
    data = _load(slug, pseudonym)

    def draw() -> tuple[bytes, int]:
        try:
            if kind in TURN_KINDS:
                fig = make_plot(kind, data.rec, participant=data.pseudonym, task=task, turn=turn, size=size)
            else:
                fig = make_plot(kind, data.rec, participant=data.pseudonym, task=task, size=size)
            return fig_to_png(fig), 200
        except UserError as e:
            # the <img> shows why there is no plot (a turn without gaze, ...)
            return _message_png(str(e), size), 404

    key = (slug, data.pseudonym, data.version, kind, task, turn, size)
    png, status = _caches()[1].get_or(key, draw)
    resp = Response(png, status=status, mimetype="image/png")
    # the page's URLs carry the data version (v=): a new version is a new URL
    resp.headers["Cache-Control"] = "private, max-age=3600" if request.args.get("v") == data.version else "private, max-age=60"
    return resp


def _message_png(message: str, size: tuple[int, int]) -> bytes:
    import textwrap

    from ..signals.plots import fig_to_png, new_figure
    from ..signals.plots._common import no_data

    return fig_to_png(no_data(new_figure(size), "\n".join(textwrap.wrap(message, 70))))


def plots_url(slug: str, pseudonym: str) -> str:
    return url_for("plots.participant_plots", slug=slug, pseudonym=pseudonym)
