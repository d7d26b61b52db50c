"""The participant flow: arrival by link, consent, then the steps stored in ``Participant.state``.

Every page of the flow is ``/step``: GET shows the participant's current step, POST answers it
(the form names the step it answers, so a resubmitted or stale form is never counted twice) and
moves on. A reload, a dropped connection or the same link opened again resumes at that step.
Nothing is stored before consent except, for a decline, the pseudonym and the decline itself.

A session is bound to the browser that started it (its signed cookie): another browser arriving
with the same platform id is asked for the resume code shown on every page from the start
(``/resume``; :data:`MAX_RESUME_FAILURES` wrong codes lock it), unless the study allows plain
resume by the link (``[study] resume = "link"``). So knowing a worker id is not enough to
become that participant.

Each app has its own step registry (``app.extensions["gazepref_steps"]``, filled by
:func:`init_steps` with the built-in steps of :data:`BUILTIN_STEPS`); other steps (the webcam
calibration of the gaze module) plug in with :func:`register_step`, for one app, never for the process.
"""
from __future__ import annotations

import hmac
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request, session, url_for
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import store
from .config import StudyConfig, Topic
from .accounts import login_keys, session_user_id
from .answers import answer_texts, transcript
from .api import ParticipantGone
from .chunks import participant_lock
from .identity import Arrival, arrival_from_args
from .pages import (completion_handoff, current_participant, declined_page, deleted_page, favicon, framable, in_frame,
                    no_store,
                    not_admitted_page, note_window, page_context, screened_out_page, withdraw_page, withdrawn_page)
from .plan import make_plan, make_steps, parse_step, step_at
from .platforms import accepts, screened_out, session_params
from .purge import commit_in_study, deletion_of, forget_in_memory, purge_participant, withdrawal_of
from .questions import read_answers
from .runtime import db, site, study_by_slug
from .security import check_csrf, participant_token, pseudonymise

log = logging.getLogger(__name__)
bp = Blueprint("flow", __name__)
bp.before_request(check_csrf)
bp.after_request(no_store)  # Back/Forward and stale tabs always ask for the current step
bp.context_processor(page_context)
bp.add_url_rule("/favicon.ico", "favicon", favicon)  # browsers ask for it on pages without a <link rel=icon>


@dataclass
class StepHandler:
    """``render(ctx)`` returns the page; ``submit(ctx)`` returns error messages (empty: advance)."""

    render: Callable[[StepContext], Any]
    submit: Callable[[StepContext], list[str]]


@dataclass
class StepContext:
    participant: store.Participant
    config: StudyConfig
    step: str
    index: int | None
    errors: list[str]

    @property
    def task(self) -> store.Task | None:
        return None if self.index is None else task_for(self.participant, self.config, self.index)


_EXTENSION = "gazepref_steps"


def init_steps(app: Flask) -> dict[str, StepHandler]:
    """Give ``app`` its own step registry, holding the built-in steps (:data:`BUILTIN_STEPS`)."""
    return app.extensions.setdefault(_EXTENSION, dict(BUILTIN_STEPS))


def step_handlers(app: Flask | None = None) -> dict[str, StepHandler]:
    """The step registry of ``app`` (default: the current app)."""
    app = current_app if app is None else app
    handlers = app.extensions.get(_EXTENSION)
    return init_steps(app) if handlers is None else handlers


def register_step(name: str, render: Callable[[StepContext], Any], submit: Callable[[StepContext], list[str]],
                  app: Flask | None = None) -> None:
    """Install or replace the handler of a flow step in ``app`` (default: the current app), e.g. the
    gaze module's ``calibration``. Other apps in the process keep theirs. ``submit`` runs under
    the participant's lock (:func:`.chunks.participant_lock`, the state just read again), which
    commits or rolls back after it: it must not take the lock or commit itself."""
    step_handlers(app)[name] = StepHandler(render, submit)


# --------------------------------------------------------------------------- participant state


def set_state(p: store.Participant, **changes: Any) -> None:
    p.state = {**(p.state or {}), **changes}  # reassign: JSON columns track assignment only


def current_step(p: store.Participant) -> str:
    return step_at(p.state, "done")


