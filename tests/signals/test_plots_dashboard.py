"""The dashboard's plot pages (capture_site/plots_view.py): login required, PNGs per turn."""
from __future__ import annotations

import io
import re

import pytest
from matplotlib.image import imread

from gazepref.capture_site import plots_view
from gazepref.capture_site.app import create_app
from gazepref.signals.plots.synthetic import site_like


@pytest.fixture(scope="module")
def rec():
    return site_like()


@pytest.fixture
def client(tmp_path, monkeypatch, rec):
    app = create_app(str(tmp_path / "instance"), {"TESTING": True, "SECRET_KEY": "test-secret"})
    if "plots" not in app.blueprints:  # registered by the app factory; here for a bare checkout
        app.register_blueprint(plots_view.bp)
    monkeypatch.setattr(plots_view, "_recording", lambda slug: rec)
    return app.test_client()


def _login(client):
    """Log in as a researcher (sessions are database rows: capture_site/accounts.py)."""
    import re

    from gazepref import store
    from gazepref.capture_site import accounts

    with client.application.extensions["gazepref"].sessions() as s, s.begin():
        user = store.User(username="analyst", password_hash="")
        s.add(user)
        accounts.set_password(s, user, "analyst password")
        s.flush()
        accounts.grant(s, user, [store.ALL_STUDIES])
    page = client.get("/admin/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/admin/login", data={"csrf_token": csrf, "username": "analyst", "password": "analyst password"})
    assert r.status_code == 302


def test_login_required(client):
    r = client.get("/admin/studies/demo/participants/p_synth/plots")
    assert r.status_code == 302 and "/admin/login" in r.headers["Location"]
    r = client.get("/admin/studies/demo/participants/p_synth/plot/heatmap.png?task=7&turn=0")
    assert r.status_code == 302


def test_participant_page_and_images(client):
    _login(client)
    r = client.get("/admin/studies/demo/participants/p_synth/plots")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    # quality + the 4 views of turn 1 (gaze and mouse); turn 2 has no samples, so no views
    assert html.count("<img") == 1 + 4 and "No gaze or mouse samples in this turn" in html
    assert "<h2>Task 1 (pairwise)" in html and "Task 7" not in html  # labelled by order, not by id
    assert "style=" not in html  # the site's Content-Security-Policy (style-src 'self') ignores style attributes
    assert "plot/scanpath.png?task=7&amp;turn=0" in html or "plot/scanpath.png?task=7&turn=0" in html
    r = client.get("/admin/studies/demo/participants/p_synth/plot/heatmap.png?task=7&turn=0&size=700x400")
    assert r.status_code == 200 and r.mimetype == "image/png"
    h, w = imread(io.BytesIO(r.data)).shape[:2]
    assert w == 700 and h <= 400  # the heatmap's height is fitted to the text


def test_bad_requests(client):
    _login(client)
    base = "/admin/studies/demo/participants/p_synth"
    r = client.get(base + "/plot/heatmap.png?task=7&turn=1")  # a turn without gaze: the reason as an image
    assert r.status_code == 404 and r.data.startswith(b"\x89PNG")
    assert client.get(base + "/plot/nonsense.png").status_code == 404
    assert client.get(base + "/plot/heatmap.png?size=99999x2").status_code == 400
    assert client.get("/admin/studies/demo/participants/nobody/plots").status_code == 404
    # the study page shows pseudonyms cut to 12 characters: a unique prefix of 8+ works
    assert client.get("/admin/studies/demo/participants/p_synth/plots").status_code == 200
    assert client.get("/admin/studies/demo/participants/p_sy/plots").status_code == 404
    r = client.get("/admin/studies/demo/participants/nobody/plots")
    assert 'class="admin-nav"' in r.get_data(as_text=True)  # a researcher's error page


def _mouse_only(rec, uncalibrated=False):
    """``rec`` without gaze; ``uncalibrated``: with the gaze rows but no estimate in them, from a
    failed calibration with the record-uncalibrated fallback (the features, x/y NaN; the
    participant's webcam "uncalibrated"), or ``"no-estimate"``: the same rows after a calibration
    that passed (no face found in the pictures)."""
    import dataclasses

    import numpy as np
    import pyarrow as pa

    from gazepref.signals.plots.synthetic import MemoryRecording

    streams = {k: v for k, v in rec.streams("p_synth/7").items() if k != "gaze"}
    if uncalibrated:
        gaze = rec.streams("p_synth/7")["gaze"]
        for c in ("x", "y"):
            nan = pa.array(np.full(gaze.num_rows, np.nan), gaze.schema.field(c).type)
            gaze = gaze.set_column(gaze.schema.get_field_index(c), c, nan)
        streams["gaze"] = gaze
    webcam = {True: "uncalibrated", "no-estimate": "calibrated"}.get(uncalibrated)
    people = [dataclasses.replace(p, webcam=webcam) for p in rec.participants()] if uncalibrated else rec.participants()
    return MemoryRecording(people, rec.tasks(), rec.turns(), {"p_synth/7": streams})


