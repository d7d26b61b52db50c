"""The feature pipeline end to end: a synthetic IFLLM-layout release with known geometry (the
leakage tests) and the real IFLLM sample."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gazepref.datasets.ifllm import open_release
from gazepref.signals import feature_reference, features
from gazepref.signals.task_data import from_ifllm

E0 = 1_735_725_600_000  # 2025-01-01 10:00:00 UTC: the first query
T_OFF = 5000.0  # page timer at E0
LEFT_BOX, RIGHT_BOX = (20.0, 825.0), (842.0, 1647.0)
BOX_H = 400.0
TOPS = [300.0, 250.0]  # box top per turn (the page scrolled for the second turn)
TURN_START_S = [0.0, 60.0]
TURN_LEN_S = [60.0, 50.0]
TEXTS = [
    ["Left answer one. " * 30, "Right answer one, a bit longer. " * 30],
    ["Left answer two. " * 25, "Right answer two. " * 40],
]

#: (start s, end s, where) within a turn; where = 'prompt', 'left', 'right', 'controls', 'below'
SCRIPT = [(0, 5, "prompt"), (5, 25, "left"), (25, 40, "right"), (40, 45, "left"), (45, 52, "controls"),
          (52, 60, "below")]


def _pos_at(where: str, frac: float, turn: int, side_pick: str) -> tuple[float, float]:
    top = TOPS[turn]
    if where == "prompt":
        return 400.0 + 200 * frac, top - 150.0
    if where in ("left", "right"):
        x0 = (LEFT_BOX if where == "left" else RIGHT_BOX)[0]
        row = int(frac * 15)
        col = (frac * 15 - row) * 760
        return x0 + 20 + col, top + 10 + row * 20
    if where == "controls":  # "Which response did you like better? Left | Right"
        return (300.0 if side_pick == "left" else 1200.0), top + BOX_H + 60
    return 800.0, top + BOX_H + 110  # the next-message box


def _rel(x: float, y: float, box: tuple[float, float], top: float, text: str) -> list:
    rx, ry = x - box[0], y - top
    if not (0 <= rx < box[1] - box[0] and 0 <= ry < BOX_H):
        return [-1, -1, "", ""]
    c = int(ry // 20) * 76 + int(rx // 10)
    if c >= len(text) or rx >= 760:
        return [round(rx, 2), round(ry, 2), "", ""]
    return [round(rx, 2), round(ry, 2), text[max(0, c - 10): c + 10], c]


def write_release(root: Path, pick: str = "left", likert=((5, 3), (4, 4)), pref=(1.0, 1.0),
                  script=None, mouse_dx: float = 7.0) -> Path:
    """A one-task pairwise IFLLM-layout release. ``pick``: where the pointer and gaze go in the
    answer controls (below the boxes) — the explicit choice."""
    script = script or [SCRIPT, SCRIPT]
    root.mkdir(parents=True, exist_ok=True)
    w, task = "worker_synth", 1
    with open(root / "query_logs_table.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["query_ID", "user_id", "task_id", "user_query", "llm_response_1", "llm_response_2",
                     "llm_name_1", "llm_name_2", "likert_1", "likert_2", "preference", "adjustment",
                     "query_timestamp"])
        for k in range(2):
            ts = pd.Timestamp(E0 + TURN_START_S[k] * 1000, unit="ms").strftime("%Y-%m-%d %H:%M:%S")
            wr.writerow([100 + k, w, task, f"question {k}", TEXTS[k][0], TEXTS[k][1], "model-a", "model-b",
                         likert[k][0], likert[k][1], pref[k], 0, ts])
    with open(root / "task_table.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["user_id", "task_id", "copy_sentence", "summary", "feedback", "understand_before",
                     "understand_after", "query_copy", "llm_response_copy", "accuracy", "finished", "domain"])
        wr.writerow([w, task, "", "", "", 3, 4, "", "", 80, 1, "travel"])
    d = root / "user_behavior" / w / str(task)
    d.mkdir(parents=True, exist_ok=True)
    files = {n: open(d / f"{n}.csv", "w", newline="") for n in
             ("abs_gaze", "abs_mouse", "rel_gaze_one", "rel_gaze_two", "rel_mouse_left", "rel_mouse_right")}
    wrs = {n: csv.writer(f) for n, f in files.items()}
    rng = np.random.default_rng(0)
    for ms in np.arange(-4000, 110000, 70.0):
        k = 0 if ms < TURN_START_S[1] * 1000 else 1
        s = ms / 1000 - TURN_START_S[k]
        if s < 0:
            x, y = 500.0, 100.0
        else:
            where, frac = "below", 0.0
            for a, b, wh in script[k]:
                if a <= s < b:
                    where, frac = wh, (s - a) / (b - a)
            x, y = _pos_at(where, frac, k, pick)
        epoch = E0 + ms
        t = round(ms + T_OFF, 1)
        for src, (px, py) in (("gaze", (x + rng.normal(0, 3), y + rng.normal(0, 3))), ("mouse", (x + mouse_dx, y))):
            px, py = round(px, 2), round(py, 2)
            if src == "gaze":
                wrs["abs_gaze"].writerow([px, py, t, int(epoch)])
                wrs["abs_gaze"].writerow([px, py, t, int(epoch)])  # IFLLM writes every pairwise row twice
            else:
                wrs["abs_mouse"].writerow([int(px), int(py), t, int(epoch)])
            names = ("rel_gaze_one", "rel_gaze_two") if src == "gaze" else ("rel_mouse_left", "rel_mouse_right")
            for name, box, text in zip(names, (LEFT_BOX, RIGHT_BOX), TEXTS[k]):
                r = _rel(px, py, box, TOPS[k], text)
                wrs[name].writerow(r[:2] + [r[2], r[3], t, 1, int(epoch + 1)])
    for f in files.values():
        f.close()
    return root


def _defaults(df: pd.DataFrame) -> pd.DataFrame:
    return df[features.default_feature_columns(df)]


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_defaults(a), _defaults(b), check_exact=False, rtol=1e-9)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    base = tmp_path_factory.mktemp("synth")
    return {
        "left": features.build(write_release(base / "left", pick="left"), jobs=1),
        "right": features.build(write_release(base / "right", pick="right", likert=((1, 5), (2, 3)),
                                              pref=(2.0, 2.0)), jobs=1),
        "root": base,
    }


def test_synthetic_release_known_split(synth):
    r = synth["left"]
    c = r.comparisons
    assert len(c) == 2 and len(r.responses) == 4
    row = c.iloc[0]
    # scripted: 25 s on the left (5-25, 40-45), 15 s on the right, 5 s on the prompt
    assert row["g_share_l"] == pytest.approx(25 / 40, abs=0.03)
    assert row["m_share_l"] == pytest.approx(25 / 40, abs=0.03)
    assert row["g_switches"] == 2 and row["g_first_side"] == 0 and row["g_last_side"] == 0
    assert row["g_prompt_ms"] == pytest.approx(5000, rel=0.05)
    assert row["l_g_dwell_ms"] == pytest.approx(25000, rel=0.03)
    assert row["r_g_dwell_ms"] == pytest.approx(15000, rel=0.03)
    assert row["l_g_depth"] > 0.5 and row["l_g_word_cov"] > 0.3
    assert row["l_sc_depth_px"] == 0  # no scrolling within the turn


def test_choice_region_does_not_leak(synth):
    """The two releases differ only in where gaze and pointer went in the answer controls (Left vs
    Right button) and in the ratings: every default feature is identical; the labels differ."""
    a, b = synth["left"], synth["right"]
    _assert_same(a.responses, b.responses)
    _assert_same(a.comparisons, b.comparisons)
    assert a.comparisons["label_choice"].tolist() == [0.0, 0.0]
    assert b.comparisons["label_choice"].tolist() == [1.0, 1.0]
    assert a.responses["label_likert"].tolist() != b.responses["label_likert"].tolist()


def test_samples_below_the_boxes_are_dropped(synth):
    rel = open_release(synth["root"] / "left")
    td = from_ifllm(rel, "worker_synth/1", None)
    cc = td.clean_counts
    # turn 0: 7 s controls + 8 s next-message box of 60 s; turn 1: 5 s controls of 50 s → 20/110
    dropped = 1 - cc["gaze_allowed_region"] / cc["gaze_in_turns"]
    assert 0.15 < dropped < 0.22
    assert not (td.gaze.y > np.array(TOPS)[td.gaze.turn] + BOX_H).any()
    assert not (td.mouse.y > np.array(TOPS)[td.mouse.turn] + BOX_H).any()


def test_the_leak_test_is_sensitive(tmp_path, synth):
    """Moving gaze/pointer *inside* the responses does change the features."""
    script = [[(0, 5, "prompt"), (5, 20, "left"), (20, 40, "right"), (40, 45, "right"), (45, 52, "controls"),
               (52, 60, "below")], SCRIPT]
    c = features.build(write_release(tmp_path / "x", script=script), jobs=1).comparisons
    assert c.iloc[0]["g_share_l"] < synth["left"].comparisons.iloc[0]["g_share_l"] - 0.1


def test_nothing_after_the_decision(tmp_path):
    """With a decision time (our site's recordings), samples after it never reach the features."""
    late_a = [(0, 5, "prompt"), (5, 25, "left"), (25, 40, "right"), (40, 60, "left")]
    late_b = [(0, 5, "prompt"), (5, 25, "left"), (25, 40, "right"), (40, 60, "right")]
    out = []
    for name, sc in (("a", late_a), ("b", late_b)):
        rel = open_release(write_release(tmp_path / name, script=[sc, sc]))
        for tr in rel.turns_by_task()["worker_synth/1"]:
            tr.t_decided = T_OFF + (TURN_START_S[tr.index] + 39.0) * 1000  # decided at 39 s
        rows = features.compute_task(from_ifllm(rel, "worker_synth/1", None))
        out.append(pd.DataFrame(rows[1]))
        for tr in rel.turns_by_task()["worker_synth/1"]:
            tr.t_decided = None
        out.append(pd.DataFrame(features.compute_task(from_ifllm(rel, "worker_synth/1", None))[1]))
    _assert_same(out[0], out[2])  # with the cut-off: identical
    assert out[1]["g_share_l"].iloc[0] > out[3]["g_share_l"].iloc[0] + 0.1  # without: different


def test_default_features_exclude_labels_task_and_post():
    df = pd.DataFrame(columns=["task_id", "turn", "position", "g_dwell_ms", "label_choice", "label_likert",
                               "task_n_turns", "post_fb_nof", "model", "d_g_fix_ms", "g_last_side",
                               "m_last_visit_ms", "gaze_d_share"])
    assert features.default_feature_columns(df) == ["g_dwell_ms", "d_g_fix_ms", "gaze_d_share"]


# --------------------------------------------------------------------------- the real sample


@pytest.fixture(scope="module")
def sample_result(ifllm_sample):
    return features.build(ifllm_sample, jobs=1)


def test_sample_end_to_end(sample_result, ifllm_sample):
    r = sample_result
    rel = open_release(ifllm_sample)
    turns = rel.turns()  # every turn, with or without trajectories (text measures, labels)
    assert len(r.responses) == sum(len(t.responses) for t in turns)
    no_traj = r.responses[~r.responses["task_id"].isin(list(rel.behavior_dirs))]
    assert len(no_traj) > 0 and no_traj["g_dwell_ms"].isna().all() and (no_traj["n_chars"] > 0).all()
    assert len(r.comparisons) == sum(t.pairwise for t in turns)
    assert r.comparisons["label_choice"].notna().sum() == sum(t.pairwise and t.choice is not None for t in turns)
    assert len(r.sentences) > 0
    # most responses were looked at; attention shares are shares
    assert (r.responses["g_dwell_ms"] > 0).mean() > 0.7
    s = r.comparisons["g_share_l"].dropna()
    assert len(s) > 10 and s.between(0, 1).all()
    assert r.stats["gaze_samples"] > 20000 and r.stats["gaze_samples_used"] > 0.4 * r.stats["gaze_samples"]
    # pointwise turns against the previous answer
    pw = [t for t in turns if not t.pairwise and t.index > 0]
    assert len(r.sequential) == len(pw) > 0
    assert r.sequential["label_better_than_previous"].notna().sum() == sum(t.better_than_previous is not None
                                                                           for t in pw)
    row = r.sequential.iloc[0]
    assert row["d_n_chars"] == row["c_n_chars"] - row["p_n_chars"]
    # the same on 2 processes
    r2 = features.build(ifllm_sample, jobs=2)
    pd.testing.assert_frame_equal(r.comparisons, r2.comparisons)


def test_every_column_is_documented(sample_result):
    for table, df in (("responses", sample_result.responses), ("comparisons", sample_result.comparisons),
                      ("sentences", sample_result.sentences), ("sequential", sample_result.sequential)):
        for c in df.columns:
            unit, doc = feature_reference.describe(table, c)
            assert doc
    # no default feature is a rating or a task-level aggregate
    for df in (sample_result.responses, sample_result.comparisons, sample_result.sequential):
        cols = features.default_feature_columns(df)
        assert not [c for c in cols if "likert" in c or "choice" in c or c.startswith(("task_", "label_"))]
        assert {"task_calibration_accuracy_px", "task_calibration_accuracy_pct", "task_calibration_passed"} <= set(df.columns)


def test_docs_are_generated():
    doc = Path(__file__).resolve().parents[2] / "docs" / "features.md"
    assert doc.read_text() == feature_reference.markdown()


def test_cli(ifllm_sample, tmp_path, capsys):
    """``gazepref features``: registered in the CLI, run through its own parser (so other areas'
    half-built command modules cannot break this test)."""
    import argparse

    from gazepref import UserError, cli
    from gazepref.signals import feature_commands

    assert "gazepref.signals.feature_commands" in cli.COMMAND_MODULES
    parser = argparse.ArgumentParser(prog="gazepref")
    feature_commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["features", str(ifllm_sample), "--out", str(tmp_path), "--jobs", "1", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["comparisons"] > 0 and out["default_features"]["comparisons"] > 100
    for name in ("responses", "comparisons", "sentences", "sequential"):
        assert (tmp_path / f"{name}.parquet").exists()
        assert f"{name}.parquet" in parser._subparsers._group_actions[0].choices["features"].description
    with pytest.raises(UserError):
        args = parser.parse_args(["features", str(tmp_path / "nope"), "--out", str(tmp_path)])
        args.func(args)


def test_text_feedback_hook(ifllm_sample, monkeypatch):
    """``--text-feedback`` adds post_fb_* (the next message, classified by the text-feedback
    engineer's classifier); they are post-decision data and never default features."""
    tf = pytest.importorskip("gazepref.signals.text_feedback")
    seen = []

    def fake(records, **kw):
        seen.extend(records)
        return [{"nof": "none", "sat": "neutral", "ordinal": 3, "confidence": 0.9} for _ in records]

    monkeypatch.setattr(tf, "classify_feedback", fake)
    r = features.build(ifllm_sample, jobs=1, sentences=False, text_feedback=True)
    assert {"post_fb_nof", "post_fb_ordinal"} <= set(r.responses.columns)
    assert seen and all({"prev_query", "prev_response", "next_query"} <= set(x) for x in seen)
    assert not [c for c in features.default_feature_columns(r.responses) if c.startswith("post_")]
    # the last turn of a task has no next message
    last = r.responses.groupby("task_id")["turn"].transform("max") == r.responses["turn"]
    assert r.responses.loc[last, "post_fb_nof"].isna().all()


# --------------------------------------------------------------------------- our site's streams


def _site_streams(pick: str, late_side: str = "left"):
    """One pairwise turn recorded by our site: two response elements (y 200-600) with one line of
    10 word boxes each; controls at y 650. Gaze reads left 4 s, right 2 s, then goes to the
    ``pick`` button; after the decision (t = 10 s) it looks at ``late_side``."""
    import pyarrow as pa

    from gazepref import schema

    text = " ".join(f"w{i:02d}" for i in range(10))  # words 4 chars apart
    lay = []
    for p, ex in ((0, 20.0), (1, 700.0)):
        lay.append(dict(t=0.0, target=f"response:{p}", kind="element", index=-1, char_start=-1, char_end=-1,
                        x=ex, y=200.0, w=600.0, h=400.0, turn=0))
        for i in range(10):
            lay.append(dict(t=0.0, target=f"response:{p}", kind="word", index=i, char_start=4 * i,
                            char_end=4 * i + 3, x=10.0 + 55 * i, y=10.0, w=50.0, h=20.0, turn=0))
    t = np.arange(0, 14000, 50.0)
    x = np.full(len(t), 300.0)
    y = np.full(len(t), 100.0)  # the prompt, above the responses
    read_l = (t >= 1000) & (t < 5000)
    read_r = (t >= 5000) & (t < 7000)
    x[read_l] = 20 + 10 + 55 * ((t[read_l] - 1000) // 400) + 20
    x[read_r] = 700 + 10 + 55 * ((t[read_r] - 5000) // 200) + 20
    y[read_l | read_r] = 200 + 20
    ctl = (t >= 8000) & (t < 10000)
    x[ctl], y[ctl] = (300.0 if pick == "left" else 1000.0), 650.0
    late = t >= 10000
    x[late], y[late] = (100.0 if late_side == "left" else 800.0), 220.0
    gaze = pa.table({"t": t, "x": x.astype(np.float32), "y": y.astype(np.float32)})
    mouse = pa.table({"t": t, "x": (x + 3).astype(np.float32), "y": y.astype(np.float32)})
    turn = schema.Turn("t1", "site/1", "p1", 0, "pairwise", "q", [schema.Response(0, "a", text, 4),
                       schema.Response(1, "b", text, 2)], choice=0 if pick == "left" else 1,
                       t_shown=500.0, t_decided=10000.0)
    streams = {"gaze": gaze, "mouse": mouse, "layout": pa.Table.from_pandas(pd.DataFrame(lay), preserve_index=False)}
    return [turn], streams


def test_site_streams_pipeline_and_no_leakage():
    from gazepref.signals.task_data import from_streams

    rows = {}
    for pick, late in (("left", "left"), ("right", "right")):
        turns, streams = _site_streams(pick, late)
        td = from_streams("site/1", "p1", turns, streams)
        rows[pick] = pd.DataFrame(features.compute_task(td)[1])
    a, b = rows["left"], rows["right"]
    _assert_same(a, b)  # controls and post-decision samples differ, the features do not
    assert a["label_choice"].iloc[0] == 0 and b["label_choice"].iloc[0] == 1
    row = a.iloc[0]
    assert row["g_share_l"] == pytest.approx(4 / 6, abs=0.02)
    # the pointer went over every word; fixations (I-DT, 100 px) merge neighbouring 55 px words
    assert row["l_m_word_cov"] == pytest.approx(1.0) and row["r_m_word_cov"] == pytest.approx(1.0)
    assert row["l_g_word_cov"] >= 0.5 and row["r_g_word_cov"] >= 0.5
    assert row["g_last_side"] == 1  # the right response was read last before the decision
    assert row["g_prompt_ms"] == pytest.approx(500 + 1000, abs=60)  # 0.5-1 s and 7-8 s above


def test_the_site_gaze_camera_ok_share_comes_from_the_rows_flags():
    """The site's gaze rows have no IFLLM camera_green, but their flags say whether the camera
    showed the face usably: ``g_camera_ok_share`` is the share of the turn's samples without no
    face, several faces, a dark picture or a dropped frame (blur and blinks are the eyes, not the
    camera's view); rows without flags leave it unknown (NaN)."""
    import pyarrow as pa

    from gazepref import schema
    from gazepref.signals.task_data import from_streams

    turns, streams = _site_streams("left")
    g = streams["gaze"]
    (plain,) = features.compute_task(from_streams("site/1", "p1", turns, streams))[1]
    assert np.isnan(plain["g_camera_ok_share"])
    flags = np.zeros(g.num_rows, np.int32)
    flags[::4] = schema.GazeFlag.NO_FACE  # a sample in four, stored without a position (as the site does)
    flags[1::4] = schema.GazeFlag.BLINK | schema.GazeFlag.BLUR  # the eyes, not the camera's view
    x, y = g["x"].to_numpy().copy(), g["y"].to_numpy().copy()
    x[::4] = y[::4] = np.nan
    g = g.set_column(1, "x", pa.array(x)).set_column(2, "y", pa.array(y))
    flagged = dict(streams, gaze=g.append_column("flags", pa.array(flags)))
    (row,) = features.compute_task(from_streams("site/1", "p1", turns, flagged))[1]
    assert row["g_camera_ok_share"] == pytest.approx(0.75, abs=0.02)
    # the in-box family's alike: the rows without a face count (a review saw 1.0 once they were dropped)
    assert row["gaze_s_present"] == 1 and row["gaze_s_camera_ok"] == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize("calibrated", [True, False])
def test_a_failed_calibrations_gaze_rows_are_missing_gaze_not_zero(calibrated):
    """A failed webcam calibration under ``record-uncalibrated`` stores gaze rows without a
    position (x/y NaN, kept for a later re-estimate): the task's gaze measures are missing (NaN),
    as for a task without gaze rows, not 0 ms of dwell on either answer; the task-level columns
    say which calibration was in force, one unit a column."""
    import pyarrow as pa

    from gazepref.signals.task_data import from_streams, task_info
    from gazepref import schema

    turns, streams = _site_streams("left")
    if not calibrated:
        g = streams["gaze"]
        nan = np.full(g.num_rows, np.nan, dtype=np.float32)
        # the camera saw the face well: only the calibration failed (as the site flags such rows)
        failed = np.full(g.num_rows, schema.GazeFlag.UNCALIBRATED | schema.GazeFlag.CALIBRATION_FAILED, np.int32)
        streams["gaze"] = pa.table({"t": g["t"], "x": nan, "y": nan, "flags": failed})
    cal = {"passed": calibrated, "accuracy_px": 120.0 if calibrated else 520.0, "webgazer_score_pct": 70.0}
    task = schema.Task("site/1", "p1", "s", "pairwise", calibration_accuracy=cal["accuracy_px"],
                       answers={"calibration_unit": "px"}, calibration=cal)
    td = from_streams("site/1", "p1", turns, streams, task_info=task_info(task))
    _, (row,), sentences, _ = features.compute_task(td)
    gaze = [k for k in row if k.startswith(("g_", "l_g_", "r_g_", "d_g_")) and k != "g_camera_ok_share"]
    assert gaze and td.n_gaze_raw == len(streams["gaze"])
    # the in-box family (the reward models' default gaze features) and the sentence table alike:
    # rows without a position are no gaze samples (present 0, the rest missing), as in an
    # IFLLM-layout export of the same study, which has no such rows; before, present 1 and 0 ms
    inbox = [k for k in row if k.startswith("gaze_") and k != "gaze_s_present"]
    sentence_gaze = [np.asarray(f[k], float) for f in sentences for k in f if k.startswith("g_")]
    assert sentence_gaze
    if calibrated:
        assert row["g_share_l"] == pytest.approx(4 / 6, abs=0.02) and row["task_gaze_kept_share"] > 0.5
        # pictures without a face (x/y NaN) of a calibrated task are samples lost: the share counts them
        g = streams["gaze"]
        x = g["x"].to_numpy().copy()
        x[::2] = np.nan
        lost = dict(streams, gaze=g.set_column(1, "x", pa.array(x)))
        (half,) = features.compute_task(from_streams("site/1", "p1", turns, lost, task_info=task_info(task)))[1]
        assert half["task_gaze_kept_share"] <= 0.5 * row["task_gaze_kept_share"] + 0.01
        assert row["gaze_s_present"] == 1 and inbox and not np.isnan(row["gaze_d_share"])
        assert any(np.isfinite(v).any() for v in sentence_gaze)
    else:
        assert all(np.isnan(row[k]) for k in gaze), [k for k in gaze if not np.isnan(row[k])]
        assert row["gaze_s_present"] == 0 and not [k for k in inbox if np.isfinite(row[k])]
        assert all(np.isnan(v).all() for v in sentence_gaze)
        assert row["g_camera_ok_share"] == 1.0  # the camera's state, rows without a position included
        assert np.isnan(row["task_gaze_kept_share"])
        assert not np.isnan(row["m_share_l"]), "the mouse is measured as ever"
    assert row["task_calibration_accuracy_px"] == cal["accuracy_px"]
    assert row["task_calibration_accuracy_pct"] == 70.0 and row["task_calibration_passed"] == float(calibrated)
    # an IFLLM task: WebGazer's % only, no pass/fail known
    ifllm = task_info(schema.Task("w/1", "w", "ifllm", "pairwise", calibration_accuracy=81.0))
    (row,) = features.compute_task(from_streams("site/1", "p1", turns, streams, task_info=ifllm))[1]
    assert row["task_calibration_accuracy_pct"] == 81.0
    assert np.isnan(row["task_calibration_accuracy_px"]) and np.isnan(row["task_calibration_passed"])


def test_write_leaves_no_table_of_an_earlier_run(tmp_path):
    """With --overwrite, a table this run does not make (sentences with --no-sentences) must not
    stay behind to pass for this run's."""
    from types import SimpleNamespace

    import pandas as pd

    from gazepref.signals.features import write

    (tmp_path / "sentences.parquet").write_text("from an earlier run")
    df = pd.DataFrame({"a": [1]})
    paths = write(SimpleNamespace(responses=df, comparisons=df, sentences=None, sequential=pd.DataFrame()), tmp_path)
    assert set(paths) == {"responses", "comparisons"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparisons.parquet", "responses.parquet"]


def test_workers_are_not_forked_while_another_thread_runs(ifllm_sample):
    """A worker forked while another thread of the process holds a lock waits for that lock for
    ever (a study served in the same process: its thread held SQLite's allocator mutex, and
    ``features --jobs 2`` never returned). With another thread running the workers are spawned and
    open the recording by its key; the tables are the same as on one process."""
    import threading

    r1 = features.build(ifllm_sample, jobs=1, sentences=False)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert features._worker_context().get_start_method() == "spawn"
        r2 = features.build(ifllm_sample, jobs=2, sentences=False)
    finally:
        stop.set()
        other.join()
    pd.testing.assert_frame_equal(r1.comparisons, r2.comparisons)
