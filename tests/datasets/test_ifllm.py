"""The IFLLM reader on a synthetic release with every quirk, and on the real sample."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gazepref import UserError, schema
from gazepref.cli import main
from gazepref.datasets.ifllm import open_release, read_rel

from .synthetic_ifllm import build


@pytest.fixture
def release(tmp_path: Path):
    facts = build(tmp_path / "rel")
    return open_release(tmp_path / "rel"), facts


def test_turns_map_preferences_and_clean_quirks(release):
    rel, _ = release
    turns = {t.turn_id: t for t in rel.turns()}
    assert turns["10"].pairwise and turns["10"].choice == schema.RIGHT  # 2.0 = right
    assert turns["11"].choice == schema.LEFT  # 1.0 = left
    assert turns["10"].responses[1].model == "deepseek-ai/DeepSeek-V3"  # CR-LF removed
    assert turns["10"].modifiers == ["respond using bullet points"]
    assert turns["10"].prompt_sent.endswith(" respond using bullet points")
    assert turns["11"].modifiers == [] and turns["11"].prompt_sent == turns["11"].prompt
    assert not turns["12"].pairwise and turns["12"].better_than_previous is None  # NaN on first
    assert turns["13"].better_than_previous is False  # 0.0 = worse
    assert turns["13"].epoch_ms is None  # 0000-00-00 tolerated
    assert [turns["10"].index, turns["11"].index] == [0, 1]
    assert turns["11"].context[0] == {"role": "user", "content": "capital of France?"}
    assert turns["10"].responses[0].likert == 4 and turns["12"].responses[0].likert == 4


def test_tasks_include_registrations_without_queries(release):
    rel, _ = release
    tasks = {t.task_id: t for t in rel.tasks()}
    assert set(tasks) == {"worker_aaa/1", "worker_aaa/2", "worker_bbb/1"}
    assert tasks["worker_aaa/1"].kind == "pairwise" and tasks["worker_aaa/2"].kind == "pointwise"
    assert tasks["worker_aaa/1"].calibration_accuracy == 78
    assert rel.streams("worker_bbb/1") == {}
    with pytest.raises(UserError):
        rel.streams("worker_zzz/9")


def test_streams_dedup_malformed_and_six_columns(release):
    rel, facts = release
    s = rel.streams("worker_aaa/1")
    assert s["gaze"].num_rows == facts["pairwise_gaze_unique"]  # doubled rows dropped
    t = s["gaze"].column("t").to_numpy()
    assert np.all(np.diff(t) > 0)
    assert rel.report.skipped["rel_gaze_two"] == facts["malformed"]
    p = rel.streams("worker_aaa/2")
    hits = p["hits"]
    assert set(hits.column("camera_ok").to_pylist()) == {-1}  # 6-column file: unknown
    assert hits.filter(hits.column("char_index").to_numpy() >= 0).num_rows == 50


def test_rel_lines_are_records_even_when_a_window_ends_in_a_quote(tmp_path: Path):
    """IFLLM wrote the window as '"' + text + '"' without escaping: a window ending in '"' reads
    '"protect""', which a CSV parser takes for an escaped quote, running the field on over the
    next lines. Every line is one record; only lines that do not parse are skipped, counted."""
    f = tmp_path / "rel_gaze_two.csv"
    f.write_text(
        '655.32,193.23,"protect"",375,259708,1,1764201292829\n'  # window ends in a quote
        "-1,-1,,,259750,1,1764201292871\n"
        '388.32,184.02,"toward "work-first"",436,259800,1,1764201292920\n'  # inner quotes
        '10,20,"a, b",3,259850,0,1764201292970\n'  # comma in the window
        "11,21,019, 2023),5,259900,,1764201293020\n"  # unquoted window with a comma; no camera value
        '5,6,"x",notanumber,259950,1,1764201293070\n'  # text for a number: malformed
        "7,8\n"  # truncated: malformed
        '12,22,"plain",7,260000,1,1764201293120\n'
    )
    tb, bad = read_rel(f)
    assert bad == 2
    assert tb.column("t").to_pylist() == [259708, 259750, 259800, 259850, 259900, 260000]  # file order
    assert tb.column("window").to_pylist() == ['protect"', "", 'toward "work-first"', "a, b", "019, 2023)", "plain"]
    assert tb.column("char_index").to_pylist() == [375, -1, 436, 3, 5, 7]
    assert tb.column("x").to_pylist() == [655.3200073242188, -1, 388.32000732421875, 10, 11, 12]
    assert tb.column("camera_ok").to_pylist() == [1, 1, 1, 0, -1, 1]
    assert tb.column("epoch_ms").to_pylist()[0] == 1764201292829


def test_rel_reads_csv_escaped_windows_and_six_columns(tmp_path: Path):
    """What a CSV writer makes of a window (our exports): inner quotes doubled, a line break
    inside a quoted field — read back as written. 6-column files have no camera value."""
    f = tmp_path / "rel_mouse.csv"
    with open(f, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerows([(1.5, 2, 'say "hi"', 4, 100, 1700000000100), (-1, -1, "", "", 200, 1700000000200),
                     (3, 4, "two\nlines,\nthree", 9, 300, 1700000000300), (5, 6, "ok", 1, 400, 1700000000400)])
    tb, bad = read_rel(f)
    assert bad == 0
    assert tb.column("window").to_pylist() == ['say "hi"', "", "two\nlines,\nthree", "ok"]
    assert tb.column("t").to_pylist() == [100, 200, 300, 400]
    assert set(tb.column("camera_ok").to_pylist()) == {-1}


def test_page_reload_keeps_the_sessions_apart(tmp_path: Path):
    """A reload restarts IFLLM's page timer inside a task folder while the epoch goes on: the
    later session's t is put after the earlier one's (the epoch gap between them kept), hits
    with it, so sorting by t no longer interleaves the two sessions."""
    build(tmp_path / "r")
    d = tmp_path / "r" / "user_behavior" / "worker_aaa" / "2"
    e0 = 1_760_000_000_000
    # session 1: t 0..9.9 s; reload; session 2 starts 3 s of epoch after the last sample, its
    # page timer at 500 ms when its first sample comes
    s1 = [(t, e0 + t) for t in range(0, 10_000, 100)]
    s2 = [(t, e0 + 9_900 + 3_000 + (t - 500)) for t in range(500, 8_000, 100)]
    rows = s1 + s2
    (d / "abs_gaze.csv").write_text("".join(f"{300 + i % 7},{400 + i % 5},{t},{e}\n" for i, (t, e) in enumerate(rows)))
    (d / "abs_mouse.csv").write_text("".join(f"{301 + i % 7},{401},{t},{e}\n" for i, (t, e) in enumerate(rows)))
    text = "Water boils at 100 degrees Celsius at sea level."
    (d / "rel_gaze.csv").write_text("".join(f'1,2,"{text[i % 40:i % 40 + 8]}",{i % 40},{t},{e}\n'
                                            for i, (t, e) in enumerate(rows)))
    (d / "rel_mouse.csv").write_text("".join(f"-1,-1,,,{t},{e}\n" for t, e in rows))
    rel = open_release(tmp_path / "r")
    raw = rel.read_folder("worker_aaa/2")
    for name in ("gaze", "mouse", "hits"):
        tb = raw[name]
        t, e = tb.column("t").to_numpy(), tb.column("epoch_ms").to_numpy()
        assert np.all(np.diff(t) >= 0)
        np.testing.assert_allclose(t, e - e0)  # on the folder's clock: the sessions in epoch order
    assert set(raw["hits"].column("t").to_pylist()) == set(raw["gaze"].column("t").to_pylist())
    assert rel.report.page_reloads == 1
    assert rel.summary()["page_reloads_fixed"] == 1


@pytest.mark.parametrize("offset", [0, 4, -4])
def test_hour_offset_detected_and_turns_assigned(tmp_path: Path, offset: int):
    build(tmp_path / "r", hour_offset=offset)
    rel = open_release(tmp_path / "r")
    assert rel.clock_offset_hours("worker_aaa/1") == -offset  # what to add to the timestamps
    g = rel.streams("worker_aaa/1")["gaze"]
    t, turn = g.column("t").to_numpy(), g.column("turn").to_numpy()
    assert np.all(turn[t < 5_000] == -1)
    assert np.all(turn[(t >= 5_000) & (t < 20_000)] == 0)
    assert np.all(turn[t >= 20_000] == 1)


def test_summary_counts_synthetic(release):
    rel, facts = release
    s = rel.summary()
    assert s["participants"] == 2 and s["tasks"] == 3 and s["turns"] == 4
    assert (s["pairwise_turns"], s["pairwise_turns_labelled"], s["pointwise_turns"]) == (2, 2, 2)
    assert s["gaze_samples"] == facts["pairwise_gaze_unique"] + facts["pointwise_gaze"]
    assert s["mouse_samples"] == facts["mouse"]
    assert s["malformed_rows_skipped"] == facts["malformed"]


def test_layout_errors_are_user_errors(tmp_path: Path, capsys):
    with pytest.raises(UserError, match="no such folder"):
        open_release(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="query_logs_table.csv"):
        open_release(tmp_path / "empty")
    assert main(["data", "summary", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gazepref: error:")


_NUM = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_REL_LINE = {  # one record per line; the window (anything, commas and quotes included) in the middle
    7: re.compile(rf"^{_NUM},{_NUM},.*,(?:-?\d+)?,{_NUM},(?:-?\d+)?,{_NUM}$"),
    6: re.compile(rf"^{_NUM},{_NUM},.*,(?:-?\d+)?,{_NUM},{_NUM}$"),
}


def _independent_counts(root: Path) -> dict:
    """Counts computed with the csv and re modules alone, as an oracle for the reader."""
    with open(root / "query_logs_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pairwise = [r for r in rows if r["llm_response_2"]]
    gaze = mouse = malformed = 0
    for d in (root / "user_behavior").glob("*/*"):
        gaze += len(set((d / "abs_gaze.csv").read_text().splitlines()))
        mouse += len((d / "abs_mouse.csv").read_text().splitlines())
        for f in d.glob("rel_*.csv"):
            lines = [ln for ln in f.read_text().split("\n") if ln]
            plain = [ln.count(",") + 1 for ln in lines if '"' not in ln]  # rows outside the box
            width = max(set(plain), key=plain.count)
            malformed += sum(not _REL_LINE[width].match(ln) for ln in lines)
    return {
        "turns": len(rows),
        "pairwise_turns": len(pairwise),
        "pairwise_turns_labelled": sum(r["preference"] in ("1.0", "2.0") for r in pairwise),
        "pointwise_turns": len(rows) - len(pairwise),
        "gaze_samples": gaze,
        "mouse_samples": mouse,
        "malformed_rows_skipped": malformed,
    }


def test_summary_on_real_sample_matches_independent_count(ifllm_sample: Path, capsys):
    assert main(["data", "summary", str(ifllm_sample), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    expected = _independent_counts(ifllm_sample)
    assert {k: got[k] for k in expected} == expected
    assert got["participants"] == 6 and got["tasks_with_samples"] == 11


def test_real_sample_alignment_fits_the_text(ifllm_sample: Path):
    """Once aligned, on-text char_index values fit the assigned response's length."""
    rel = open_release(ifllm_sample)
    by_task = rel.turns_by_task()
    fit = total = 0
    for tid in rel.behavior_dirs:
        turns = by_task[tid]
        h = rel.streams(tid)["hits"]
        ci, turn, pos = (h.column(c).to_numpy() for c in ("char_index", "turn", "position"))
        on = (ci >= 0) & (turn >= 0)
        lengths = np.array([[len(t.responses[p].text) if p < len(t.responses) else 0 for p in (0, 1)]
                            for t in turns])
        fit += int((ci[on] <= lengths[turn[on], pos[on]]).sum())
        total += int(on.sum())
    assert total > 10_000 and fit / total > 0.99