@pytest.mark.parametrize("uncalibrated", [False, True, "no-estimate"])
def test_mouse_only_participant_gets_only_mouse_views(tmp_path, monkeypatch, rec, uncalibrated):
    app = create_app(str(tmp_path / "instance"), {"TESTING": True, "SECRET_KEY": "test-secret"})
    if "plots" not in app.blueprints:
        app.register_blueprint(plots_view.bp)
    monkeypatch.setattr(plots_view, "_recording", lambda slug: _mouse_only(rec, uncalibrated))
    client = app.test_client()
    _login(client)
    html = client.get("/admin/studies/demo/participants/p_synth/plots").get_data(as_text=True)
    kinds = sorted(set(re.findall(r"plot/(\w+)\.png", html)))
    if uncalibrated:  # the camera recorded: its quality panel (face found, sample rate), no gaze views
        assert kinds == ["mouse", "quality", "timeline"] and "Mouse only" not in html
        failed = uncalibrated is True  # (the advice only where the calibration failed)
        assert ("Gaze recorded without a calibration" in html) == failed and ("--include-failed" in html) == failed
        assert ("no sample of it has an estimate" in html) != failed
    else:
        assert kinds == ["mouse", "timeline"]  # no gaze views, no gaze-quality panel, no placeholders
        assert "Mouse only" in html and "without a calibration" not in html
    for src in re.findall(r'src="([^"]+)"', html):
        assert client.get(src.replace("&amp;", "&")).status_code == 200


def test_a_turn_whose_gaze_never_falls_on_the_answers_gets_no_heatmap(tmp_path, monkeypatch, rec):
    """Gaze estimated, none of it on a response's text (looking at the prompt, off the answers):
    the page offers no heatmap or scanpath (drawn, they were 404s naming a command-line option),
    the timeline and mouse views and the quality panel stay."""
    import numpy as np
    import pyarrow as pa

    from gazepref.signals.plots.synthetic import MemoryRecording

    streams = dict(rec.streams("p_synth/7"))
    gaze = streams["gaze"]
    for c in ("x", "y"):  # every sample in the page's top left corner, above the answers
        i = gaze.schema.get_field_index(c)
        gaze = gaze.set_column(i, c, pa.array(np.full(gaze.num_rows, 3.0), gaze.schema.field(i).type))
    streams["gaze"] = gaze
    off = MemoryRecording(rec.participants(), rec.tasks(), rec.turns(), {"p_synth/7": streams})
    app = create_app(str(tmp_path / "instance"), {"TESTING": True, "SECRET_KEY": "test-secret"})
    if "plots" not in app.blueprints:
        app.register_blueprint(plots_view.bp)
    monkeypatch.setattr(plots_view, "_recording", lambda slug: off)
    client = app.test_client()
    _login(client)
    html = client.get("/admin/studies/demo/participants/p_synth/plots").get_data(as_text=True)
    assert sorted(set(re.findall(r"plot/(\w+)\.png", html))) == ["mouse", "quality", "timeline"]
    assert "(gaze and mouse)" in html  # the turn's samples, as before
    for src in re.findall(r'src="([^"]+)"', html):
        assert client.get(src.replace("&amp;", "&")).status_code == 200


def test_participant_without_tasks_gets_a_researcher_page(tmp_path, monkeypatch, rec):
    from gazepref.signals.plots.synthetic import MemoryRecording

    app = create_app(str(tmp_path / "instance"), {"TESTING": True, "SECRET_KEY": "test-secret"})
    if "plots" not in app.blueprints:
        app.register_blueprint(plots_view.bp)
    monkeypatch.setattr(plots_view, "_recording", lambda slug: MemoryRecording(rec.participants(), [], [], {}))
    client = app.test_client()
    _login(client)
    r = client.get("/admin/studies/demo/participants/p_synth/plots")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "has not started a task yet" in html and 'class="admin-nav"' in html
    # one screened out at the camera set-up: said so (they never will start a task)
    from dataclasses import replace

    out = [replace(p, screened_out="no-camera") for p in rec.participants()]
    monkeypatch.setattr(plots_view, "_recording", lambda slug: MemoryRecording(out, [], [], {}))
    html = client.get("/admin/studies/demo/participants/p_synth/plots").get_data(as_text=True)
    assert "screened out at the camera set-up (no usable camera) and did no task" in html


