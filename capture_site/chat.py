"""The chat API: send a message and get the response(s); submit the ratings of a turn.

A turn is stored only once every model answered; a backend failure answers 503 with
``retry: true`` and the page keeps the message for a retry, so no turn is lost or half-stored.
Sending the same turn again (a retry after a lost reply) returns the stored turn.
"""
from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Blueprint, jsonify, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from .. import store
from .api import (ApiError, install_error_handlers, json_object, owned_task, raise_if_task_gone,
                  request_participant, to_task_clock)
from .answers import response_html
from .chunks import participant_lock
from .config import StudyConfig
from .flow import current_step, turn_rated
from .gaze_step import page_data as gaze_page_data
from ..llm import BackendError
from .runtime import db, site
from . import turn_leases
from .validation import origin_ms, page_time_ms

log = logging.getLogger(__name__)
bp = Blueprint("chat", __name__, url_prefix="/api")
install_error_handlers(bp)

MAX_PROMPT = 4000
MAX_FEEDBACK = 5000
# what a page that is out of date is told (it then reloads: the server's state is the truth)
STALE_PAGE = "This page was out of date (the chat went on in another tab or window). It will now reload."


def turn_json(turn: store.Turn, cfg: StudyConfig) -> dict:
    """A turn as the participant's page sees it (no model names); with the study's Markdown
    option each response also has its rendered ``html`` (:func:`.answers.response_html`)."""
    return {
        "index": turn.index, "kind": turn.kind, "prompt": turn.prompt,
        "responses": [{"position": r.position, "text": r.text, "likert": r.likert, "html": response_html(cfg, r.text)}
                      for r in turn.responses],
        "rated": turn_rated(turn), "choice": turn.choice, "strength": turn.choice_strength,
        "better": turn.better_than_previous, "feedback": turn.feedback_text,
    }


def next_seq(task: store.Task) -> int:
    last = db().scalar(select(func.max(store.StreamChunk.seq)).where(store.StreamChunk.task_id == task.id))
    return 0 if last is None else last + 1


def task_page_data(p: store.Participant, cfg: StudyConfig, task: store.Task, token: str) -> dict:
    """Everything the chat page's scripts need, embedded in the page as JSON."""
    return {
        "task": task.id, "kind": task.kind, "token": token, "next_seq": next_seq(task),
        "turns": [turn_json(t, cfg) for t in task.turns],
        "min_turns": cfg.min_turns, "max_turns": cfg.max_turns,
        "ratings": {"likert": cfg.likert, "strength": cfg.choice_strength,
                    "compare": cfg.compare_previous, "free_text": cfg.free_text},
        "urls": {"turns": url_for("chat.send_turn", task_id=task.id), "ingest": url_for("ingest.ingest")},
        "gaze": gaze_page_data(p, cfg, task, token),
        # the next turn's models are answering (a page reloaded after Send): the page waits for it
        "answering": turn_leases.answering(db(), task.id) == len(task.turns),
    }


FINISHED = "This task is already finished. The page will now show where you are in the study."


def _open_task(task_id: int) -> tuple[store.Participant, StudyConfig, store.Task]:
    p = request_participant()
    task = owned_task(p, task_id)
    if task.finished_at is not None or current_step(p) != f"task:{task.index}":
        raise ApiError(409, FINISHED, reload=True)
    return p, site().config(p.study), task


def _context(task: store.Task) -> list[dict[str, str]]:
    """Earlier messages: each prompt and the answer the participant went on with (their choice)."""
    messages = []
    for t in task.turns:
        messages.append({"role": "user", "content": t.prompt})
        kept = t.choice if t.kind == "pairwise" and t.choice is not None else 0
        messages.append({"role": "assistant", "content": t.responses[kept].text})
    return messages


def _answer(cfg: StudyConfig, models: list[str], messages: list[dict[str, str]]) -> list[str]:
    backends = [site().backend(cfg, m) for m in models]
    if len(backends) == 1:
        return [backends[0].generate(messages)]
    with ThreadPoolExecutor(len(backends)) as pool:
        return list(pool.map(lambda b: b.generate(messages), backends))


def _stored_turn(turn: store.Turn, prompt: str, cfg: StudyConfig):
    """The answer to a message sent as a turn already stored: that turn for the same message (a
    retry), else 409 (a page out of date: Back, another tab)."""
    if turn.prompt == prompt:
        return jsonify(turn=turn_json(turn, cfg))
    raise ApiError(409, STALE_PAGE, reload=True)


@bp.post("/tasks/<int:task_id>/turns")
def send_turn(task_id: int):
    p, cfg, task = _open_task(task_id)
    body = json_object()
    index, prompt = body.get("index"), body.get("prompt")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ApiError(400, "index must be a turn number >= 0")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "Please write a message first.")
    if len(prompt) > MAX_PROMPT:
        raise ApiError(400, f"Please shorten your message to at most {MAX_PROMPT} characters.")
    prompt = prompt.strip()
    turns = list(task.turns)
    if index < len(turns):
        return _stored_turn(turns[index], prompt, cfg)
    if index > len(turns):
        raise ApiError(409, STALE_PAGE, reload=True)
    if turns and not turn_rated(turns[-1]):
        raise ApiError(409, "Please rate the previous answer first. The page will now show it again.", reload=True)
    if index >= cfg.max_turns:
        raise ApiError(409, f"This task allows at most {cfg.max_turns} messages. Please finish the task.")
    # the turn's lease (turn_leases): copies of this turn sent meanwhile call no model
    with participant_lock(p):
        db().expire(task, ["turns"])
        stored = list(task.turns)
        if index < len(stored):  # stored since this request read the task (a copy that came first)
            db().rollback()
            return _stored_turn(stored[index], prompt, cfg)
        try:
            lease = turn_leases.take(db(), task.id, index)
        except ApiError:
            db().rollback()
            raise
        db().commit()
    try:
        return _answer_turn(p, cfg, task, index, prompt)
    finally:
        turn_leases.give_back(site().statements, task_id, index, lease)


