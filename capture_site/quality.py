"""Live progress of a study and per-participant recording quality, from chunk metadata only."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .. import store
from .plan import parse_step, step_at
from .platforms import screened_out
from .purge import deletion_in, deletion_of, withdrawal_in, withdrawal_of

GAP_MS = 2000.0  # a silence longer than this between batches of a stream counts as a gap
WINDOW_S = 60
IDLE_S = 600  # no activity for this long: a participant who has not finished has stopped
# (database, gaze chunk id, received at) -> (frames, with a face); the time too, since SQLite may
# give a deleted newest chunk's id to the next chunk
_FACE_CACHE: dict[tuple[str, int, dt.datetime], tuple[int, int]] = {}
_FACE_CACHE_MAX = 200_000


def study_progress(s: Session, study: store.Study) -> dict:
    P, T, C = store.Participant, store.Task, store.StreamChunk
    people = s.execute(select(P.consent, P.state).where(P.study_id == study.id)).all()  # one query for the counts
    states = [st for consent, st in people if consent is True]
    refused = [st for consent, st in people if consent is False]
    # a withdrawal keeps the row with consent False (purge.purge_participant): apart from the declined
    withdrawn = sum(1 for st in refused if withdrawal_in(st))
    deleted = sum(1 for st in refused if deletion_in(st) and not withdrawal_in(st))  # data deleted by the researchers
    turns = s.scalar(select(func.count(store.Turn.id)).join(T).join(P).where(P.study_id == study.id)) or 0
    since = store.utcnow() - dt.timedelta(seconds=WINDOW_S)
    recent = dict(s.execute(
        select(C.stream, func.sum(C.n)).join(T, C.task_id == T.id).join(P)
        .where(P.study_id == study.id, C.received_at >= since).group_by(C.stream)).all())
    return {
        "participants": len(people),
        "consented": len(states),
        "declined": len(refused) - withdrawn - deleted,
        "withdrawn": withdrawn,
        "deleted": deleted,
        # sent back to the platform with the screen-out hand-off (platforms.mark_screened_out)
        "screened_out": sum(1 for st in states if (st or {}).get("screened_out")),
        "finished": sum(1 for st in states if (st or {}).get("finished_at")),
        "turns": turns,
        "samples_per_s": {k: round(int(v) / WINDOW_S, 1) for k, v in recent.items()},
    }


def participant_quality(s: Session, study: store.Study, now: dt.datetime | None = None) -> list[dict]:
    """One row per participant: status (finished, screened out, in progress, stopped, declined,
    withdrawn or deleted: no data left) and, for those
    who stopped, why (:func:`stop_reason`); step, turns, samples per stream, mouse sample rate and
    gaps, face-found rate of the webcam frames, start time and duration, calibration accuracy
    (latest validation round, rounded px) and failed attention checks."""
    P, T, C = store.Participant, store.Task, store.StreamChunk
    now = now or store.utcnow()
    participants = s.scalars(select(P).where(P.study_id == study.id).order_by(P.id)).all()
    chunks = s.execute(
        select(T.participant_id, T.clock_anchor_epoch_ms, C.task_id, C.stream, C.t_start, C.t_end, C.n,
               C.clock_origin_epoch_ms, C.received_at)
        .join(T, C.task_id == T.id).join(P).where(P.study_id == study.id)).all()
    by_task: dict[int, list] = defaultdict(list)
    owner: dict[int, int] = {}
    samples: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    last_chunk: dict[int, dt.datetime] = {}
    for pid, anchor, task_id, stream, t0, t1, n, origin, received in chunks:
        samples[pid][stream] += n
        if received is not None and (pid not in last_chunk or received > last_chunk[pid]):
            last_chunk[pid] = received
        if stream != "mouse":
            continue
        shift = store.task_clock_shift(origin, anchor)
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
    faces = _task_faces(s, study)
    out = []
    for p in participants:
        st = stats[p.id]
        state = p.state or {}
        step = step_at(state, "-")
        # the last calibration step's outcome (the kept attempt), else the last validation round
        cals = sorted(p.calibrations, key=lambda c: c.id)
        outcomes = [c for c in cals if c.kind == "outcome"]
        cal_rounds = outcomes or [c for c in cals if c.kind == "validation"]
        cal = (cal_rounds[-1].result or {}) if cal_rounds else {}
        # a check of the first calibration step while it is still under way (attempts may be left)
        under_way = not outcomes and step.startswith("calibration") and not screened_out(p)
        accuracy = cal.get("accuracy_px")
        setup = state.get("setup") or {}
        frames = faces.get(p.id, (0, 0))
        rounds = [(int((c.result or {}).get("frames") or 0), int((c.result or {}).get("face_found") or 0))
                  for c in p.calibrations if c.kind != "outcome"]  # an outcome repeats its attempt
        n_frames = frames[0] + int(setup.get("frames") or 0) + sum(r[0] for r in rounds)
        n_found = frames[1] + int(setup.get("face_found") or 0) + sum(r[1] for r in rounds)
        start = p.consent_at or p.created_at
        last = _last_activity(p, last_chunk.get(p.id))
        status, reason = stop_reason(p, now, last, step)
        out.append({
            "id": p.id, "pseudonym": p.pseudonym[:12], "platform": p.platform, "consent": p.consent,
            "status": status, "reason": reason,
            "step": step, "step_label": step_label(step),
            "turns": sum(len(t.turns) for t in p.tasks),
            "samples": dict(sorted(samples[p.id].items())),
            "mouse_samples": st["samples"],
            "sample_rate_hz": round(st["samples"] / (st["span_ms"] / 1000), 1) if st["span_ms"] > 0 else None,
            "gaps": st["gaps"], "max_gap_s": round(st["max_gap_ms"] / 1000, 1),
            "face_found_rate": round(n_found / n_frames, 2) if n_frames else None,
            "started_at": start.replace(microsecond=0).isoformat(sep=" ") if start else None,
            "duration_s": round((last - start).total_seconds()) if (start and last) else None,
            "duration": format_duration((last - start).total_seconds()) if (start and last) else "",
            "calibration_accuracy_px": accuracy,
            "calibration_accuracy_deg": cal.get("accuracy_deg", (cal.get("overall") or {}).get("accuracy_deg")),
            "calibration_passed": cal.get("passed"), "calibration_attempts": cal.get("n_attempts"),
            "calibration": calibration_label(accuracy, cal, under_way=under_way),
            "attention_failed": sum(v is False for t in p.tasks for k, v in (t.answers or {}).items()
                                    if k.endswith("_passed")),
        })
    return out


def step_label(step: str) -> str:
    """The flow's step name as the dashboard shows it, tasks counted from 1 like everywhere else
    on the dashboard: ``"task:0"`` -> ``"task 1"``, ``"pre:1"`` -> ``"before task 2"``,
    ``"post:0"`` -> ``"after task 1"``, ``"calibration:2"`` -> ``"calibration before task 3"``."""
    name, index = parse_step(step)
    if index is None:
        return step
    n = index + 1
    return {"task": f"task {n}", "pre": f"before task {n}", "post": f"after task {n}",
            "calibration": f"calibration before task {n}"}.get(name, step)


def calibration_label(accuracy_px: float | None, result: dict, under_way: bool = False) -> str:
    """``"412 px / 10.3° (failed, 2 attempts)"``: the dashboard's calibration cell ("" without a
    calibration); a step decided without a validated attempt says why it has no figure.
    ``under_way``: ``result`` is a check of a step not decided yet (the participant is on it, an
    attempt may be left): ``"453 px / 11.4° (last check failed, step under way)"``, not a verdict."""
    if accuracy_px is None:
        if under_way or result.get("passed") is None or "n_attempts" not in result:  # (an older database)
            return ""
        text = _no_figure(result)
    else:
        deg = result.get("accuracy_deg", (result.get("overall") or {}).get("accuracy_deg"))
        text = f"{round(float(accuracy_px))} px" + (f" / {float(deg):.1f}°" if deg is not None else "")
    passed = result.get("passed", (result.get("overall") or {}).get("passed"))
    if under_way:
        check = "" if passed is None else f"last check {'passed' if passed else 'failed'}, "
        return f"{text} ({check}step under way)"
    if passed is not None:
        n = result.get("n_attempts")
        text += f" ({'passed' if passed else 'failed'}"
        text += f", {n} attempt{'s' if n != 1 else ''})" if n else ")"
    return text


def _no_figure(outcome: dict) -> str:
    """Why a calibration step's outcome has no accuracy: no attempt was validated."""
    attempts = outcome.get("attempts") or []
    if attempts and not any(a.get("fitted") for a in attempts):
        return "no figure: every calibration round short of frames"
    return "no figure: no attempt validated"


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"7 min 05 s"``, ``"1 h 02 min"``."""
    sec = max(0, int(round(seconds)))
    if sec < 60:
        return f"{sec} s"
    if sec < 3600:
        return f"{sec // 60} min {sec % 60:02d} s"
    return f"{sec // 3600} h {sec % 3600 // 60:02d} min"


def _parse_time(v) -> dt.datetime | None:
    if not v:
        return None
    try:
        t = dt.datetime.fromisoformat(str(v))
    except ValueError:
        return None
    return t.replace(tzinfo=None) if t.tzinfo is not None else t


def _last_activity(p: store.Participant, last_chunk: dt.datetime | None) -> dt.datetime | None:
    """The latest moment the participant did something the site recorded."""
    state = p.state or {}
    times = [p.consent_at, p.created_at, last_chunk, _parse_time(state.get("finished_at")),
             _parse_time((state.get("setup") or {}).get("updated_at")),
             _parse_time((state.get("window") or {}).get("updated_at"))]
    times += [t.started_at for t in p.tasks] + [t.finished_at for t in p.tasks]
    times += [c.created_at for c in p.calibrations]
    times = [t.replace(tzinfo=None) if t.tzinfo is not None else t for t in times if t is not None]
    return max(times) if times else None


#: face status codes of the set-up page (:func:`.gaze_trackers.face_status`) as a reason to stop
_FACE_REASONS = {  # by the face status code (gazepref.signals.framing.framing_advice)
    "dark": "no face in the camera picture (dark, black or covered camera?)",
    "no-face": "no face in the camera picture",
    "far": "face too far from the camera",
    "near": "face too close to the camera",
    "bright": "face over-exposed (too much light on it)",
    "several": "several faces in view",
    "left": "face not in the middle of the picture", "right": "face not in the middle of the picture",
    "up": "face not in the middle of the picture", "down": "face not in the middle of the picture",
    "no-frame": "no camera frame arrived",
}
#: the face status "dark" of a face found (the picture is not black): framing_advice gives a black
#: picture without a face and a dim face the same code (``setup["dim"]`` counts the latter)
_DIM_FACE = "face too dark (not lit from the front)"
_CAMERA_ERRORS = {"denied": "camera access denied", "not-found": "no camera found",
                  "unsupported": "browser cannot use a webcam", "failed": "camera could not be started"}


def step_phrase(step: str) -> str:
    """Where in the flow ``step`` is, as a phrase after a verb ("withdrew ..."): ``"task:0"`` ->
    ``"in task 1"``, ``"pre:1"`` -> ``"before task 2"``, ``"post:0"`` -> ``"after task 1"``,
    ``"calibration:2"`` -> ``"at the calibration before task 3"``, ``"demographics"`` -> ``"at the
    demographics step"`` (:func:`step_label` names the step alone, for the dashboard's column)."""
    name, index = parse_step(step)
    if index is None or name not in ("task", "pre", "post", "calibration"):
        return f"at the {step} step"
    return {"task": "in ", "pre": "", "post": "", "calibration": "at the "}[name] + step_label(step)


