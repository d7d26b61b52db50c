"""A study in the site's database, seen as a :class:`~gazepref.datasets.recording.Recording`."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, scoped_session, selectinload

from .. import UserError, schema, store
from .derive import derive_streams


class StoreRecording:
    """Participants who consented, their tasks, turns and streams, with pseudonymous ids only.

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
        except OperationalError as e:
            raise UserError(f"cannot read the database {store.safe_url(url)}: {e.orig}") from None
        return cls(db, study, url)

    def close(self) -> None:
        """Give the database connections back (e.g. before forking workers, which then open their
        own); the recording stays usable and reconnects when read again. A recording made on a
        session it was given (the site's) leaves that session and its engine alone."""
        if isinstance(self.db, scoped_session):  # opened by :meth:`open`: its own engine
            self.db.remove()
            self.db.session_factory.kw["bind"].dispose()

    def _participants(self) -> list[store.Participant]:
        return list(self.db.scalars(
            select(store.Participant)
            .where(store.Participant.study_id == self.study.id, store.Participant.consent.is_(True))
            .options(selectinload(store.Participant.tasks).selectinload(store.Task.turns)
                     .selectinload(store.Turn.responses))
            .order_by(store.Participant.id)
        ))

    def demographics(self) -> list[tuple[str, dict]]:
        """``(pseudonym, answers)`` of the consenting participants who answered the demographics
        questions. Never part of the behaviour exports: see
        :func:`gazepref.datasets.export.export_demographics`."""
        rows = self.db.execute(
            select(store.Participant.pseudonym, store.Demographics.answers)
            .join(store.Demographics, store.Demographics.participant_id == store.Participant.id)
            .where(store.Participant.study_id == self.study.id, store.Participant.consent.is_(True))
            .order_by(store.Participant.id))
        return [(pseudonym, dict(answers or {})) for pseudonym, answers in rows]

    def participants(self) -> list[schema.Participant]:
        return [schema.Participant(p.pseudonym, self.study.slug, consented=True, platform=p.platform)
                for p in self._participants()]

    def _task_id(self, p: store.Participant, t: store.Task) -> str:
        return f"{p.pseudonym}/{t.id}"

    def tasks(self) -> list[schema.Task]:
        out = []
        for p in self._participants():
            for t in p.tasks:
                tid = self._task_id(p, t)
                self._tasks[tid] = t
                self._task_turns[tid] = sorted(self._turns_of(p, t), key=lambda u: u.index)
                out.append(schema.Task(
                    task_id=tid, participant_id=p.pseudonym, study_id=self.study.slug, kind=t.kind,
                    topic=t.topic, clock_anchor_epoch_ms=t.clock_anchor_epoch_ms,
                    finished=t.finished_at is not None, feedback_text=t.feedback_text,
                    # IFLLM's task table keeps the time ("finished", UTC): the same key as its reader
                    answers={**(t.answers or {}), **({"finished": t.finished_at.strftime("%Y-%m-%d %H:%M:%S")}
                                                     if t.finished_at is not None else {})},
                ))
        return out

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
            if tb.num_rows:
                raw[name] = tb
        return derive_streams(raw, self._task_turns[task_id], clock="t")

    def summary(self, progress: bool = False) -> dict:
        from .recording import summarize

        return {"format": "gazepref-db", **summarize(self)}


def _bind_url(db: Session) -> str:
    try:
        return db.get_bind().url.render_as_string(hide_password=False)
    except Exception:  # noqa: BLE001 - a session without an engine (not expected)
        return ""
