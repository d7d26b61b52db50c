"""Which task the turn views draw without ``--task``: the same one for a study, its Parquet export
and its IFLLM export (:func:`gazepref.datasets.recording.task_order_key`)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from gazepref import store
from gazepref.cli import main
from gazepref.datasets.export import export_ifllm, export_parquet
from gazepref.datasets.recording import open_recording
from gazepref.datasets.store_recording import StoreRecording
from gazepref.signals.plots._data import resolve_task


def _study(tmp_path: Path) -> str:
    """Two participants, signed up in the reverse of their pseudonyms' order, one answered pairwise
    turn each, with pointer samples: the study keeps sign-up order, the IFLLM layout sorts."""
    url = store.sqlite_url(tmp_path / "site.sqlite")
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        study = store.Study(slug="pilot", name="Pilot", salt="s3cret")
        db.add(study)
        for pseudonym in ("p_zz", "p_aa"):
            p = store.Participant(study=study, pseudonym=pseudonym, platform="prolific", consent=True)
            task = store.Task(participant=p, kind="pairwise", topic="France", clock_anchor_epoch_ms=1.7e12)
            turn = store.Turn(task=task, index=0, kind="pairwise", prompt="capital?", prompt_sent="capital?", choice=1,
                              epoch_ms=1.7e12 + 1000, t_shown=1000.0, t_decided=9000.0,
                              responses=[store.Response(position=0, model="a", text="Paris.", likert=3),
                                         store.Response(position=1, model="b", text="It is Paris.", likert=5)])
            db.add_all([p, task, turn])
            db.flush()
            mouse = pa.table({"t": [1500.0, 2500.0, 3500.0], "x": [100.0, 200.0, 300.0], "y": [400.0, 420.0, 440.0]})
            db.add(store.make_chunk(task.id, "mouse", 0, mouse, clock_origin_epoch_ms=1.7e12))
        db.commit()
    return url


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, list[str]]:
    """SOURCE arguments of `gazepref plot`: the study, its Parquet export, its IFLLM export."""
    tmp = tmp_path_factory.mktemp("study")
    url = _study(tmp)
    rec = StoreRecording.open("pilot", db_url=url)
    export_parquet(rec, tmp / "pq")
    export_ifllm(rec, tmp / "ifl")
    return {"study": ["pilot", "--db", url], "parquet": [str(tmp / "pq")], "ifllm": [str(tmp / "ifl")]}


@pytest.mark.parametrize("source", ["study", "parquet", "ifllm"])
def test_default_task_is_the_same_for_a_study_and_its_exports(sources, source, tmp_path, capsys):
    # the task the IFLLM layout (sorted by worker, then task number) would list first
    ifl = open_recording(sources["ifllm"][0])
    expected = ifl.tasks()[0].task_id
    assert expected.startswith("p_aa/")
    assert main(["plot", "mouse", *sources[source], "--out", str(tmp_path / "m.png"), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["task_id"] == expected and said["turn"] == 0


def test_resolve_task_on_the_sample_is_the_readers_first(ifllm_sample):
    rec = open_recording(ifllm_sample)
    by_task = rec.turns_by_task()
    assert resolve_task(rec) == next(t.task_id for t in rec.tasks() if by_task.get(t.task_id))