def _marker_step(marker: dict) -> str:
    """" <where>" (:func:`step_phrase`) of a withdrawal's or deletion's marker (:mod:`.purge`), or
    "" where none was reached."""
    step = marker.get("step")
    return f" {step_phrase(step)}" if isinstance(step, str) and step != "-" else ""


def stop_reason(p: store.Participant, now: dt.datetime, last: dt.datetime | None, step: str) -> tuple[str, str]:
    """``(status, reason)`` from what the flow recorded: ``withdrawn`` (the participant withdrew
    and their data was deleted), ``deleted`` (the researchers deleted the data: the row is the
    marker, :func:`.purge.deletion_of`), ``declined`` (consent), ``finished``,
    ``screened out`` (sent back to the platform with the screen-out hand-off: a webcam-only study
    without a usable camera, a calibration that failed where the study screens out; at once, with
    the set-up's reason), ``in progress`` (active in the last :data:`IDLE_S` seconds) or ``stopped`` with where and why
    (a window too small for the study, camera errors and face status at the set-up, calibration
    not precise enough, the ``step`` reached, :func:`~gazepref.capture_site.plan.step_at`, and its
    task). A no-camera participant who went on mouse-only gets that as a note, as does one who
    skipped the set-up (the face check did not pass in time) with the set-up's face status. The window counts
    only while its "please use a larger window" page was the last thing reported at the step the
    participant stopped at (:func:`.pages.note_window`): not for one who enlarged it or went on."""
    state = p.state or {}
    if (withdrawn := withdrawal_of(p)) is not None:
        return "withdrawn", f"withdrew{_marker_step(withdrawn)}; data deleted"
    if (deleted := deletion_of(p)) is not None:
        return "deleted", (f"data deleted by the researchers{_marker_step(deleted)} (on {str(deleted.get('at', ''))[:10]}); "
                           "the platform id is not enrolled again")
    if p.consent is False:
        return "declined", "declined consent"
    if p.consent is None:
        return "stopped", "left before consent"
    notes = []
    setup = state.get("setup") or {}
    if state.get("gaze") == "no-camera":
        notes.append(_CAMERA_ERRORS.get(setup.get("camera_error"), "no camera") + ", continued mouse-only")
    elif state.get("gaze") == "skipped":  # the camera worked; the face check did not pass in time
        notes.append(f"skipped the camera set-up ({_setup_reason(p, setup)}), continued mouse-only")
    elif state.get("gaze") in ("failed", "uncalibrated"):  # the study's calibration fallback applied
        notes.append(f"{_calibration_failed(p)}, " + ("continued mouse-only" if state["gaze"] == "failed"
                                                       else "recorded gaze uncalibrated"))
    if state.get("finished_at"):
        return "finished", "; ".join(notes)
    if screened_out(p):  # sent back to the platform (no camera, calibration failed): final at once
        return "screened out", "; ".join(notes + [f"at the camera set-up: {_setup_reason(p, setup)}"])
    if last is not None and (now - last).total_seconds() < IDLE_S:
        return "in progress", "; ".join(notes)
    window = state.get("window") or {}
    if window.get("too_small") and window.get("step") == step:
        size = window.get("size") or []
        shown = f" ({size[0]} × {size[1]} px)" if len(size) == 2 else ""
        return "stopped", "; ".join(notes + [f"window too small for the study{shown}: left at the "
                                             "\"please use a larger window\" page"])
    name, index = parse_step(step)
    if name == "calibration":
        why = _setup_reason(p, setup)
        return "stopped", "; ".join(notes + [f"at the camera set-up: {why}"])
    if name in ("task", "pre", "post") and index is not None:
        task = next((t for t in p.tasks if t.index == index), None)
        n = len(task.turns) if task is not None else 0
        where = {"task": "in", "pre": "before", "post": "after"}[name]
        n_tasks = sum(1 for s in state.get("steps") or [] if s.startswith("task:"))
        return "stopped", "; ".join(notes + [f"{where} task {index + 1} of {n_tasks} ({n} turns)"])
    return "stopped", "; ".join(notes + [f"at the {name} step"])


