"""A calibration step's attempts and outcome (the server decides): frame-starved rounds are
refused and repeated, the best attempt is kept (not the last), a failed calibration leaves gaze
uncalibrated and the study's fallback applies. Real rounds of the astronaut face."""
from __future__ import annotations

import io
import re
from unittest import mock

import numpy as np
import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.cli import main as cli
from gazepref.schema import GazeFlag
from gazepref.signals.synthetic_face import jpeg
from gazepref.signals.synthetic_face import moving_face as moving
from gazetest import CALIBRATION_TARGETS, answer_step, current_step, post_frames, post_round, to_calibration
from gazetest import webcam_toml as write_webcam_toml
from sitetest import csrf_of, page_data

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage.data")

NEAR = [(256, 160), (1024, 640), (1024, 160), (256, 640)]  # the validation targets of 1280 x 800
FAR = [(0, 0), (1280, 800), (1280, 0), (0, 800)]           # wrong targets: a worse check


def client_for(make_app, tmp_path, *gaze_lines):
    """The webcam test study with ``gaze_lines`` (``key = value``) set in its [gaze] table."""
    path = write_webcam_toml(tmp_path / "s.toml")
    text = path.read_text()
    for line in gaze_lines:
        key = line.split("=")[0].strip()
        text = "\n".join(x for x in text.splitlines() if x.split("=")[0].strip() != key) + f"\n{line}\n"
    path.write_text(text)
    app = make_app(STUDY_CONFIG=str(path))
    return app, app.test_client()


def rows(app, kind=None):
    with app.extensions["gazepref"].sessions() as dbs:
        q = select(store.Calibration).order_by(store.Calibration.id)
        found = dbs.scalars(q).all()
        return [r for r in found if kind is None or r.kind == kind]


def test_setup_answers_say_which_frames_are_usable(make_app, tmp_path):
    _, client = client_for(make_app, tmp_path)
    token = to_calibration(client)["token"]
    grey = np.full((240, 320, 3), 128, np.uint8)
    r = post_frames(client, token, {"phase": "setup", "t": [10.0, 20.0, 30.0]}, [jpeg(moving(0)), jpeg(grey), jpeg(moving(1))])
    assert r.status_code == 200 and r.json["usable"] == [10.0, 30.0], r.json
    assert r.json["face"]["code"] == "ok"


def test_frame_starved_calibration_is_refused_and_repeated(make_app, tmp_path):
    app, client = client_for(make_app, tmp_path, "attempts = 2", "min_frames = 5")
    token = to_calibration(client)["token"]
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS, per_target=[6, 2, 6, 6, 6])
    assert r.status_code == 422 and r.json["starved"] == [1] and r.json["usable_per_target"][1] == 2, r.json
    assert "outcome" not in r.json, "one attempt is left: the page repeats the round"
    (attempt,) = rows(app, "calibration")
    assert attempt.model is None and attempt.result["starved"] == [1]
    assert post_round(client, token, "validation", NEAR).status_code == 409  # nothing fitted to check
    assert answer_step(client).status_code == 400  # no outcome yet: the step cannot be passed
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS)
    assert r.status_code == 200, r.json
    r = post_round(client, token, "validation", NEAR)
    assert r.status_code == 200 and r.json["passed"] and r.json["outcome"]["passed"], r.json
    assert r.json["outcome"]["quality"] in ("good", "fair") and "accuracy_px" not in r.json["outcome"]
    (outcome,) = rows(app, "outcome")
    second = rows(app, "calibration")[1]
    assert outcome.model == second.model and outcome.result["selected"] == second.id
    assert [a["starved"] for a in outcome.result["attempts"]] == [[1], []]
    assert answer_step(client).status_code == 302


def test_a_participant_who_passed_and_left_before_continue_is_not_called_stuck_at_the_set_up(
        make_app, tmp_path, monkeypatch):
    """Calibrated, then gone before pressing Continue: the dashboard said "left at the camera set-up
    with the face well placed", read as never past the set-up."""
    from gazepref.capture_site import quality

    monkeypatch.setattr(quality, "IDLE_S", 0)  # whoever is not finished has stopped
    app, client = client_for(make_app, tmp_path)
    token = to_calibration(client)["token"]
    post_frames(client, token, {"phase": "setup", "t": [10.0, 20.0]}, [jpeg(moving(0)), jpeg(moving(1))])
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    assert post_round(client, token, "validation", NEAR).json["outcome"]["passed"]
    assert _dashboard_reason(app) == "at the camera set-up: calibration passed; left before pressing Continue"


