"""A study in the site's database, seen as a :class:`~gazepref.datasets.recording.Recording`."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from .. import UserError, schema, store
from .derive import derive_streams


def default_db_url(instance: str | os.PathLike | None = None) -> str:
    folder = Path(instance or os.environ.get("GAZEPREF_INSTANCE") or Path.cwd() / "instance")
    return f"sqlite:///{(folder / 'gazepref.sqlite').resolve()}"


class StoreRecording:
    """Participants who consented, their tasks, turns and streams, with pseudonymous ids only.

    Task ids are ``<pseudonym>/<task number>``; streams are derived
    (:func:`gazepref.datasets.derive.derive_streams`): a ``turn`` column from the turns'
    ``t_shown`` times on the task clock, and the word under each gaze and mouse sample from the
    recorded layout.
    """

    def __init__(self, db: Session, study: store.Study):
        self.db = db
        self.study = study
        self._tasks: dict[str, store.Task] = {}

    @classmethod
    def open(cls, slug: str, db_url: str | None = None, instance: str | None = None) -> StoreRecording:
        url = db_url or default_db_url(instance)
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
            raise UserError(f"no database at {url[len('sqlite:///'):]} (give --db or --instance)")
        db = store.init_db(store.make_engine(url))()
        study = db.scalar(select(store.Study).where(store.Study.slug == slug))
        if study is None:
            known = ", ".join(db.scalars(select(store.Study.slug))) or "none"
            raise UserError(f"no study {slug!r} in the database (studies: {known})")
        return cls(db, study)

    def _participants(self) -> list[store.Participant]:
        return list(self.db.scalars(
            select(store.Participant)
            .where(store.Participant.study_id == self.study.id, store.Participant.consent.is_(True))
            .options(selectinload(store.Participant.tasks).selectinload(store.Task.turns)
                     .selectinload(store.Turn.responses))
            .order_by(store.Participant.id)
        ))

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
                out.append(schema.Task(
                    task_id=tid, participant_id=p.pseudonym, study_id=self.study.slug, kind=t.kind,
                    topic=t.topic, clock_anchor_epoch_ms=t.clock_anchor_epoch_ms,
                    finished=t.finished_at is not None, feedback_text=t.feedback_text, answers=dict(t.answers or {}),
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
        turns = sorted(self._turns_of(task.participant, task), key=lambda u: u.index)
        return derive_streams(raw, turns, clock="t")

    def summary(self, progress: bool = False) -> dict:
        from .recording import summarize

        return {"format": "gazepref-db", **summarize(self)}