def _calibration_failed(p: store.Participant) -> str:
    """The latest calibration step that failed, as its outcome recorded it: the kept attempt's
    offset (not the last attempt's) and the step's attempts."""
    outcomes = sorted((c for c in p.calibrations if c.kind == "outcome"), key=lambda c: c.id)
    r = (outcomes[-1].result or {}) if outcomes else {}
    acc, n = r.get("accuracy_px"), r.get("n_attempts")
    starved = r.get("validation_starved") or []
    pass_px = (r.get("settings") or {}).get("pass_accuracy_px")
    if acc is not None and starved and (pass_px is None or acc <= pass_px):
        # precise enough where it was checked, but dots of the check got too few usable pictures
        why = (f"calibration check short of camera pictures at {len(starved)} of its dots "
               f"({round(float(acc))} px where checked)")
    elif acc is not None:
        why = f"calibration not precise enough ({round(float(acc))} px)"
    else:
        why = "calibration failed (" + _no_figure(r).removeprefix("no figure: ") + ")"
    return why + (f" after {n} attempt{'s' if n != 1 else ''}" if n else "")


def _setup_reason(p: store.Participant, setup: dict) -> str:
    """Why a participant got no further than the camera set-up: the camera error the page
    reported, the calibration that was not precise enough, or the face status of the set-up frames."""
    if setup.get("camera_error"):
        why = _CAMERA_ERRORS.get(setup["camera_error"], "camera could not be started")
    else:
        val = [c for c in p.calibrations if c.kind == "validation"]
        cal = [c for c in p.calibrations if c.kind == "calibration"]
        outcomes = [c for c in p.calibrations if c.kind == "outcome"]
        if outcomes and not (outcomes[-1].result or {}).get("passed"):
            why = _calibration_failed(p)
        elif val and not outcomes and not (val[-1].result or {}).get("passed"):  # a database from before outcomes
            acc = (val[-1].result or {}).get("accuracy_px")
            why = (f"calibration not precise enough ({round(acc)} px)" if acc is not None
                   else "calibration not precise enough") + f" after {len(val)} attempt(s)"
        elif outcomes or val:  # (it was called "left at the camera set-up with the face well placed")
            why = "calibration passed; left before pressing Continue"
        elif cal and not val:
            why = "left during the calibration (no validation round)"
        elif setup.get("frames"):
            codes = {c: n for c, n in (setup.get("codes") or {}).items() if c != "ok"}
            last_code = setup.get("last_code", "")
            code = last_code if last_code in _FACE_REASONS else max(codes, key=codes.get) if codes else None
            found = setup.get("face_found", 0) / max(1, setup["frames"])
            if code is None:
                why = "left at the camera set-up with the face well placed"
            elif code == "dark" and (found >= 0.5 if "dim" not in setup  # (a summary from before 07 Dec 2026)
                                     else setup["dim"] * 2 > codes.get("dark", 0)):
                why = _DIM_FACE  # ("dark" is a black picture, no face, or a face found but dim: mostly the latter)
            else:
                why = _FACE_REASONS.get(code, "face not well placed")
            why += f" ({setup['frames']} set-up frames, face found in {found:.0%})"
        else:
            why = "left at the camera set-up before any frame arrived (camera never started?)"
    return why