def task_for(p: store.Participant, cfg: StudyConfig, index: int) -> store.Task:
    """The participant's task ``index``, created from their plan when first reached (once, also
    when two requests of theirs reach it at the same time: two tabs, a reload)."""
    for t in p.tasks:
        if t.index == index:
            return t
    planned = p.state["plan"][index]
    # a topic renamed or removed from the config since the plan was drawn keeps its planned id
    topic = next((t for t in cfg.topics if t.id == planned["topic"]), Topic(str(planned["topic"]), "", ""))
    # the participant's row first (PostgreSQL: the key-share lock the task's foreign key takes
    # anyway), then the task's unique key: a step's answer holds the row (participant_lock) and
    # may create this very task; a page's first visit that took the task's key first and then
    # waited for the row's lock deadlocked with it (SQLite: ignored, one writer at a time)
    db().execute(select(store.Participant.id).where(store.Participant.id == p.id)
                 .with_for_update(read=True, key_share=True))  # (FOR KEY SHARE)
    store.insert_once(db(), store.Task, ("participant_id", "index"), participant_id=p.id, index=index,
                      kind=planned["kind"], topic=topic.title or topic.id,
                      answers={"topic_id": topic.id, "models": planned["models"]})
    db().expire(p, ["tasks"])
    return next(t for t in p.tasks if t.index == index)


def topic_of(cfg: StudyConfig, task: store.Task) -> Topic:
    """The task's topic (as stored on the task if the config no longer lists it)."""
    topic_id = task.answers.get("topic_id")
    return next((t for t in cfg.topics if t.id == topic_id), Topic(str(topic_id), task.topic or "", ""))


# --------------------------------------------------------------------------- arrival and consent


def _study_or_404(slug: str | None) -> store.Study:
    study = study_by_slug(slug or site().default_slug)
    if study is None:
        abort(404, description="This study link is not valid. Please check the link you were given, or open "
                               "the study again from your study platform.")
    return study


MAX_RESUME_FAILURES = 10
_RESUME_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


