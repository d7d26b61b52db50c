"""A study in the site's database, seen as a :class:`~gazepref.datasets.recording.Recording`."""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, scoped_session, selectinload

from .. import UserError, schema, store
from .recording import assign_turns_by_clock


class StoreRecording:
    """Participants who consented, their tasks, turns and streams, with pseudonymous ids only.

    Task ids are ``<pseudonym>/<task number>``; every stream gets a ``turn`` column from the turns'
    ``t_shown`` times on the task clock. Open one by slug with :meth:`open` (or through
    :func:`gazepref.datasets.sources.open_source`); ``url`` is then the database it reads.
    """

    def __init__(self, db: Session, study: store.Study, url: str | None = None):
        self.db = db
        self.study = study
        self.url = url if url is not None else _bind_url(db)
        self._tasks: dict[str, store.Task] = {}

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
        out = []
        for p in self._participants():
            for t in p.tasks:
                for u in t.turns:
                    out.append(schema.Turn(
                        turn_id=str(u.id), task_id=self._task_id(p, t), participant_id=p.pseudonym,
                        index=u.index, kind=u.kind, prompt=u.prompt,
                        responses=[schema.Response(r.position, r.model, r.text, r.likert) for r in u.responses],
                        prompt_sent=u.prompt_sent, modifiers=list(u.modifiers or []), context=list(u.context or []),
                        choice=u.choice, choice_strength=u.choice_strength,
                        better_than_previous=u.better_than_previous, feedback_text=u.feedback_text,
                        epoch_ms=u.epoch_ms, t_shown=u.t_shown, t_decided=u.t_decided,
                    ))
        return out

    def turns_by_task(self) -> dict[str, list[schema.Turn]]:
        from .recording import turns_by_task

        return turns_by_task(self)

    def streams(self, task_id: str, cache: bool = True) -> dict[str, pa.Table]:
        if not self._tasks:
            self.tasks()
        task = self._tasks.get(task_id)
        if task is None:
            raise UserError(f"no task {task_id!r} in study {self.study.slug!r}")
        shown = [u.t_shown for u in task.turns]
        out = {}
        for name in schema.STREAMS:
            if name == "hits":
                continue
            tb = store.read_stream(self.db, task, name)
            if not tb.num_rows:
                continue
            derived = pa.array(assign_turns_by_clock(tb.column("t").to_numpy(), shown), pa.int32())
            if "turn" in tb.column_names:  # layout rows carry the turn they were recorded for
                tb = tb.set_column(tb.schema.get_field_index("turn"), "turn", pc.coalesce(tb.column("turn"), derived))
            else:
                tb = tb.append_column("turn", derived)
            out[name] = tb
        if "layout" in out:
            hits = self._hits(task, out)
            if hits is not None:
                out["hits"] = hits
        return out

    @staticmethod
    def _hits(task: store.Task, streams: dict[str, pa.Table]) -> pa.Table | None:
        """Gaze and mouse samples relative to the response boxes and the character under them
        (the ``hits`` stream; IFLLM's rel_* files), from the layout's word boxes."""
        from .text_mapping import hits_stream

        texts = {(u.index, r.position): r.text for u in task.turns for r in u.responses}
        layout = streams["layout"].to_pandas()
        scroll = streams["scroll"].to_pandas() if "scroll" in streams else None
        parts = []
        for source in ("gaze", "mouse"):
            if source in streams:
                s = streams[source].select(["t", "x", "y", "turn"]).to_pandas()
                s = s[s["x"].notna() & s["y"].notna()]
                h = hits_stream(s, layout, texts, scroll=scroll, source=source)
                if len(h):
                    parts.append(h)
        if not parts:
            return None
        df = pd.concat(parts, ignore_index=True).sort_values(["t", "source", "position"], kind="stable")
        anchor = task.clock_anchor_epoch_ms
        if anchor is not None:
            df["epoch_ms"] = df["t"] + anchor
        table = schema.conform("hits", pa.Table.from_pandas(df, preserve_index=False))
        turn = assign_turns_by_clock(df["t"].to_numpy(), [u.t_shown for u in task.turns])
        return table.append_column("turn", pa.array(turn, pa.int32()))

    def summary(self, progress: bool = False) -> dict:
        from .recording import summarize

        return {"format": "gazepref-db", **summarize(self)}


def _bind_url(db: Session) -> str:
    try:
        return db.get_bind().url.render_as_string(hide_password=False)
    except Exception:  # noqa: BLE001 - a session without an engine (not expected)
        return ""
