"""A study in the site's database, seen as a :class:`~gazepref.datasets.recording.Recording`, and
its kept webcam frames (:func:`export_frames`)."""
from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, scoped_session, selectinload

from .. import UserError, schema, store
from .calibration_rounds import CALIBRATION_COLUMNS
from .derive import derive_streams


#: the columns of :meth:`StoreRecording.calibration_rounds` (Parquet ``calibrations``, IFLLM
#: layout ``calibration_table.csv``); ``attempt``: the attempt's number within its step (an
#: outcome: the kept one); ``created_at``: when the round was stored (UTC-aware); ``points``: JSON, per validation point its figures (an outcome: per
#: attempt, with its points)
#: the file ``gazepref gaze recalibrate`` writes beside its gaze files (the summary and one row per
#: file), which :meth:`StoreRecording.use_gaze` reads
RECALIBRATED_MANIFEST = "manifest.json"



def _utc(t: dt.datetime | None) -> dt.datetime | None:
    """A database time (naive, UTC: :func:`gazepref.store.utcnow`) as a UTC-aware datetime."""
    if t is None:
        return None
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def outcome_in_force(calibrations: list[store.Calibration], task: store.Task) -> store.Calibration | None:
    """Of a participant's ``calibrations``, the calibration step outcome in force when ``task``
    started (the last one before it, else the first after it; None: no outcome): the calibration
    the task was recorded under (the study site scores a task page's gaze with it), the tasks'
    ``calibration`` of the exports and what ``gazepref gaze recalibrate`` re-maps the task with."""
    outcomes = sorted((c for c in calibrations if c.kind == "outcome"), key=lambda c: c.id)
    before = [c for c in outcomes if task.started_at is None or c.created_at is None or c.created_at <= task.started_at]
    return before[-1] if before else (outcomes[0] if outcomes else None)


def exported_task_id(pseudonym: str, task_db_id: int) -> str:
    """A stored task's id in every table made from a study (``task_id`` of ``data export``, the
    feature tables, the frames index, ``gaze recalibrate``): ``<pseudonym>/<task id>``, the
    participant's pseudonym (their ``participant_id``) and the task's number in the database."""
    return f"{pseudonym}/{task_db_id}"


def _calibration_in_force(p: store.Participant, task: store.Task) -> dict | None:
    """The figures of the calibration step outcome in force when ``task`` started
    (:func:`outcome_in_force`); databases without outcomes: the last validation's accuracy."""
    outcome = outcome_in_force(p.calibrations, task)
    if outcome is None:
        cals = sorted(p.calibrations, key=lambda c: c.id)
        val = [c for c in cals if c.kind == "validation" and (c.result or {}).get("accuracy_px") is not None]
        return {"accuracy_px": float(val[-1].result["accuracy_px"])} if val else None
    r = outcome.result or {}
    return {"passed": bool(r.get("passed")), "accuracy_px": r.get("accuracy_px"), "accuracy_deg": r.get("accuracy_deg"),
            "precision_px": r.get("precision_px"), "data_loss": r.get("data_loss"), "attempts": r.get("n_attempts"),
            "quality": r.get("quality"), "webgazer_score_pct": r.get("webgazer_score_pct"),
            "fallback": r.get("fallback"), "starved_targets": _outcome_starved(r)}


def _outcome_starved(r: dict) -> int | None:
    """How many of the kept attempt's validation dots had too few frames (None: an outcome stored
    before it was recorded)."""
    return len(r["validation_starved"]) if isinstance(r.get("validation_starved"), list) else None


def webcam_outcome(state: dict) -> dict[str, str | None]:
    """A participant's ``webcam``, ``camera_error`` and ``screened_out`` (:class:`schema.Participant`)
    from their stored state: the camera step's outcome (``state["gaze"]``, the latest step's; a
    participant screened out at a camera step: that step's, ``no-camera`` or ``skipped`` as the
    screen-out recorded it, else ``no-camera`` or ``failed`` by its reason), the set-up's camera
    error, the screen-out's reason."""
    info = state.get("screened_out") or {}
    screened = info.get("reason")
    by_reason = {"no-camera": "no-camera", "calibration-failed": "failed"}
    webcam = (info.get("camera") or by_reason.get(screened)) if screened in by_reason else state.get("gaze")
    error = (state.get("setup") or {}).get("camera_error")
    return {"webcam": webcam if webcam in schema.WEBCAM_OUTCOMES else None,
            "camera_error": error if isinstance(error, str) else None,
            "screened_out": screened if isinstance(screened, str) else None}


