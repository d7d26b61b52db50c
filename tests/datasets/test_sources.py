"""One data access: every command reads a study in the site's database by its slug, located by
``GAZEPREF_DATABASE_URL`` alone (SQLite and PostgreSQL), as it reads an IFLLM folder.

The study is recorded by the site itself: participants walk through the flow with the test client,
chat, choose, and the page's telemetry (layout word boxes, gaze, mouse) arrives through
``/api/ingest``; each participant dwells longer on the answer they then choose.
"""
from __future__ import annotations

import contextlib

import gc
import gzip
import json
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gazepref import UserError, store
from gazepref.cli import main
from gazepref.datasets.sources import fingerprint, open_source
from gazepref.signals.plots.text_layout import reflow

sys.path.insert(0, str(Path(__file__).parents[1] / "capture_site"))
from sitetest import STUDY_TOML, Walker  # noqa: E402

SLUG = "test-study"  # tests/capture_site/study.toml
PARTICIPANTS = 6
TURNS = 3
ORIGIN = 1.7e12
WIDTH = 520.0
BOXES = {0: (40.0, 200.0), 1: (620.0, 200.0)}  # response elements' top-left in the viewport


def _layout(turn: int, texts: list[str]) -> dict[str, list]:
    cols: dict[str, list] = {k: [] for k in ("t", "target", "kind", "index", "char_start", "char_end",
                                             "x", "y", "w", "h", "turn")}

    def row(**kw):
        for k, v in kw.items():
            cols[k].append(v)

    t0 = turn * 10_000.0 + 1000.0
    for pos, text in enumerate(texts):
        b = reflow(text, WIDTH)
        ox, oy = BOXES[pos]
        row(t=t0, target=f"response:{pos}", kind="element", index=-1, char_start=-1, char_end=-1,
            x=ox, y=oy, w=WIDTH, h=float(b.height), turn=turn)
        for i in range(len(b)):
            row(t=t0, target=f"response:{pos}", kind="word", index=i, char_start=int(b.char_start[i]),
                char_end=int(b.char_end[i]), x=float(b.x[i]), y=float(b.y[i]), w=float(b.w[i]),
                h=float(b.h[i]), turn=turn)
    return cols


def _samples(turn: int, texts: list[str], chosen: int, rng) -> tuple[dict, dict]:
    """Gaze over both answers' words, 3 times as long on the chosen one; the pointer follows."""
    t0 = turn * 10_000.0 + 1100.0
    plan = [chosen] * 120 + [1 - chosen] * 40
    rng.shuffle(plan)
    xs, ys = [], []
    for pos in plan:
        b = reflow(texts[pos], WIDTH)
        k = int(rng.integers(0, len(b)))
        ox, oy = BOXES[pos]
        xs.append(ox + float(b.x[k] + b.w[k] / 2) + float(rng.normal(0, 3)))
        ys.append(oy + float(b.y[k] + b.h[k] / 2) + float(rng.normal(0, 2)))
    t = [t0 + 33.0 * i for i in range(len(plan))]
    gaze = {"t": t, "x": xs, "y": ys, "confidence": [0.9] * len(t)}
    mouse = {"t": t, "x": [x + 12 for x in xs], "y": [y + 20 for y in ys], "buttons": [0] * len(t)}
    return gaze, mouse