def _task_faces(s: Session, study: store.Study) -> dict[int, tuple[int, int]]:
    """Per participant (consented): webcam frames of the tasks and those with a face found, from the
    gaze chunks' flags (decoded once per chunk: chunks never change)."""
    from ..schema import GazeFlag

    P, T, C = store.Participant, store.Task, store.StreamChunk
    rows = s.execute(select(C.id, C.received_at, T.participant_id).join(T, C.task_id == T.id).join(P)
                     .where(P.study_id == study.id, C.stream == "gaze")).all()
    db_key = str(s.get_bind().url)  # chunk ids are per database
    missing = [cid for cid, at, _ in rows if (db_key, cid, at) not in _FACE_CACHE]
    for i in range(0, len(missing), 500):
        for cid, at, cols, raw, data in s.execute(select(C.id, C.received_at, C.columns, C.raw_size, C.data)
                                                  .where(C.id.in_(missing[i:i + 500]))):
            tb = store.decode_chunk("gaze", cols, raw, data)
            if "flags" in tb.column_names:
                flags = tb.column("flags").fill_null(0).to_numpy(zero_copy_only=False)
                flags = np.nan_to_num(flags.astype("float64")).astype("int64")
                seen = (flags & GazeFlag.DROPPED) == 0  # a frame not processed tells nothing
                n, found = int(seen.sum()), int((seen & ((flags & GazeFlag.NO_FACE) == 0)).sum())
            else:
                n = found = tb.num_rows
            if len(_FACE_CACHE) >= _FACE_CACHE_MAX:
                _FACE_CACHE.pop(next(iter(_FACE_CACHE), None), None)  # (another thread may have taken it)
            _FACE_CACHE[(db_key, cid, at)] = (n, found)
    out: dict[int, tuple[int, int]] = {}
    for cid, at, pid in rows:
        n, f = _FACE_CACHE.get((db_key, cid, at), (0, 0))
        a, b = out.get(pid, (0, 0))
        out[pid] = (a + n, b + f)
    return out