#: the sessions :meth:`StoreRecording.open` made (each on its own engine), also those closed and read
#: again since: the command line closes them after each command (:func:`close_opened`)
_OPENED: list[scoped_session] = []


def _close_session(db: scoped_session) -> None:
    db.remove()
    db.session_factory.kw["bind"].dispose()


def close_opened() -> None:
    """Close the sessions of every recording :meth:`StoreRecording.open` made: their transactions
    end and their engines give their connections back. A command that read a study left its
    session open until Python collected it (a session is a reference cycle): in one process (the
    tests, a notebook) its open transaction held its tables' locks, and a later ``DROP TABLE`` on
    the same PostgreSQL database waited for it for good (a CI run hung there)."""
    while _OPENED:  # (one closed before, e.g. ahead of forking workers, may have read again since)
        _close_session(_OPENED.pop())


class StoreRecording:
    """Participants who consented (:func:`gazepref.store.consenting`: not those who declined,
    withdrew or whose data was deleted; :meth:`participants_left_out` counts them), their tasks,
    turns and streams, with pseudonymous ids only.

    Task ids are ``<pseudonym>/<task number>``; streams are derived
    (:func:`gazepref.datasets.derive.derive_streams`): a ``turn`` column from the turns'
    ``t_shown`` times on the task clock, and the word under each gaze and mouse sample from the
    recorded layout. Open one by slug with :meth:`open` (or through
    :func:`gazepref.datasets.sources.open_source`); ``url`` is then the database it reads.
    """

    def __init__(self, db: Session, study: store.Study, url: str | None = None):
        self.db = db
        self.study = study
        self.url = url if url is not None else _bind_url(db)
        self._tasks: dict[str, store.Task] = {}
        self._task_turns: dict[str, list[schema.Turn]] = {}  # read with the tasks: no lazy loads later
        self._gaze_files: dict[str, Path] = {}  # task id -> a gaze recalibrate file (:meth:`use_gaze`)
        self.gaze_from: dict | None = None  # that folder and how its gaze was made (the exports say so)

    @classmethod
    def open(cls, slug: str, db_url: str | None = None, instance: str | None = None) -> StoreRecording:
        """The study ``slug`` in the database that :func:`gazepref.store.database_url` locates
        (``db_url``, else ``$GAZEPREF_DATABASE_URL``, else the instance folder's SQLite).

        Its session is thread-local (a ``scoped_session``), so threads may read streams at once."""
        url = store.database_url(db_url, instance, must_exist=True)
        try:
            db = scoped_session(store.init_db(store.make_engine(url)))
            study = db.scalar(select(store.Study).where(store.Study.slug == slug))
            if study is None:
                known = ", ".join(db.scalars(select(store.Study.slug).order_by(store.Study.slug))) or "none"
                db.remove()
                raise UserError(f"no study {slug!r} in the database {store.safe_url(url)} (studies: {known})")
        except DatabaseError as e:  # OperationalError (unreachable), or a file that is no database
            raise store.database_error(url, e, "read") from None
        _OPENED.append(db)
        return cls(db, study, url)

    def use_gaze(self, folder: str | Path) -> dict:
        """Read each task's gaze from the folder ``gazepref gaze recalibrate`` wrote
        (``<task_id>_gaze.parquet``, listed in its :data:`RECALIBRATED_MANIFEST`) instead of the
        database: the re-estimated rows of the same samples. The folder must be of this study;
        returns what its manifest says of how it was made (for the export's manifest)."""
        folder = Path(folder).expanduser().resolve()  # (recorded in the export's manifest: not as typed)
        try:
            manifest = json.loads((folder / RECALIBRATED_MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{folder}: no gaze recalibrate folder ({RECALIBRATED_MANIFEST}: {e})") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
            raise UserError(f"{folder}: {RECALIBRATED_MANIFEST} is not one gaze recalibrate wrote")
        if manifest.get("study") != self.study.slug:
            raise UserError(f"{folder} holds the gaze of study {manifest.get('study')!r}, not {self.study.slug!r}")
        if "include_failed" not in manifest:  # before it said so, it re-mapped failed calibrations' tasks
            raise UserError(f"{folder} was written by an earlier gazepref, whose manifest does not say how its "
                            "gaze was made: run gaze recalibrate again")
        self._gaze_files = {str(f["task_id"]): folder / str(f["file"]) for f in manifest["files"]}
        # every task with gaze is in it, checked before anything is written (never the database's
        # rows beside the folder's, nor an export left half written)
        with_gaze = self.db.execute(
            select(store.Participant.pseudonym, store.Task.id).join(store.Task, store.Task.participant_id == store.Participant.id)
            .join(store.StreamChunk, store.StreamChunk.task_id == store.Task.id)
            .where(store.consenting(self.study.id), store.StreamChunk.stream == "gaze", store.StreamChunk.n > 0)
            .distinct()).all()
        missing = sorted(exported_task_id(p, t) for p, t in with_gaze if exported_task_id(p, t) not in self._gaze_files)
        if missing:
            raise UserError(f"{folder} has no gaze of task {missing[0]}" + (f" (and {len(missing) - 1} more)"
                            if len(missing) > 1 else "") + ": written before those rows were stored? run gaze "
                            "recalibrate again")
        self.gaze_from = {"folder": str(folder), **{k: manifest.get(k) for k in
                                                    ("model", "include_failed", "interactions", "corrector", "tasks")}}
        return self.gaze_from

    def export_frames(self, out_dir: str | Path) -> int:
        """The study's kept webcam frames into ``out_dir/frames/`` (:func:`export_frames`)."""
        return export_frames(self.db, self.study, out_dir)

    def close(self) -> None:
        """Give the database connections back (e.g. before forking workers, which then open their
        own); the recording stays usable and reconnects when read again. A recording made on a
        session it was given (the site's) leaves that session and its engine alone."""
        if isinstance(self.db, scoped_session):  # opened by :meth:`open`: its own engine
            _close_session(self.db)

    def _participants(self) -> list[store.Participant]:
        return list(self.db.scalars(
            select(store.Participant)
            .where(store.consenting(self.study.id))
            .options(selectinload(store.Participant.tasks).selectinload(store.Task.turns)
                     .selectinload(store.Turn.responses), selectinload(store.Participant.calibrations))
            .order_by(store.Participant.id)
        ))

    def demographics(self) -> list[tuple[str, dict]]:
        """``(pseudonym, answers)`` of the consenting participants who answered the demographics
        questions. Never part of the behaviour exports: see
        :func:`gazepref.datasets.export.export_demographics`."""
        rows = self.db.execute(
            select(store.Participant.pseudonym, store.Demographics.answers)
            .join(store.Demographics, store.Demographics.participant_id == store.Participant.id)
            .where(store.consenting(self.study.id))
            .order_by(store.Participant.id))
        return [(pseudonym, dict(answers or {})) for pseudonym, answers in rows]

    def participants(self) -> list[schema.Participant]:
        return [schema.Participant(p.pseudonym, self.study.slug, consented=True, platform=p.platform,
                                   **webcam_outcome(p.state or {}))
                for p in self._participants()]

    def _task_id(self, p: store.Participant, t: store.Task) -> str:
        return exported_task_id(p.pseudonym, t.id)

    def tasks(self) -> list[schema.Task]:
        out = []
        for p in self._participants():
            for t in p.tasks:
                tid = self._task_id(p, t)
                self._tasks[tid] = t
                self._task_turns[tid] = sorted(self._turns_of(p, t), key=lambda u: u.index)
                cal = _calibration_in_force(p, t)
                answers = dict(t.answers or {})
                if cal is not None and cal.get("accuracy_px") is not None:
                    answers["calibration_unit"] = "px"
                if t.finished_at is not None:  # IFLLM's task table keeps the time (UTC): its reader's key
                    answers["finished"] = t.finished_at.strftime("%Y-%m-%d %H:%M:%S")
                out.append(schema.Task(
                    task_id=tid, participant_id=p.pseudonym, study_id=self.study.slug, kind=t.kind,
                    topic=t.topic, clock_anchor_epoch_ms=t.clock_anchor_epoch_ms,
                    finished=t.finished_at is not None, feedback_text=t.feedback_text, answers=answers,
                    calibration_accuracy=cal.get("accuracy_px") if cal else None, calibration=cal,
                ))
        return out

    def calibration_rounds(self) -> list[dict]:
        """Every calibration round of the consenting participants, one row each
        (:data:`CALIBRATION_COLUMNS`): the attempts (``kind = "calibration"``), their validations
        and each calibration step's outcome (which attempt was kept, the figures, the fallback)."""
        rows = []
        for p in self._participants():
            step, attempt, attempt_no = 1, {}, 0
            for c in sorted(p.calibrations, key=lambda c: c.id):
                r = c.result or {}
                overall = r.get("overall", {})
                if c.kind == "calibration":
                    attempt_no += 1
                    attempt[c.id] = attempt_no
                viewport = r.get("viewport") or [None, None]
                usable = r.get("usable_per_target") or []
                row = dict.fromkeys(CALIBRATION_COLUMNS)
                row.update(
                    participant_id=p.pseudonym, step=step, kind=c.kind,
                    attempt=(attempt_no if c.kind == "calibration" else attempt.get(r.get("calibration"))),
                    created_at=_utc(c.created_at),
                    viewport_w=viewport[0], viewport_h=viewport[1],
                    n_targets=len(r.get("targets") or r.get("points") or []) or None, frames=r.get("frames"),
                    usable_frames_min=min(usable) if usable else None, starved_targets=len(r.get("starved") or []),
                    cv_error_px=r.get("cv_error_px"), error=r.get("error"),
                    points=json.dumps(r["points"]) if r.get("points") else None,
                    # browser mode: where the page's face mesh ran and its ms a picture (rounds since 07 Dec 2026)
                    mesh_thread=(r.get("page_mesh") or {}).get("thread"),
                    mesh_ms_per_picture=(r.get("page_mesh") or {}).get("ms_per_picture"),
                )
                if c.kind == "validation":  # quality: the word the page was given (rounds stored since it is kept)
                    row.update(passed=r.get("passed"), accuracy_px=r.get("accuracy_px"), quality=r.get("quality"),
                               webgazer_score_pct=r.get("webgazer_score_pct"),  # (rounds stored since 07 Dec 2026)
                               **{k: overall.get(k) for k in ("accuracy_deg", "precision_px", "data_loss", "in_roi")},
                               distance_cm=(r.get("settings") or {}).get("distance_cm"),
                               px_per_cm=(r.get("settings") or {}).get("px_per_cm"))
                elif c.kind == "outcome":
                    row.update({k: r.get(k) for k in ("passed", "accuracy_px", "accuracy_deg", "precision_px",
                                                      "data_loss", "in_roi", "quality", "fallback",
                                                      "webgazer_score_pct")},
                               attempt=attempt.get(r.get("selected")), attempts=r.get("n_attempts"),
                               starved_targets=_outcome_starved(r),
                               distance_cm=(r.get("settings") or {}).get("distance_cm"),
                               px_per_cm=(r.get("settings") or {}).get("px_per_cm"),
                               points=json.dumps(r.get("attempts")) if r.get("attempts") else None)
                    step, attempt_no = step + 1, 0
                rows.append(row)
        return rows

    def turns(self) -> list[schema.Turn]:
        return [u for p in self._participants() for t in p.tasks for u in self._turns_of(p, t)]

    def _turns_of(self, p: store.Participant, t: store.Task) -> list[schema.Turn]:
        return [schema.Turn(
            turn_id=str(u.id), task_id=self._task_id(p, t), participant_id=p.pseudonym,
            index=u.index, kind=u.kind, prompt=u.prompt,
            responses=[schema.Response(r.position, r.model, r.text, r.likert) for r in u.responses],
            prompt_sent=u.prompt_sent, modifiers=list(u.modifiers or []), context=list(u.context or []),
            choice=u.choice, choice_strength=u.choice_strength,
            better_than_previous=u.better_than_previous, feedback_text=u.feedback_text,
            epoch_ms=u.epoch_ms, t_shown=u.t_shown, t_decided=u.t_decided,
        ) for u in t.turns]

    def turns_by_task(self) -> dict[str, list[schema.Turn]]:
        from .recording import turns_by_task

        return turns_by_task(self)

    def streams(self, task_id: str, cache: bool = True) -> dict[str, pa.Table]:
        """The task's stored streams, derived (:func:`gazepref.datasets.derive.derive_streams`):
        ``turn`` on every stream from the turns' ``t_shown`` on the task clock (layout rows keep
        the turn they were recorded for), gaze and mouse with the word under each sample from the
        layout's own word boxes and the scroll stream."""
        if not self._tasks:
            self.tasks()
        task = self._tasks.get(task_id)
        if task is None:
            raise UserError(f"no task {task_id!r} in study {self.study.slug!r}")
        raw = {}
        for name in schema.STREAMS:
            if name == "hits":  # IFLLM's form; our site records the layout instead
                continue
            tb = store.read_stream(self.db, task, name)
            if name == "gaze" and self.gaze_from is not None and tb.num_rows:
                tb = self._recalibrated(task_id, tb)
            if tb.num_rows:
                raw[name] = tb
        return derive_streams(raw, self._task_turns[task_id], clock="t")

    def _recalibrated(self, task_id: str, stored: pa.Table) -> pa.Table:
        """The task's gaze from its recalibrated file, which must hold the stored samples."""
        import pyarrow.parquet as pq

        path = self._gaze_files.get(task_id)
        if path is None:  # never the database's rows beside the folder's
            raise UserError(f"{self.gaze_from['folder']} has no gaze of task {task_id} (written before that "
                            "task's rows were stored?): run gaze recalibrate again")
        if not path.is_file():
            raise UserError(f"{self.gaze_from['folder']} lists {path.name} for task {task_id}, but it is missing: "
                            "run gaze recalibrate again")
        try:
            tb = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise UserError(f"{path}: {e}") from None
        tb = tb.drop_columns([c for c in ("participant_id", "task_id") if c in tb.column_names])
        if tb.num_rows != stored.num_rows or not tb.column("t").equals(stored.column("t")):
            raise UserError(f"{path} does not hold task {task_id}'s stored gaze samples (made from other "
                            "rows?): run gaze recalibrate again")
        return tb

    def summary(self, progress: bool = False) -> dict:
        from .recording import summarize

        return {"format": "gazepref-db", **summarize(self),
                "participants_without_consent": self.participants_left_out()}

    def participants_left_out(self) -> int:
        """How many of the study's participants this recording leaves out (declined, not asked
        yet, withdrew, data deleted: :func:`gazepref.store.consenting`); a count, never who."""
        return store.participants_left_out(self.db, self.study.id)


def _bind_url(db: Session) -> str:
    try:
        return db.get_bind().url.render_as_string(hide_password=False)
    except Exception:  # noqa: BLE001 - a session without an engine (not expected)
        return ""


#: the columns of ``frames/frames.csv`` (:func:`export_frames`), keyed as the exported tables are
#: (``participant_id`` the pseudonym, ``task_id`` the exported task id); until 2026-12 they were
#: named participant, task, calibration (no reader of ours reads this index back).
#: ``clock_origin_epoch_ms``: the page load a task frame was taken in (its
#: ``performance.timeOrigin``, Unix ms; ``t`` counts from it), ``epoch_ms`` = origin + ``t``,
#: ``t_task``: the frame's time on the task clock (as the streams' ``t``); empty for a calibration's
#: frames and where the page load is not known
FRAME_COLUMNS = ("participant_id", "task_id", "calibration_id", "kind", "seq", "index", "t",
                 "clock_origin_epoch_ms", "epoch_ms", "t_task", "file")


class _TaskFrameOrigins:
    """The page load (``clock_origin_epoch_ms``) of task ``task_id``'s frames, by (seq, page time
    ``t``): that of the task's gaze chunk ``seq`` holding a sample at ``t`` (a kept frame is stored
    with its chunk, one row a frame); None where no chunk or several page loads' chunks of that
    seq hold that time (two page loads sharing a seq). Reads the task's gaze chunks' keys and
    spans once and decodes a chunk only where two of one seq span ``t``: one task at a time."""

    def __init__(self, session: Session, task_id: int):
        C = store.StreamChunk
        self.session, self.task_id = session, task_id
        self.chunks: dict[int, list[tuple[int, float | None, float, float]]] = {}
        for cid, seq, origin, t0, t1 in session.execute(
                select(C.id, C.seq, C.clock_origin_epoch_ms, C.t_start, C.t_end)
                .where(C.task_id == task_id, C.stream == "gaze")):
            self.chunks.setdefault(seq, []).append((cid, origin, t0, t1))
        self.times: dict[int, set[float]] = {}

    def _holds(self, cid: int, t: float) -> bool:
        if cid not in self.times:
            C = store.StreamChunk
            columns, raw_size, data = self.session.execute(
                select(C.columns, C.raw_size, C.data).where(C.id == cid)).one()
            self.times[cid] = set(store.decode_chunk("gaze", columns, raw_size, data).column("t").to_pylist())
        return t in self.times[cid]

    def __call__(self, seq: int, t: float) -> float | None:
        near = [c for c in self.chunks.get(seq, ()) if c[2] <= t <= c[3]]
        if len(near) > 1:
            near = [c for c in near if self._holds(c[0], t)]
        origins = {c[1] for c in near}
        return origins.pop() if len(origins) == 1 else None


#: frames read from the database at a time by :func:`export_frames` (each ~8-10 KB)
FRAMES_PER_FETCH = 200


def export_frames(session: Session, study: store.Study, out_dir: str | Path) -> int:
    """Write the study's kept webcam frames (consenting participants) as JPEG files under
    ``out_dir/frames/<pseudonym>/`` (``task<task id>/<seq>-<index>.jpg``; a later page load's frame of
    the same seq and index ``<seq>-<index>-t<t>.jpg``, ``-2``, ``-3`` ... after it should that be taken too;
    ``<calibration|validation><id>/<index>.jpg``) and an index ``frames/frames.csv`` with the
    columns :data:`FRAME_COLUMNS` (``participant_id``: the pseudonym; ``task_id``: the exported task
    id ``<pseudonym>/<task id>``, empty for a calibration's frames; ``calibration_id``: the
    calibration or validation round, empty for a task's; ``t``: page clock ms; a task frame's page
    load, Unix time and task-clock time: :data:`FRAME_COLUMNS`). Returns the number of frames; writes nothing when there are none.
    ``task_id`` is the exported task id in both layouts (the IFLLM layout's ``user_behavior/<worker>/<task>``
    keeps it: worker = pseudonym, task = the id). A ``frames/`` folder left by an earlier
    export into the same folder is removed first, so a deleted participant's pictures do not
    outlive them there."""
    P, F, C, T = store.Participant, store.GazeFrame, store.Calibration, store.Task
    # streamed (yield_per): neither the pictures nor the index rows are all held at once; the
    # page loads of one task's frames at a time (the rows come task by task)
    rows = session.execute(
        select(P.pseudonym, F.task_id, F.calibration_id, C.kind, F.seq, F.index, F.t, F.data, T.clock_anchor_epoch_ms)
        .join(P, F.participant_id == P.id).outerjoin(C, F.calibration_id == C.id).outerjoin(T, F.task_id == T.id)
        .where(store.consenting(study.id))
        .order_by(P.pseudonym, F.task_id, F.calibration_id, F.seq, F.index, F.id)  # (id: page loads in order)
        .execution_options(yield_per=FRAMES_PER_FETCH)
    )
    root = Path(out_dir) / "frames"
    if root.is_dir():
        shutil.rmtree(root)
    n = 0
    with contextlib.ExitStack() as stack:
        index = None
        origins: _TaskFrameOrigins | None = None
        written: set[str] = set()  # (the current task's files)
        for pseudonym, task_id, cal_id, kind, seq, i, t, data, anchor in rows:
            when: tuple = ("", "", "")
            if task_id is not None:
                if origins is None or origins.task_id != task_id:
                    origins, written = _TaskFrameOrigins(session, task_id), set()
                origin = origins(seq, t)
                if origin is not None:  # (on the task clock as the streams are: store.task_clock_shift)
                    when = (origin, origin + t, "" if anchor is None else t + store.task_clock_shift(origin, anchor))
                rel = f"{pseudonym}/task{task_id}/{seq:06d}-{i:02d}.jpg"
                # two page loads' chunks of one seq (a reload that lost its counter): the later frames
                # named by their page time too, and by their turn where that is taken as well
                again = 1
                while rel in written:
                    extra = f"-{again}" if again > 1 else ""
                    rel = f"{pseudonym}/task{task_id}/{seq:06d}-{i:02d}-t{t:.2f}{extra}.jpg"
                    again += 1
                written.add(rel)
                task, cal, kind = exported_task_id(pseudonym, task_id), "", "task"
            else:
                rel, task, cal = f"{pseudonym}/{kind}{cal_id}/{i:04d}.jpg", "", str(cal_id)
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if index is None:
                index = csv.writer(stack.enter_context(open(root / "frames.csv", "w", newline="", encoding="utf-8")))
                index.writerow(FRAME_COLUMNS)
            index.writerow((pseudonym, task, cal, kind, seq, i, t, *when, f"frames/{rel}"))
            n += 1
    return n