def new_resume_code() -> str:
    """Eight characters (40 bits) in two groups, e.g. ``K7QM-3XRD``."""
    code = "".join(secrets.choice(_RESUME_ALPHABET) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"


def _normal_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def _this_browser(p: store.Participant, prior_pid: int | None = None) -> bool:
    """Whether this browser started ``p``'s session: its signed cookie names them, or carries the
    browser key stored with them at consent."""
    key, stored = session.get("browser"), (p.state or {}).get("browser")
    return prior_pid == p.id or (isinstance(key, str) and isinstance(stored, str)
                                 and hmac.compare_digest(key.encode(), stored.encode()))


def _arrive(study: store.Study, arrival: Arrival) -> store.Participant | None:
    """Remember who arrived (pseudonym only) in the session; the participant row if they exist
    (``pid`` when this browser may resume them, else ``resume_pid``: ask for the resume code)."""
    again = arrival.platform == "direct" and session.get("study") == study.slug and session.get("pseudonym")
    if again:  # same browser, no platform id: the one who arrived before (a one-off id, or their platform's)
        pseudonym = session["pseudonym"]
        came = {k: session.get(k) for k in ("platform", "extras", "handoff")}  # (MTurk's submit form, ...)
    else:
        pseudonym = pseudonymise(study.salt, arrival.platform, arrival.raw_id)
        came = {"platform": arrival.platform, "handoff": session_params(arrival),
                "extras": {k: pseudonymise(study.salt, k, v) for k, v in arrival.extras.items()}}
    # the participant this browser was, as long as it arrives as them again (see current_participant)
    prior_pid = session.get("pid") if session.get("pseudonym") == pseudonym else None
    browser = session.get("browser") or secrets.token_urlsafe(18)
    # the form token is made here, not by the first page drawn (which would write the session:
    # two first pages at once each made their own, the later answer's cookie without the consent's
    # participant). It stays for the participant this browser already was (their open tabs' forms
    # keep working when the link is opened again) and for a researcher trying the study's link
    # (their login is kept); another participant gets a new one: a tab left open by the one before
    # on a shared computer (their withdraw form, a step form) must not act on them, nor a token
    # planted in the browser before the arrival
    login = login_keys() if session_user_id(db()) is not None else {}  # (an ended login's keys go)
    kept = session.get("csrf") if login or session.get("pseudonym") == pseudonym else None
    csrf = kept or secrets.token_urlsafe(24)
    session.clear()
    # the browser is still recognised after a restart (PERMANENT_SESSION_LIFETIME); not a
    # researcher's, whose login would outlast the browser with it
    session.permanent = not login
    session.update({"csrf": csrf}, **login, study=study.slug, pseudonym=pseudonym, browser=browser, **came)
    existing = db().scalar(select(store.Participant).where(
        store.Participant.study_id == study.id, store.Participant.pseudonym == pseudonym))
    if existing is not None:
        if (not existing.consent or _this_browser(existing, prior_pid)
                or site().config(study).resume == "link"):
            session["pid"] = existing.id
        else:
            session["resume_pid"] = existing.id
    return existing


@bp.get("/")
@bp.get("/s/<slug>/")
def arrive(slug: str | None = None):
    """Landing from a crowd platform's link: pseudonymise the id, then consent or resume."""
    study = _study_or_404(slug)
    arrival = arrival_from_args(request.args)
    cfg = site().config(study)
    if arrival.preview:
        return framable(render_template("preview.html", study=study, cfg=cfg))
    if in_frame(arrival):  # MTurk shows the HIT in a frame, where the session cookie is not sent
        return framable(render_template("open_in_tab.html", study=study, cfg=cfg, url=request.url))
    resuming = arrival.platform == "direct" and session.get("study") == study.slug and session.get("pseudonym")
    if not resuming and not accepts(cfg, arrival):
        return not_admitted_page(cfg)
    existing = _arrive(study, arrival)
    if withdrawal_of(existing):
        return redirect(url_for("flow.withdrawn"))
    if deletion_of(existing):  # the researchers deleted their data: not enrolled again (purge.py)
        return deleted_page(existing)
    if existing is not None and existing.consent is False:
        return declined_page(study)
    if session.get("resume_pid") is not None:
        return redirect(url_for("flow.resume"))
    # redirect, so the platform ids leave the address bar
    return redirect(url_for("flow.step" if existing is not None else "flow.consent"))


@bp.route("/consent", methods=["GET", "POST"])
def consent():
    if session.get("resume_pid") is not None:  # someone else's session: the resume code first
        return redirect(url_for("flow.resume"))
    if session.get("pid") is not None:
        return _not_in_flow() or redirect(url_for("flow.step"))
    if not session.get("pseudonym"):
        if request.method == "POST":
            return render_template("error.html", message="Please open the study through the link you were given."), 400
        study, arrival = _study_or_404(None), arrival_from_args({})  # opened directly (or without cookies)
        if not accepts(site().config(study), arrival):
            return not_admitted_page(site().config(study))
        _arrive(study, arrival)
    study = _study_or_404(session.get("study"))
    cfg = site().config(study)
    if request.method != "POST":  # GET, and HEAD (Flask answers it with this view: it must change nothing)
        return render_template("consent.html", study=study, cfg=cfg, camera=_camera_use(cfg))
    agreed = request.form.get("decision") == "agree"
    p = store.Participant(study_id=study.id, pseudonym=session["pseudonym"], platform=session.get("platform"),
                          consent=agreed, consent_at=store.utcnow(), state={})
    if agreed:
        earlier = db().scalars(select(store.Participant.state).where(store.consenting(study.id)))
        # app config PLAN_SEED (the simulation's --seed): the plans follow it and the pseudonym,
        # so a simulated study is drawn again the same; a real study's are unpredictable
        seed = current_app.config.get("PLAN_SEED")
        rng = random.Random(secrets.randbits(64) if seed is None else f"{seed}:{p.pseudonym}")
        plan = make_plan(cfg, [s.get("plan", []) for s in earlier if s], rng)
        p.state = {"steps": make_steps(cfg, plan), "pos": 0, "plan": plan, "platform_ids": session.get("extras", {}),
                   "browser": session.setdefault("browser", secrets.token_urlsafe(18)),
                   "resume_code": new_resume_code()}
        p.completion_code = (f"GZP-{secrets.token_hex(4).upper()}" if cfg.completion_code == "auto"
                             else cfg.completion_code)
    db().add(p)
    try:
        db().commit()
    except IntegrityError:  # a double click: the first answer counts
        db().rollback()
        p = db().scalar(select(store.Participant).where(
            store.Participant.study_id == study.id, store.Participant.pseudonym == session["pseudonym"]))
        agreed = bool(p.consent)
        if deletion_of(p):
            session["pid"] = p.id
            return deleted_page(p)
        if agreed and not _this_browser(p) and cfg.resume != "link":  # another browser was first
            session["resume_pid"] = p.id
            return redirect(url_for("flow.resume"))
    session["pid"] = p.id
    if not agreed:
        return declined_page(study)
    return redirect(url_for("flow.step"))


def _camera_use(cfg: StudyConfig) -> dict | None:
    """What the consent page says of the webcam (None: the study does not use it). The consent
    text is the researcher's and may not name the camera (the default study's lists only mouse and
    screen): a participant must know before agreeing that the camera is used, whether it is
    needed and whether pictures leave the computer, as the camera set-up page then says."""
    if cfg.webcam == "off":
        return None
    from .gaze_settings import gaze_settings

    gaze = gaze_settings(cfg)
    return {"required": cfg.webcam == "required", "compute": gaze.compute, "keep_frames": gaze.keep_frames}


@bp.route("/resume", methods=["GET", "POST"])
def resume():
    """Another browser with the platform id of a started session: the resume code lets it in."""
    pid = session.get("resume_pid")
    p = db().get(store.Participant, pid) if isinstance(pid, int) else None
    if p is None:
        session.pop("resume_pid", None)
        return redirect(url_for("flow.step" if session.get("pid") is not None else "flow.consent"))
    if not p.consent:  # withdrew or data deleted meanwhile: nothing to resume, no code to count on the marker
        session.pop("resume_pid", None)
        session["pid"] = p.id  # (the same platform id: their page, as consent() shows it)
        return _not_in_flow()
    error = None
    if request.method == "POST":
        given = _normal_code(request.form.get("code", ""))
        # under the participant's lock: wrong codes sent at once each count (read, add one, write
        # back unlocked, 8 threads x 4 codes once stopped at 9 of the 10 allowed), and the write of
        # the state does not undo a step the participant's own browser took meanwhile
        with participant_lock(p):
            st = p.state or {}
            failures = int(st.get("resume_failures", 0))
            expected = _normal_code(str(st.get("resume_code", "")))
            if failures >= MAX_RESUME_FAILURES:
                error = "Too many wrong codes: this session is locked. Please contact the researchers."
            elif expected and hmac.compare_digest(given.encode(), expected.encode()):
                error = None
            else:
                set_state(p, resume_failures=failures + 1)
                error = "That is not the resume code of this session."
            db().commit()
        if error is None:
            session.pop("resume_pid")
            session["pid"] = p.id
            return redirect(url_for("flow.step"))
    return render_template("resume.html", study=p.study, error=error), (400 if error else 200)


# --------------------------------------------------------------------------- steps


def _context(p: store.Participant, errors: list[str] | None = None) -> StepContext:
    step = current_step(p)
    name, index = parse_step(step)
    return StepContext(p, site().config(p.study), step, index, errors or [])


@bp.errorhandler(ParticipantGone)
def _participant_gone(e: ParticipantGone):
    """A request whose participant's row went while it ran (re-admitted after a deletion): the
    browser goes where its next request would take it, the study's start."""
    session.pop("pid", None)
    return redirect(url_for("flow.consent"))


def _not_in_flow():
    """The page for a browser that has no consenting participant (None when it has one)."""
    p = current_participant()
    if p is None:
        session.pop("pid", None)
        return redirect(url_for("flow.consent"))
    if withdrawal_of(p):  # every later step of theirs (a reload, Back, a stale form): the final page
        return redirect(url_for("flow.withdrawn"))
    if deletion_of(p):
        return deleted_page(p)
    if not p.consent:
        return declined_page(p.study)
    if (reason := screened_out(p)) is not None:
        return screened_out_page(p, reason)
    return None


@bp.route("/withdraw", methods=["GET", "POST"])
def withdraw():
    """A consenting participant withdraws: GET asks (what happens, Cancel back to the current
    step), POST (CSRF-checked by the blueprint) deletes their data by
    :func:`.purge.purge_participant`, keeping the row as the marker that they withdrew, and goes to
    the final page. Nobody else (before consent, declined, withdrawn already) withdraws."""
    p = current_participant()
    if p is None:
        return redirect(url_for("flow.consent"))
    if withdrawal_of(p):
        return redirect(url_for("flow.withdrawn"))
    if not p.consent:  # declined: nothing was recorded (the step shows the declined page)
        return redirect(url_for("flow.step"))
    if request.method != "POST":  # GET, and HEAD (a HEAD withdrew the participant: no CSRF check for it)
        return withdraw_page(p)
    # the row under its lock: the set-up log and the window report write its state from other
    # requests (setup_log.py), and would otherwise write back what was just deleted
    with participant_lock(p):
        if not withdrawal_of(p) and p.consent:
            purge_participant(db(), p, withdrawn=True)
        db().commit()
    # this process's tracker and cached plot data of theirs: now, not at the idle sweep
    forget_in_memory(p.study.slug, (p.id, p.pseudonym))
    log.info("participant row %s of study %s withdrew; their data was deleted", p.id, p.study.slug)
    return redirect(url_for("flow.withdrawn"), 303)


@bp.get("/withdrawn")
def withdrawn():
    """The final page of a participant who withdrew."""
    p = current_participant()
    if not withdrawal_of(p):
        return redirect(url_for("flow.step"))
    return withdrawn_page(p)


@bp.get("/step")
def step():
    if (page := _not_in_flow()) is not None:
        return page
    p = current_participant()
    ctx = _context(p)
    page = step_handlers()[parse_step(ctx.step)[0]].render(ctx)
    # (a task reached for the first time was just created); deleted or withdrawn meanwhile: nothing of it is kept
    if not commit_in_study(db(), p.id):
        return _not_in_flow() or redirect(url_for("flow.step"))
    return page


@bp.post("/step")
def answer_step():
    if (page := _not_in_flow()) is not None:
        return page
    p = current_participant()
    # under the participant's lock, the state read again: a late copy of an earlier step's form
    # (a proxy's retry, a second tab's submit held up) compared with the state read at its start
    # moved the participant back a step, and writing back that whole state undid what other
    # requests had written meanwhile (the set-up log, a window report, the resume code's count)
    with participant_lock(p):
        if (page := _not_in_flow()) is not None:  # withdrew or was screened out meanwhile
            db().rollback()
            return page
        ctx = _context(p)
        if request.form.get("step") != ctx.step:  # stale or repeated form: never ask twice
            db().rollback()
            return redirect(url_for("flow.step"))
        handler = step_handlers()[parse_step(ctx.step)[0]]
        errors = handler.submit(ctx)
        if errors:
            db().rollback()
        elif screened_out(p) is not None:  # the step ended the session (e.g. no camera in a webcam-only study)
            commit_in_study(db(), p.id)
        else:
            set_state(p, pos=p.state["pos"] + 1)
            try:
                commit_in_study(db(), p.id)  # deleted or withdrawn meanwhile: nothing of this request is kept
            except IntegrityError:  # the same form sent twice at once (a double click): the first answer counts
                db().rollback()
    if errors:  # the step's page again, with the messages (after the lock; nothing of the answer was kept)
        ctx.errors = errors
        return handler.render(ctx), 400
    return redirect(url_for("flow.step"))


@bp.post("/window")
def window_size():
    """The page showed the "please use a larger window" page (``too_small=1``, ``width``,
    ``height``) or the window grew large enough again (``too_small=0``); kept for the dashboard
    (:func:`.pages.note_window`). Before consent nothing is stored."""
    p = current_participant()
    if p is None or not p.consent:
        return "", 204
    try:
        size = (max(0, min(100_000, int(request.form["width"]))), max(0, min(100_000, int(request.form["height"]))))
    except (KeyError, ValueError):
        size = None
    # the row again, under its lock: the set-up log (setup_log.py) adds to state["setup"] from
    # other requests, processes and hosts while this page is open; merged into the state read
    # above, the report would undo what it wrote meanwhile
    with participant_lock(p):
        if note_window(p, current_step(p), request.form.get("too_small") == "1", size):
            db().commit()
        else:
            db().rollback()
    return "", 204


# --------------------------------------------------------------------------- built-in step handlers


def _page(template: str, ctx: StepContext, **kw: Any) -> str:
    code = (ctx.participant.state or {}).get("resume_code") if ctx.config.resume == "code" else None
    kw.setdefault("resume_code", code)
    kw.setdefault("withdraw_link", True)
    plan = (ctx.participant.state or {}).get("plan") or []
    if ctx.index is not None and plan:  # a task's pages say which task of how many it is
        kw.setdefault("task_progress", (ctx.index + 1, len(plan)))
    return render_template(template, ctx=ctx, cfg=ctx.config, step=ctx.step, errors=ctx.errors, **kw)


def _submit_demographics(ctx: StepContext) -> list[str]:
    if request.form.get("skip"):
        return []
    answers, errors = read_answers(ctx.config.demographics_questions, request.form, all_optional=True)
    if errors:
        return errors
    if answers:
        ctx.participant.demographics = store.Demographics(answers=answers)
    return []


def _submit_task_questions(which: str) -> Callable[[StepContext], list[str]]:
    def submit(ctx: StepContext) -> list[str]:
        questions = ctx.config.pre_task_questions if which == "pre" else ctx.config.post_task_questions
        answers, errors = read_answers(questions, request.form,
                                       copy_sources=answer_texts(ctx.task) if which == "post" else None)
        if errors:
            return errors
        task = ctx.task
        task.answers = {**task.answers, **answers}
        if which == "post" and "feedback" in answers:
            task.feedback_text = answers["feedback"]
        return []

    return submit


def _render_task(ctx: StepContext) -> str:
    from .chat import task_page_data

    task = ctx.task
    return _page("task.html", ctx, task=task, topic=topic_of(ctx.config, task),
                 data=task_page_data(ctx.participant, ctx.config, task, participant_token(ctx.participant)))


def _submit_task(ctx: StepContext) -> list[str]:
    task = ctx.task
    rated = rated_turns(task)
    if rated < ctx.config.min_turns:
        return [f"Please complete at least {ctx.config.min_turns} rated turns before finishing "
                f"({rated} so far)."]
    task.finished_at = store.utcnow()
    return []


def turn_rated(turn: store.Turn) -> bool:
    """Whether the participant submitted the ratings of this turn (the chat API sets t_decided)."""
    return turn.t_decided is not None


def _render_done(ctx: StepContext) -> str:
    p = ctx.participant
    if not (p.state or {}).get("finished_at"):
        with participant_lock(p):  # the state as it is now: other requests write into it too
            if not (p.state or {}).get("finished_at"):
                set_state(p, finished_at=store.utcnow().isoformat())
            commit_in_study(db(), p.id)
    # nothing is left to continue: no resume code (it would only stand beside the completion code)
    return _page("done.html", ctx, code=p.completion_code, handoff=completion_handoff(ctx.config, p),
                 resume_code=None)


def _calibration_placeholder(ctx: StepContext) -> str:
    return _page("calibration.html", ctx)


#: The built-in steps (read-only); each app copies them into its own registry (:func:`init_steps`).
BUILTIN_STEPS = MappingProxyType({
    "demographics": StepHandler(lambda ctx: _page("demographics.html", ctx), _submit_demographics),
    "instructions": StepHandler(lambda ctx: _page("instructions.html", ctx), lambda ctx: []),
    "calibration": StepHandler(_calibration_placeholder, lambda ctx: []),
    "pre": StepHandler(lambda ctx: _page("questions.html", ctx, questions=ctx.config.pre_task_questions,
                                         topic=topic_of(ctx.config, ctx.task), title="Before the task"),
                       _submit_task_questions("pre")),
    "task": StepHandler(_render_task, _submit_task),
    "post": StepHandler(lambda ctx: _page("questions.html", ctx, questions=ctx.config.post_task_questions,
                                          topic=topic_of(ctx.config, ctx.task), title="After the task",
                                          transcript=transcript(ctx.config, ctx.task)
                                          if any(q.type == "copy" for q in ctx.config.post_task_questions) else None),
                        _submit_task_questions("post")),
    "done": StepHandler(_render_done, lambda ctx: []),
})


def rated_turns(task: store.Task) -> int:
    return sum(1 for t in task.turns if turn_rated(t))


