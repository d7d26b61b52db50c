"""Live progress of a study and per-participant recording quality, from chunk metadata only."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import store

GAP_MS = 2000.0  # a silence longer than this between batches of a stream counts as a gap
WINDOW_S = 60


def study_progress(s: Session, study: store.Study) -> dict:
    P, T, C = store.Participant, store.Task, store.StreamChunk
    consent = dict(s.execute(select(P.consent, func.count()).where(P.study_id == study.id).group_by(P.consent)).all())
    states = s.scalars(select(P.state).where(P.study_id == study.id, P.consent.is_(True))).all()
    turns = s.scalar(select(func.count(store.Turn.id)).join(T).join(P).where(P.study_id == study.id)) or 0
    since = store.utcnow() - dt.timedelta(seconds=WINDOW_S)
    recent = dict(s.execute(
        select(C.stream, func.sum(C.n)).join(T, C.task_id == T.id).join(P)
        .where(P.study_id == study.id, C.received_at >= since).group_by(C.stream)).all())
    return {
        "participants": sum(consent.values()),
        "consented": consent.get(True, 0),
        "declined": consent.get(False, 0),
        "finished": sum(1 for st in states if (st or {}).get("finished_at")),
        "turns": turns,
        "samples_per_s": {k: round(int(v) / WINDOW_S, 1) for k, v in recent.items()},
    }


def participant_quality(s: Session, study: store.Study) -> list[dict]:
    """One row per participant: step, turns, mouse samples, sample rate and gaps, calibration
    accuracy (latest validation round) and failed attention checks."""
    P, T, C = store.Participant, store.Task, store.StreamChunk
    participants = s.scalars(select(P).where(P.study_id == study.id).order_by(P.id)).all()
    chunks = s.execute(
        select(T.participant_id, T.clock_anchor_epoch_ms, C.task_id, C.stream, C.t_start, C.t_end, C.n,
               C.clock_origin_epoch_ms)
        .join(T, C.task_id == T.id).join(P).where(P.study_id == study.id, C.stream == "mouse")).all()
    by_task: dict[int, list] = defaultdict(list)
    owner: dict[int, int] = {}
    for pid, anchor, task_id, _stream, t0, t1, n, origin in chunks:
        shift = (origin - anchor) if (origin is not None and anchor is not None) else 0.0
        by_task[task_id].append((t0 + shift, t1 + shift, n))
        owner[task_id] = pid
    stats: dict[int, dict] = defaultdict(lambda: {"samples": 0, "span_ms": 0.0, "gaps": 0, "max_gap_ms": 0.0})
    for task_id, rows in by_task.items():
        rows.sort()
        st = stats[owner[task_id]]
        st["samples"] += sum(r[2] for r in rows)
        st["span_ms"] += max(r[1] for r in rows) - rows[0][0]
        for (_, end, _), (start, _, _) in zip(rows, rows[1:]):
            gap = start - end
            st["max_gap_ms"] = max(st["max_gap_ms"], gap)
            st["gaps"] += gap > GAP_MS
    out = []
    for p in participants:
        st = stats[p.id]
        state = p.state or {}
        steps = state.get("steps") or []
        # the last calibration step's outcome (the kept attempt), else the last validation round
        cals = sorted(p.calibrations, key=lambda c: c.id)
        rounds = [c for c in cals if c.kind == "outcome"] or [c for c in cals if c.kind == "validation"]
        last = (rounds[-1].result or {}) if rounds else {}
        accuracy = last.get("accuracy_px")
        out.append({
            "id": p.id, "pseudonym": p.pseudonym[:12], "platform": p.platform, "consent": p.consent,
            "step": steps[min(state.get("pos", 0), len(steps) - 1)] if steps else "-",
            "turns": sum(len(t.turns) for t in p.tasks),
            "mouse_samples": st["samples"],
            "sample_rate_hz": round(st["samples"] / (st["span_ms"] / 1000), 1) if st["span_ms"] > 0 else None,
            "gaps": st["gaps"], "max_gap_s": round(st["max_gap_ms"] / 1000, 1),
            "calibration_accuracy_px": accuracy,
            "calibration_accuracy_deg": last.get("accuracy_deg", (last.get("overall") or {}).get("accuracy_deg")),
            "calibration_passed": last.get("passed"), "calibration_attempts": last.get("n_attempts"),
            "attention_failed": sum(v is False for t in p.tasks for k, v in (t.answers or {}).items()
                                    if k.endswith("_passed")),
        })
    return out
