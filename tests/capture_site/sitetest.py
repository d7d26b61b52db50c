"""Helpers of the study-site tests: read forms, walk a participant through the flow."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy import select

from gazepref import store

STUDY_TOML = Path(__file__).with_name("study.toml")


def study_variant(path: Path, extra: str = "", **study: str) -> Path:
    """The test study with keys changed where they are set, else added to ``[study]`` (TOML values as
    text), and ``extra`` tables
    appended, written to ``path``; e.g. ``study_variant(p, '[platform]\\nname = "prolific"', webcam='"off"')``."""
    text = STUDY_TOML.read_text()
    for key, value in study.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if not n:
            text = text.replace("[study]\n", f"[study]\n{key} = {value}\n", 1)
    path.write_text(text + "\n" + extra + "\n")
    return path


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S)
    assert m, "page has no page-data"
    return json.loads(m.group(1))


class Walker:
    """Drives one participant through the flow with the test client."""

    def __init__(self, client, pid: str = "WORKER1"):
        self.client, self.pid = client, pid

    def arrive(self, **params):
        params = params or {"PROLIFIC_PID": self.pid, "STUDY_ID": "S1", "SESSION_ID": "X1"}
        return self.client.get("/", query_string=params, follow_redirects=True)

    def consent(self, decision: str = "agree"):
        page = self.client.get("/consent")
        return self.client.post("/consent", data={"csrf_token": csrf_of(page.text), "decision": decision},
                                follow_redirects=True)

    def step(self):
        return self.client.get("/step")

    def current_step(self) -> str:
        m = re.search(r'name="step" value="([^"]+)"', self.step().text)
        return m.group(1) if m else "done"

    def answer(self, fields: dict | None = None, follow: bool = True):
        page = self.step().text
        step = re.search(r'name="step" value="([^"]+)"', page).group(1)
        data = {"csrf_token": csrf_of(page), "step": step, **(fields or {})}
        return self.client.post("/step", data=data, follow_redirects=follow)

    def to_task(self):
        """Answer every step up to the next chat task; returns the task page's data."""
        answers = {"understand_before": "3", "age": "30"}
        while True:
            step = self.current_step()
            if step.startswith("task:"):
                return page_data(self.step().text)
            assert step != "done"
            r = self.answer(answers)
            assert self.current_step() != step, f"step {step} refused its answers: {r.text[:2000]}"

    def chat_turn(self, data: dict, index: int, prompt: str, **rating):
        r = self.client.post(data["urls"]["turns"], json={"index": index, "prompt": prompt},
                             headers={"X-Participant-Token": data["token"]})
        assert r.status_code == 200, r.json
        turn = r.json["turn"]
        body = {"likert": [4] * len(turn["responses"]), "origin": 1.7e12, "t_shown": 100.0 + index,
                "t_decided": 200.0 + index, **rating}
        if data["kind"] == "pairwise":
            body.setdefault("choice", 1)
        elif index > 0:
            body.setdefault("better", True)
        r = self.client.post(f"{data['urls']['turns']}/{index}/rating", json=body,
                             headers={"X-Participant-Token": data["token"]})
        assert r.status_code == 200, r.json
        return r.json["turn"]


def first_sentence(turn: dict) -> str:
    """A sentence of the turn's first answer, as a participant would copy it from the page."""
    text = turn["responses"][0]["text"]
    return re.split(r"(?<=[.!?:])\s", text.strip())[0]


def participants(s) -> list[store.Participant]:
    return s.scalars(select(store.Participant)).all()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_gunicorn(instance: Path, study: Path, port: int) -> subprocess.Popen:
    """gunicorn (1 gthread worker) serving the site of ``instance`` (secret "test-secret", as
    the ``make_app`` fixture) on 127.0.0.1:``port``; returns once it answers. Started as
    ``python -m gunicorn``: the venv's script may name another interpreter."""
    env = {**os.environ, "GAZEPREF_INSTANCE": str(instance), "GAZEPREF_STUDY_CONFIG": str(study),
           "GAZEPREF_SECRET_KEY": "test-secret"}
    env.pop("GAZEPREF_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "8", "-b", f"127.0.0.1:{port}",
                             "--graceful-timeout", "30", "gazepref.capture_site.app:create_app()"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("gunicorn did not start")
