"""Researcher dashboard: accounts from the CLI, login, progress, quality, export, deletion."""
import io
import json
import zipfile

import pandas as pd
import pytest
from sqlalchemy import select

from gazepref import store
from gazepref.cli import main as cli

from sitetest import Walker, csrf_of


@pytest.fixture
def researcher(app, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert cli(["user", "add", "ada", "--password-stdin", "--instance", app.instance_path]) == 0
    assert "created user ada" in capsys.readouterr().out
    return "ada", "correct horse battery"


def login(client, user, password):
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"csrf_token": csrf_of(page.text), "username": user,
                                             "password": password})


def test_user_add_hashes_password(app, researcher, dbs):
    user = dbs.scalars(select(store.User)).one()
    assert user.username == "ada" and researcher[1] not in user.password_hash
    assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))


def test_user_add_rejects_short_password(app, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli(["user", "add", "bob", "--password-stdin", "--instance", app.instance_path]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_pages_need_login(client):
    for url in ("/admin/", "/admin/studies/test-study", "/admin/studies/test-study/export"):
        r = client.get(url)
        assert r.status_code == 302 and "/admin/login" in r.location
    assert client.post("/admin/participants/1/delete").status_code == 400  # no CSRF token either


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
    if "plots" in app.blueprints:  # the analyst views, linked per consenting participant
        assert page.text.count("/plots\"") == 1
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
    assert dbs.get(store.Participant, pid) is None
    for table in (store.Task, store.Turn, store.Response, store.StreamChunk, store.Demographics):
        assert dbs.scalars(select(table)).all() == []
    assert len(dbs.scalars(select(store.Participant)).all()) == 1  # the decline stays


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
    assert json.loads(zf.read("test-study/skipped.json"))["rows_epoch_out_of_range"] == 30
    [mouse_csv] = [n_ for n_ in zf.namelist() if n_.endswith("abs_mouse.csv")]
    assert len(zf.read(mouse_csv).decode().splitlines()) == n
    assert client.get("/admin/studies/test-study/export?format=parquet").status_code == 200
