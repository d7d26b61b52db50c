"""The calibration step's page (capture_site/gaze_step.py, templates/calibration.html)."""
from __future__ import annotations

import pytest

from gazetest import calibrate, gaze_data, to_calibration, webcam_toml


@pytest.mark.parametrize(("gaze", "consent", "says", "never"), [
    # browser mode (the default): the page finds the eyes itself, so no picture goes to the server
    ('compute = "browser"', "", "No camera picture leaves your computer", "stays on our server"),
    ('compute = "server"', "", "stays on our server only long", "No camera picture leaves"),
    ('compute = "server"\nkeep_frames = true', "camera_images = true",
     "pictures sent during calibration and the tasks are stored", "No camera picture leaves"),
])
def test_the_set_up_page_says_where_the_camera_picture_goes(make_app, tmp_path, gaze, consent, says, never):
    client = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml", gaze, consent))).test_client()
    assert to_calibration(client)["settings"]["compute"] in gaze
    page = " ".join(client.get("/step").text.split())
    assert says in page and never not in page


def test_a_reload_after_the_calibration_shows_its_outcome(make_app, tmp_path):
    """Once the step has its outcome the page carries it (the page then shows it and Continue
    instead of a new calibration); before, a reload asked for the whole calibration again."""
    client = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "s.toml"))).test_client()
    token = to_calibration(client)["token"]
    assert "outcome" not in gaze_data(client.get("/step").text)
    calibrate(client, token)
    outcome = gaze_data(client.get("/step").text)["outcome"]
    assert outcome.pop("quality") in ("good", "fair")  # (by the synthetic face's accuracy)
    assert outcome == {"passed": True, "fallback": None, "attempts": 1}