def _ingest(client, data: dict, seq: int, streams: dict) -> None:
    body = gzip.compress(json.dumps({"task": data["task"], "seq": seq, "origin": ORIGIN, "streams": streams}).encode())
    r = client.post("/api/ingest", data=body, headers={"X-Participant-Token": data["token"],
                                                       "Content-Type": "application/json",
                                                       "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.json


def record_study(instance: Path) -> None:
    """Run the site on the database that $GAZEPREF_DATABASE_URL names and record the study."""
    from gazepref.capture_site.app import create_app

    app = create_app(str(instance), {"TESTING": True, "SECRET_KEY": "test-secret", "STUDY_CONFIG": str(STUDY_TOML)})
    rng = np.random.default_rng(7)
    for i in range(PARTICIPANTS):
        walker = Walker(app.test_client(), pid=f"WORKER{i}")
        walker.arrive(PROLIFIC_PID=walker.pid, STUDY_ID="S1", SESSION_ID=f"X{i}")
        walker.consent()
        data = walker.to_task()
        assert data["kind"] == "pairwise"
        for k in range(TURNS):
            chosen = int((i + k) % 2)
            r = walker.client.post(data["urls"]["turns"], json={"index": k, "prompt": f"question {k} of {i}"},
                                   headers={"X-Participant-Token": data["token"]})
            texts = [x["text"] for x in r.json["turn"]["responses"]]
            gaze, mouse = _samples(k, texts, chosen, rng)
            _ingest(walker.client, data, k, {"layout": _layout(k, texts), "gaze": gaze, "mouse": mouse})
            body = {"likert": [4, 3], "origin": ORIGIN, "t_shown": k * 10_000.0 + 1000.0,
                    "t_decided": k * 10_000.0 + 9000.0, "choice": chosen, "strength": 2}
            r = walker.client.post(f"{data['urls']['turns']}/{k}/rating", json=body,
                                   headers={"X-Participant-Token": data["token"]})
            assert r.status_code == 200, r.json
    app.extensions["gazepref"].sessions.kw["bind"].dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def study_url(request, tmp_path_factory):
    """The database URL of a recorded study: a SQLite file, or a fresh database on the test server."""
    tmp = tmp_path_factory.mktemp(f"study-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = store.sqlite_url(tmp / "site.sqlite")
        else:
            url = stack.enter_context(request.getfixturevalue("own_postgres_database")("gp_sources"))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GAZEPREF_DATABASE_URL", url)
            mp.delenv("GAZEPREF_INSTANCE", raising=False)
            record_study(tmp / "instance")
        yield url


@pytest.fixture
def env(study_url, tmp_path, monkeypatch):
    """Only the environment variable names the database: no --db, and ./instance is empty."""
    monkeypatch.setenv("GAZEPREF_DATABASE_URL", study_url)
    monkeypatch.delenv("GAZEPREF_INSTANCE", raising=False)
    monkeypatch.setenv("GAZEPREF_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    yield study_url
    gc.collect()  # the recordings' connections are given back while the server still runs


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_data_summary_and_export_of_a_slug(env, tmp_path, capsys):
    s = _json(capsys, ["data", "summary", SLUG, "--json"])
    assert s["format"] == "gazepref-db"
    assert (s["participants"], s["turns"], s["pairwise_turns_labelled"]) == (PARTICIPANTS, PARTICIPANTS * TURNS,
                                                                    PARTICIPANTS * TURNS)
    assert s["gaze_samples"] == s["mouse_samples"] == PARTICIPANTS * TURNS * 160
    # `--study SLUG` (the old spelling) and SLUG as SOURCE read the same study
    a = _json(capsys, ["data", "export", "--study", SLUG, "--to", "parquet", "--out", str(tmp_path / "pq"), "--json"])
    b = _json(capsys, ["data", "export", SLUG, "--to", "ifllm", "--out", str(tmp_path / "ifl"), "--json"])
    assert a["turns"] == PARTICIPANTS * TURNS and a["samples"]["gaze"] == s["gaze_samples"]
    assert (tmp_path / "ifl" / "query_logs_table.csv").exists() and b
    back = _json(capsys, ["data", "summary", str(tmp_path / "pq"), "--json"])
    assert {k: back[k] for k in ("participants", "turns", "gaze_samples")} == \
        {k: s[k] for k in ("participants", "turns", "gaze_samples")}


def test_features_of_a_slug_match_its_export(env, tmp_path, capsys):
    st = _json(capsys, ["features", SLUG, "--out", str(tmp_path / "f"), "--jobs", "2", "--no-sentences", "--json"])
    assert st["format"] == "gazepref-db" and st["comparisons_labelled"] == PARTICIPANTS * TURNS
    assert st["gaze_samples"] == PARTICIPANTS * TURNS * 160
    from gazepref.datasets.export import export_parquet
    from gazepref.signals import features

    export_parquet(open_source(SLUG), tmp_path / "pq")
    via_db = pd.read_parquet(tmp_path / "f" / "comparisons.parquet")
    via_file = features.build(tmp_path / "pq", sentences=False).comparisons
    cols = features.default_feature_columns(via_file)
    assert cols and len(via_db) == len(via_file)
    pd.testing.assert_frame_equal(via_db[cols], via_file[cols], check_dtype=False)


def test_reward_train_score_and_evaluate_a_slug(env, tmp_path, capsys):
    models = "length_rule,implicit_logistic,late_fusion"
    rep = _json(capsys, ["reward", "evaluate", SLUG, "--json", "--models", models, "--seeds", "1", "--folds", "3"])
    assert rep["implicit"]["n"] == PARTICIPANTS * TURNS
    # each participant dwelt longer on the answer they chose: the implicit model sees it
    assert rep["implicit"]["accuracy"] > 0.8
    _json(capsys, ["reward", "train", SLUG, "--out", str(tmp_path / "rm"), "--model", "late_fusion", "--json"])
    res = _json(capsys, ["reward", "score", str(tmp_path / "rm"), SLUG, "--out", str(tmp_path / "s.csv"), "--json"])
    assert res["comparisons"] == PARTICIPANTS * TURNS == len(pd.read_csv(tmp_path / "s.csv"))


def test_plot_and_report_of_a_slug(env, tmp_path, capsys):
    assert main(["plot", "timeline", SLUG, "--participant", open_source(SLUG).participants()[0].participant_id,
                 "--out", str(tmp_path / "t.png"), "--size", "600x400"]) == 0
    assert main(["report", SLUG, "--out", str(tmp_path / "r.html"), "--examples", "1"]) == 0
    capsys.readouterr()
    assert (tmp_path / "t.png").stat().st_size > 1000
    html = (tmp_path / "r.html").read_text()
    assert f"study {SLUG}" in html and "WORKER" not in html  # pseudonyms only


@pytest.mark.slow
def test_align_a_slug(env, tmp_path, capsys):
    pytest.importorskip("trl")
    fast = ["--tiny", "--steps", "2", "--max-length", "96", "--context-messages", "0", "--max-prompts", "2",
            "--max-new-tokens", "4", "--test-fraction", "0.34", "--json"]
    rep = _json(capsys, ["align", SLUG, "--out", str(tmp_path / "run"), *fast])
    assert rep["source_kind"] == "recording"
    counts = rep["steps"]["pairs"]["result"]["counts"]
    assert counts["train"] > 0 and counts["test"] > 0 and rep["steps"]["train"]["result"]["steps"] == 2


def test_fingerprint_follows_the_study(env):
    """Feature caches are keyed by the study's content: a new label or a new chunk changes the key."""
    from sqlalchemy import select

    rec = open_source(SLUG)
    key = fingerprint(rec)
    assert key == fingerprint(open_source(SLUG))
    with store.init_db(store.make_engine(env))() as db:  # another connection to the same database
        turn = db.scalars(select(store.Turn).order_by(store.Turn.id)).first()
        turn.choice = 1 - turn.choice
        db.commit()
    assert fingerprint(open_source(SLUG)) != key


def test_bad_sources_say_what_was_tried(env, tmp_path, capsys):
    assert main(["data", "summary", "no-such-study"]) == 2
    err = capsys.readouterr().err
    assert "no-such-study" in err and "not a file or folder" in err and SLUG in err  # the studies there
    assert main(["features", "./missing/folder", "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_an_unreachable_database_is_a_one_line_error(capsys):
    """psycopg's message spans lines ("...Connection refused\n\tIs the server running ..."): the
    command still prints one line, naming the database."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://gp@127.0.0.1:{port}/gazepref"
    assert main(["data", "summary", "some-study", "--db", url]) == 2
    err = capsys.readouterr().err
    assert f"cannot read the database postgresql+psycopg://gp@127.0.0.1:{port}/gazepref" in err
    assert err.count("\n") == 1


def test_database_url_order(tmp_path, monkeypatch):
    monkeypatch.delenv("GAZEPREF_DATABASE_URL", raising=False)
    monkeypatch.delenv("GAZEPREF_INSTANCE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert store.database_url() == store.sqlite_url(tmp_path / "instance" / "gazepref.sqlite")
    monkeypatch.setenv("GAZEPREF_INSTANCE", str(tmp_path / "inst"))
    assert store.database_url() == store.sqlite_url(tmp_path / "inst" / "gazepref.sqlite")
    assert store.database_url(instance=tmp_path / "other") == store.sqlite_url(tmp_path / "other" / "gazepref.sqlite")
    monkeypatch.setenv("GAZEPREF_DATABASE_URL", "postgresql+psycopg://u:secret@db/gp")
    assert store.database_url(instance=tmp_path / "other") == "postgresql+psycopg://u:secret@db/gp"
    assert store.database_url("sqlite:///x.db") == "sqlite:///x.db"
    assert store.database_url("site.sqlite") == store.sqlite_url(tmp_path / "site.sqlite")  # a plain file
    assert "secret" not in store.safe_url(store.database_url())
    with pytest.raises(UserError, match=r"no database at .*site\.sqlite \(from --db\).*GAZEPREF_DATABASE_URL"):
        store.database_url("site.sqlite", must_exist=True)
    monkeypatch.delenv("GAZEPREF_DATABASE_URL")
    with pytest.raises(UserError, match=r"inst/gazepref\.sqlite \(from \$GAZEPREF_INSTANCE\)"):
        store.database_url(must_exist=True)


def test_the_site_and_the_commands_use_one_locator(tmp_path, monkeypatch):
    """The site writes where the commands read: $GAZEPREF_DATABASE_URL, else the instance's SQLite."""
    from gazepref.capture_site.app import create_app

    monkeypatch.delenv("GAZEPREF_INSTANCE", raising=False)
    url = store.sqlite_url(tmp_path / "elsewhere.sqlite")
    monkeypatch.setenv("GAZEPREF_DATABASE_URL", url)
    app = create_app(str(tmp_path / "inst"), {"TESTING": True, "SECRET_KEY": "k", "STUDY_CONFIG": str(STUDY_TOML)})
    assert app.config["DATABASE_URL"] == url and not (tmp_path / "inst" / "gazepref.sqlite").exists()
    assert open_source(SLUG).url == url
    monkeypatch.delenv("GAZEPREF_DATABASE_URL")
    app = create_app(str(tmp_path / "inst"), {"TESTING": True, "SECRET_KEY": "k", "STUDY_CONFIG": str(STUDY_TOML)})
    assert app.config["DATABASE_URL"] == store.database_url(instance=tmp_path / "inst")
    assert open_source(SLUG, instance=str(tmp_path / "inst")).study.slug == SLUG


@pytest.mark.parametrize("argv", [
    ["data", "summary", "s"], ["features", "s", "--out", "{tmp}/f"], ["gaze", "recalibrate", "s", "--out", "{tmp}/g"],
    ["study", "simulate", "--participants", "1", "--effect", "0", "--study", "s2"]])
def test_a_db_file_that_is_not_a_database_is_one_line(tmp_path, capsys, argv):
    """--db naming a file that is no SQLite database (a CSV, a typo'd path to another file): one
    line naming it, exit 2 (it was sqlite3's "file is not a database" traceback)."""
    not_db = tmp_path / "notes.csv"
    not_db.write_text("participant_id,turn\nw1,0\n")
    assert main([a.format(tmp=tmp_path) for a in argv] + ["--db", str(not_db)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("gazepref: error: ")
    assert "not a database" in err and "notes.csv" in err
    assert not_db.read_text() == "participant_id,turn\nw1,0\n"