def test_validation_points_report_data_loss_and_a_starved_point_fails(make_app, tmp_path):
    app, client = client_for(make_app, tmp_path, "attempts = 1", "min_frames = 5")
    token = to_calibration(client)["token"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    r = post_round(client, token, "validation", NEAR, per_target=[6, 6, 6, 0])
    assert r.status_code == 200 and not r.json["passed"] and r.json["starved"] == [3], r.json
    assert not any("px" in key or "accuracy" in key for key in r.json), "the page gets a word, not figures"
    (validation,) = rows(app, "validation")
    assert validation.id == r.json["validation"] and validation.result["starved"] == [3]
    points = validation.result["points"]
    assert [p["data_loss"] for p in points] == [0.0, 0.0, 0.0, 1.0]
    assert r.json["outcome"] == {"passed": False, "quality": "poor", "fallback": "mouse-only", "attempts": 1}
    # the three points seen are near: the round's word is still "poor" (it did not pass), as the outcome's
    assert validation.result["accuracy_px"] <= 0.5 * 5000  # "good" by accuracy (pass_accuracy_px = 5000)
    assert r.json["quality"] == "poor" and validation.result["quality"] == "poor"
    # the dashboard says why it failed: the check's dot without pictures, not its precision
    # ("calibration not precise enough (451 px)" under a 5000 px threshold, before)
    assert answer_step(client).status_code == 302
    acc = round(validation.result["accuracy_px"])
    assert _dashboard_reason(app).startswith(f"calibration check short of camera pictures at 1 of its dots ({acc} px "
                                             "where checked) after 1 attempt, continued mouse-only"), _dashboard_reason(app)


def test_frames_the_page_recorded_but_did_not_send_are_data_loss(make_app, tmp_path):
    """A dot held long (blinks, a look away): the page sends its usable frames first, at most
    ``target_frames``, and says how many it recorded (``seen``): the others are lost data."""
    app, client = client_for(make_app, tmp_path, "attempts = 1")
    token = to_calibration(client)["token"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    for seen, why in (([6, 5, 6, 6], "from 6 to"), ([6, 6, 6, 10_000], "from 6 to"), ([6, True, 6, 6], "from 6 to"),
                      ([6, 6.5, 6, 6], "integer")):
        r = post_round(client, token, "validation", NEAR, seen=seen)
        assert r.status_code == 400 and "seen must be an integer" in r.json["error"] and why in r.json["error"], r.json
    assert rows(app, "validation") == []  # refused whole, nothing stored
    r = post_round(client, token, "validation", NEAR, seen=[6, 24, 6, 6])
    assert r.status_code == 200, r.json
    (validation,) = rows(app, "validation")
    points, overall = validation.result["points"], validation.result["overall"]
    assert [p["data_loss"] for p in points] == [0.0, 0.75, 0.0, 0.0]
    assert [p["n_samples"] for p in points] == [6, 24, 6, 6] and [p["n_valid"] for p in points] == [6] * 4
    assert overall["data_loss"] == pytest.approx(18 / 42)
    (outcome,) = rows(app, "outcome")
    assert outcome.result["data_loss"] == pytest.approx(18 / 42)


def test_the_webgazer_score_is_the_mean_of_each_samples_score(make_app, tmp_path):
    """IFLLM's ``accuracy`` is WebGazer's calibration score: each sample scores ``100 - distance /
    (height / 2) x 100``, at least 0, and the score is their mean. A validation whose last two
    dots are labelled with far corners (their samples ~890 px off on a viewport 800 px high)
    scores them 0 and the round the mean of its four dots; from the round's mean distance (past
    half the height) it was 0 %, what the whole check would score if every sample were off.
    (The first two dots are labelled with the centre, where a round of this face's few frames
    draws the predictions.)"""
    from gazepref.signals.gaze_validation import webgazer_score_pct

    app, client = client_for(make_app, tmp_path, "attempts = 1")
    token = to_calibration(client)["token"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    swapped = [(640, 400), (660, 420), (0, 800), (1280, 0)]  # the frames of calibration dots 0-3
    assert post_round(client, token, "validation", swapped).status_code == 200
    (val,) = rows(app, "validation")
    points = val.result["points"]
    scores = [p["webgazer_score_pct"] for p in points]
    assert scores[2] == scores[3] == 0 and min(scores[:2]) > 25, (scores, [p["accuracy_px"] for p in points])
    assert val.result["webgazer_score_pct"] == pytest.approx(np.mean(scores))
    assert val.result["accuracy_px"] > 400 and webgazer_score_pct(val.result["accuracy_px"], 800) == 0
    (outcome,) = rows(app, "outcome")
    assert outcome.result["webgazer_score_pct"] == pytest.approx(val.result["webgazer_score_pct"])
    assert outcome.result["attempts"][0]["webgazer_score_pct"] == pytest.approx(val.result["webgazer_score_pct"])


def _dashboard_reason(app) -> str:
    """The dashboard's reason column of the study's one participant."""
    from gazepref.capture_site.quality import participant_quality

    with app.extensions["gazepref"].sessions() as dbs:
        (q,) = participant_quality(dbs, dbs.scalars(select(store.Study)).one())
    return q["reason"]


def test_a_step_under_way_is_not_called_failed_on_the_dashboard(make_app, tmp_path):
    """A participant on the calibration step whose first check failed, one attempt left: the
    dashboard's calibration cell gives the check's figures as the step's progress, not a
    verdict (it said "453 px / 11.4° (failed)", read as the step failed); once decided, the
    step's outcome."""
    from gazepref.capture_site.quality import participant_quality

    app, client = client_for(make_app, tmp_path, "attempts = 2", "pass_accuracy_px = 1", "min_frames = 5")
    token = to_calibration(client)["token"]

    def cell() -> str:
        with app.extensions["gazepref"].sessions() as dbs:
            (q,) = participant_quality(dbs, dbs.scalars(select(store.Study)).one())
        return q["calibration"]

    assert cell() == ""
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    assert post_round(client, token, "validation", NEAR).status_code == 200
    (val,) = rows(app, "validation")
    assert re.fullmatch(r"\d+ px / \d+\.\d° \(last check failed, step under way\)", cell()), cell()
    assert cell().startswith(f"{round(val.result['overall']['accuracy_px'])} px")
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    assert post_round(client, token, "validation", NEAR).status_code == 200
    assert re.fullmatch(r"\d+ px / \d+\.\d° \(failed, 2 attempts\)", cell()), cell()


def test_a_participant_screened_out_on_the_step_is_not_under_way(make_app, tmp_path):
    """Screened out on the calibration step after a failed check (a required study, the camera
    skipped): the step is not under way, it ended there; the cell gives the check's figures."""
    from gazepref.capture_site.platforms import mark_screened_out
    from gazepref.capture_site.quality import participant_quality

    app, client = client_for(make_app, tmp_path, "attempts = 2", "pass_accuracy_px = 1", "min_frames = 5")
    token = to_calibration(client)["token"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    assert post_round(client, token, "validation", NEAR).status_code == 200
    with app.extensions["gazepref"].sessions() as dbs:
        (p,) = dbs.scalars(select(store.Participant)).all()
        mark_screened_out(p, "no-camera", "skipped")
        dbs.commit()
        (q,) = participant_quality(dbs, dbs.scalars(select(store.Study)).one())
    assert re.fullmatch(r"\d+ px / \d+\.\d° \(failed\)", q["calibration"]), q["calibration"]


def test_a_step_without_a_validated_attempt_says_why_on_the_dashboard(make_app, tmp_path):
    """Every calibration round short of frames: the dashboard's calibration cell said nothing
    ("-") although the step failed after its attempts."""
    from gazepref.capture_site.quality import participant_quality

    app, client = client_for(make_app, tmp_path, "attempts = 2", "min_frames = 5",
                             'calibration_fallback = "record-uncalibrated"')
    token = to_calibration(client)["token"]
    for _ in range(2):
        r = post_round(client, token, "calibration", CALIBRATION_TARGETS, per_target=[6, 6, 1, 6, 6])
    assert r.status_code in (409, 422) and r.json["outcome"]["passed"] is False, r.json
    with app.extensions["gazepref"].sessions() as dbs:
        (q,) = participant_quality(dbs, dbs.scalars(select(store.Study)).one())
    assert q["calibration"] == "no figure: every calibration round short of frames (failed, 2 attempts)"
    assert answer_step(client).status_code == 302
    assert _dashboard_reason(app).startswith("calibration failed (every calibration round short of frames) "
                                             "after 2 attempts, recorded gaze uncalibrated")


@pytest.mark.parametrize("fallback", ["mouse-only", "record-uncalibrated", "screen-out"])
def test_best_attempt_kept_and_a_failed_calibration_leaves_gaze_uncalibrated(make_app, tmp_path, fallback):
    app, client = client_for(make_app, tmp_path, "attempts = 2", "pass_accuracy_px = 10",
                             f'calibration_fallback = "{fallback}"')
    token = to_calibration(client)["token"]
    form_page = client.get("/step").text  # the page the participant calibrates on
    for targets in (NEAR, FAR):  # the first attempt checks better than the second; neither passes
        assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
        r = post_round(client, token, "validation", targets)
        assert r.status_code == 200 and not r.json["passed"], r.json
    assert r.json["outcome"]["passed"] is False and r.json["outcome"]["fallback"] == fallback
    first, second = rows(app, "calibration")
    v1, v2 = rows(app, "validation")
    assert v1.result["accuracy_px"] < v2.result["accuracy_px"]
    (outcome,) = rows(app, "outcome")
    res = outcome.result
    assert outcome.model is None and not res["passed"] and res["selected"] == first.id, "the best, not the last"
    assert res["accuracy_px"] == v1.result["accuracy_px"] and res["n_attempts"] == 2
    assert res["accuracy_deg"] == pytest.approx(v1.result["overall"]["accuracy_deg"])
    assert [a["validation"] for a in res["attempts"]] == [v1.id, v2.id]
    assert all(len(a["points"]) == 4 and "data_loss" in a["points"][0] for a in res["attempts"])
    # the step is decided: a stray round (a second window, a resent request) changes nothing
    for kind, targets in (("calibration", CALIBRATION_TARGETS), ("validation", NEAR)):
        r = post_round(client, token, kind, targets)
        assert r.status_code == 409 and "not yet decided" in r.json["error"], r.json
    assert len(rows(app)) == 5  # two attempts, two validations, the outcome

    if fallback == "screen-out":  # the session ends with the platform's screen-out page, reloaded or not
        step = re.search(r'name="step" value="([^"]+)"', form_page).group(1)
        submitted = client.post("/step", data={"csrf_token": csrf_of(form_page), "step": step, "outcome": "failed"},
                                follow_redirects=True)
        for page in (submitted.text, client.get("/step").text):
            assert 'id="screened-out"' in page and "calibration did not succeed" in page
            assert 'id="gaze-data"' not in page and 'name="step"' not in page
        with app.extensions["gazepref"].sessions() as dbs:
            (p,) = dbs.scalars(select(store.Participant)).all()
            assert p.state["screened_out"]["reason"] == "calibration-failed"
        assert _dashboard_reason(app).endswith(f"({round(v1.result['accuracy_px'])} px) after 2 attempts"), \
            "the kept attempt's offset, not the last one's"
        return
    assert answer_step(client).status_code == 302
    # the dashboard says which fallback applied, with the kept attempt's figure
    want = "continued mouse-only" if fallback == "mouse-only" else "recorded gaze uncalibrated"
    assert _dashboard_reason(app).startswith(f"calibration not precise enough ({round(v1.result['accuracy_px'])} px)"
                                             f" after 2 attempts, {want}")
    answer_step(client, {"understand_before": "3"})
    data = page_data(client.get("/step").text)
    if fallback == "mouse-only":
        assert data["task"] and data["gaze"] is None  # the tasks send no frames
        return
    task_id = data["task"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 409  # nor on a task
    meta = {"phase": "task", "task": task_id, "seq": 0, "origin": 1.7e12, "t": [5000.0, 5100.0, 5200.0]}
    r = post_frames(client, token, meta, [jpeg(moving(i)) for i in range(3)])
    assert r.status_code == 200 and r.json["stored"] == 3 and not r.json["calibrated"], r.json
    # the page's batches name the failed outcome (its calibration): scored as failed too
    assert data["gaze"]["calibration"] == outcome.id
    tagged = meta | {"seq": 1, "t": [5300.0, 5400.0], "calibration": outcome.id}
    r = post_frames(client, token, tagged, [jpeg(moving(i)) for i in range(3, 5)])
    assert r.status_code == 200 and r.json["stored"] == 2 and not r.json["calibrated"], r.json
    with app.extensions["gazepref"].sessions() as dbs:
        gz = store.read_stream(dbs, dbs.get(store.Task, task_id), "gaze").to_pandas()
    assert len(gz) == 5
    assert gz["x"].isna().all() and gz["y"].isna().all() and (gz["confidence"] == 0).all()
    want = GazeFlag.UNCALIBRATED | GazeFlag.CALIBRATION_FAILED
    assert ((gz["flags"].astype(int) & want) == want).all()
    assert gz["eye_l_iris_u"].notna().all(), "the features are kept for a later estimate"
    assert current_step(client).startswith("task")


@pytest.mark.parametrize("fmt", ["parquet", "ifllm"])
def test_exports_carry_the_calibration_and_validation_results(make_app, tmp_path, fmt):
    import json

    import pandas as pd

    from gazepref.capture_site.exporting import export_study
    from gazepref.datasets.ifllm import IFLLMRelease

    app, client = client_for(make_app, tmp_path, "attempts = 3", "pass_accuracy_px = 450", "min_frames = 5")
    token = to_calibration(client)["token"]
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS, per_target=[6, 6, 1, 6, 6])  # starved
    assert r.status_code == 422
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    r = post_round(client, token, "validation", FAR)  # > 450 px off: fails
    assert r.status_code == 200 and not r.json["passed"], r.json
    words = [r.json["quality"]]  # what the page was told of each validation round
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    r = post_round(client, token, "validation", NEAR)
    assert r.status_code == 200 and r.json["outcome"]["passed"], r.json
    kept = rows(app, "validation")[-1].result
    words.append(r.json["quality"])
    assert words[0] == "poor" and words[1] in ("good", "fair")
    assert answer_step(client).status_code == 302
    answer_step(client, {"understand_before": "3"})
    task_id = page_data(client.get("/step").text)["task"]
    meta = {"phase": "task", "task": task_id, "seq": 0, "origin": 1.7e12, "t": [5000.0, 5100.0]}
    assert post_frames(client, token, meta, [jpeg(moving(0)), jpeg(moving(1))]).json["stored"] == 2

    out = tmp_path / "export"
    with app.extensions["gazepref"].sessions() as dbs:
        study = dbs.scalars(select(store.Study)).one()
        export_study(dbs, study, out, fmt)
        from gazepref.capture_site.quality import participant_quality

        (q,) = participant_quality(dbs, study)  # what the researcher's dashboard shows
        assert q["calibration_accuracy_px"] == pytest.approx(kept["accuracy_px"]) and q["calibration_passed"]
        assert q["calibration_accuracy_deg"] == pytest.approx(kept["overall"]["accuracy_deg"])
        assert q["calibration_attempts"] == 3
        slug = study.slug
    if fmt == "parquet":  # the dashboard's cell, as the researcher reads it: px, degrees, result, attempts
        researcher = app.test_client()
        with mock.patch("sys.stdin", io.StringIO("correct horse battery\n")):
            assert cli(["user", "add", "ada", "--study", slug, "--password-stdin", "--instance", app.instance_path]) == 0
        login = researcher.get("/admin/login").text
        researcher.post("/admin/login", data={"csrf_token": csrf_of(login), "username": "ada",
                                               "password": "correct horse battery"})
        cell = re.search(r'<td data-key="calibration">([^<]*)</td>', researcher.get(f"/admin/studies/{slug}").text)
        deg = kept["overall"]["accuracy_deg"]
        assert cell and cell.group(1) == f"{round(kept['accuracy_px'])} px / {deg:.1f}° (passed, 3 attempts)", cell
    if fmt == "parquet":
        people = pd.read_parquet(out / "participants.parquet")
        assert people[["webcam", "camera_error", "screened_out"]].values.tolist() == [["calibrated", None, None]]
        rounds = pd.read_parquet(out / "calibrations.parquet")
        tasks = pd.read_parquet(out / "tasks.parquet")
        assert json.loads((out / "manifest.json").read_text())["calibration_rounds"] == 6
        cal = json.loads(tasks["calibration"].iloc[0])
        assert tasks["calibration_accuracy"].iloc[0] == pytest.approx(kept["accuracy_px"])
        assert cal["passed"] and cal["attempts"] == 3 and cal["accuracy_deg"] == pytest.approx(kept["overall"]["accuracy_deg"])
    else:
        rounds = pd.read_csv(out / "calibration_table.csv")
        tt = pd.read_csv(out / "task_table.csv")
        row = tt.iloc[0]
        assert row["accuracy_px"] == pytest.approx(kept["accuracy_px"]) and row["calibration_attempts"] == 3
        assert row["accuracy"] == pytest.approx(kept["webgazer_score_pct"]) and 0 < row["accuracy"] < 100  # WebGazer's %
        assert row["precision_px"] == pytest.approx(kept["overall"]["precision_px"])
        assert row["data_loss"] == pytest.approx(kept["overall"]["data_loss"])
        (task,) = IFLLMRelease(out).tasks()
        assert task.calibration_accuracy == pytest.approx(row["accuracy"])  # read back as the release's %
        assert task.calibration["passed"] is True and task.calibration["attempts"] == 3  # and the figures
        assert task.calibration["data_loss"] == pytest.approx(kept["overall"]["data_loss"])
    assert rounds["kind"].tolist() == ["calibration", "calibration", "validation", "calibration", "validation",
                                       "outcome"]
    assert rounds["attempt"].tolist() == [1, 2, 2, 3, 3, 3] and rounds["step"].tolist() == [1] * 6
    vals = rounds[rounds["kind"] == "validation"]  # each validation round its own WebGazer %
    assert vals["webgazer_score_pct"].notna().all() and vals["webgazer_score_pct"].iloc[-1] == pytest.approx(
        rounds[rounds["kind"] == "outcome"]["webgazer_score_pct"].iloc[0])
    assert rounds["starved_targets"].tolist()[:2] == [1, 0] and rounds["usable_frames_min"].iloc[0] == 1
    out_row = rounds.iloc[-1]
    assert bool(out_row["passed"]) and out_row["attempts"] == 3 and out_row["quality"] in ("good", "fair")
    assert out_row["accuracy_px"] == pytest.approx(kept["accuracy_px"])
    val = rounds[rounds["kind"] == "validation"]
    assert val["accuracy_px"].iloc[0] > val["accuracy_px"].iloc[1] and val["distance_cm"].tolist() == [60.0, 60.0]
    assert (val["accuracy_deg"] > 0).all() and val["precision_px"].notna().all() and val["data_loss"].notna().all()
    assert val["quality"].tolist() == words
    points = json.loads(val["points"].iloc[1])
    assert len(points) == 4 and all("data_loss" in p and "accuracy_deg" in p for p in points)
    assert set(rounds["participant_id"]) == {tasks_pid(out, fmt)}, "pseudonyms only"
    # the rounds' times are UTC and say so (the dashboard heads its times "(UTC)")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        field = pq.read_schema(out / "calibrations.parquet").field("created_at")
        assert str(field.type) in ("timestamp[us, tz=UTC]", "timestamp[ns, tz=UTC]"), field.type
        created = rounds["created_at"]
    else:
        assert rounds["created_at"].str.endswith("+00:00").all(), rounds["created_at"].tolist()
        created = pd.to_datetime(rounds["created_at"], format="ISO8601")
    assert str(created.dt.tz) == "UTC" and created.is_monotonic_increasing
    now = pd.Timestamp.now(tz="UTC")
    assert ((now - created) < pd.Timedelta(minutes=10)).all() and (created <= now).all()

    # the export exported again (read as a recording: Parquet, or the IFLLM layout), to both
    # layouts: the rounds come along as written (they were left out: no calibrations.parquet, no
    # calibration_table.csv, as from a release)
    from gazepref.datasets.export import export_ifllm, export_parquet
    from gazepref.datasets.recording import ParquetRecording

    source = ParquetRecording(out) if fmt == "parquet" else IFLLMRelease(out)
    export_parquet(source, tmp_path / "again-pq")
    export_ifllm(source, tmp_path / "again-ifllm")
    assert json.loads((tmp_path / "again-pq" / "manifest.json").read_text())["calibration_rounds"] == 6
    as_parquet = pd.read_parquet(tmp_path / "again-pq" / "calibrations.parquet")
    as_csv = pd.read_csv(tmp_path / "again-ifllm" / "calibration_table.csv")
    written = pd.read_parquet(out / "calibrations.parquet") if fmt == "parquet" else rounds
    pd.testing.assert_frame_equal(as_parquet if fmt == "parquet" else as_csv, written)
    for col in ("kind", "attempt", "accuracy_px", "webgazer_score_pct", "quality", "passed", "points", "created_at"):
        a, b = as_parquet[col].astype(object).where(as_parquet[col].notna(), None), written[col]
        if col == "created_at":
            a, b = pd.to_datetime(a, utc=True), pd.to_datetime(b, utc=True, format="ISO8601")
        assert [None if pd.isna(v) else v for v in a] == [None if pd.isna(v) else v for v in b], col


@pytest.mark.parametrize("fmt", ["parquet", "ifllm"])
def test_a_failed_step_exports_its_score_and_its_empty_dot(make_app, tmp_path, fmt):
    """A validation dot the camera gave nothing for fails the check and is lost data (before: the
    overall ``data_loss`` left it out, 0.0); the outcome names the kept validation's starved dots,
    and a failed calibration's WebGazer score (%) fills the IFLLM ``accuracy`` column too (it was
    empty, and read back as px under the same column)."""
    import json

    import pandas as pd

    from gazepref.capture_site.exporting import export_study
    from gazepref.datasets.ifllm import IFLLMRelease

    app, client = client_for(make_app, tmp_path, "attempts = 1", "pass_accuracy_px = 450", "min_frames = 5",
                             'calibration_fallback = "record-uncalibrated"')
    token = to_calibration(client)["token"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    r = post_round(client, token, "validation", NEAR, per_target=[6, 6, 6, 0])
    assert r.status_code == 200 and not r.json["passed"] and r.json["outcome"]["passed"] is False, r.json
    (val,) = rows(app, "validation")
    assert val.result["points"][3]["n_samples"] == 0 and val.result["overall"]["n_empty"] == 1
    loss = val.result["overall"]["data_loss"]
    assert loss >= 6 / 24, "the empty dot is charged as many samples as the others gave"
    (outcome,) = rows(app, "outcome")
    res = outcome.result
    assert res["validation_starved"] == [3] and res["data_loss"] == pytest.approx(loss)
    assert res["webgazer_score_pct"] == pytest.approx(val.result["webgazer_score_pct"])  # the kept check's samples
    assert answer_step(client).status_code == 302
    answer_step(client, {"understand_before": "3"})
    assert page_data(client.get("/step").text)["task"]

    out = tmp_path / "export"
    with app.extensions["gazepref"].sessions() as dbs:
        export_study(dbs, dbs.scalars(select(store.Study)).one(), out, fmt)
    if fmt == "parquet":
        rounds = pd.read_parquet(out / "calibrations.parquet")
        cal = json.loads(pd.read_parquet(out / "tasks.parquet")["calibration"].iloc[0])
        assert cal["passed"] is False and cal["starved_targets"] == 1 and cal["data_loss"] == pytest.approx(loss)
        # the export is a source as the study is: its calibration read back as written (it was
        # left a JSON string, on which the features and an IFLLM re-export failed)
        from gazepref.datasets.export import export_ifllm
        from gazepref.datasets.recording import ParquetRecording

        (task,) = ParquetRecording(out).tasks()
        assert task.calibration == cal
        export_ifllm(ParquetRecording(out), tmp_path / "again")
        row = pd.read_csv(tmp_path / "again" / "task_table.csv").iloc[0]
        assert row["accuracy"] == pytest.approx(res["webgazer_score_pct"]) and not row["calibration_passed"]
    else:
        rounds = pd.read_csv(out / "calibration_table.csv")
        row = pd.read_csv(out / "task_table.csv").iloc[0]
        assert row["accuracy"] == pytest.approx(res["webgazer_score_pct"]) and not row["calibration_passed"]
        (task,) = IFLLMRelease(out).tasks()
        assert task.calibration_accuracy == pytest.approx(row["accuracy"])  # % as for a passed one
        assert task.answers.get("calibration_unit") != "px"
        assert task.calibration["passed"] is False and task.calibration["accuracy_px"] == pytest.approx(res["accuracy_px"])
    out_row = rounds[rounds["kind"] == "outcome"].iloc[0]
    assert out_row["starved_targets"] == 1 and out_row["data_loss"] == pytest.approx(loss)
    assert out_row["px_per_cm"] == pytest.approx(96 / 2.54) and out_row["distance_cm"] == 60


def test_a_webcam_study_whose_participants_had_no_camera_keeps_its_calibration_columns(make_app, tmp_path):
    """A webcam study's IFLLM task table has the calibration columns also while no task has a
    calibration (every participant so far went on without a camera): its exports keep one layout
    as participants come (before, the columns came only with the first calibrated task)."""
    import pandas as pd

    from gazepref.capture_site.exporting import export_study
    from gazepref.datasets.export import TASK_CALIBRATION_COLUMNS

    app, client = client_for(make_app, tmp_path)
    to_calibration(client, "CAM-NONE")
    assert answer_step(client, {"outcome": "no-camera"}).status_code == 302
    answer_step(client, {"understand_before": "3"})
    assert page_data(client.get("/step").text)["task"]
    with app.extensions["gazepref"].sessions() as dbs:
        export_study(dbs, dbs.scalars(select(store.Study)).one(), tmp_path / "out", "ifllm")
    table = pd.read_csv(tmp_path / "out" / "task_table.csv")
    assert len(table) == 1 and set(TASK_CALIBRATION_COLUMNS) <= set(table.columns), list(table.columns)
    assert table[TASK_CALIBRATION_COLUMNS + ["accuracy"]].isna().all(axis=None)


def tasks_pid(out, fmt):
    import pandas as pd

    if fmt == "parquet":
        return pd.read_parquet(out / "tasks.parquet")["participant_id"].iloc[0]
    return str(pd.read_csv(out / "task_table.csv")["user_id"].iloc[0])


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_two_copies_of_a_check_sent_at_once_are_taken_once(make_app, tmp_path, db, request, monkeypatch):
    """A proxy retrying a POST, a double submit: two copies of one validation round reach the
    server (two hosts, two threads) at once. One is taken, the other answered 409, and the step has
    one validation and one outcome. Before, both passed the checks before either was stored: two
    validations of one attempt, and now and then two outcomes, the second deciding the
    participant's next calibration step before it began (on PostgreSQL and on SQLite)."""
    import threading
    import time

    url = request.getfixturevalue("fresh_postgres") if db == "postgresql" else None
    path = write_webcam_toml(tmp_path / "s.toml")
    path.write_text(path.read_text().replace("attempts = 1", "attempts = 2"))
    # two hosts of one database (their own trackers: the copies are processed side by side)
    hosts = [make_app(STUDY_CONFIG=str(path), **({"DATABASE_URL": url} if url else {})) for _ in range(2)]
    app = hosts[0]
    token = to_calibration(app.test_client())["token"]
    assert post_round(app.test_client(), token, "calibration", CALIBRATION_TARGETS).status_code == 200
    start, answers = threading.Barrier(2), []
    from gazepref.signals import gaze_session

    validate_round = gaze_session.validate_round

    def slow_validation(*args, **kwargs):  # the two copies' checks overlap, whatever the machine's speed
        time.sleep(0.3)
        return validate_round(*args, **kwargs)

    monkeypatch.setattr(gaze_session, "validate_round", slow_validation)

    def check(host):
        client = host.test_client()
        start.wait()
        answers.append(post_round(client, token, "validation", NEAR))

    threads = [threading.Thread(target=check, args=(host,)) for host in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200, 409], [a.json for a in answers]
    assert len(rows(app, "validation")) == 1 and len(rows(app, "outcome")) == 1


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_copies_of_calibration_rounds_sent_at_once_keep_to_the_rounds_limit(make_app, tmp_path, db, request,
                                                                             monkeypatch):
    """Six copies of a calibration round at once (a script, retries): each passed the look at the
    attempts used before any was stored, and all six were stored (the limit, 2 x attempts = 2
    rounds, held only for rounds sent one after another). The look is made again under the
    participant's lock: the rounds beyond the limit are answered 409 with the step's outcome."""
    import threading
    import time

    url = request.getfixturevalue("fresh_postgres") if db == "postgresql" else None
    path = write_webcam_toml(tmp_path / "s.toml")
    hosts = [make_app(STUDY_CONFIG=str(path), **({"DATABASE_URL": url} if url else {})) for _ in range(2)]
    token = to_calibration(hosts[0].test_client())["token"]
    from gazepref.signals import gaze_session

    fit = gaze_session.calibrate

    def slow_fit(*args, **kwargs):  # the copies' fits overlap, whatever the machine's speed
        time.sleep(0.3)
        return fit(*args, **kwargs)

    monkeypatch.setattr(gaze_session, "calibrate", slow_fit)
    start, answers = threading.Barrier(6), []

    def send(host):
        client = host.test_client()
        start.wait()
        answers.append(post_round(client, token, "calibration", CALIBRATION_TARGETS))

    threads = [threading.Thread(target=send, args=(hosts[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 409, 409, 409, 409], [a.json for a in answers]
    assert len(rows(hosts[0], "calibration")) == 2 and len(rows(hosts[0], "outcome")) == 1
    assert all("outcome" in a.json or "not yet decided" in a.json["error"] for a in answers if a.status_code == 409), \
        [a.json for a in answers]


def test_the_server_keeps_to_the_attempts_and_one_check_each(make_app, tmp_path):
    """``attempts`` is the server's to keep: once they are used, a further calibration round (a
    reloaded page, a script) decides the step with the attempts made (409 and the outcome, which
    the page shows), and each attempt is validated once. Before, six calibration rounds in a row
    were taken (n_attempts 6, each with its pictures kept) and an attempt could be validated until
    it passed."""
    app, client = client_for(make_app, tmp_path, "attempts = 2", "pass_accuracy_px = 50")
    token = to_calibration(client)["token"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    r = post_round(client, token, "validation", FAR)
    assert r.status_code == 200 and not r.json["passed"] and "outcome" not in r.json, r.json
    r = post_round(client, token, "validation", NEAR)
    assert r.status_code == 409 and "validated already" in r.json["error"], r.json
    assert len(rows(app, "validation")) == 1
    # the second attempt, then a page reloaded before its check calibrates afresh: the unchecked
    # attempt does not count (the participant did not fail it), up to 2 x attempts rounds in all
    for _ in range(3):
        assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS)  # a fifth: a script that never checks
    assert r.status_code == 409 and r.json["outcome"]["attempts"] == 1 and not r.json["outcome"]["passed"], r.json
    assert len(rows(app, "calibration")) == 4 and len(rows(app, "outcome")) == 1
    # the attempts that counted (the one checked), and the rounds taken
    assert rows(app, "outcome")[0].result["n_attempts"] == 1 and rows(app, "outcome")[0].result["n_rounds"] == 4
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 409  # decided
    assert answer_step(client).status_code == 302


def test_a_page_reloaded_before_the_check_of_the_last_attempt_calibrates_again(make_app, tmp_path):
    """One attempt; the page is reloaded (F5, a crash, another window taking the camera over)
    after the calibration round and before its check: the new page's round is taken and checked,
    and the step passes. Before, the attempt left unchecked counted, and the new round failed the
    calibration without any check (with screen-out, the participant was screened out)."""
    app, client = client_for(make_app, tmp_path, "attempts = 1")
    token = to_calibration(client)["token"]
    assert post_round(client, token, "calibration", CALIBRATION_TARGETS).status_code == 200  # then reloaded
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS)
    assert r.status_code == 200, r.json
    r = post_round(client, token, "validation", r.json["validation_targets"])
    assert r.status_code == 200 and r.json["outcome"]["passed"], r.json
    (outcome,) = rows(app, "outcome")
    assert outcome.result["selected"] == rows(app, "calibration")[1].id


@pytest.mark.parametrize("meta, error", [
    ({"viewport": [-5, 0]}, "viewport must be"),
    ({"viewport": [1280, 50]}, "viewport must be"),
    ({"targets": [(1e12, 80)] + CALIBRATION_TARGETS[1:]}, "in the round's viewport"),
    ({"targets": [(-1, 80)] + CALIBRATION_TARGETS[1:]}, "in the round's viewport"),
    # dots placed in a larger window than the round's (the window made smaller meanwhile: the
    # page now ends such a round; the dots off the window were never seen)
    ({"viewport": [1024, 600]}, "in the round's viewport (0 to 1024 x 0 to 600 CSS px)"),
    ({"targets": CALIBRATION_TARGETS + [(300, 300)]}, "has 5 targets (got 6)"),
    ({"targets": CALIBRATION_TARGETS[:1] * 5}, "at different places (got 1 places for 5)"),
])
def test_a_round_of_impossible_geometry_is_refused(make_app, tmp_path, meta, error):
    """A viewport no window has, a dot outside the round's window, more dots than the study's
    grid, all dots on one place: 400, nothing stored, no attempt spent (each was fitted into a
    model before). A round the page ended early at a dot it judged starved is shorter: a starved
    round, also where the server finds that dot's frames enough (the page judged on its live
    answers, from which frames shed under load are missing)."""
    app, client = client_for(make_app, tmp_path, "attempts = 3")
    token = to_calibration(client)["token"]
    r = post_round(client, token, "calibration", meta.get("targets", CALIBRATION_TARGETS),
                   viewport=meta.get("viewport", (1280, 800)))
    assert r.status_code == 400 and error in r.json["error"], r.json
    assert rows(app) == []
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS[:2], per_target=[6, 6])
    assert r.status_code == 422 and r.json["starved"] == [1], r.json
    r = post_round(client, token, "calibration", CALIBRATION_TARGETS[:2], per_target=[6, 1])  # the server finds it too
    assert r.status_code == 422 and r.json["starved"] == [1], r.json
    assert [a.result["error"].split(" (each")[0] for a in rows(app, "calibration")] == [
        "the page ended the round at dot 2 of 5: it had too few usable camera pictures of it in time",
        "too few usable camera pictures at 1 of 2 dots shown (of 5)"]  # (it said "at 1 of 2 dots")
