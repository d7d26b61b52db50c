"""The fault test (``benchmarks/faults.py``), short: the server killed (SIGKILL, whole process
group) mid-load and restarted, and on PostgreSQL also every database process; every batch a
client saw acknowledged is stored whole, and no sample twice."""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
from pathlib import Path

import pytest


def _faults():
    spec = importlib.util.spec_from_file_location(
        "faults", Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_acknowledged_samples_survive_kills(db):
    pytest.importorskip("gunicorn")
    if db == "postgresql" and not (glob.glob("/usr/lib/postgresql/*/bin/initdb")
                                   and (os.geteuid() != 0 or shutil.which("runuser"))):
        pytest.skip("no PostgreSQL server binaries (Debian postgresql)")
    # SQLite: the one server kill at half time, 2.5 s in (a restart takes over a second: the
    # clients, each sending a batch a second, meet it down); PostgreSQL: time for the database
    # kill after the server's restart, while the clients still send
    duration = 8.0 if db == "postgresql" else 5.0
    summary = _faults().run(db, participants=10, duration=duration, server_kills=1, db_kills=1, workers=1, threads=8)
    kinds = [e["fault"].split()[0] for e in summary["faults"]]
    assert kinds == (["server", "postgres"] if db == "postgresql" else ["server"])
    assert summary["errors_by_status"], summary  # the faults were felt: some requests failed ...
    # (no answer while the server is down; 503 + Retry-After while the database is, never a 500)
    assert set(summary["errors_by_status"]) <= {0, 503}, summary
    assert summary["acknowledged_samples"] > 0 and summary["gave_up_batches"] == 0, summary
    # ... and still every acknowledged sample is stored, once
    assert summary["acknowledged_missing"] == 0 and summary["duplicated_samples"] == 0, summary
    assert summary["ok"]
