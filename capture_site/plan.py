"""A participant's plan: which tasks (kind, topic, models) in which order, and the flow's steps.

Model pairs (pairwise) and models (pointwise) are assigned by *balanced quotas*: each new
participant gets the least-used option so far in this study (ties broken at random), so arms stay
within one participant of each other. The steps are stored in ``Participant.state`` when the
participant consents, so a later config change never re-orders a running session.
"""
from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .config import StudyConfig


def _least_used(options: list[Any], counts: Counter, rng: random.Random) -> Any:
    low = min(counts[repr(o)] for o in options)
    pick = rng.choice([o for o in options if counts[repr(o)] == low])
    counts[repr(pick)] += 1
    return pick


def task_kinds(cfg: StudyConfig, rng: random.Random) -> list[str]:
    pw, pt = ["pairwise"] * cfg.pairwise_tasks, ["pointwise"] * cfg.pointwise_tasks
    if cfg.order == "pairwise-first":
        return pw + pt
    if cfg.order == "pointwise-first":
        return pt + pw
    if cfg.order == "alternate":
        first, second = (pw, pt) if len(pw) >= len(pt) else (pt, pw)
        out = []
        for i in range(len(first)):
            out.append(first[i])
            if i < len(second):
                out.append(second[i])
        return out
    kinds = pw + pt
    rng.shuffle(kinds)
    return kinds


def make_plan(cfg: StudyConfig, earlier_plans: Iterable[list[dict]], rng: random.Random) -> list[dict]:
    """Tasks for a new participant, balancing model arms against ``earlier_plans`` of the study."""
    counts: Counter = Counter()
    for plan in earlier_plans:
        for task in plan or []:
            counts[repr(task["models"] if task["kind"] == "pairwise" else task["models"][0])] += 1
    topics = list(cfg.topics)
    rng.shuffle(topics)
    plan = []
    for i, kind in enumerate(task_kinds(cfg, rng)):
        if kind == "pairwise":
            models = list(_least_used([list(p) for p in cfg.pairs], counts, rng))
        else:
            models = [_least_used(list(cfg.pointwise_models), counts, rng)]
        topic = topics[i % len(topics)]
        plan.append({"kind": kind, "topic": topic.id, "models": models})
    return plan


def make_steps(cfg: StudyConfig, plan: list[dict]) -> list[str]:
    """The flow after consent: demographics, instructions, calibration, then per task pre/chat/post
    (demographics only with questions, instructions only with a text).

    With the webcam on and ``[gaze] recalibrate_every = n`` > 0, a recalibration step
    ``calibration:i`` comes before every n-th task ``i`` (before its pre-task questions).
    """
    steps = []
    if cfg.demographics and cfg.demographics_questions:
        steps.append("demographics")
    if cfg.instructions_text:  # a study without [instructions] text: no empty page
        steps.append("instructions")
    every = 0
    if cfg.calibration:
        from .gaze_settings import gaze_settings

        steps.append("calibration")
        every = gaze_settings(cfg).recalibrate_every
    for i in range(len(plan)):
        if every and i and i % every == 0:
            steps.append(f"calibration:{i}")
        if cfg.pre_task_questions:
            steps.append(f"pre:{i}")
        steps.append(f"task:{i}")
        if cfg.post_task_questions:
            steps.append(f"post:{i}")
    steps.append("done")
    return steps


def step_at(state: dict[str, Any] | None, default: str) -> str:
    """The step a participant's flow ``state`` is at (``steps[pos]``; past the end, the last
    step); ``default`` where it has no steps yet."""
    st = state or {}
    steps = st.get("steps") or []
    return steps[min(st.get("pos", 0), len(steps) - 1)] if steps else default


def parse_step(step: str) -> tuple[str, int | None]:
    """``"task:2"`` -> ``("task", 2)``; ``"instructions"`` -> ``("instructions", None)``."""
    name, _, idx = step.partition(":")
    return name, (int(idx) if idx else None)
