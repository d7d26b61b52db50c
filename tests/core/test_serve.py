"""`gazepref serve` (what `make serve` runs) serves the study site's start page."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_prints_url_and_serves_start_page(tmp_path: Path):
    port = _free_port()
    exe = Path(sys.executable).with_name("gazepref")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--instance", str(tmp_path / "inst")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in first
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode()
                    assert r.status == 200
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert "<html" in body.lower() or "<!doctype" in body.lower()
        assert (tmp_path / "inst" / "gazepref.sqlite").exists()  # embedded default: SQLite in the instance folder
    finally:
        proc.terminate()
        proc.wait(timeout=10)