def test_empty_trajectory_files_are_empty_streams(release):
    """A 0-byte trajectory file (a batch never written, a truncated copy) holds no samples: the
    folder is read as if the file held none, instead of pyarrow's 'Empty CSV file' traceback."""
    rel, _ = release
    folder = next(d for d in (rel.root / "user_behavior").glob("*/*") if (d / "rel_gaze_one.csv").exists())
    task_id = f"{folder.parent.name}/{folder.name}"
    before = rel.read_folder(task_id)
    for f in folder.glob("*.csv"):
        if f.name != "abs_mouse.csv":
            f.write_bytes(b"")
    fresh = open_release(rel.root)
    out = fresh.read_folder(task_id)
    assert out["gaze"].num_rows == 0 and out["mouse"].num_rows == before["mouse"].num_rows
    assert out["hits"].num_rows == 0 and out["hits"].schema.equals(before["hits"].schema)
    assert fresh.summary()["malformed_rows_skipped"] == 0
    for f in folder.glob("*.csv"):
        f.write_bytes(b"")
    assert open_release(rel.root).read_folder(task_id)["mouse"].num_rows == 0


@pytest.mark.parametrize("table", ["query_logs_table.csv", "task_table.csv", "record_info_table.csv"])
def test_empty_tables_are_user_errors(release, table, capsys):
    rel, _ = release
    (rel.root / table).write_bytes(b"")
    assert main(["data", "summary", str(rel.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and table in err[0] and "empty" in err[0]


def test_demographics_are_the_record_tables_answers_of_consenting_workers(tmp_path: Path):
    build(tmp_path / "rel")
    with open(tmp_path / "rel" / "record_info_table.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "consent", "age", "gender", "inserted_at"])
        w.writerow(["worker_aaa", 1, 30, "", "2025-10-15 11:56:46"])  # a blank answer is left out
        w.writerow(["worker_bbb", 0, 41, "Female", "2025-10-15 11:57:00"])  # declined: never exported
    rel = open_release(tmp_path / "rel")
    assert rel.demographics() == [("worker_aaa", {"age": 30})]


def test_an_exported_calibrations_attempts_read_back_as_a_count(tmp_path: Path):
    """Our export's calibration columns of the task table read back into ``Task.calibration``; the
    attempts are a count (a column with a blank, a participant without a camera, reads as floats)."""
    import pandas as pd

    from gazepref.datasets.ifllm import TASK_CALIBRATION_COLUMNS

    build(tmp_path / "rel")
    table = tmp_path / "rel" / "task_table.csv"
    tt = pd.read_csv(table, dtype={"user_id": str})
    values = dict(zip(TASK_CALIBRATION_COLUMNS, [180.5, 4.2, 20.0, 0.1, 2, True]))
    tt = tt.assign(**{c: [v] + [None] * (len(tt) - 1) for c, v in values.items()})
    tt.to_csv(table, index=False)
    calibrations = [t.calibration for t in open_release(tmp_path / "rel").tasks()]
    (cal,) = [c for c in calibrations if c is not None]
    assert cal["attempts"] == 2 and type(cal["attempts"]) is int and cal["passed"] is True
    assert cal["accuracy_px"] == 180.5 and cal["data_loss"] == 0.1