def _answer_turn(p: store.Participant, cfg: StudyConfig, task: store.Task, index: int, prompt: str):
    """The models' answers to ``prompt`` as turn ``index`` of ``task``, stored (the lease held)."""
    task_id = task.id
    rng = random.Random(f"{p.pseudonym}:{task.index}:{index}")
    modifiers = [m for m in cfg.modifiers if rng.random() < m.probability]
    prompt_sent = prompt + "".join(m.text for m in modifiers)
    models = list(task.answers["models"])
    if len(models) == 2 and cfg.swap_positions and rng.random() < 0.5:
        models.reverse()
    context = _context(task)
    db().commit()  # end the read transaction: the models may take a while
    try:
        texts = _answer(cfg, models, [*context, {"role": "user", "content": prompt_sent}])
    except BackendError as e:
        log.warning("backend failed for task %s turn %s: %s", task.id, index, e)
        raise ApiError(503, "The assistant could not answer just now. Please try again.", retry=True) from None

    turn = store.Turn(index=index, kind=task.kind, prompt=prompt, prompt_sent=prompt_sent,
                      modifiers=[m.name for m in modifiers], context=context, epoch_ms=time.time() * 1000,
                      responses=[store.Response(position=i, model=m, text=t)
                                 for i, (m, t) in enumerate(zip(models, texts))])
    # the task and the step again, under the participant's lock: while the models answered
    # (seconds), another tab may have finished the task (the turn was stored after the task's
    # end, unrated) or the participant withdrawn (their task gone: 401, nothing stored)
    with participant_lock(p):
        raise_if_task_gone(db(), task_id)
        db().refresh(task)
        db().expire(task, ["turns"])
        if task.finished_at is not None or current_step(p) != f"task:{task.index}":
            db().rollback()
            raise ApiError(409, FINISHED, reload=True)
        stored = list(task.turns)
        if index < len(stored):  # the same turn sent twice at once: keep the first
            db().rollback()
            return _stored_turn(stored[index], prompt, cfg)
        task.turns.append(turn)
        try:
            db().commit()
        except IntegrityError:  # (the unique key, should the lock not have held it off: the first is kept)
            db().rollback()
            raise_if_task_gone(db(), task_id)
            db().refresh(task)
            return jsonify(turn=turn_json(task.turns[index], cfg))
    return jsonify(turn=turn_json(turn, cfg))


def _optional_int(body: dict, key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ApiError(400, f"{key} must be an integer in {lo}..{hi} (got {value!r})")
    return value


@bp.post("/tasks/<int:task_id>/turns/<int:index>/rating")
def rate_turn(task_id: int, index: int):
    p, cfg, task = _open_task(task_id)
    turns = list(task.turns)
    if index >= len(turns):
        raise ApiError(404, STALE_PAGE, reload=True)
    turn = turns[index]
    if turn_rated(turn):
        return jsonify(turn=turn_json(turn, cfg), already=True)  # a retry: nothing is asked twice
    body = json_object()

    likert = body.get("likert") or []
    if not isinstance(likert, list) or len(likert) not in (0, len(turn.responses)):
        raise ApiError(400, f"likert must list one rating per response ({len(turn.responses)})")
    likert = [_optional_int({"likert": v}, "likert", 1, 5) for v in likert]
    if cfg.likert and (not likert or None in likert):
        raise ApiError(400, "Please rate every answer from 1 to 5.")
    choice = strength = better = None
    if turn.kind == "pairwise":
        choice = _optional_int(body, "choice", 0, 1)
        if choice is None:
            raise ApiError(400, "Please choose the answer you prefer.")
        strength = _optional_int(body, "strength", 1, 3) if cfg.choice_strength else None
    elif cfg.compare_previous and index > 0:
        better = body.get("better")
        if not isinstance(better, bool):
            raise ApiError(400, "Please say whether this answer is better or worse than the previous one.")
    feedback = body.get("feedback")
    if feedback is not None and not isinstance(feedback, str):
        raise ApiError(400, "feedback must be text")
    feedback = (feedback or "").strip() or None
    if feedback is not None and len(feedback) > MAX_FEEDBACK:  # (the page's field takes no more) never cut
        raise ApiError(400, f"Please shorten your comment to at most {MAX_FEEDBACK} characters (it has {len(feedback)}).")
    if cfg.free_text == "required" and not feedback:
        raise ApiError(400, "Please write a short comment.")
    origin = origin_ms(body.get("origin"))
    t_shown = page_time_ms(body.get("t_shown"), "t_shown")
    t_decided = page_time_ms(body.get("t_decided"), "t_decided")
    if t_decided < t_shown:  # one page load's performance.now(): shown, then decided (a decision
        # before the answers were shown left the turn without its samples: the features drop those
        # at or after the decision)
        raise ApiError(400, f"t_decided must not come before t_shown (got {t_shown!r} and {t_decided!r})")

    for r, v in zip(turn.responses, likert):
        r.likert = v
    turn.choice, turn.choice_strength, turn.better_than_previous = choice, strength, better
    turn.feedback_text = feedback if cfg.free_text != "off" else None
    turn.t_shown = to_task_clock(task, origin, t_shown)
    turn.t_decided = to_task_clock(task, origin, t_decided)
    try:
        db().commit()
    except StaleDataError:  # the turn's row is gone: the participant withdrew meanwhile (401)
        db().rollback()
        raise_if_task_gone(db(), task_id)
        raise
    return jsonify(turn=turn_json(turn, cfg))
