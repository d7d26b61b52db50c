"""The site's commands (``gazepref serve``, ``gazepref user add``): a database that cannot be
reached or opened is a user's mistake, one line naming it (the password masked), exit status 2."""
from __future__ import annotations

import io
import socket

import pytest

from gazepref.cli import main


def _refused_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://gp:hunter2@127.0.0.1:{port}/gazepref"


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
@pytest.mark.parametrize("command", [["user", "add", "ada", "--password-stdin"], ["serve", "--port", "1"]])
def test_an_unusable_database_is_a_one_line_error(command, kind, tmp_path, monkeypatch, capsys):
    url = _refused_url() if kind == "postgresql" else str(tmp_path / "no" / "such" / "folder" / "site.sqlite")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main([*command, "--db", url, "--instance", str(tmp_path / "instance")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gazepref: error: cannot use the database ") and err.count("\n") == 1
    assert "hunter2" not in err


@pytest.mark.parametrize("url", ["postgres://gp:hunter2@db/gazepref", "mysql://gp:hunter2@db/gazepref",
                                 "gp:hunter2@db"])
@pytest.mark.parametrize("command", [["user", "add", "ada", "--password-stdin"], ["serve", "--port", "1"],
                                     ["data", "export", "demo", "--out", "x"]])
def test_a_database_url_sqlalchemy_cannot_use_is_a_one_line_error(command, url, tmp_path, monkeypatch, capsys):
    """A URL in the wrong form (``postgres://``, a driver not installed, no scheme) in
    $GAZEPREF_DATABASE_URL: one line naming it and the form expected, the password masked."""
    monkeypatch.setenv("GAZEPREF_DATABASE_URL", url)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith("gazepref: error: ") and "not a usable database URL " in err and err.count("\n") == 1, err
    assert "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE" in err and "hunter2" not in err


# --------------------------------------------------------------------------- gazepref study check

STUDY_FILE = __import__("pathlib").Path(__file__).with_name("study.toml")


def _study_file(tmp_path, replace: tuple[str, str] | None = None, append: str = "", raw: bytes | None = None):
    text = STUDY_FILE.read_text(encoding="utf-8")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / "my.toml"
    path.write_bytes(raw if raw is not None else (text + append).encode("utf-8"))
    return path


def test_study_check_summarises_a_valid_file(tmp_path, capsys):
    from gazepref.capture_site.config import load_config

    path = _study_file(tmp_path, ('webcam = "off"', 'webcam = "optional"'),
                       append="\n[gaze]\ncalibration_points = 5\n")
    assert main(["study", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(f"{path}: ok - study 'test-study'")
    assert main(["study", "check", str(path), "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    cfg = load_config(path)
    assert summary["ok"] and summary["slug"] == cfg.slug and summary["webcam"] == "optional"
    assert summary["models"] == {n: m.backend for n, m in cfg.models.items()}
    assert summary["gaze"]["calibration_points"] == 5
    # the turns per task under the study file's own names ("turns" is a count in every other output)
    assert (summary["min_turns"], summary["max_turns"]) == (cfg.min_turns, cfg.max_turns) and "turns" not in summary
    assert f"{cfg.min_turns}-{cfg.max_turns} turns" in out


def test_study_check_warns_of_settings_no_participant_can_calibrate_under(tmp_path, capsys, caplog, make_app):
    """At fps 2 a dot gets at most 3 pictures in settle_ms + target_timeout_ms (1.1 s), fewer than
    min_frames: every round would starve. ``study check`` accepts the file (exit 0) with a warning
    line naming the keys (and ``warnings`` in its JSON), and the site logs it when it starts."""
    path = _study_file(tmp_path, ('webcam = "off"', 'webcam = "required"'),
                       append="\n[gaze]\nfps = 2\ntarget_timeout_ms = 500\nmin_frames = 5\n")
    assert main(["study", "check", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{path}: warning: gaze.min_frames = 5")
    assert "at most 3" in lines[1] and "target_timeout_ms" in lines[1]  # 2 a second over 1.1 s, one at each end
    assert main(["study", "check", str(path), "--json"]) == 0
    import json

    assert [w[:20] for w in json.loads(capsys.readouterr().out)["warnings"]] == ["gaze.min_frames = 5 "]
    make_app(STUDY_CONFIG=str(path))
    assert any("every calibration round would end short of pictures" in r.getMessage() for r in caplog.records)
    fine = _study_file(tmp_path, ('webcam = "off"', 'webcam = "required"'), append="\n[gaze]\nfps = 2\n")
    assert main(["study", "check", str(fine), "--json"]) == 0 and json.loads(capsys.readouterr().out)["warnings"] == []


BAD_FILES = {  # what is wrong -> (how the file is made, what the one line must name)
    "unknown key": (dict(replace=("min_turns = 2", "min_turn = 2")), "unknown key tasks.min_turn"),
    "wrong type": (dict(replace=("min_turns = 2", 'min_turns = "two"')), "tasks.min_turns"),
    "gaze key, webcam on": (dict(replace=('webcam = "off"', 'webcam = "required"'),
                                 append="\n[gaze]\ncalibration_points = 7\n"), "gaze.calibration_points"),
    "gaze typo, webcam on": (dict(replace=('webcam = "off"', 'webcam = "optional"'),
                                  append="\n[gaze]\nkeep_frame = true\n"), "unknown key gaze.keep_frame"),
    "gaze typo, webcam off": (dict(append="\n[gaze]\nmin_frame = 0\n"), "unknown key gaze.min_frame"),
    "calibration_points not a number": (dict(replace=('webcam = "off"', 'webcam = "optional"'),
                                             append='\n[gaze]\ncalibration_points = "9"\n'),
                                        "gaze.calibration_points must be 5, 9 or 13"),
    "fps wrong type": (dict(append='\n[gaze]\nfps = "ten"\n'), "gaze.fps must be an integer in 1..30"),
    "camera_images not a flag": (dict(replace=('[consent]', '[consent]\ncamera_images = "yes"')),
                                 "consent.camera_images must be true or false"),
    "demo variant": (dict(replace=('variant = "concise"', 'variant = "brief"')), ".variant"),
    "not TOML": (dict(append="\n[tasks\n"), "not valid TOML"),
    "not UTF-8": (dict(raw=b"[study]\nslug = \"\xff\"\n"), "not UTF-8 text"),
}


@pytest.mark.parametrize("problem", list(BAD_FILES))
def test_study_check_fails_as_the_site_start_does(problem, tmp_path, capsys):
    """The one line names the file and the key, and is the very error the site's start gives."""
    making, names = BAD_FILES[problem]
    path = _study_file(tmp_path, **making)
    assert main(["study", "check", str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith(f"gazepref: error: {path}: ") and err.count("\n") == 1 and names in err
    assert captured.out == ""
    from gazepref.capture_site.app import SiteStartError, create_app

    with pytest.raises(SiteStartError) as raised:  # (a UserError: the line gunicorn and `serve` print)
        create_app(instance_path=str(tmp_path / "instance"),
                   overrides={"STUDY_CONFIG": str(path), "DATABASE_URL": f"sqlite:///{tmp_path / 'site.sqlite'}"})
    assert err == f"gazepref: error: {raised.value}\n"


def test_study_check_names_a_missing_file(tmp_path, capsys):
    assert main(["study", "check", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err == f"gazepref: error: study config not found: {tmp_path / 'nope.toml'}\n"


def test_find_participant_names_the_pseudonym_of_a_platform_id(app, capsys):
    """A participant asks for their data to be deleted and gives their Prolific id: the site stores
    only a pseudonym of it, so the researcher had no way to find their row on the dashboard; the
    command gives the pseudonym (the dashboard's column) and where they got to. Ids are per
    platform, and another study's participant is not found."""
    import json

    from sqlalchemy import select

    from gazepref import store
    from sitetest import Walker

    w = Walker(app.test_client(), "5f0c1e2d3b4a5968778695a4")
    w.arrive()
    w.consent()
    Walker(app.test_client(), "SOMEONE-ELSE").arrive()  # no consent: nothing stored
    with app.extensions["gazepref"].sessions() as s:
        [p] = s.scalars(select(store.Participant)).all()
    where = ["--instance", app.instance_path, "--json"]
    assert main(["study", "find-participant", "test-study", "--prolific", " 5f0c1e2d3b4a5968778695a4 ", *where]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["participant"]["pseudonym"] == p.pseudonym and found["participant"]["status"] == "started"
    assert found["participant"]["step"] == "demographics" and found["participant"]["dashboard"] == p.pseudonym[:12]
    assert main(["study", "find-participant", "test-study", "--prolific", "5f0c1e2d3b4a5968778695a4", *where[:-1]]) == 0
    assert "where 'Delete data' deletes their data" in capsys.readouterr().out
    for other in (["--mturk", "5f0c1e2d3b4a5968778695a4"], ["--prolific", "SOMEONE-ELSE"]):
        assert main(["study", "find-participant", "test-study", *other, *where]) == 1
        assert json.loads(capsys.readouterr().out)["participant"] is None
    assert main(["study", "find-participant", "no-such-study", "--prolific", "X", *where]) == 2
    assert "no study 'no-such-study'" in capsys.readouterr().err


def test_find_participant_says_that_a_participant_withdrew(app, capsys):
    """A participant who withdrew on the site (their data deleted) is found as "withdrawn"."""
    import json

    from sitetest import Walker, csrf_of

    w = Walker(app.test_client(), "PID-WITHDREW")
    w.arrive()
    w.consent()
    page = w.client.get("/withdraw")
    assert w.client.post("/withdraw", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    where = ["--instance", app.instance_path, "--json"]
    assert main(["study", "find-participant", "test-study", "--prolific", "PID-WITHDREW", *where]) == 0
    found = json.loads(capsys.readouterr().out)["participant"]
    assert (found["status"], found["step"]) == ("withdrawn", "-")
    # in words: that row has no "Delete data" (the withdrawal deleted it all)
    assert main(["study", "find-participant", "test-study", "--prolific", "PID-WITHDREW", *where[:-1]]) == 0
    out = capsys.readouterr().out
    assert "(withdrawn, step -)" in out and "nothing to delete" in out and "'Delete data' deletes" not in out


def test_serve_refuses_a_port_it_cannot_listen_on_in_one_line(tmp_path, capsys):
    """A port out of range (werkzeug wrapped 99999 to another port while the banner named 99999)
    or in use (werkzeug's two lines, exit status 1): one line, exit status 2."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for argv, says in ((["--port", "99999"], "--port must be from 1 to 65535 (got 99999)"),
                           (["--port", str(port)], f"cannot listen on 127.0.0.1:{port}")):
            assert main(["serve", "--instance", str(tmp_path / "instance"), *argv]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and says in err, err


def test_serve_listens_on_a_unix_socket_and_takes_nothing_else_there(tmp_path, monkeypatch, capsys):
    """``--host unix://PATH`` (werkzeug serves it) goes to the server (a TypeError of the port
    check before), also over a socket left by a server that stopped; a file of that name, the
    socket of a server still listening, or a folder that does not exist are refused in one line
    (werkzeug deletes whatever is at the path before it binds: the file gone, the running server
    left without requests)."""
    import socket

    from flask import Flask

    ran = []
    monkeypatch.setattr(Flask, "run", lambda self, **kw: ran.append(kw["host"]))
    path = tmp_path / "site.sock"
    serve = ["serve", "--instance", str(tmp_path / "instance"), "--host"]
    assert main([*serve, f"unix://{path}"]) == 0
    assert ran == [f"unix://{path}"] and f"unix:{path}" in capsys.readouterr().out
    with socket.socket(socket.AF_UNIX) as left:  # a socket no server listens on any more
        left.bind(str(path))
    assert main([*serve, f"unix://{path}"]) == 0 and len(ran) == 2
    path.unlink()
    with socket.socket(socket.AF_UNIX) as running:
        running.bind(str(path))
        running.listen(0)  # (a short backlog: filled below)
        assert main([*serve, f"unix://{path}"]) == 2
        assert "a server listens there" in capsys.readouterr().err and path.is_socket()
        # a server that listens but does not accept (busy), its backlog full: a connect fails
        # at once (EAGAIN), which is no socket left behind either
        queued = []
        for _ in range(8):
            waiting = socket.socket(socket.AF_UNIX)
            waiting.setblocking(False)
            try:
                waiting.connect(str(path))
            except BlockingIOError:
                waiting.close()
                break
            queued.append(waiting)
        assert main([*serve, f"unix://{path}"]) == 2
        assert "a server listens there" in capsys.readouterr().err and path.is_socket()
        for waiting in queued:
            waiting.close()
    path.unlink()
    path.write_text("keep me")
    assert main([*serve, f"unix://{path}"]) == 2
    assert "something else is there" in capsys.readouterr().err and path.read_text() == "keep me"
    assert main([*serve, f"unix://{tmp_path / 'no' / 's.sock'}"]) == 2
    assert "no folder" in capsys.readouterr().err and len(ran) == 2
    assert main([*serve, "unix://"]) == 2 and "no socket path given" in capsys.readouterr().err