def _site_participant(s):
    """(the study's slug, a consenting participant added to it) in session ``s``."""
    from sqlalchemy import select

    from gazepref import store

    study = s.scalars(select(store.Study)).first()
    p = store.Participant(study_id=study.id, pseudonym="a1b2c3d4e5f6a7b8c9d0", platform="test", consent=True)
    s.add(p)
    return study.slug, p


def test_plots_from_the_site_database(tmp_path):
    """End to end: a participant stored like the site stores one (turns, stream chunks, a validation
    round) is drawn from the database through StoreRecording."""
    from gazepref import store

    app = create_app(str(tmp_path / "db-instance"), {"TESTING": True, "SECRET_KEY": "test-secret"})
    if "plots" not in app.blueprints:
        app.register_blueprint(plots_view.bp)
    syn = site_like()
    tr = syn.turns()
    streams = syn.streams("p_synth/7")
    with app.extensions["gazepref"].sessions() as s:
        slug, p = _site_participant(s)
        s.flush()
        task = store.Task(participant_id=p.id, index=0, kind="pairwise", clock_anchor_epoch_ms=1.7e12)
        s.add(task)
        s.flush()
        for t in tr:
            row = store.Turn(task_id=task.id, index=t.index, kind=t.kind, prompt=t.prompt, choice=t.choice,
                             t_shown=t.t_shown, t_decided=t.t_decided)
            row.responses = [store.Response(position=r.position, model=r.model, text=r.text, likert=r.likert)
                             for r in t.responses]
            s.add(row)
        for seq, (name, tb) in enumerate(streams.items()):
            if name != "layout":
                tb = tb.drop_columns(["turn"])
            s.add(store.make_chunk(task.id, name, seq, tb))
        s.add(store.Calibration(participant_id=p.id, kind="validation", result={"accuracy_px": 140.0}))
        s.commit()
        task_no = task.id
    client = app.test_client()
    _login(client)
    base = f"/admin/studies/{slug}/participants/a1b2c3d4e5f6"  # as the study page shows it (12 chars)
    page = client.get(f"/admin/studies/{slug}").get_data(as_text=True)
    assert f'href="{base}/plots"' in page  # the study page links the participant's views
    r = client.get(base + "/plots")
    assert r.status_code == 200 and f"task={task_no}" in r.get_data(as_text=True)
    html = r.get_data(as_text=True)
    assert "<h2>Task 1 (pairwise)" in html
    srcs = [x.replace("&amp;", "&") for x in re.findall(r'src="([^"]+)"', html)]
    assert sorted(set(re.findall(r"plot/(\w+)\.png", html))) == ["heatmap", "mouse", "quality", "scanpath", "timeline"]
    first = client.get(srcs[0])
    assert first.status_code == 200 and "max-age=3600" in first.headers["Cache-Control"]
    assert client.get(srcs[0]).data == first.data  # served from the cache
    for kind in ("heatmap", "timeline"):
        r = client.get(base + f"/plot/{kind}.png?task={task_no}&turn=0&size=600x400")
        assert r.status_code == 200, r.data[:200]
        h, w = imread(io.BytesIO(r.data)).shape[:2]
        assert w == 600 and (h == 400 if kind == "timeline" else h <= 400)
    r = client.get(base + "/plot/quality.png?size=600x300")
    assert r.status_code == 200
    rec = None
    with app.test_request_context():
        rec = plots_view._recording(slug)
        assert [t.calibration_accuracy for t in rec.tasks()] == [140.0]


def test_a_participant_screened_out_after_a_visit_is_shown_so(tmp_path):
    """The page's data is cached by the participant's data version: a screen-out (which adds no
    task, turn, stream or calibration row) changes it, so a second visit says why there is no task."""
    from gazepref import store

    app = create_app(str(tmp_path / "db-instance"), {"TESTING": True, "SECRET_KEY": "test-secret"})
    if "plots" not in app.blueprints:
        app.register_blueprint(plots_view.bp)
    with app.extensions["gazepref"].sessions() as s:
        slug, p = _site_participant(s)
        s.commit()
        pid = p.id
    client = app.test_client()
    _login(client)
    url = f"/admin/studies/{slug}/participants/a1b2c3d4e5f6a7b8c9d0/plots"
    assert "has not started a task yet" in client.get(url).get_data(as_text=True)
    with app.extensions["gazepref"].sessions() as s:
        p = s.get(store.Participant, pid)
        p.state = {**(p.state or {}), "screened_out": {"reason": "no-camera", "camera": "no-camera"}}
        s.commit()
    assert "screened out at the camera set-up" in client.get(url).get_data(as_text=True)
